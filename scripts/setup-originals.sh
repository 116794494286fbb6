#!/usr/bin/env bash
# Unpacks the original clients of the systems roomhub replaces, for the compatibility
# tests, into tests/originals/<owner>+<name>/ (ignored by git; never committed).
#
# They are public GitHub repositories that no package registry publishes. They are
# read from a local mirror of repository snapshots: a directory holding one
# <owner>+<name>/repo git directory per repository. The mirror is $ROOMHUB_ORIGINALS
# when set, else the first directory named .mirror found near the root of the file
# system. A repository missing from the mirror is reported; the tests that need it
# then skip and say why.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/tests/originals"
repos=(h3ndrk+interactive-widgets-mkdocs cezary986+igor cezary986+timer)

mirror="${ROOMHUB_ORIGINALS:-}"
if [ -z "$mirror" ]; then
  mirror="$(find / -maxdepth 3 -type d -name .mirror 2>/dev/null | head -n 1 || true)"
fi
mkdir -p "$dest"
for repo in "${repos[@]}"; do
  git_dir="$mirror/$repo/repo"
  if [ -z "$mirror" ] || ! git --git-dir="$git_dir" rev-parse -q --verify HEAD >/dev/null 2>&1; then
    echo "setup-originals: $repo not found in the mirror (${mirror:-none}); its tests will skip" >&2
    continue
  fi
  head="$(git --git-dir="$git_dir" rev-parse HEAD)"
  if [ -f "$dest/$repo/.commit" ] && [ "$(cat "$dest/$repo/.commit")" = "$head" ]; then
    echo "setup-originals: $repo up to date ($head)"
    continue
  fi
  rm -rf "$dest/$repo"
  mkdir -p "$dest/$repo"
  git --git-dir="$git_dir" archive --format=tar HEAD | tar -x -C "$dest/$repo"
  echo "$head" > "$dest/$repo/.commit"
  echo "setup-originals: $repo unpacked at $head"
done
