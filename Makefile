# hftsig — two commands: `make demo` (the lab's main job) and `make test`.
# Each bootstraps .venv from nothing but python3 and a C compiler, and is idempotent.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
STAMP   = $(VENV)/.stamp
SRC     = $(shell find hftsig connectors -name '*.pyx' -o -name '*.pxd' -o -name '*.h' 2>/dev/null) setup.py pyproject.toml
PIPQ    = --disable-pip-version-check -q

.PHONY: redis-server all demo test test-all test-random test-frameworks bench build clean distclean venv asan fuzz fuzz-replay docs
.PHONY: lab notebook test-pythons lint

all: test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIPQ) --upgrade pip "setuptools>=77" wheel

# Build-time requirements first: iisignature 0.24 builds only without build isolation.
$(VENV)/.deps: $(VENV)/bin/python pyproject.toml
	$(PIP) install $(PIPQ) "Cython>=3.0,<4" "numpy>=2.0,<3"
	$(PIP) install $(PIPQ) --no-build-isolation iisignature==0.24
	touch $@

# The package itself, editable, with the test and notebook extras; rebuilt when a .pyx changes.
$(STAMP): $(VENV)/.deps $(SRC)
	$(PIP) install $(PIPQ) --no-build-isolation -e ".[test]"
	touch $@

venv: $(STAMP)

build: $(STAMP)
	$(PY) setup.py build_ext --inplace -q

$(VENV)/.bench: $(STAMP)
	$(PIP) install $(PIPQ) torch==2.13.0
	$(PIP) install $(PIPQ) --no-build-isolation -e ".[bench]"
	touch $@

demo: $(STAMP)
	$(PY) -m hftsig demo

test: $(STAMP) redis-server
	$(PY) -m pytest -q

# ruff (pinned in the test extra, configured in pyproject.toml [tool.ruff]): pycodestyle,
# pyflakes, import order, bugbear; .ci/run runs it before the tests
lint: $(STAMP)
	$(PY) -m ruff check .

# Debian's redis-server for the tick bus tests (tests/redis_server.py starts its own
# instances); installed only when missing and we are root with apt, else they skip.
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (apt)"; apt-get update -qq \
	      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server not installed: the tick bus tests will skip"; fi; fi

# The suite in a shuffled order, RUNS times (a test that leans on another's leftovers shows here).
RUNS ?= 3
test-random: $(STAMP)
	@for i in $$(seq $(RUNS)); do $(PY) -m pytest -q -p no:cacheprovider --random-order-bucket=global || exit 1; done

# The PyTorch and JAX glue (hftsig.signatures.torch, hftsig.signatures.jax): their tests skip where the framework
# is absent, so this installs both (torch 2.13.0 CPU first: see `bench`) and runs them.
test-frameworks: $(STAMP)
	$(PIP) install $(PIPQ) torch==2.13.0
	$(PIP) install $(PIPQ) --no-build-isolation -e ".[test,jax]"
	$(PY) -m pytest -q -p no:cacheprovider tests/signatures/test_torch.py tests/signatures/test_jax.py hftsig/signatures/torch.py hftsig/signatures/jax.py

# The user guides (docs/*.md) and the API reference (numpydoc docstrings) as HTML;
# warnings are errors, as in tests/test_docs.py. The test extra holds the pins.
docs: $(STAMP)
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs/_build/html/index.html"

# JupyterLab on notebooks/: the `notebooks` extra's pins (read from pyproject.toml, as for
# `fuzz`: reinstalling the package with the extra would rebuild it), then `hftsig notebook`.
# NOTEBOOK_ARGS passes options on, e.g. make lab NOTEBOOK_ARGS="--port 8890".
NOTEBOOK_REQS = $(shell sed -n '/^notebooks = \[/,/^\]/s/^ *"\([^"]*\)".*/\1/p' pyproject.toml)
NOTEBOOK_ARGS ?=

$(VENV)/.lab: $(STAMP) pyproject.toml
	$(PIP) install $(PIPQ) $(NOTEBOOK_REQS)
	touch $@

lab: $(VENV)/.lab
	$(PY) -m hftsig notebook $(NOTEBOOK_ARGS)

notebook: lab

# The suite on the oldest and the newest Python that pyproject.toml claims (requires-python
# and the classifiers), each in its own venv (.venv-py3.11, .venv-py3.13) set up as `make test`
# sets up .venv. Not part of `make test`: each venv costs minutes of installs and a build.
# An interpreter is taken from PATH (python3.11, ...) or else from pyenv's versions.
TEST_PYTHONS ?= 3.11 3.13

test-pythons:
	@for v in $(TEST_PYTHONS); do \
	  py=python$$v; \
	  if ! $$py -c "" 2>/dev/null; then \
	    py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v 2>/dev/null | sort -V | tail -1); fi; \
	  if [ -z "$$py" ]; then echo "test-pythons: no python$$v on PATH or under pyenv" >&2; exit 1; fi; \
	  echo "== $$($$py -V) ($$py)"; \
	  $(MAKE) --no-print-directory test PYTHON=$$py VENV=.venv-py$$v || exit 1; \
	done

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(VENV)/.bench redis-server
	$(PY) -m benchmarks.signatures
	@for m in normalize connectors aggregator arbitrage stopping bus; do \
	  if [ -f benchmarks/$$m.py ]; then $(PY) -m benchmarks.$$m || exit 1; fi; done

# Fuzzing (docs/fuzzing.md): clang for coverage of the C extensions (apt, skipped when
# present or when not root: gcc then builds the sanitizer tree without that coverage),
# atheris from the `fuzz` extra, an ASan + UBSan build in build/asan/ (the in-place
# .so files above are not touched), then every harness for FUZZ_SECONDS in all.
FUZZ_SECONDS ?= 120

# (the `fuzz` extra's pins, read from pyproject.toml: reinstalling the package with the
# extra would rebuild it, 2 minutes for nothing)
FUZZ_REQS = $(shell sed -n '/^fuzz = \[/,/^\]/s/^ *"\([^"]*\)".*/\1/p' pyproject.toml)

$(VENV)/.fuzz: $(STAMP) pyproject.toml
	@if ! command -v clang >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing clang (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null; fi
	$(PIP) install $(PIPQ) $(FUZZ_REQS)
	touch $@

asan: $(VENV)/.fuzz
	PY=$(abspath $(PY)) fuzz/asan.sh build

fuzz: asan
	PY=$(abspath $(PY)) fuzz/asan.sh python -m fuzz.run --all --seconds $(FUZZ_SECONDS)

# the corpus and the regression inputs once each, on the normal build
fuzz-replay: $(STAMP)
	$(PY) -m fuzz.run --replay

clean:
	rm -rf build *.egg-info
	find hftsig connectors -name '*.so' -delete
	for f in $$(find hftsig -name '*.pyx'); do rm -f "$${f%.pyx}.c"; done

distclean: clean
	rm -rf $(VENV) .venv-py3.*
