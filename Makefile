# The whole set-up on a fresh machine with only Python 3.11+: `make run` and `make test`.
PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
PYTEST_ARGS ?= -m "not slow" -n 2 --dist loadgroup

.PHONY: run test test-slow lint fmt clean-venv

# The venv is (re)built when missing or when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev,postgres]'
	touch $@

# Simulate a world (or reuse var/erpx.db), train and promote the models (or reuse their
# champions), print a key per role and two curl commands, and serve on 127.0.0.1:8000.
run: $(STAMP)
	$(BIN)/erpx demo

# ruff (lint and format), the import-layer contracts, mypy on erp_core, then pytest without the
# tests marked slow (a 120-day medium world, Dask worker processes) on two xdist workers, which
# keeps the suite within 15 minutes on 2 cores (the folders sharing a simulated world run on one
# worker each: see SHARED_WORLDS in tests/conftest.py); `make test-slow` runs those.
test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

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
