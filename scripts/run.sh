#!/usr/bin/env bash
# Sets everything up (Debian packages, release build) and brings the whole site up on
# this machine as separate hosts (network namespaces): HAProxy, two web hosts with Nginx
# and webstack-app, a MariaDB primary and replica, and a client host. As root.
# Extra arguments go to `webstack up`, e.g. scripts/run.sh -f my-site.toml.
# Stop it with: build/release/webstack/webstack down [--purge]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
exec build/release/webstack/webstack up "$@"
