#!/usr/bin/env bash
# Install the Node packages used by the interop tests (Yjs clients; esbuild, Angular and RxJS
# for the timer app's IgorService), the documents demo page
# and the documents benchmark's load generator (yjs, y-websocket, ws) from the npm registry.
# Needs node >= 18 and npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
for dir in tests/interop src/roomhub/web/documents; do
  echo "npm install in $dir"
  (cd "$root/$dir" && npm install --no-audit --no-fund --loglevel=error)
done
