# Set-up, demo and tests. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench docs

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python scripts/ensure_mongod.py
	touch $(STAMP)

# Builds a demo dataset, embeds and clusters it, prints the clusters and
# opens the App on 127.0.0.1 (DEMO_ARGS=--no-app to skip the App)
demo: install
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q $(TEST_ARGS)

bench: install
	$(BIN)/python bench/bench_clustering.py

docs: install
	$(BIN)/python scripts/gen_docs.py
