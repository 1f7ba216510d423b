#!/usr/bin/env bash
# Sets everything up (Debian packages, builds) and runs the whole test suite:
# unit and integration tests under the release preset, then again under the asan
# preset (AddressSanitizer + UndefinedBehaviorSanitizer).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."

for preset in release asan; do
  echo "== $preset: build"
  scripts/setup.sh "$preset"
  echo "== $preset: test"
  ctest --preset "$preset" "$@"
done
