#!/usr/bin/env bash
# Sets everything up (Debian packages, builds) and runs the whole test suite:
# unit and integration tests under the release preset, then again under the asan
# preset (AddressSanitizer + UndefinedBehaviorSanitizer).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
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

for preset in release asan; do
  echo "== $preset: build"
  scripts/setup.sh "$preset"
  echo "== $preset: test"
  trap 'cleanup_test_labs "build/'"$preset"'/webstack/webstack"' EXIT
  ctest --preset "$preset" "$@"
  cleanup_test_labs "build/$preset/webstack/webstack"
done
