# The whole set-up on a fresh machine with only Python 3.11+: `make run` and `make test`.
PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint fmt clean-venv

# The venv is (re)built when missing or when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev,postgres]'
	touch $@

run: $(STAMP)
	$(BIN)/erpx init
	$(BIN)/erpx info

# ruff (lint and format), the import-layer contracts, mypy on erp_core, then pytest.
test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV)
