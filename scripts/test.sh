#!/usr/bin/env bash
# Sets everything up (Debian packages, builds) and runs the whole test suite:
#   release: unit, integration, system, deploy
#   asan (AddressSanitizer + UndefinedBehaviorSanitizer): unit, integration, system
# Run once, in release only:
#   - the deploy label (emulated servers driven by Ansible): the servers run the release
#     binaries, and what ASan would check there (our programs under faults) the system
#     label checks under ASan;
#   - BenchSystemTest (`webstack bench` with the PHP and Node.js peers): it checks the
#     benchmark's tooling and report, and figures from a sanitizer build mean nothing;
#   - the database nemesis campaign (LoadBalancerPairTest.DatabaseNemesis*, about 2.5
#     minutes): its verdict is the checker's, outside our programs; the failover manager
#     and agents still run under ASan through the system label's other failover tests
#     (kill -9, SIGSTOP, link down, partitions, planned promotion);
#   - the system tests whose subject is another program (asan_system below names them).
# Work that does not clash runs side by side, on 2 cores:
#   - the emulated servers' root file system (a first run's download, then cached in
#     /var/cache/webstack-machines) is built while the release build compiles;
#   - the deploy label (Ansible's CPU, SSH, the emulated servers, an alert's `for: 1m`),
#     the asan build and the release unit and integration labels run together;
#   - then the release system label (fault tests under load, mostly waiting on their
#     labs) runs while the asan build, if not done yet, goes on at low priority (its
#     autogroup at nice 15), then the asan labels;
#   - clang-tidy (scripts/lint.sh: every translation unit, about 11 CPU-minutes cold)
#     runs from the release build to the end at idle priority (SCHED_IDLE, its autogroup
#     at nice 19): it takes only CPU time nothing else wants.
#   A process started with setsid is its own autogroup, which the scheduler gives an
#   equal share of the CPU whatever the policy of the processes inside: the group's nice
#   is what makes background work yield.
# Before the builds, every source file is checked against clang-format (scripts/lint.sh).
# Prints the time of each step at the end, and one closing line for every test run.
# Usage: scripts/test.sh                 everything, as above
#        scripts/test.sh [ctest args...] ctest with these args under both presets, in turn
#                                        (e.g. scripts/test.sh -L unit)
set -euo pipefail
cd "$(dirname "$0")/.."

# A system test killed from outside (ctest's timeout, ^C) cannot take its lab down: the
# labs the tests made (/tmp/<name>-site with a topology and a state) are taken down here.
cleanup_test_labs() {
  local cli=$1 dir
  for dir in /tmp/*-site; do
    [ -f "$dir/site.toml" ] || continue
    [ -x "$cli" ] || continue
    # A deploy test's emulated servers (webstack machines) first, then the lab.
    if [ -f "$dir/machines/.webstack-machines" ]; then
      "$cli" machines down --purge -f "$dir/site.toml" --state-dir "$dir/machines" \
        >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/state/.webstack-lab" ]; then
      "$cli" down --purge -f "$dir/site.toml" --state-dir "$dir/state" >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
  done
}

timings=()
failed=0
# Records step <name>, started at <t0> (date +%s), with exit status <rc>.
record() {
  local name=$1 t0=$2 rc=$3
  timings+=("$(printf '%-44s %5d s  %s' "$name" $(($(date +%s) - t0)) \
    "$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  [ "$rc" = 0 ] || failed=1
}
# Runs "$@" as step <name>; returns its exit status (callers decide what a failure skips).
timed() {
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s)
  "$@" || rc=$?
  record "$name" "$t0" "$rc"
  return "$rc"
}
# Waits for the background step <pid> (started at <t0>), prints its log <log> (only its
# last <ok_lines> lines when it passed, if given) and records it as <name>; returns its
# exit status.
collect() {
  local pid=$1 log=$2 t0=$3 name=$4 ok_lines=${5:-} rc=0
  wait "$pid" || rc=$?
  echo "== $name: ended"
  if [ "$rc" = 0 ] && [ -n "$ok_lines" ]; then
    tail -n "$ok_lines" "$log" || true
  else
    cat "$log" || true
  fi
  record "$name" "$t0" "$rc"
  return "$rc"
}
# ctest for one label of one preset, with a JUnit report for the closing line.
label() {
  local preset=$1 name=$2
  shift 2
  ctest --preset "$preset" -L "^$name\$" --output-junit "$PWD/build/$preset/junit-$name.xml" "$@"
}

# The system label under ASan: the tests that drive our programs (the failover manager
# and agents under faults, the app under faults, `webstack` bringing labs up, repairing
# and refusing them, the dashboard's API). Release only, besides the two above: the tests
# whose subject is another program's behaviour or configuration (Prometheus's alerts,
# keepalived's address moves, HAProxy killed, the seed profile's exposure, the dashboard
# in a browser, a lab's crash recovery, active-active balancers): what of our code they
# cross, the tests kept cross too, and they save about 4 minutes.
asan_system() {
  local release_only=(
    'BenchSystemTest.*' 'LoadBalancerPairTest.DatabaseNemesis*' 'MonitoringTest.*'
    'SeedProfileTest.*' 'ActiveActiveTest.*' 'DashboardTest.TheBrowserShowsTheSiteAndItsFaults'
    'SiteSystemTest.UpAndDownRecoverFromCrashes'
    'LoadBalancerPairTest.HoldersLinkDownTheAddressMovesToTheOther'
    'LoadBalancerPairTest.OneBalancerHoldsTheAddressAndTheSiteAnswersThroughIt'
    'LoadBalancerPairTest.HaproxyKilledOnTheHolderTheSiteComesBack')
  GTEST_FILTER="-$(IFS=:; echo "${release_only[*]}")" label asan system
}

# Sets the nice of <pid>'s process group (what it starts next inherits it) and of its
# autogroup, for <pid> a session leader started with setsid. The autogroup is what counts
# where the kernel uses autogroups (kernel.sched_autogroup_enabled, the root CPU cgroup);
# the processes' own nice where it does not. Until its setsid, the child is still in our
# group, which stays as it is.
group_nice() {
  local pid=$1 nice=$2
  [ -n "$pid" ] && [ -e "/proc/$pid/autogroup" ] || return 0
  [ "$(cut -d' ' -f1 "/proc/$pid/autogroup" 2>/dev/null)" != \
    "$(cut -d' ' -f1 /proc/self/autogroup)" ] || return 0
  renice -n "$nice" -g "$pid" >/dev/null 2>&1 || true
  echo "$nice" >"/proc/$pid/autogroup" 2>/dev/null || true
}

t_start=$(date +%s)
rm -f build/release/junit-*.xml build/asan/junit-*.xml
echo "== packages"
scripts/setup.sh --no-build

if [ $# -gt 0 ]; then
  trap 'for p in release asan; do cleanup_test_labs "build/$p/webstack/webstack"; done' EXIT
  for preset in release asan; do
    echo "== $preset: build"
    timed "$preset build" scripts/setup.sh "$preset" || continue
    echo "== $preset: ctest $*"
    timed "$preset ctest $*" ctest --preset "$preset" "$@" || true
    cleanup_test_labs "build/$preset/webstack/webstack"
  done
  printf '%s\n' "== times" "${timings[@]}"
  exit "$failed"
fi

cache=${WEBSTACK_MACHINES_CACHE:-/var/cache/webstack-machines}
rootfs_pid="" deploy_pid="" tidy_pid="" asan_pid=""
# ^C or a failure: the background work ends (its whole process group), then the labs go.
stop_background() {
  local p
  for p in $rootfs_pid $deploy_pid $tidy_pid $asan_pid; do
    kill -TERM -- "-$p" 2>/dev/null || true
  done
  for p in $rootfs_pid $deploy_pid $tidy_pid $asan_pid; do wait "$p" 2>/dev/null || true; done
  for p in release asan; do cleanup_test_labs "build/$p/webstack/webstack"; done
}
trap stop_background EXIT
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$cache"
  echo "== deploy: the emulated servers' root file system, in the background"
  setsid deploy/machines/machines.sh rootfs "$cache" >"$cache/rootfs-background.log" 2>&1 &
  rootfs_pid=$!
fi

# Every source file as clang-format (.clang-format) would write it: seconds.
timed "clang-format (every .cpp and .hpp)" env LINT_SKIP_TIDY=1 scripts/lint.sh || true

echo "== release: build"
release_built=1 asan_built=1
timed "release build" scripts/setup.sh release || release_built=0

if [ -f build/release/compile_commands.json ]; then
  echo "== clang-tidy, in the background at idle priority (its output follows at the end)"
  tidy_log=build/release/clang-tidy.log
  tidy_t0=$(date +%s)
  # Its own session is its own autogroup, which the scheduler gives an equal share of the
  # CPU whatever the policy of the processes inside: the group's nice is 19 too.
  setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true
    exec nice -n 19 chrt --idle 0 env LINT_SKIP_FORMAT=1 scripts/lint.sh build/release' \
    >"$tidy_log" 2>&1 &
  tidy_pid=$!
fi

if [ "$release_built" = 1 ]; then
  if [ -n "$rootfs_pid" ]; then
    # The deploy test would wait for it anyway (machines.sh takes a lock).
    wait "$rootfs_pid" || echo "(the background root file system build failed, see" \
      "$cache/rootfs-background.log; the deploy test builds it again)"
    rootfs_pid=""
  fi
  echo "== release: deploy, in the background (its output follows when it ends)"
  deploy_log=build/release/deploy-label.log
  deploy_t0=$(date +%s)
  setsid bash -c "$(declare -f label); label release deploy" >"$deploy_log" 2>&1 &
  deploy_pid=$!
fi

# The asan build, in its own session (so its own autogroup: the scheduler's unit of
# fair share), started now beside the deploy label at the usual priority.
echo "== asan: build, in the background (its output follows when it ends)"
mkdir -p build
asan_log=build/asan-build.log
asan_t0=$(date +%s)
setsid scripts/setup.sh asan >"$asan_log" 2>&1 &
asan_pid=$!

if [ "$release_built" = 1 ]; then
  echo "== release: unit"
  timed "release unit" label release unit -j 2 || true  # in-process: no lab, no clash
  echo "== release: integration"
  timed "release integration" label release integration || true
fi

if [ -n "$deploy_pid" ]; then
  collect "$deploy_pid" "$deploy_log" "$deploy_t0" "release deploy (beside the asan build)" ||
    true
  deploy_pid=""
  cleanup_test_labs build/release/webstack/webstack  # a deploy test killed by its timeout
fi

if [ "$release_built" = 1 ]; then
  # The system label's fault tests mostly wait on their labs: the asan build goes on in
  # the CPU time they leave, its group at nice 15 (about 3% of a contended CPU).
  group_nice "$asan_pid" 15
  echo "== release: system (the asan build goes on at low priority)"
  timed "release system" label release system || true
  cleanup_test_labs build/release/webstack/webstack
fi

group_nice "$asan_pid" 0
collect "$asan_pid" "$asan_log" "$asan_t0" "asan build (beside the deploy, then the system label)" \
  5 || asan_built=0
asan_pid=""
if [ "$asan_built" = 1 ]; then
  echo "== asan: unit"
  timed "asan unit" label asan unit -j 2 || true
  echo "== asan: integration"
  timed "asan integration" label asan integration || true
fi
if [ "$asan_built" = 1 ]; then
  echo "== asan: system (the tests asan_system names run in release only)"
  timed "asan system" asan_system || true
  cleanup_test_labs build/asan/webstack/webstack
fi

if [ -n "$tidy_pid" ]; then
  collect "$tidy_pid" "$tidy_log" "$tidy_t0" "clang-tidy (idle priority, beside the rest)" || true
  tidy_pid=""
fi

timings+=("$(printf '%-44s %5d s' total $(($(date +%s) - t_start)))")
printf '%s\n' "== times" "${timings[@]}"
# One closing line for every ctest run above: each wrote a JUnit report, one <testcase>
# element per test with status "run" (passed), "fail", or another (not run, disabled).
passed=0 failures=0 skipped=0
for f in build/release/junit-*.xml build/asan/junit-*.xml; do
  [ -f "$f" ] || continue
  n=$(grep -c '<testcase ' "$f" || true)
  ok=$(grep -c 'status="run"' "$f" || true)
  bad=$(grep -c 'status="fail"' "$f" || true)
  passed=$((passed + ok))
  failures=$((failures + bad))
  skipped=$((skipped + n - ok - bad))
done
echo "ctest: $passed passed, $failures failed, $skipped skipped"
exit "$failed"
