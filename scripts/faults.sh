#!/usr/bin/env bash
# Runs the fault tests (root; they bring up a lab of their own and take it down) and
# prints their one-line figures as a table: what was broken, under which load, and what
# it cost (failed requests, seconds until the site or the writes came back, lost writes),
# then the database nemesis campaign's table.
# Usage: scripts/faults.sh [preset]   (default release; build it first: scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
tests=build/$preset/webstack/webstack_system_tests
[ -x "$tests" ] || { echo "faults: $tests not built (scripts/setup.sh $preset)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "faults: needs root (network namespaces)" >&2; exit 2; }

filter='LoadBalancerPairTest.*:RunningSiteTest.An*UnderLoad*:RunningSiteTest.AWebHost*:MonitoringTest.*'
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$tests" --gtest_filter="$filter" >"$log" 2>&1 || status=$?

echo "| fault | figures |"
echo "|---|---|"
grep -E '^(kill -9|SIGSTOP of|lb-01.s link down|web-02.s link down|the primary.s link down|rolling deploy|db promote under|app stopped under load|[A-Za-z0-9]+: fired)' "$log" |
  sed -E 's/^([^:]+): (.*)$/| \1 | \2 |/'
echo
# The database nemesis campaign's own table (every fault once; docs/high-availability.md).
sed -n '/^database nemesis/,/^\[/p' "$log" | grep -E '^(database nemesis|\|)' || true
echo
grep -E '^\[  (PASSED|FAILED) ' "$log" || true
exit "$status"
