#!/usr/bin/env bash
# Installs every Debian 12 package webstack needs, then builds the given preset.
# Idempotent: packages already present are skipped by apt, the build is incremental.
# Usage: scripts/setup.sh [preset]   (default preset: release)
#        scripts/setup.sh --no-build  (the packages only)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git clang-format clang-tidy
  jq  # scripts/lint.sh reads compile_commands.json
  # libraries (headers)
  libboost1.81-dev libboost-json1.81-dev libmariadb-dev libfmt-dev libcli11-dev
  libtomlplusplus-dev libkainjow-mustache-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev
  libsystemd-dev libcurl4-openssl-dev
  # real servers the tests, the lab and the benchmarks run
  mariadb-server mariadb-client mariadb-backup socat nginx-light haproxy keepalived s6 nftables
  openssl util-linux
  # monitoring (the monitor host; promtool and amtool check the rendered configs)
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-nginx-exporter
  prometheus-mysqld-exporter prometheus-blackbox-exporter
  # load generators and probes
  wrk sysbench curl procps iproute2
  # the benchmarks' peers (bench/peers) and charts
  php8.2-fpm php8.2-mysql nodejs gnuplot-nox
  # emulated real servers (deploy/machines) and pushing to them (deploy/ansible)
  debootstrap systemd-container openssh-client ansible ansible-mitogen ansible-lint
  # the dashboard's browser test (Playwright drives Debian's Chromium)
  chromium fonts-dejavu-core
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  # Keep the packages' own daemons (mariadb, nginx) from starting on install:
  # webstack starts every server itself, with its own data dirs and ports.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Node.js peer's packages (fastify, mysql2) from the npm registry, once.
if [ ! -d bench/peers/node/node_modules ]; then
  (cd bench/peers/node && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
fi

# The dashboard's browser test: playwright-core (no browser download: it drives
# /usr/bin/chromium).
if [ ! -d dashboard/test/node_modules ]; then
  (cd dashboard/test && npm ci --no-audit --no-fund --loglevel=error)
fi

[ "${1:-}" = --no-build ] && exit 0
preset=${1:-release}
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
