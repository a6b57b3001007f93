# mnistlab: `make run-all` trains the models and compares them; `make test` runs the tests.
# Every target sets up what it needs (venv, kernel, data) first, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_MIRROR ?= ../shared/data
RUNS_DIR ?= runs
SEEDS ?= 1
WORKERS ?= 1
DASK_SCHEDULER ?=
MODELS ?=
# Your own models: a Python file (or module) that calls mnistlab.register_model; comma-separated for several.
MODELS_FROM ?=
RECIPE ?=
# Extra options for `python -m mnistlab run-all`, e.g. RUN_ARGS="--epochs 3".
RUN_ARGS ?=

.PHONY: help setup data run-all smoke test jupyter report bench bench-levers best speedrun speedrun-995 sweep cluster-demo results-doc

help:
	@echo "make run-all   train the core six models on the full MNIST, then compare (runs/summary.csv, runs/comparison.png)"
	@echo "               MODELS=all for the whole zoo of twelve, MODELS=cnn,bn_cnn for some"
	@echo "make report    render runs/compare_runs.ipynb to runs/report.html (code hidden)"
	@echo "make bench     throughput vs the seed article's pipeline, GFLOP/s, step profile, time to accuracy, memory (bench/results.md; ISA=avx2: results-avx2.md)"
	@echo "make bench-levers  what each throughput lever gives cnn and bn_cnn, and their convolutions' GFLOP/s (bench/levers.md)"
	@echo "make best      deep_bn_cnn with augmentation, $(BEST_EPOCHS) epochs, $(BEST_SEEDS) seeds, their ensemble, against bn_cnn (runs/best/)"
	@echo "make speedrun  the speedrun network (2 epochs), 3 seeds: aims at 0.990 test accuracy in 30 s of training (runs/speedrun/)"
	@echo "make speedrun-995  the same network, 15 epochs of all 60,000 images shifted by up to a pixel, L2 5e-5, 3 seeds:"
	@echo "               aims at 0.995 test accuracy in 3 minutes of training (runs/speedrun-995/)"
	@echo "make smoke     the same on 300 images and one epoch, into runs/smoke/"
	@echo "make cluster-demo  a Dask scheduler and workers started apart, a small run-all on 1 and on 2 workers, a sweep"
	@echo "make sweep     a grid of learning rate x batch size for mlp, 2 seeds (SWEEP_ARGS to change), runs/sweeps/"
	@echo "make test      the test suite (pytest)"
	@echo "make jupyter   JupyterLab on notebooks/ with the project's kernel, opened on notebooks/README.md"
	@echo "make results-doc  regenerate docs/results.md and docs/accuracy.png from docs/data/"
	@echo "make setup     create $(VENV), install requirements and the 'mnistlab' Jupyter kernel"
	@echo "make data      copy MNIST and Fashion-MNIST from DATA_MIRROR ($(DATA_MIRROR)) or download them; verify"
	@echo "options: ISA=avx2 SEEDS=N MODELS=core|all|a,b MODELS_FROM=my_models.py RECIPE=mnistlab|article FORCE=1 VERBOSE=1 WORKERS=N DASK_SCHEDULER=tcp://host:port RUNS_DIR=dir RUN_ARGS='--epochs 3' DATA_MIRROR=dir"
	@echo "run-all is incremental: configs with a completed run are skipped (FORCE=1 re-runs), interrupted runs resume"

setup: $(VENV)/.installed $(VENV)/share/jupyter/lab/settings/overrides.json

# JupyterLab opens without its news question, update checks or extension manager (tests/test_browser.py checks it).
$(VENV)/share/jupyter/lab/settings/overrides.json: notebooks/jupyterlab-overrides.json $(VENV)/.installed
	@mkdir -p $(@D) && cp $< $@

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -m venv $(VENV)
	@echo "setup: creating $(VENV) and installing requirements.txt (pinned; a few minutes the first time; log in $(VENV)/install.log)"
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade pip && \
	   $(PY) -m pip install --disable-pip-version-check -r requirements.txt && \
	   $(PY) -m pip install --disable-pip-version-check --no-deps -e . ; } > $(VENV)/install.log 2>&1 \
	   || { tail -20 $(VENV)/install.log; echo "setup failed: see $(VENV)/install.log"; exit 1; }
	@# The notebooks run on this venv's kernel, whatever kernels the user has elsewhere.
	@$(PY) -m ipykernel install --sys-prefix --name mnistlab --display-name "Python (mnistlab)" > /dev/null 2>&1
	@echo "setup: $(VENV) ready (TensorFlow $$($(PY) -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)), Jupyter kernel 'mnistlab' installed"
	@touch $@

data: setup
	$(PY) -m mnistlab data $(if $(wildcard $(DATA_MIRROR)),--mirror $(DATA_MIRROR))

run-all: setup data
	$(ISA_ENV) $(PY) -m mnistlab run-all --seeds $(SEEDS) --runs-dir $(RUNS_DIR) --workers $(WORKERS) $(if $(DASK_SCHEDULER),--scheduler $(DASK_SCHEDULER)) $(if $(MODELS),--models $(MODELS)) $(MODELS_FROM_ARGS) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(filter 1,$(FORCE)),--force) $(if $(filter 1,$(VERBOSE)),-v) $(RUN_ARGS)

smoke: setup data
	$(PY) -m mnistlab run-all --epochs 1 --limit 300 --runs-dir runs/smoke $(if $(MODELS),--models $(MODELS)) $(MODELS_FROM_ARGS) $(if $(filter 1,$(FORCE)),--force) $(if $(filter 1,$(VERBOSE)),-v) $(RUN_ARGS)

# The default sweep: mlp, learning rate 0.001/0.003/0.01 x batch size 64/128, 2 seeds, 5 epochs,
# plus the recipe's own setting; two trials at a time.
SWEEP_ARGS ?= --model mlp --grid learning_rate=0.001,0.003,0.01 --grid batch_size=64,128 --seeds 2 --epochs 5 --workers 2
sweep: setup data
	$(PY) -m mnistlab sweep --runs-dir $(RUNS_DIR) $(MODELS_FROM_ARGS) $(SWEEP_ARGS)

# docs/results.md and docs/accuracy.png from the committed data in docs/data/.
results-doc: setup
	$(PY) docs/make_results.py

cluster-demo: setup data
	$(PY) bench/cluster_demo.py

# One self-contained HTML page (figures inlined) of the last comparison, without the code.
report: setup
	$(PY) -m mnistlab report --notebook $(RUNS_DIR)/compare_runs.ipynb --html $(RUNS_DIR)/report.html

# Two test processes: most of a test's time is a kernel or a process starting, which overlaps well.
TEST_WORKERS ?= 2
test: setup data
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

jupyter: setup data
	$(VENV)/bin/jupyter lab --notebook-dir notebooks README.md

# The speedrun: the `speedrun` network (2 epochs), three seeds; it aims at 0.990 test accuracy in at
# most 30 s of training on 2 AVX2 cores (what it measured: docs/results.md).
speedrun: setup data
	$(ISA_ENV) $(PY) -m mnistlab run-all --models speedrun --seeds 3 --runs-dir $(RUNS_DIR)/speedrun $(if $(filter 1,$(FORCE)),--force) $(RUN_ARGS)

# Its second setting aims at 0.995 in at most 3 minutes: 15 epochs (the same one-cycle shape) on all
# 60,000 training images (no validation split), each shifted at random by up to one pixel each way,
# with a small L2 penalty on the kernels (what it measured: docs/results.md).
speedrun-995: setup data
	$(ISA_ENV) $(PY) -m mnistlab run-all --models speedrun --seeds 3 --epochs 15 --set validation_size=0 \
		--set shift_pixels=1 --set l2=0.00005 --runs-dir $(RUNS_DIR)/speedrun-995 $(if $(filter 1,$(FORCE)),--force) $(RUN_ARGS)

comma := ,
MODELS_FROM_ARGS = $(foreach f,$(subst $(comma), ,$(MODELS_FROM)),--models-from $(f))

# ISA=avx2 caps oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA), as on most laptops; bench writes results-avx2.*.
ISA_ENV = $(if $(filter avx2 AVX2,$(ISA)),ONEDNN_MAX_CPU_ISA=AVX2)

bench: setup data
	$(ISA_ENV) $(PY) bench/bench.py $(BENCH_ARGS)

bench-levers: setup data
	$(PY) bench/levers.py $(BENCH_ARGS)

# The accuracy recipe: deep_bn_cnn (seven conv-BN-ReLU layers, no pooling) with augmentation
# (rotations, shifts, zooms) and its cosine schedule with warm-up, longer training; BEST_SEEDS
# seeds (four: 20 epochs took 12-13 minutes on 2 Zen 4 cores, so four fit in an hour of training
# and a fifth would not), then the ensemble of their averaged probabilities. Nothing is chosen on test: the
# recipe is fixed, and every seed is a member. bn_cnn's recipe runs first into the same folder, so
# the comparison gives McNemar's test of each against it. Levers tried on this recipe and kept
# only if validation accuracy rose beyond the seeds' spread (none did: label smoothing 0.1, 30
# epochs, elastic deformation): docs/results.md, suite best-levers-validation.
BEST_EPOCHS ?= 20
BEST_SEEDS ?= 4
best: setup data
	$(PY) -m mnistlab run-all --models bn_cnn --seeds 3 --runs-dir $(RUNS_DIR)/best --workers $(WORKERS) $(RUN_ARGS)
	$(PY) -m mnistlab run-all --models deep_bn_cnn --seeds $(BEST_SEEDS) --epochs $(BEST_EPOCHS) --runs-dir $(RUNS_DIR)/best \
		--workers $(WORKERS) --set augment=True $(RUN_ARGS)
	$(PY) -m mnistlab ensemble --runs-dir $(RUNS_DIR)/best --model deep_bn_cnn --against bn_cnn
