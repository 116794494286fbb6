#!/usr/bin/env bash
# Installs the Debian packages the tests need, if missing: bubblewrap (sandbox runtime),
# chromium (browser tests through Playwright), docker.io (Docker runtime), busybox-static
# (test images built locally), redis-server and postgresql (the cluster's Redis and the PostgreSQL
# document store: tests/services.py starts private instances of both; psycopg's binary wheel brings
# its own libpq, libpq5 is the one its pure-Python fallback loads), haproxy (the load balancer the
# cluster's end-to-end tests put in front of three hubs, tests/balancer.py). Needs root or sudo;
# does nothing when all are present.
set -euo pipefail
packages=(bubblewrap chromium docker.io busybox-static redis-server postgresql libpq5 haproxy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "system packages present: ${packages[*]}"; exit 0; }
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
