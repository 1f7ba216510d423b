#!/bin/sh
# Checks a rendered Prometheus rules file (templates/prometheus/alerts.yml.mustache as
# `webstack render` writes it, <bundle>/<monitoring host>/prometheus/alerts.yml):
#   promtool check rules, then promtool test rules with the unit tests beside this script:
#   - alerts_test.yml       every alert firing on its cause and not on a near miss; holds
#                           for lab and production renderings alike (causes are long)
#   - alerts_lab_test.yml   lab rendering only: each alert fires within 20 s of its cause
#                           showing in a 2 s scrape (the rest of the 30 s goes to the
#                           source noticing and the scrape itself)
#   - alerts_vip_test.yml   when the rules have LoadBalancerFailover (the topology has a
#                           virtual address): its address is put in for @VIP@
#   - alerts_failover_test.yml  when the rules have the failover manager's alerts
#   - alerts_manual_test.yml    when they do not (semi-sync off on purpose never fires)
# promtool resolves a test's rule_files relative to the test file, so the rules and the
# tests are copied into one temporary directory.
#
# Usage: tests/monitoring/check_rules.sh RENDERED_ALERTS_YML [lab|production]
# The mode defaults to the rendered file's "# intervals: lab|production" line.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 RENDERED_ALERTS_YML [lab|production]" >&2
  exit 2
fi
rules=$1
if [ ! -r "$rules" ]; then
  echo "$0: cannot read $rules" >&2
  exit 2
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "$0: promtool not found (Debian package prometheus)" >&2
  exit 2
fi

mode=${2:-$(sed -n 's/^# intervals: \(lab\|production\)$/\1/p' "$rules" | head -n 1)}
case "$mode" in
  lab | production) ;;
  *)
    echo "$0: mode unknown (no '# intervals: lab|production' line in $rules; pass it)" >&2
    exit 2
    ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cp "$rules" "$tmp/alerts.yml"

promtool check rules "$tmp/alerts.yml"

tests="alerts_test.yml"
[ "$mode" = lab ] && tests="$tests alerts_lab_test.yml"
vip=$(sed -n 's/.*node_network_address_info{job="node",address="\([0-9.]*\)"}.*/\1/p' \
  "$tmp/alerts.yml" | head -n 1)
if [ -n "$vip" ]; then
  tests="$tests alerts_vip_test.yml"
elif grep -q 'alert: LoadBalancerFailover' "$tmp/alerts.yml"; then
  echo "$0: LoadBalancerFailover present but its virtual address not found" >&2
  exit 1
else
  echo "no LoadBalancerFailover (no virtual address): alerts_vip_test.yml skipped"
fi

if grep -q 'alert: NoWritablePrimary' "$tmp/alerts.yml"; then
  tests="$tests alerts_failover_test.yml"
else
  echo "no failover alerts (no failover manager): alerts_failover_test.yml skipped"
  tests="$tests alerts_manual_test.yml"
fi

set --
for t in $tests; do
  sed "s/@VIP@/$vip/g" "$here/$t" >"$tmp/$t"
  set -- "$@" "$tmp/$t"
done
echo "mode $mode: promtool test rules $tests"
promtool test rules "$@"
