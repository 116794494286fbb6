#!/usr/bin/env bash
# pgwidgets from PyPI, never committed.
#
#   setup-pgwidgets.sh           installs pgwidgets-js (the widgets face's renderer: static
#                                files and its table of widget classes) into .venv
#   setup-pgwidgets.sh --tests   also unpacks pgwidgets-python's sdist (its example programs
#                                run on roomhub in tests/widgets/test_pgwidgets_examples.py)
#                                into tests/originals/pgwidgets-python (ignored by git)
#
# Both packages declare Python >= 3.12; pgwidgets-js holds no code that needs it, so on 3.11
# it is installed with --ignore-requires-python. The sdist is only unpacked, not installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pip="$root/.venv/bin/pip"
python="$root/.venv/bin/python"
version=0.4.2

if "$python" -c "import importlib.metadata as m, sys; sys.exit(m.version('pgwidgets-js') != '$version')" 2>/dev/null; then
  echo "setup-pgwidgets: pgwidgets-js $version installed"
else
  "$pip" install --quiet --no-deps --ignore-requires-python "pgwidgets-js==$version"
  echo "setup-pgwidgets: pgwidgets-js $version installed"
fi

if [ "${1:-}" = "--tests" ]; then
  dest="$root/tests/originals/pgwidgets-python"
  if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$version" ]; then
    echo "setup-pgwidgets: pgwidgets-python $version sdist up to date"
    exit 0
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$pip" download --quiet --no-deps --no-binary :all: --ignore-requires-python \
    "pgwidgets-python==$version" -d "$work"
  rm -rf "$dest"
  mkdir -p "$dest"
  tar -xzf "$work/pgwidgets_python-$version.tar.gz" -C "$dest" --strip-components=1
  echo "$version" > "$dest/.version"
  echo "setup-pgwidgets: pgwidgets-python $version sdist unpacked in tests/originals/pgwidgets-python"
fi
