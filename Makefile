# Fresh machine: `make run` serves http://127.0.0.1:8000; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: run install dev test lint bench services clean help mutation

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)  ## Create .venv with the locked runtime dependencies
	$(UV) sync --frozen --no-dev

dev: $(UV)  ## Create .venv with the locked runtime and development dependencies
	$(UV) sync --frozen

run: install  ## Migrate, seed and serve on SQLite at http://127.0.0.1:8000
	$(VENV)/bin/tradestack up

services:  ## Make sure PostgreSQL and Redis answer on 127.0.0.1 (starts them when installed but stopped)
	bash scripts/ensure-services.sh

test: dev services  ## Run the whole suite (SQLite + in-process, and PostgreSQL + Redis)
	$(VENV)/bin/pytest

lint: dev  ## ruff, mypy, import-linter, bandit (no high-severity finding)
	$(VENV)/bin/ruff check src tests benchmarks migrations
	$(VENV)/bin/ruff format --check src tests benchmarks migrations
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/bandit --quiet --recursive src --severity-level high

bench: dev  ## Run the benchmarks (installs wrk when missing)
	bash scripts/ensure-wrk.sh
	$(VENV)/bin/python benchmarks/api_baseline.py
	$(VENV)/bin/python benchmarks/order_path.py

mutation: dev services  ## Mutation testing of the money code (not in CI; minutes per module): make mutation MODULES="risk ledger"
	$(VENV)/bin/python scripts/mutation.py $(MODULES)

clean:  ## Remove the environments and local data
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
