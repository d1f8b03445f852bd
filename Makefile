# Two commands (README): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MAILSERVER_CONFIG ?= $(CURDIR)/config/dev.yaml

.PHONY: run test venv test-deps lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@.ci/ensure-python "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# Development server on loopback ports (config/dev.yaml), data in ./var.
run: venv
	$(BIN)/mailserver init
	exec $(BIN)/mailserver serve

# Installs the Debian packages the tests need (as root), then lint and the whole suite.
test: venv test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-deps:
	@.ci/test-deps

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

bench: venv
	$(BIN)/python bench/auth.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
