# Two commands set up everything on a fresh machine:
#   make demo   creates .venv, installs the project, runs the whole job on a synthetic base
#   make test   creates or updates .venv with the dev extras, runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast venv dev bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEV_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	@touch $@ $(STAMP)

venv: $(STAMP)
dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/churn demo

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

# The fast subset while working: everything not marked slow.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf outputs mlruns mlflow.db mlflow.db.lock data/demo
