#!/usr/bin/env bash
# The long database nemesis campaign: N rounds of faults picked at random, each held for
# a time drawn at random (both from the seed), under writes and read-your-writes reads
# through the site, each judged by the system test's independent checker (every
# acknowledged write on both nodes, no moment with two writable nodes, no read missing its
# own write, back to full redundancy without a person); prints each round and the table
# per fault type
# (docs/high-availability.md has the latest). Root; it brings up a lab of its own.
# Usage: scripts/chaos.sh [--rounds N] [--seed S] [--preset P]   (defaults 100, 1, release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=100 seed=1 preset=release
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --seed) seed=${2:?--seed needs a number}; shift 2 ;;
    --preset) preset=${2:?--preset needs a name}; shift 2 ;;
    *) echo "chaos: unknown argument \"$1\" (--rounds N, --seed S, --preset P)" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "chaos: --rounds must be a positive number, not \"$rounds\"" >&2; exit 2; }
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "chaos: --seed must be a number, not \"$seed\"" >&2; exit 2; }
tests=build/$preset/webstack/webstack_system_tests
[ -x "$tests" ] || { echo "chaos: $tests not built (scripts/setup.sh $preset)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "chaos: needs root (network namespaces)" >&2; exit 2; }
# Not WEBSTACK_*: the lab's services inherit this environment, and webstack-app refuses
# WEBSTACK_ variables it does not know.
CHAOS_ROUNDS=$rounds CHAOS_SEED=$seed exec "$tests" \
  --gtest_filter='LoadBalancerPairTest.DatabaseNemesis*'
