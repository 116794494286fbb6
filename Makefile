# roomhub: the two commands of the README, and their parts.
#   make serve   set up the environment and run `roomhub serve` on the embedded demo
#   make test    set up everything the tests need and run the whole test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test setup setup-test system-deps lint bench wheel clean

serve: setup
	$(BIN)/roomhub serve --port $(PORT)

test: setup-test
	bash scripts/run-tests.sh $(PYTEST_ARGS)

# Python environment, the browser libraries (npm) the pages need, and pgwidgets-js (PyPI),
# the widgets face's renderer.
setup: $(BIN)/roomhub
	@if [ -f scripts/setup-web.sh ]; then bash scripts/setup-web.sh; fi
	bash scripts/setup-pgwidgets.sh

$(BIN)/roomhub: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Everything the tests need besides `setup`: Debian packages (bubblewrap, chromium,
# docker.io, busybox-static), a Docker engine with locally built test images, npm clients,
# the original clients of the replaced systems (scripts/setup-originals.sh), pgwidgets-python's
# sdist, whose example programs the widgets tests run (scripts/setup-pgwidgets.sh --tests).
setup-test: setup system-deps
	@if [ -f scripts/setup-docker.sh ]; then bash scripts/setup-docker.sh; fi
	@if [ -f scripts/setup-interop.sh ]; then bash scripts/setup-interop.sh; fi
	bash scripts/setup-originals.sh
	bash scripts/setup-pgwidgets.sh --tests

system-deps:
	bash scripts/setup-system.sh

lint: $(BIN)/roomhub
	$(BIN)/ruff check src tests bench

# The sdist, and the wheel built from it, in dist/: both carry the browser libraries
# (hatch_build.py runs npm ci when src/roomhub/web/node_modules does not hold the locked versions).
wheel: $(BIN)/roomhub
	$(BIN)/python -m pip install --quiet build
	$(BIN)/python -m build --outdir dist

bench: setup
	@for b in bench/*.py; do case $$b in */_*) continue;; esac; echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) dist src/roomhub/web/node_modules tests/interop/node_modules
