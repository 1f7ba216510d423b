#!/usr/bin/env bash
# Sets everything up (Debian packages, release build) and runs the stack on this machine:
# a MariaDB primary + replica on loopback and webstack-app on 127.0.0.1:8080 (Ctrl-C stops).
# Extra arguments go to webstack-devstack, e.g. scripts/run.sh --port 8081.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
exec build/release/tests/integration/webstack-devstack "$@"
