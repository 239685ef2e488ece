# nn-clustering: every step of the pipeline is a target; `make help` lists them.
# Environment: a project virtualenv (.venv) built from Pipfile.lock by pipenv, which itself
# lives in a small tools virtualenv (.tools); the stamp file rebuilds both when the lock changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
PIPENV_VERSION := 2026.10.3
TOOLS := .tools
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pygraphviz (graph drawings) builds only where graphviz headers exist; the rest works without.
GRAPHVIZ_CATEGORY := $(shell pkg-config --exists libcgraph 2>/dev/null && echo graphviz)
PIPENV := PIPENV_VENV_IN_PROJECT=1 PIPENV_IGNORE_VIRTUALENVS=1 PIPENV_VERBOSITY=-1 \
          PIPENV_NOSPIN=1 $(TOOLS)/bin/pipenv

DATASETS_DIR := datasets
PROFILE ?= quick
TAGS ?=
DATASET_SRC := src/nn_clustering/datasets.py src/nn_clustering/fileio.py

.PHONY: help env datasets models test lint format lock bench clean clean-env

help: ## Show this list of targets (the default goal)
	@echo "nn-clustering: is this trained neural network modular?"
	@echo
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-26s %s\n", $$1, $$2}'

$(TOOLS)/bin/pipenv:
	$(PYTHON_BOOT) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q pipenv==$(PIPENV_VERSION)

$(STAMP): Pipfile.lock pyproject.toml | $(TOOLS)/bin/pipenv
	@echo "Installing the locked environment into $(VENV) (first run takes a few minutes)..."
	$(PIPENV) sync --categories="packages dev-packages $(GRAPHVIZ_CATEGORY)"
	@touch $@

env: $(STAMP) ## Create or update the Python environment from Pipfile.lock

lock: | $(TOOLS)/bin/pipenv ## Re-resolve Pipfile into Pipfile.lock (needs the package index)
	$(PIPENV) lock

datasets: $(DATASETS_DIR)/MANIFEST ## Build every dataset of SPEC section 1 into datasets/*.npz

$(DATASETS_DIR)/MANIFEST: $(STAMP) $(DATASET_SRC)
	$(PY) -m nn_clustering datasets --out $(DATASETS_DIR) --force

models: $(STAMP) ## Train + prune models: PROFILE=quick|paper, TAGS="MNIST FASHION" (resumable)
	$(PY) -m nn_clustering train $(TAGS) --profile $(PROFILE) --data-dir $(DATASETS_DIR)

bench: $(STAMP) ## Run the benchmarks (clustering and training; several minutes)
	OPENBLAS_NUM_THREADS=1 $(PY) benchmarks/bench_clustering.py
	$(PY) benchmarks/bench_training.py

test: $(STAMP) ## Run the test suite (no network, no GPU; a few minutes on 2 cores)
	$(PY) -m pytest

lint: $(STAMP) ## Lint with ruff (rules in pyproject.toml)
	$(VENV)/bin/ruff check src tests benchmarks

format: $(STAMP) ## Apply ruff's automatic fixes
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean: ## Remove caches (keeps datasets, models, results and the environment)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -not -path './.tools/*' -prune -exec rm -rf {} +

clean-env: ## Remove the Python environment (rebuilt on the next target)
	rm -rf $(VENV) $(TOOLS)
