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
DATASET_SRC := $(wildcard src/nn_clustering/data/*.py) src/nn_clustering/storage/files.py
# The paper profile owns models/ and results/; any other profile gets models/<profile>/ and
# results/<profile>/, so a quick demo never mixes with the reproduction.
PROFILE_DIR := $(if $(filter paper,$(PROFILE)),,/$(PROFILE))
MODELS_DIR ?= models$(PROFILE_DIR)
RESULTS_DIR ?= results$(PROFILE_DIR)
# worker processes of the analyses: 2, or 1 on a 1-core machine (at most one per core)
N_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -lt 2 ] && echo $$n || echo 2)
JUPYTER_PORT ?= 8888
JUPYTER_ARGS ?=
MODELS_INDEX := $(MODELS_DIR)/INDEX.json
NB_OUT := $(RESULTS_DIR)/notebooks
LIB_SRC := $(wildcard src/nn_clustering/*.py src/nn_clustering/*/*.py src/nn_clustering/profiles/*.json)
STABILITY_KS := 4 2 7 10
DEMO_TAGS := MNIST MNIST+DROPOUT FASHION FASHION+DROPOUT
LESION_TAGS := MNIST MNIST+DROPOUT FASHION FASHION+DROPOUT

# run_notebook(template, output name, extra -p arguments): executes notebooks/<template> into
# $(NB_OUT)/<output name>.ipynb through a temporary file renamed into place only when every cell
# ran; a cell that stops on the project's own error ends the target with that one error line.
define run_notebook
	@$(PY) -m nn_clustering notebook notebooks/$(1).ipynb $(NB_OUT)/$(2).ipynb --cwd notebooks \
	  -p PROFILE $(PROFILE) -p MODELS_DIR $(abspath $(MODELS_DIR)) -p RESULTS_DIR $(abspath $(RESULTS_DIR)) $(3)
endef

.PHONY: help env datasets models test lint format lock bench clean clean-env demo all \
        mlp-clustering mlp-clustering-k12 mlp-activation-clustering mlp-clustering-stability mlp-learning-curve mlp-plots mlp-lesion mlp-double-lesion random-init-ncuts clustering-factors compare \
        cnn-clustering cnn-lesion jupyter test-install push-models pull-models push-datasets \
        pull-datasets push-results pull-results

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

datasets: $(DATASETS_DIR)/MANIFEST ## Build every dataset of docs/method.md §1 into datasets/*.npz

$(DATASETS_DIR)/MANIFEST: $(STAMP) $(DATASET_SRC)
	$(PY) -m nn_clustering datasets --out $(DATASETS_DIR) --force

models: $(STAMP) ## Train + prune models: PROFILE=quick|paper, TAGS="MNIST FASHION" (resumable)
	$(PY) -m nn_clustering train $(TAGS) --profile $(PROFILE) --data-dir $(DATASETS_DIR) \
	  --models-dir $(MODELS_DIR)

# INDEX.json is written by `make models`; remade here (e.g. under make -B) from the trained models
# themselves, each checked against its record, or one error line when there are none.
$(MODELS_INDEX): | $(STAMP)
	@$(PY) -m nn_clustering index --models-dir $(MODELS_DIR) --profile $(PROFILE)

mlp-clustering: $(NB_OUT)/mlp-clustering.ipynb ## Shuffle test of every MLP, dense + pruned -> results/mlp-clustering.csv

$(NB_OUT)/mlp-clustering.ipynb: notebooks/mlp-clustering.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,mlp-clustering,mlp-clustering,-p N_JOBS $(N_JOBS))

mlp-clustering-k12: $(NB_OUT)/mlp-clustering-k12.ipynb ## The successor paper's baseline: k = 12, 50 shuffles of both methods -> results/mlp-clustering-k12.csv + Cohen's d

$(NB_OUT)/mlp-clustering-k12.ipynb: notebooks/mlp-clustering.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,mlp-clustering,mlp-clustering-k12,-p N_CLUSTERS 12 -p N_SHUFFLES 50 -p N_JOBS $(N_JOBS))

mlp-clustering-stability: $(foreach k,$(STABILITY_KS),$(NB_OUT)/mlp-clustering-stability-k$(k).ipynb) ## Every instance of the primary tags, k = 4, 2, 7, 10

$(NB_OUT)/mlp-clustering-stability-k%.ipynb: notebooks/mlp-clustering-stability.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,mlp-clustering-stability,mlp-clustering-stability-k$*,-p N_CLUSTERS $* -p N_JOBS $(N_JOBS))

mlp-learning-curve: $(NB_OUT)/mlp-learning-curve.ipynb ## n-cut of every per-epoch checkpoint -> results/mlp-learning-curve.csv

$(NB_OUT)/mlp-learning-curve.ipynb: notebooks/mlp-learning-curve.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,mlp-learning-curve,mlp-learning-curve)

mlp-plots: $(NB_OUT)/mlp-plots.ipynb ## The paper's MLP figures -> results/figures/*.png and *.svg

$(NB_OUT)/mlp-plots.ipynb: notebooks/mlp-plots.ipynb $(NB_OUT)/mlp-clustering.ipynb \
    $(NB_OUT)/mlp-learning-curve.ipynb $(foreach k,$(STABILITY_KS),$(NB_OUT)/mlp-clustering-stability-k$(k).ipynb)
	$(call run_notebook,mlp-plots,mlp-plots)

clustering-factors: $(NB_OUT)/clustering-factors.ipynb ## The successor paper's training factors at k = 12, 50 shuffles of both methods -> results/clustering-factors-k12.csv + figure

$(NB_OUT)/clustering-factors.ipynb: notebooks/clustering-factors.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,clustering-factors,clustering-factors,-p N_JOBS $(N_JOBS))

mlp-activation-clustering: $(NB_OUT)/mlp-activation-clustering.ipynb ## The paper's MLPs clustered by activations and by Leiden beside their weights: agreement, Q, shuffle test -> results/mlp-activation-clustering-k12.csv + figure

$(NB_OUT)/mlp-activation-clustering.ipynb: notebooks/mlp-activation-clustering.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,mlp-activation-clustering,mlp-activation-clustering,-p DATA_DIR $(abspath $(DATASETS_DIR)) -p N_JOBS $(N_JOBS))

random-init-ncuts: $(NB_OUT)/random-init-ncuts.ipynb ## n-cut of 100 untrained MLPs at k = 12 against the trained ones -> results/random-init-ncuts-k12.csv + figure

# no trained models needed: those present (their index) are placed against the untrained nets
$(NB_OUT)/random-init-ncuts.ipynb: notebooks/random-init-ncuts.ipynb $(wildcard $(MODELS_INDEX)) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,random-init-ncuts,random-init-ncuts)

mlp-lesion: $(NB_OUT)/mlp-lesion-test.ipynb ## Single lesion test of each cluster -> results/mlp-lesion.xlsx

$(NB_OUT)/mlp-lesion-test.ipynb: notebooks/mlp-lesion-test.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,mlp-lesion-test,mlp-lesion-test,-p DATA_DIR $(abspath $(DATASETS_DIR)))

mlp-double-lesion: $(foreach t,$(LESION_TAGS),$(NB_OUT)/mlp-double-lesion-test-$(t).ipynb) ## Pairs of clusters lesioned together -> CSV + dependency graphs

$(NB_OUT)/mlp-double-lesion-test-%.ipynb: notebooks/mlp-double-lesion-test.ipynb $(NB_OUT)/mlp-lesion-test.ipynb | $(STAMP)
	$(call run_notebook,mlp-double-lesion-test,mlp-double-lesion-test-$*,-p MODEL_TAG $* -p DATA_DIR $(abspath $(DATASETS_DIR)))

cnn-clustering: $(NB_OUT)/cnn-clustering.ipynb ## Shuffle test of every CNN's channel graph, dense + pruned -> results/cnn-clustering.csv

$(NB_OUT)/cnn-clustering.ipynb: notebooks/cnn-clustering.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,cnn-clustering,cnn-clustering,-p N_JOBS $(N_JOBS))

cnn-lesion: $(NB_OUT)/cnn-lesion-test.ipynb ## Single lesion test of each CNN channel cluster -> results/cnn-lesion.xlsx

$(NB_OUT)/cnn-lesion-test.ipynb: notebooks/cnn-lesion-test.ipynb $(MODELS_INDEX) $(LIB_SRC) | $(STAMP)
	$(call run_notebook,cnn-lesion-test,cnn-lesion-test,-p DATA_DIR $(abspath $(DATASETS_DIR)))

compare: $(STAMP) ## Your results beside the committed reference record, tag by tag (results/reference/<profile>)
	$(PY) -m nn_clustering compare $(RESULTS_DIR) --profile $(PROFILE)

jupyter: $(STAMP) ## Jupyter Lab on the notebooks with the project's kernel (JUPYTER_PORT=8888)
	@$(PY) -m ipykernel install --sys-prefix --name nn-clustering --display-name "Python (nn-clustering)" >/dev/null
	$(VENV)/bin/jupyter lab --notebook-dir . --port $(JUPYTER_PORT) --no-browser \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

# S3 sync (only changed files move; pulled files are checked against their recorded SHA-256).
# S3_URI=s3://bucket/prefix names the bucket; S3_ENDPOINT for non-AWS storage (MinIO, ...).
# The remote layout mirrors the local one: <S3_URI>/models[/<profile>], /datasets, /results[/<profile>].
# Results travel without their cache/: a cache entry is trusted only by the installation that wrote it.
S3_URI ?=
S3_ENDPOINT ?=
S3_SYNC = @test -n "$(S3_URI)" || { echo "error: set S3_URI=s3://bucket/prefix (and S3_ENDPOINT for non-AWS storage)" >&2; exit 2; }; \
	$(PY) -m nn_clustering s3 $(1) $(2) $(S3_URI)/$(3) $(if $(S3_ENDPOINT),--endpoint-url $(S3_ENDPOINT)) $(4)

push-models: | $(STAMP) ## Upload changed files of MODELS_DIR to S3_URI (S3_ENDPOINT for non-AWS)
	$(call S3_SYNC,push,$(MODELS_DIR),models$(PROFILE_DIR))

pull-models: | $(STAMP) ## Download changed models from S3_URI, each checked against its SHA-256
	$(call S3_SYNC,pull,$(MODELS_DIR),models$(PROFILE_DIR))

push-datasets: | $(STAMP) ## Upload changed files of datasets/ to S3_URI
	$(call S3_SYNC,push,$(DATASETS_DIR),datasets)

pull-datasets: | $(STAMP) ## Download changed datasets from S3_URI (checksum-verified)
	$(call S3_SYNC,pull,$(DATASETS_DIR),datasets)

push-results: | $(STAMP) ## Upload changed files of RESULTS_DIR to S3_URI (not its cache/)
	$(call S3_SYNC,push,$(RESULTS_DIR),results$(PROFILE_DIR),--exclude cache)

pull-results: | $(STAMP) ## Download changed results from S3_URI (checksum-verified; not cache/)
	$(call S3_SYNC,pull,$(RESULTS_DIR),results$(PROFILE_DIR),--exclude cache)

test-install: ## Run the Docker image's install steps in a fresh venv (needs the package index)
	devops/test-install.sh

demo: ## Start here: datasets, quick models, clustering, figures and a summary (minutes)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory datasets && \
	$(MAKE) --no-print-directory models PROFILE=quick TAGS="$(DEMO_TAGS)" && \
	$(MAKE) --no-print-directory mlp-plots PROFILE=quick && \
	$(PY) -m nn_clustering summary --profile quick && \
	echo "demo finished in $$(( $$(date +%s) - start )) s; executed notebooks in results/quick/notebooks/"

all: ## The full reproduction: datasets, models and every analysis (PROFILE=paper: hours; docs/results.md §8)
	$(MAKE) --no-print-directory datasets
	$(MAKE) --no-print-directory models PROFILE=$(PROFILE)
	$(MAKE) --no-print-directory mlp-plots mlp-lesion mlp-double-lesion cnn-clustering cnn-lesion PROFILE=$(PROFILE)

bench: $(STAMP) ## Run the benchmarks (clustering, scaling, architectures, training, mask update, lesion, activations; over an hour)
	OPENBLAS_NUM_THREADS=1 $(PY) benchmarks/bench_clustering.py
	OPENBLAS_NUM_THREADS=1 $(PY) benchmarks/bench_scaling.py --shuffles 320
	OPENBLAS_NUM_THREADS=1 $(PY) benchmarks/bench_architectures.py
	$(PY) benchmarks/bench_training.py
	KERAS_BACKEND=jax $(PY) benchmarks/bench_train_step.py
	KERAS_BACKEND=jax $(PY) benchmarks/bench_mask_update.py
	KERAS_BACKEND=tensorflow $(PY) benchmarks/bench_mask_update.py
	$(PY) benchmarks/bench_lesion.py
	$(PY) benchmarks/bench_activations.py

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
