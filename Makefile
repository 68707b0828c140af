# distilflow — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help setup pipeline test test-slow lint

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: this machine has the CPU wheel on disk; an unpinned torch pulls gigabytes of CUDA
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project (CPU torch)

pipeline: $(STAMP) ## run the whole pipeline on the embedded demo data (dvc repro)
	dvc repro
	@echo
	@echo "Results: metrics/*.json (dvc metrics show), plots/ (dvc plots show), reports/, models/"
	@echo "Registry: MLflow store mlruns.db — make ui, or: mlflow models list / distilflow promote|rollback"

test: $(STAMP) ## run the default test suite (fast; slow and gpu tests excluded)
	$(BIN)/pytest -q

test-slow: $(STAMP) ## run the slow tests too
	$(BIN)/pytest -q -m "slow or not slow"

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests flows bench
	$(BIN)/ruff format --check src tests flows bench
	$(BIN)/mypy
