# Every target builds its own virtualenv from nothing but python3 and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck unit integration demo schemas bench bench-shapes bench-drift bench-crash soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

test: lint typecheck
	$(BIN)/pytest

schemas: $(STAMP)
	$(BIN)/streamwatch schemas --out schemas

demo: $(STAMP)
	$(BIN)/streamwatch demo

# Throughput and alert latency: raw limit, bare Faust, streamwatch (5-8 min; --quick about 2).
bench: $(STAMP)
	$(BIN)/python bench/run.py --out bench/results/bench.json

# The core on event shapes the generator does not send: text times, probability vectors, ...
# (about 3 min).
bench-shapes: $(STAMP)
	$(BIN)/python bench/heldout.py

bench-drift: $(STAMP)
	$(BIN)/python bench/drift.py

# Over-count after worker crashes: plain Faust vs streamwatch (about 10 min; --quick about 5).
bench-crash: $(STAMP)
	$(BIN)/python bench/crash.py

# RSS over 10^7 events through one partition processor (bench/soak.py --quick: 10^6).
soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Cross-check of core/drift.py against Evidently's own stattests. Evidently pulls ~1 GB of
# dependencies, so it lives in its own virtualenv and is not part of `make test`.
.PHONY: crosscheck
CROSSCHECK_VENV := .venv-crosscheck
EVIDENTLY_VERSION := 0.7.23

$(CROSSCHECK_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CROSSCHECK_VENV)
	$(CROSSCHECK_VENV)/bin/python -m pip install -q --upgrade pip
	$(CROSSCHECK_VENV)/bin/python -m pip install -q -e . 'evidently==$(EVIDENTLY_VERSION)' 'pandas<3'
	touch $@

crosscheck: $(CROSSCHECK_VENV)/.installed
	$(CROSSCHECK_VENV)/bin/python bench/crosscheck_evidently.py
