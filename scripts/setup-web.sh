#!/bin/sh
# Installs the browser libraries of roomhub's web client (xterm.js, CodeMirror 6, and Yjs with
# y-websocket for the documents demo) from the npm registry into src/roomhub/web/node_modules,
# exactly as pinned by package-lock.json. The hub serves them at /static/vendor/ with an import map.
#
#   scripts/setup-web.sh            the libraries (needs node and npm)
#   scripts/setup-web.sh --browser  also Debian's Chromium, for the browser tests (root)
#
# Node and npm come from Debian if missing (root only): apt-get install -y nodejs npm.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
WEB="$ROOT/src/roomhub/web"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup-web: need root for: $*" >&2; exit 1; fi
}

apt_install() {
    as_root apt-get update -qq || true
    as_root apt-get install -y --no-install-recommends "$@"
}

if ! command -v npm >/dev/null 2>&1; then
    echo "setup-web: npm not found; installing Debian's nodejs and npm" >&2
    apt_install nodejs npm
fi

# npm ci: a clean install of exactly the locked versions; no audit or funding chatter.
# Skipped when node_modules already matches the lock file (npm writes its own copy there).
if [ -f "$WEB/node_modules/.package-lock.json" ] && [ "$WEB/node_modules/.package-lock.json" -nt "$WEB/package-lock.json" ]; then
    echo "setup-web: browser libraries up to date in $WEB/node_modules"
else
    npm ci --prefix "$WEB" --no-audit --no-fund --loglevel=error
    echo "setup-web: browser libraries installed in $WEB/node_modules"
fi

if [ "${1:-}" = "--browser" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        apt_install chromium
    fi
    echo "setup-web: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
fi
