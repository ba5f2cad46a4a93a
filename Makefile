# Two commands set up everything on a fresh machine:
#   make demo   creates .venv, installs the project, runs the whole job on a synthetic base
#   make test   creates or updates .venv with the dev extras, runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast venv dev bench clean notebook lab

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

# The notebooks, run top to bottom with what `make dev` installs: executed copies, with
# their plots, go to outputs/notebooks/ (the originals stay clean).  `make lab` opens the
# notebooks in JupyterLab instead (installs the `notebook` extra first).
notebook: $(DEV_STAMP)
	@mkdir -p outputs/notebooks
	cp notebooks/*.ipynb outputs/notebooks/
	cd outputs/notebooks && $(CURDIR)/$(BIN)/jupyter-execute --inplace --timeout=900 --kernel_name=python3 *.ipynb
	@echo "executed notebooks, with their outputs: outputs/notebooks/ (open with \`make lab\` or any notebook viewer)"

lab: $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,notebook]'
	$(BIN)/jupyter lab notebooks/

bench: $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf outputs mlruns mlflow.db mlflow.db.lock data/demo
