# The two commands of the README: `make run` and `make test`. Everything else is a helper they use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LISTEN ?= 127.0.0.1:8080
STORE ?= kelemetry-data/kelemetry.db

.PHONY: install run test lint unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kelemetry serve --listen $(LISTEN) --store $(STORE)

lint: install
	$(BIN)/ruff check kelemetry aggregators frontend jaeger tests
	$(BIN)/ruff format --check kelemetry aggregators frontend jaeger tests
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/python -m pytest

test: lint unit

bench: install
	$(BIN)/python tests/bench/bench_replay.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
