# Two commands for a fresh machine: `make run` and `make test`. Everything else is here for convenience.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-sqlite test-postgres test-example lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

## run: migrate the SQLite database and start the API, the worker and the CXone simulator, then print the demo
run: install
	BYOC_ENV=$${BYOC_ENV:-dev} $(BIN)/byoc db upgrade
	BYOC_ENV=$${BYOC_ENV:-dev} $(BIN)/byoc serve --demo --host $(HOST) --port $(PORT)

## test: the whole suite on SQLite, then again on PostgreSQL when it answers (required if BYOC_REQUIRE_POSTGRES=1)
test: install test-sqlite test-postgres test-example

test-sqlite: install
	BYOC_TEST_DATABASE=sqlite $(BIN)/pytest

test-postgres: install
	@if $(BIN)/python -m tests.postgres_ready; then \
		BYOC_TEST_DATABASE=postgres $(BIN)/pytest; \
	elif [ -n "$$BYOC_REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL is required (BYOC_REQUIRE_POSTGRES) but does not answer" >&2; exit 1; \
	else \
		echo "PostgreSQL does not answer: the PostgreSQL run is skipped"; \
	fi

## test-example: the example adapter package (examples/acme_chat), installed beside the relay in a venv of
## its own as a third party would, then run through the conformance kit
test-example: install
	rm -rf .venv-example
	$(PYTHON) -m venv .venv-example
	.venv-example/bin/pip install --quiet --disable-pip-version-check -e . pytest ./examples/acme_chat
	cd examples/acme_chat && ../../.venv-example/bin/pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-example .mypy_cache .ruff_cache .pytest_cache .hypothesis
