# The verbs people and CI use. Each creates .venv and installs what it needs on first use,
# so a fresh clone needs only Python 3.11+, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest os-packages schema bench soak clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

## run: serve the gateway on the embedded demo upstream (GraphiQL at /graphql)
run: $(VENV)/.installed
	POLOS_GATEWAY_LOG_FORMAT=text $(BIN)/polos-gateway serve --demo --host $(HOST) --port $(PORT)

## test: lint, type-check and run the whole suite
test: lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev os-packages tests/js/node_modules/.installed
	$(BIN)/pytest

# What the suite runs besides Python: a real redis-server for the shared-cache tests, and
# Node.js with npm for the JavaScript client check (tests/js), and Chromium for the explorer's
# browser test (driven by Playwright's Python package; no browser is downloaded).
os-packages:
	@command -v redis-server >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	@(command -v node && command -v npm) >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null)
	@test -x /usr/bin/chromium || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# tests/js's packages, exactly as its lock file pins them; again only when the lock changes.
tests/js/node_modules/.installed: tests/js/package-lock.json tests/js/package.json | os-packages
	npm ci --prefix tests/js --no-audit --no-fund
	touch $@

## schema: rewrite schema.graphql from the code
schema: $(VENV)/.installed
	$(BIN)/polos-gateway export-schema > schema.graphql

## bench: measure the gateway against the demo upstream; rewrites docs/benchmarks.md and .png
bench: $(VENV)/.installed-bench
	command -v hey >/dev/null || (apt-get update && apt-get install -y hey)
	$(BIN)/python bench/run.py

## soak: thousands of requests through a faulty upstream that also goes down and comes back
soak: $(VENV)/.installed
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
