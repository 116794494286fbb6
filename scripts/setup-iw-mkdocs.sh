#!/usr/bin/env bash
# Installs the original interactive-widgets-mkdocs plugin for the pages compatibility tests,
# as its README says (pip install of its directory, whose build runs `npm ci` for the
# browser libraries of its static/ folder), into tests/originals/.iw-mkdocs (ignored by
# git; never committed). Run `mkdocs build` with that folder on PYTHONPATH: it holds the
# plugin, its entry point and its static files with node_modules.
#
# The plugin's snapshot comes from scripts/setup-originals.sh (run first when missing);
# mkdocs and beautifulsoup4 (the plugin's dependencies) come from the `test` extra.
# Idempotent: nothing is done when the install matches the snapshot's commit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
src="$root/tests/originals/h3ndrk+interactive-widgets-mkdocs"
dest="$root/tests/originals/.iw-mkdocs"

if [ ! -f "$src/.commit" ]; then
  bash "$root/scripts/setup-originals.sh"
fi
if [ ! -f "$src/.commit" ]; then
  echo "setup-iw-mkdocs: the plugin's snapshot is missing; its tests will skip" >&2
  exit 1
fi
if [ -f "$dest/.commit" ] && cmp -s "$src/.commit" "$dest/.commit"; then
  echo "setup-iw-mkdocs: up to date ($(cat "$dest/.commit"))"
  exit 0
fi
command -v npm >/dev/null || { echo "setup-iw-mkdocs: npm is needed (the plugin's build runs npm ci)" >&2; exit 1; }
rm -rf "$dest"
# Build from a copy: the plugin's build writes node_modules into its source folder.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -a "$src" "$work/plugin"
"$python" -m pip install --quiet --no-deps --target "$dest" "$work/plugin"
cp "$src/.commit" "$dest/.commit"
echo "setup-iw-mkdocs: installed into $dest"
