#!/usr/bin/env bash
# Benchmarks webstack-app directly on loopback next to its ceilings, in the same run:
#   app /plaintext              vs  nginx `return 200 "Hello, World!"`
#   app /db (1 point SELECT)    vs  sysbench oltp_point_select (1 point SELECT per event)
# both pairs at the same concurrency, interleaved for ROUNDS rounds (median, min-max), plus
# app /json, /queries?queries=20, /fortunes and /updates?queries=20 (OTHER_ROUNDS rounds).
#
# Everything runs on this machine: a throwaway MariaDB (datadir in a temp dir, schema, seed
# and users from sql/), webstack-app, nginx and the load generators share the CPUs, so the
# ratios say more than the absolute numbers. Everything started here is stopped on exit.
#
# Usage: bench/direct.sh [path/to/webstack-app]      (default: build/release/app/webstack-app)
# Environment (defaults):
#   DURATION=10        seconds per measured run
#   ROUNDS=3           rounds of the two ratio pairs
#   OTHER_ROUNDS=1     rounds of /json, /queries, /fortunes, /updates
#   CONNECTIONS=64     wrk connections = sysbench threads
#   WRK_THREADS=2      wrk threads
#   WARMUP=2           seconds of warm-up per target before the first round (0: none)
#   APP_THREADS=       --set server.threads (empty: the app's default)
#   POOL_SIZE=         --set db.pool_size (empty: the app's default)
#   SKIP_APP=0         1: only MariaDB, nginx and sysbench (to test the harness itself)
#   KEEP_TMP=0         1: keep the temp dir (logs) after the run
# Default runtime: about 2 min 50 s (16 runs x 10 s + warm-up + setup).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP=${1:-$ROOT/build/release/app/webstack-app}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
OTHER_ROUNDS=${OTHER_ROUNDS:-1}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-2}
APP_THREADS=${APP_THREADS:-}
POOL_SIZE=${POOL_SIZE:-}
SKIP_APP=${SKIP_APP:-0}
KEEP_TMP=${KEEP_TMP:-0}

log() { printf '[direct.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for tool in mariadbd mariadb-install-db mariadb nginx wrk sysbench curl; do
  command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || die "$tool not found"
done
export PATH="$PATH:/usr/sbin:/sbin"
if [[ $SKIP_APP != 1 ]]; then
  [[ -x $APP ]] || die "webstack-app not found at $APP (build it: cmake --preset release && cmake --build --preset release; or pass its path; SKIP_APP=1 for the ceilings only)"
fi

TMP=$(mktemp -d /tmp/webstack-bench.XXXXXX)
DB_PID='' NGINX_PID='' APP_PID=''

# Stops a child: SIGTERM, up to $2 seconds, then SIGKILL.
stop_pid() {
  local pid=$1 grace=${2:-20} i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$APP_PID" 15
  stop_pid "$NGINX_PID" 10
  stop_pid "$DB_PID" 60
  if [[ $KEEP_TMP == 1 || $rc != 0 ]]; then
    log "logs kept in $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port on 127.0.0.1 that nothing listens on; not handed out twice by this script.
USED_PORTS=' '
free_port() {
  local port
  for _ in $(seq 50); do
    if command -v python3 >/dev/null 2>&1; then
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    else
      port=$((20000 + RANDOM % 20000))
      (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null && continue # something listens there
    fi
    [[ $USED_PORTS == *" $port "* ]] && continue
    USED_PORTS+="$port "
    echo "$port"
    return 0
  done
  die "no free port"
}

# Polls a command until it succeeds or $1 seconds pass; $2 is a pid that must stay alive.
wait_until() {
  local timeout=$1 pid=$2 what=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited during startup"
    ((SECONDS < deadline)) || die "$what not ready after ${timeout}s"
    sleep 0.05
  done
}

random_password() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24 || true; }

# ---------------------------------------------------------------- MariaDB (one node)
DB_PORT=$(free_port)
DB_SOCK=$TMP/mysqld.sock
mkdir -p "$TMP/db-tmp"
log "MariaDB: install in $TMP/db"
install_user=()
[[ $(id -u) == 0 ]] && install_user=(--user=root)
mariadb-install-db --no-defaults --datadir="$TMP/db" --auth-root-authentication-method=normal \
  --skip-test-db "${install_user[@]}" >"$TMP/install.log" 2>&1 || {
  cat "$TMP/install.log" >&2
  die "mariadb-install-db failed"
}
mariadbd --no-defaults "${install_user[@]}" --datadir="$TMP/db" --socket="$DB_SOCK" \
  --pid-file="$TMP/mysqld.pid" --log-error="$TMP/mysqld.err" --tmpdir="$TMP/db-tmp" \
  --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --server-id=1 \
  --log-bin=mysql-bin --binlog-format=ROW --gtid-strict-mode=ON --sync-binlog=0 \
  --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 \
  --performance-schema=OFF --max-connections=2000 \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
  >"$TMP/mysqld.out" 2>&1 &
DB_PID=$!
sql() { mariadb --no-defaults --socket="$DB_SOCK" -uroot --default-character-set=utf8mb4 --batch --skip-column-names "$@"; }
wait_until 60 "$DB_PID" mariadbd sql -e 'SELECT 1'
log "MariaDB: ready on 127.0.0.1:$DB_PORT (pid $DB_PID)"

APP_PW=$(random_password)
SB_PW=$(random_password)
sed -e "s/@APP_PASSWORD@/$APP_PW/" -e "s/@REPL_PASSWORD@/$(random_password)/" \
  -e "s/@PROBE_PASSWORD@/$(random_password)/" -e "s/@HOST@/%/" \
  "$ROOT/sql/users.sql.in" | sql
sql <"$ROOT/sql/schema.sql"
sql <"$ROOT/sql/seed.sql"
sql -e "CREATE DATABASE IF NOT EXISTS sbtest;
        CREATE USER IF NOT EXISTS 'sbtest'@'%' IDENTIFIED BY '$SB_PW';
        GRANT ALL PRIVILEGES ON sbtest.* TO 'sbtest'@'%';"
SYSBENCH=(sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1
  --mysql-port="$DB_PORT" --mysql-user=sbtest --mysql-password="$SB_PW" --mysql-db=sbtest
  --tables=1 --table-size=10000)
"${SYSBENCH[@]}" prepare >"$TMP/sysbench-prepare.log" 2>&1 || {
  cat "$TMP/sysbench-prepare.log" >&2
  die "sysbench prepare failed"
}
log "MariaDB: webstack schema + seed, sbtest.sbtest1 (10000 rows) loaded"

# ---------------------------------------------------------------- nginx
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events {
  worker_connections 4096;
}
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      default_type text/plain;
      return 200 "Hello, World!";
    }
  }
}
EOF
nginx -p "$TMP/nginx/" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" \
  >"$TMP/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
wait_until 30 "$NGINX_PID" nginx curl -fsS "http://127.0.0.1:$NGINX_PORT/"
log "nginx: ready on 127.0.0.1:$NGINX_PORT (pid $NGINX_PID)"

# ---------------------------------------------------------------- webstack-app
APP_PORT=''
if [[ $SKIP_APP != 1 ]]; then
  APP_PORT=$(free_port)
  app_args=(--set "server.port=$APP_PORT" --set server.listen=127.0.0.1
    --set "db.nodes=127.0.0.1:$DB_PORT" --set db.user=webstack --set db.database=webstack)
  [[ -n $APP_THREADS ]] && app_args+=(--set "server.threads=$APP_THREADS")
  [[ -n $POOL_SIZE ]] && app_args+=(--set "db.pool_size=$POOL_SIZE")
  WEBSTACK_DB_PASSWORD=$APP_PW "$APP" "${app_args[@]}" >"$TMP/app.log" 2>&1 &
  APP_PID=$!
  if ! (wait_until 30 "$APP_PID" webstack-app curl -fsS "http://127.0.0.1:$APP_PORT/healthz"); then
    tail -n 30 "$TMP/app.log" >&2
    die "webstack-app did not become healthy"
  fi
  log "webstack-app: healthy on 127.0.0.1:$APP_PORT (pid $APP_PID): ${app_args[*]}"
  for path in /plaintext /json /db '/queries?queries=20' /fortunes '/updates?queries=20'; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APP_PORT$path")
    [[ $code == 200 ]] || log "warning: GET $path answers $code before the benchmark"
  done
fi

# ---------------------------------------------------------------- runners
mkdir -p "$TMP/results"

# wrk latency "1.23ms" / "456.00us" / "1.02s" -> milliseconds
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

# run_wrk NAME URL SECONDS [record]: appends "rps p50 p99 errors" to results/NAME.
run_wrk() {
  local name=$1 url=$2 secs=$3 record=${4:-record} out
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency "$url" 2>&1) || {
    echo "$out" >&2
    die "wrk $url failed"
  }
  echo "$out" >>"$TMP/results/$name.wrk.log"
  [[ $record == record ]] || return 0
  local rps p50 p99 non2xx sockerr
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  sockerr=$(awk -F'[ ,]+' '/Socket errors:/ {print $4 + $6 + $8 + $10}' <<<"$out")
  echo "${rps:-0} ${p50:-0} ${p99:-0} $((${non2xx:-0} + ${sockerr:-0}))" >>"$TMP/results/$name"
  log "$(printf '%-22s %12s req/s  p50 %8s ms  p99 %8s ms  errors %s' "$name" "$rps" "$p50" "$p99" "$((${non2xx:-0} + ${sockerr:-0}))")"
}

# run_sysbench SECONDS [record]: appends "qps p50 p99 errors" to results/sysbench.
run_sysbench() {
  local secs=$1 record=${2:-record} out
  out=$("${SYSBENCH[@]}" --threads="$CONNECTIONS" --time="$secs" --percentile=99 \
    --histogram=on run 2>&1) || {
    echo "$out" >&2
    die "sysbench run failed"
  }
  echo "$out" >>"$TMP/results/sysbench.log"
  [[ $record == record ]] || return 0
  local qps p50 p99 errors
  qps=$(awk '/queries:/ && /per sec/ {gsub(/[(]/, "", $3); print $3; exit}' <<<"$out")
  p99=$(awk '/99th percentile:/ {print $3}' <<<"$out")
  # p50 from the histogram: "   value |****   count" lines, in increasing value order.
  p50=$(awk '/Latency histogram/ {h = 1; next}
             h && /\|/ {v[n] = $1; c[n] = $NF; total += $NF; n++}
             h && /^$/ && n {h = 0}
             END {for (i = 0; i < n; i++) {s += c[i]; if (s * 2 >= total) {printf "%.3f", v[i]; exit}}}' <<<"$out")
  errors=$(awk '/ignored errors:/ {print $3}' <<<"$out")
  echo "${qps:-0} ${p50:-0} ${p99:-0} ${errors:-0}" >>"$TMP/results/sysbench"
  log "$(printf '%-22s %12s q/s    p50 %8s ms  p99 %8s ms  errors %s' sysbench-point-select "$qps" "$p50" "$p99" "${errors:-0}")"
}

APP_URL="http://127.0.0.1:$APP_PORT"
NGINX_URL="http://127.0.0.1:$NGINX_PORT/"

if ((WARMUP > 0)); then
  log "warm-up (${WARMUP}s per target)"
  run_wrk nginx-return-200 "$NGINX_URL" "$WARMUP" no
  run_sysbench "$WARMUP" no
  if [[ $SKIP_APP != 1 ]]; then
    run_wrk app-plaintext "$APP_URL/plaintext" "$WARMUP" no
    run_wrk app-db "$APP_URL/db" "$WARMUP" no
  fi
fi

for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round/$ROUNDS"
  # Alternate which side goes first, so a drift over time does not favour one side.
  if ((round % 2)); then
    [[ $SKIP_APP == 1 ]] || run_wrk app-plaintext "$APP_URL/plaintext" "$DURATION"
    run_wrk nginx-return-200 "$NGINX_URL" "$DURATION"
    [[ $SKIP_APP == 1 ]] || run_wrk app-db "$APP_URL/db" "$DURATION"
    run_sysbench "$DURATION"
  else
    run_wrk nginx-return-200 "$NGINX_URL" "$DURATION"
    [[ $SKIP_APP == 1 ]] || run_wrk app-plaintext "$APP_URL/plaintext" "$DURATION"
    run_sysbench "$DURATION"
    [[ $SKIP_APP == 1 ]] || run_wrk app-db "$APP_URL/db" "$DURATION"
  fi
done

if [[ $SKIP_APP != 1 ]]; then
  for ((round = 1; round <= OTHER_ROUNDS; round++)); do
    log "other endpoints, round $round/$OTHER_ROUNDS"
    run_wrk app-json "$APP_URL/json" "$DURATION"
    run_wrk app-queries-20 "$APP_URL/queries?queries=20" "$DURATION"
    run_wrk app-fortunes "$APP_URL/fortunes" "$DURATION"
    run_wrk app-updates-20 "$APP_URL/updates?queries=20" "$DURATION"
  done
  kill -0 "$APP_PID" 2>/dev/null || die "webstack-app died during the benchmark (log: $TMP/app.log)"
fi

# ---------------------------------------------------------------- report
# column N of results/NAME -> "median min max" (median: middle value; mean of the two middle
# values for an even count)
stats() {
  awk -v col="$2" '{print $col}' "$TMP/results/$1" | sort -g | awk '
    {v[NR] = $1}
    END {
      if (NR == 0) {print "0 0 0"; exit}
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.2f %.2f %.2f\n", m, v[1], v[NR]
    }'
}
median() { stats "$1" "$2" | awk '{print $1}'; }

row() {
  local name=$1 label=$2 med min max
  [[ -s $TMP/results/$name ]] || return 0
  read -r med min max < <(stats "$name" 1)
  local errors
  errors=$(awk '{s += $4} END {print s + 0}' "$TMP/results/$name")
  printf '| %s | %s (%s–%s) | %s | %s | %s | %s |\n' "$label" \
    "$(printf '%.0f' "$med")" "$(printf '%.0f' "$min")" "$(printf '%.0f' "$max")" \
    "$(median "$name" 2)" "$(median "$name" 3)" "$errors" "$(wc -l <"$TMP/results/$name")"
}

ratio() {
  local a b
  [[ -s $TMP/results/$1 && -s $TMP/results/$2 ]] || {
    echo "n/a"
    return 0
  }
  a=$(median "$1" 1)
  b=$(median "$2" 1)
  awk -v a="$a" -v b="$b" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'
}

cpus=$(nproc)
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "## webstack-app direct benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- host: $cpus CPUs (${cpu_model:-unknown}); load generators, app, nginx and MariaDB share them"
echo "- $(mariadbd --version | sed 's/^.*Ver /MariaDB /'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk --version 2>&1 | head -1 | awk '{print "wrk " $2}'), $(sysbench --version)"
echo "- concurrency $CONNECTIONS (wrk -t$WRK_THREADS -c$CONNECTIONS; sysbench --threads=$CONNECTIONS), ${DURATION}s per run, $ROUNDS interleaved rounds for the ratio pairs, $OTHER_ROUNDS for the other endpoints"
[[ $SKIP_APP == 1 ]] || echo "- app: $APP${APP_THREADS:+ server.threads=$APP_THREADS}${POOL_SIZE:+ db.pool_size=$POOL_SIZE} (pid $APP_PID)"
echo
echo "| test | req/s median (min–max) | p50 ms | p99 ms | errors | runs |"
echo "|---|---|---|---|---|---|"
row app-plaintext "app /plaintext"
row nginx-return-200 "nginx return 200"
row app-json "app /json"
row app-db "app /db"
row sysbench "sysbench oltp_point_select (q/s)"
row app-queries-20 "app /queries?queries=20"
row app-fortunes "app /fortunes"
row app-updates-20 "app /updates?queries=20"
echo
echo "| ratio | value |"
echo "|---|---|"
echo "| app /plaintext ÷ nginx return 200 | $(ratio app-plaintext nginx-return-200) |"
echo "| app /db ÷ sysbench point-select q/s (concurrency $CONNECTIONS) | $(ratio app-db sysbench) |"
echo
echo "errors: non-2xx responses + socket errors (wrk), ignored errors (sysbench); p50/p99: median over runs."
