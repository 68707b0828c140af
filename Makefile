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
# Flow runs, their tasks and artifacts live in this project's own Prefect database, the one `make ui` serves.
export PREFECT_HOME ?= $(CURDIR)/.prefect
# One line every 10 s for progress bars that do not write to a terminal (logs, DVC's output, Prefect).
export TQDM_MININTERVAL ?= 10

.DEFAULT_GOAL := help
.PHONY: help setup pipeline glue test test-slow test-ui test-faults bench-reliability lint deps

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: this machine has the CPU wheel on disk; an unpinned torch pulls gigabytes of CUDA
	# uv installs the rest in seconds (pip: ~5 minutes); it keeps the torch above, as ==2.13.0 admits 2.13.0+cpu.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0 uv
	# --compile-bytecode: uv writes no .pyc by default, so without it every stage process (and every test's
	# subprocess) recompiles transformers' and datasets' sources (`distilflow stage pretrain`: 24.8 s, not 7.7 s).
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/uv pip install --quiet --compile-bytecode -e '.[dev]' \
	  || $(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project (CPU torch)

# The Prefect flow drives DVC: it fetches from the DVC remote what a fresh clone lacks, runs `dvc repro` stage by
# stage (one Prefect task each), makes this clone's MLflow registry hold the student dvc.lock records, and pushes.
# Its run lands in .prefect/ (PREFECT_HOME below), the database `make ui` shows.
pipeline: $(STAMP) ## run the whole pipeline on the embedded demo data as a Prefect flow (DVC decides what reruns)
	python flows/pipeline.py $(ARGS)
	@echo
	@echo "Results: metrics/*.json (dvc metrics show), plots/ (dvc plots show), reports/, models/"
	@echo "Registry: MLflow store mlruns.db — make ui, or: distilflow models / distilflow promote|rollback"

# The whole GLUE benchmark: one workspace and Prefect subflow per task folder under GLUE_DIR (default params.yaml's
# glue.root, the embedded demos), each with its recipe (flows/profiles/glue/TASK.yaml); then reports/glue.md.
glue: $(STAMP) ## every GLUE task under GLUE_DIR (e.g. ../shared/data/glue), then reports/glue.md (TASKS=sst2,cola PROFILE=smoke)
	$(BIN)/distilflow glue $(if $(GLUE_DIR),--glue-dir $(GLUE_DIR)) $(if $(TASKS),--tasks $(TASKS)) $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

# The integration tests spend most of their time waiting on subprocesses, servers and DVC: two workers keep both of
# this 2-core machine's cores busy (whole files per worker, so a module's fixtures run once). TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) ## run the default test suite (fast; slow and gpu tests excluded)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

test-slow: $(STAMP) ## run the slow tests too
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "slow or not slow"

# Headless Chromium reading the Prefect and MLflow UIs after the deployed flow's run (tests/ui/pages.py, collected in
# tests/integration/test_flow.py, part of `make test`; they skip without /usr/bin/chromium, which .ci/run installs).
# DISTILFLOW_SCREENSHOTS=docs/img keeps the pages as the docs' screenshots.
test-ui: $(STAMP) ## the deployed flow's tests with the browser checks of its UIs (a few minutes)
	$(BIN)/pytest -q -p no:xdist tests/integration/test_flow.py

# The reliability suite (docs/reliability.md): real register processes killed at each registry write, real stores
# locked, corrupted, unreachable and full, two workspaces promoting at once (tests/faults), and Hypothesis's 2,000
# serving requests and 2,000 GLUE files (the *_properties.py modules). Whole files per worker.
test-faults: $(STAMP) ## kill -9, broken stores, bad input at volume; then the next run (a few minutes)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m faults

# The figures of docs/reliability.md, from the fault and bad-input suites and bench/serve_load.py's last result.
bench-reliability: $(STAMP) ## faults survived, bad input rejected, load held -> docs/reliability.md, bench/results/reliability.json
	$(BIN)/python bench/reliability.py $(ARGS)

deps: $(STAMP) ## rewrite the src/ deps of every stage in dvc.yaml from its imports (after adding an import to a stage)
	$(BIN)/python -m scripts.dvc_deps

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests flows bench
	$(BIN)/ruff format --check src tests flows bench
	$(BIN)/mypy

# --- Prefect orchestration (docs/orchestration.md) ------------------------------------------------------------
PREFECT_PORT ?= 4200
PREFECT_LOCAL_API := http://127.0.0.1:$(PREFECT_PORT)/api
PREFECT_POOL ?= distilflow-process
.PHONY: flow ui deploy worker bench-flow bench-pipeline bench-suite

flow: $(STAMP) ## run the pipeline as a Prefect flow, no server needed (e.g. ARGS='--profile smoke')
	python flows/pipeline.py $(ARGS)

ui-prefect: $(STAMP) ## Prefect UI only, on http://127.0.0.1:4200 (Ctrl-C stops it); `make ui` starts it with MLflow's
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

deploy: $(STAMP) ## create the nightly Prefect deployment (cron, process pool); needs `make ui` running
	PREFECT_API_URL=$${PREFECT_API_URL:-$(PREFECT_LOCAL_API)} $(BIN)/python flows/deploy.py --pool $(PREFECT_POOL) $(ARGS)

worker: $(STAMP) ## run the deployment's flow runs here; stop with Ctrl-C (SIGINT: the worker ignores SIGTERM)
	PREFECT_API_URL=$${PREFECT_API_URL:-$(PREFECT_LOCAL_API)} $(BIN)/prefect worker start --pool $(PREFECT_POOL)

bench-pipeline: $(STAMP) ## embedded dvc repro in a fresh clone: per-stage wall, work and overhead -> bench/results/pipeline.json
	$(BIN)/python bench/pipeline.py $(ARGS)

bench-suite: $(STAMP) ## .ci/run (install + make test) in a fresh clone: pytest's time and slowest tests -> bench/results/suite.json
	$(BIN)/python bench/suite.py $(ARGS)

bench-flow: $(STAMP) ## flow overhead over a bare dvc repro -> bench/results/flow-overhead.json
	nice -n 10 $(BIN)/python bench/flow_overhead.py $(ARGS)

# --- Fine-tuning benchmark (docs/finetune.md) ------------------------------------------------------------------------
.PHONY: bench-finetune
BENCH_FINETUNE_ARGS ?= --epochs 3 --batch-size 32 --learning-rate 5e-5 --warmup-ratio 0.06 --eval-every 300 --patience 6 --no-freeze-embeddings --subset 1000

bench-finetune: $(STAMP) ## SST-2: teacher accuracy + speed vs transformers.Trainer -> bench/results/finetune-sst2.json
	nice -n 5 $(BIN)/python bench/finetune.py $(BENCH_FINETUNE_ARGS) $(ARGS)

.PHONY: bench-search
bench-search: $(STAMP) ## the teacher's selection protocol vs its recipe as written, per seed, on a demo -> bench/results/search-TASK.json
	nice -n 5 $(BIN)/python bench/search.py $(ARGS)

# --- Distillation benchmark (docs/distillation.md); needs bench/cache/teacher-sst2 from bench-finetune ----------------
.PHONY: bench-distill
BENCH_DISTILL_ARGS ?= --copies 8 --max-source-rows 30000 --min-words 5 --main-steps 12000 --ablation-steps 1500 --mlm-steps 800 --intermediate-steps 400 --eval-every 500 --threads 1 --workers 2

bench-distill: $(STAMP) ## SST-2: BERT-tiny student, ablations, exports, throughput -> bench/results/distill-sst2.json
	nice -n 5 $(BIN)/python bench/distill.py $(BENCH_DISTILL_ARGS) $(ARGS)

.PHONY: bench-distill-probe
bench-distill-probe: $(STAMP) ## what limits the student: one factor at a time on bench-distill's transfer set -> bench/results/distill-probe.json
	nice -n 5 $(BIN)/python bench/distill_probe.py $(ARGS)

# --- DVC: remote storage and experiments (docs/dvc.md) ---------------------------------------------------------------
.PHONY: push pull sweep exps
# A 2x2 grid; any comma-separated lists work. Each point reruns distill and evaluate@student only (docs/dvc.md).
SWEEP_TEMPERATURE ?= 1.0,4.0
SWEEP_ALPHA ?= 0.5,0.9

push: ## upload data and models of this dvc.lock to the DVC remote (default ~/.cache/distilflow/dvc-remote)
	dvc push

pull: ## fetch data and models of this dvc.lock from the DVC remote
	dvc pull

sweep: $(STAMP) ## DVC experiments over distill.temperature x alpha (SWEEP_TEMPERATURE, SWEEP_ALPHA), then compare
	python scripts/sweep.py --temperature '$(SWEEP_TEMPERATURE)' --alpha '$(SWEEP_ALPHA)' $(SWEEP_ARGS)

exps: ## compare DVC experiments: swept params, teacher and student GLUE score, accuracy, size, p95 latency
	dvc exp show --md --drop '.*' --keep 'Experiment$$|Created$$|distill\.(temperature|alpha)$$|metrics/eval_(teacher|student)\.json:(accuracy|glue_score|latency_p95_ms|size_mb)$$'

# --- MLflow UI, serving and load test (docs/registry.md) -------------------------------------------------------------
.PHONY: ui-mlflow ui-prefect serve bench-serve
MLFLOW_UI_PORT ?= 5000
# `make ui` runs these side by side (make -j); each is a plain foreground server, so Ctrl-C stops them all.
UI_TARGETS ?= ui-mlflow ui-prefect

ui: $(STAMP) ## MLflow UI (http://127.0.0.1:5000) and Prefect UI (http://127.0.0.1:4200) together; Ctrl-C stops both
	@$(MAKE) --no-print-directory -j $(words $(UI_TARGETS)) $(UI_TARGETS)

ui-mlflow: $(STAMP) ## MLflow UI only, on http://127.0.0.1:5000: runs, registry, model cards, lineage links
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns.db \
		--default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_UI_PORT) --workers 1

serve: $(STAMP) ## mlflow models serve distilflow-<task>-student@champion on 127.0.0.1 (SERVE_PORT=, default 5001)
	$(BIN)/distilflow serve $(if $(SERVE_PORT),--port $(SERVE_PORT))

bench-serve: $(STAMP) ## load test of the served champion at concurrency 1 and 8 -> bench/results/serve-load.json
	$(BIN)/python bench/serve_load.py --root . $(ARGS)

# --- The CUDA path on a lent GPU machine (docs/gpu.md) ---------------------------------------------------------------
.PHONY: gpu-prepare gpu-check

gpu-prepare: $(STAMP) ## fill gpu/ (SST-2, the fp16 teacher, missing wheels) for the GPU machine; it travels as carry ["gpu"]
	$(BIN)/python scripts/gpu_prepare.py $(ARGS)

gpu-check: ## on the GPU machine: tests, fine-tune, label, distil, Trainer race -> OUT/gpu_check.json (OUT=dir)
	bash scripts/gpu_check.sh "$(or $(OUT),gpu-check-out)" $(ARGS)

# --- The team stack (docs/team.md) ---------------------------------------------------------------------------------
# PostgreSQL, MLflow with basic auth and proxied artifacts, Prefect and WORKERS process workers, all on 127.0.0.1;
# state, logs, generated credentials and the data live in the git-ignored .team/. The embedded default (sqlite, no
# server) stays what every other target uses.
.PHONY: team-up team-down team-status team-env test-team
WORKERS ?= 2

team-up: $(STAMP) ## start the team stack: PostgreSQL, MLflow (auth), Prefect, WORKERS=2 workers (docs/team.md)
	$(BIN)/distilflow team up --workers $(WORKERS) --pool $(PREFECT_POOL)

team-down: ## stop every process of the team stack (its data stays in .team/)
	$(BIN)/distilflow team down

team-status: ## each process of the team stack, its URLs and what to export
	$(BIN)/distilflow team status

team-env: ## the exports that point MLflow and Prefect at the team stack: eval "$$(make -s team-env)"
	@$(BIN)/distilflow team env

test-team: $(STAMP) ## the team stack for real, and the GLUE suite on its pool with a worker killed (a few minutes)
	$(BIN)/pytest -q -p no:xdist -m team tests/team

.PHONY: bench-glue-pool
bench-glue-pool: $(STAMP) ## the GLUE demos on the team pool with 1 and 2 workers -> bench/results/glue-pool.json
	$(BIN)/python bench/glue_pool.py $(ARGS)
