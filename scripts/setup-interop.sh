#!/usr/bin/env bash
# Install the Node packages used by the interop tests (Yjs clients; esbuild, Angular and RxJS
# for the timer app's IgorService) and the documents benchmark's load generator (yjs,
# y-websocket, ws) from the npm registry. The browser's libraries are scripts/setup-web.sh's.
# Needs node >= 18 and npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
echo "npm install in tests/interop"
(cd "$root/tests/interop" && npm install --no-audit --no-fund --loglevel=error)
