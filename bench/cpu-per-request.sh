#!/usr/bin/env bash
# Where the CPU goes for one request through the whole lab: runs wrk from the client host
# against one application server and path (as `webstack bench` does), and prints, per
# program, its share of the machine and its CPU microseconds per request, from the
# utime+stime of every process before and after (/proc/PID/stat). Needs a running lab
# with the peers: `webstack up --peers webstack,php,node`.
# Usage: bench/cpu-per-request.sh APP PATH [SECONDS]   e.g. bench/cpu-per-request.sh php /db
set -euo pipefail
cd "$(dirname "$0")/.."
app=${1:?usage: $0 APP PATH [SECONDS]}
path=${2:?usage: $0 APP PATH [SECONDS]}
secs=${3:-8}
webstack=${WEBSTACK:-build/release/webstack/webstack}
lb=$("$webstack" status --json | python3 -c 'import json,sys; print(next(h["address"] for h in json.load(sys.stdin)["hosts"] if h["name"].startswith("lb")))')
hz=$(getconf CLK_TCK)

# Clock ticks used so far, summed per program name (processes that exit in between,
# like wrk itself, are not counted).
snapshot() {
  for f in /proc/[0-9]*/stat; do
    cat "$f" 2>/dev/null || true
  done | sed -E 's/^[0-9]+ \((.*)\) [A-Za-z] (.*)$/\1\t\2/' |
    awk -F'\t' '{ split($2, a, " "); t[$1] += a[12] + a[13] } END { for (k in t) print k "\t" t[k] }' |
    sort
}

before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot >"$before"
out=$("$webstack" exec client -- wrk -t2 -c64 -d"${secs}s" --latency -H "Host: $app.bench" \
  "https://$lb:443$path")
snapshot >"$after"
rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
echo "$app $path: $rps req/s, p99 $p99"
join -t $'\t' "$before" "$after" |
  awk -F'\t' -v rps="$rps" -v secs="$secs" -v hz="$hz" '{
      d = ($3 - $2) / hz
      if (d / secs >= 0.02) printf "  %-16s %5.1f %% of a core  %8.1f us/request\n", $1, 100 * d / secs, 1e6 * d / (rps * secs)
    }' | sort -k2 -rn
