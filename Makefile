# The two commands of the README: `make run` and `make test`. Everything else is a helper they use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LISTEN ?= 127.0.0.1:8080
STORE ?= kelemetry-data/kelemetry.db

.PHONY: install run test lint unit e2e-deps bench record clean fuzz

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The recorded samples: one cluster (tracetest: the demo lifecycle and the causal scenarios) and a
# KubeAdmiral fleet (host, member-1, member-2).
SAMPLES := tracetest=samples/deployment/audit.log tracetest=samples/deployment/events.jsonl \
	tracetest=samples/causes/audit.log tracetest=samples/causes/events.jsonl \
	$(foreach c,host member-1 member-2,$(c)=samples/federation/$(c)/audit.log $(c)=samples/federation/$(c)/events.jsonl)

run: install
	$(BIN)/kelemetry serve --listen $(LISTEN) --store $(STORE) --cluster tracetest $(addprefix --replay ,$(SAMPLES))

lint: install
	$(BIN)/ruff check kelemetry aggregators frontend jaeger tests
	$(BIN)/ruff format --check kelemetry aggregators frontend jaeger tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The end-to-end and browser tests need etcd, nats-server (scaled mode), Chromium and ChromeDriver (Debian) and the Go-built
# servers (cached outside the repository).
e2e-deps:
	@missing=""; \
	  command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	  command -v nats-server >/dev/null || missing="$$missing nats-server"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing (Debian)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  fi
	@command -v go >/dev/null || { echo "go is required to build the test servers"; exit 1; }
	bash tests/e2e/build-servers.sh all

unit: install e2e-deps
	$(BIN)/python -m pytest

test: lint unit

# The long fuzz run (tests/fuzz): KELEMETRY_FUZZ_CASES per surface (default 100000), also
# KELEMETRY_FUZZ_SURFACES and KELEMETRY_FUZZ_SEED. Prints progress and counts line by line, so
# `nohup make fuzz > fuzz.log 2>&1 &` runs it without a terminal; fails on a 5xx or a lost event.
fuzz: install
	$(BIN)/python -m tests.fuzz.long_run

bench: install
	$(BIN)/python tests/bench/bench_replay.py
	$(BIN)/python tests/bench/bench_export.py
	$(BIN)/python tests/bench/bench_query.py
	$(BIN)/python tests/bench/bench_links.py
	$(BIN)/python tests/bench/bench_changes.py
	$(BIN)/python tests/bench/bench_names.py
	$(BIN)/python tests/bench/bench_explain.py
	$(BIN)/python tests/bench/bench_scaled.py

record: install e2e-deps
	KELEMETRY_RECORD=1 $(BIN)/python -m pytest tests/e2e -k "lifecycle or secret" -q
	KELEMETRY_RECORD=1 $(BIN)/python -m pytest tests/e2e/test_fleet.py -q
	KELEMETRY_RECORD=1 $(BIN)/python -m pytest tests/e2e/test_causes.py -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
