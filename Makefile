# Two commands (README): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MAILSERVER_CONFIG ?= $(CURDIR)/config/dev.yaml

.PHONY: run test venv test-deps container-check lint bench clean

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

# Installs the Debian packages the tests need (as root), then lint, the whole suite, and the
# container check (which says clearly when podman cannot run here).
test: venv test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	@$(MAKE) --no-print-directory container-check

# Builds the Dockerfile unchanged with podman and runs the image (tests/container_check.py);
# as root it installs podman and builds a cached debootstrap stand-in for python:3.11-slim.
container-check: venv
	@PYTHON=$(BIN)/python .ci/container-check

test-deps:
	@.ci/test-deps

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

bench: venv
	$(BIN)/python bench/auth.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
