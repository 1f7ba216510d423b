#!/usr/bin/env bash
# Sets everything up (Debian packages, builds) and runs the whole test suite:
#   release: unit, integration, system, deploy
#   asan (AddressSanitizer + UndefinedBehaviorSanitizer): unit, integration, system
# The deploy label (emulated servers driven by Ansible) runs once, in release: the
# servers run the release binaries, and what ASan would check there (webstack-app and
# the failover daemons under faults) the system label already checks under ASan.
# While the code compiles, the emulated servers' root file system is built in the
# background (a first run's download, kept in /var/cache/webstack-machines).
# Prints the time of each preset's build and label at the end.
# Usage: scripts/test.sh                 everything, as above
#        scripts/test.sh [ctest args...] ctest with these args under both presets
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
# Runs "$@" as step <name>, recording its time and outcome; a failed step fails the run
# at the end, after the other steps had their turn.
timed() {
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s)
  "$@" || rc=$?
  timings+=("$(printf '%-26s %5d s  %s' "$name" $(($(date +%s) - t0)) \
    "$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  [ "$rc" = 0 ] || failed=1
  return 0
}
report() {
  echo "== times"
  printf '%s\n' "${timings[@]}"
}

t_start=$(date +%s)
rm -f build/release/junit-*.xml build/asan/junit-*.xml
echo "== packages"
scripts/setup.sh --no-build

cache=${WEBSTACK_MACHINES_CACHE:-/var/cache/webstack-machines}
rootfs_pid=""
if [ $# -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$cache"
  echo "== deploy: building the emulated servers' root file system in the background"
  deploy/machines/machines.sh rootfs "$cache" >"$cache/rootfs-background.log" 2>&1 &
  rootfs_pid=$!
fi
trap 'for p in release asan; do cleanup_test_labs "build/$p/webstack/webstack"; done
      [ -n "$rootfs_pid" ] && kill "$rootfs_pid" 2>/dev/null; true' EXIT

for preset in release asan; do
  echo "== $preset: build"
  timed "$preset build" scripts/setup.sh "$preset"
done

for preset in release asan; do
  if [ $# -gt 0 ]; then
    echo "== $preset: ctest $*"
    timed "$preset ctest $*" ctest --preset "$preset" "$@"
  else
    labels=(unit integration system)
    [ "$preset" = release ] && labels+=(deploy)
    for label in "${labels[@]}"; do
      echo "== $preset: $label"
      if [ "$label" = deploy ] && [ -n "$rootfs_pid" ]; then
        # The build started above; the deploy test would wait for it anyway (a lock).
        wait "$rootfs_pid" || echo "(the background root file system build failed:" \
          "$cache/rootfs-background.log; the deploy test builds it again)"
        rootfs_pid=""
      fi
      jobs=()
      [ "$label" = unit ] && jobs=(-j 2)  # in-process tests: no lab, no clash
      timed "$preset $label" ctest --preset "$preset" -L "^$label\$" "${jobs[@]}" \
        --output-junit "$PWD/build/$preset/junit-$label.xml"
    done
  fi
  cleanup_test_labs "build/$preset/webstack/webstack"
done

timings+=("$(printf '%-26s %5d s' total $(($(date +%s) - t_start)))")
report
if [ $# -eq 0 ]; then
  # One closing line for every ctest run above (each wrote a JUnit report).
  passed=0 failures=0
  for f in build/release/junit-*.xml build/asan/junit-*.xml; do
    [ -f "$f" ] || continue
    read -r n bad < <(sed -n 's/.*<testsuite [^>]*tests="\([0-9]*\)"[^>]*failures="\([0-9]*\)".*/\1 \2/p' "$f" | head -n 1)
    passed=$((passed + ${n:-0} - ${bad:-0}))
    failures=$((failures + ${bad:-0}))
  done
  echo "ctest: $passed passed, $failures failed"
fi
exit "$failed"
