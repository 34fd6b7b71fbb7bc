# Orchestra: `make demo` runs the tutorial, `make test` runs every check CI runs.
# Everything is installed from nothing into .venv (only a python3 >= 3.10 is needed).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
# The real interpreter behind `python3` (a pyenv shim costs ~170 ms per start).
PYTHON ?= $(shell python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
SOURCES := orchestra tests benchmarks examples
TUTORIAL := examples/tasks/tutorial

.PHONY: help venv lint format test test-fast demo bench clean

help:
	@echo "make demo   run the tutorial example end to end (local backend)"
	@echo "make test   create .venv if needed, then ruff, mypy, import-linter and pytest"
	@echo "make lint   the static checks only"
	@echo "make bench  the benchmarks under benchmarks/"
	@echo "make clean  remove .venv, caches and demo outputs"

# The demo needs only orchestra's own dependencies; the tests add the dev tools on top.
$(RUNTIME_STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "python3 not found: install Python >= 3.10" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix $(SOURCES)
	$(BIN)/ruff format $(SOURCES)

# The Slurm tests start a private single-node Slurm (tests/slurm_cluster.py): Debian's
# slurm-wlm and munge are installed first when missing (as root with apt), else they skip.
test: lint
	@command -v slurmctld >/dev/null && command -v munged >/dev/null || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && export DEBIAN_FRONTEND=noninteractive \
	  && { apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || { apt-get update -qq && \
	       apt-get install -y -qq slurm-wlm munge >/dev/null; }; } \
	  || echo "Slurm not installed (apt-get install slurm-wlm munge as root): its tests skip"; }
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# The tutorial end to end in a scratch repository .demo/ (git-ignored): the specs of
# examples/tasks/tutorial, the data file and 100 configs generated into its storage.
DEMO := .demo
demo: $(RUNTIME_STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO)/storage/alice/files
	cp -r $(TUTORIAL)/cluster.yaml $(TUTORIAL)/users $(DEMO)/
	$(PY) $(TUTORIAL)/create_data.py -o $(DEMO)/storage/alice/files/my_data_file.json
	$(PY) $(TUTORIAL)/create_configs.py -o $(DEMO)/storage/alice/files/my_config_files
	@export PATH="$(CURDIR)/$(TUTORIAL):$(CURDIR)/$(BIN):$$PATH"; set -ex; cd $(DEMO); \
	  orchestra validate; \
	  orchestra plan; \
	  orchestra apply; \
	  orchestra status; \
	  orchestra status user.alice.my_task_tutorial --state done | head -n 12; \
	  cat storage/alice/user.alice.my_task_tutorial/jobs/config_sort_0_init_0/output | head -n 5; \
	  orchestra plan --detailed-exitcode

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@command -v parallel >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && { apt-get install -y -qq parallel >/dev/null || { apt-get update -qq && \
	       apt-get install -y -qq parallel >/dev/null; }; } \
	  || echo "GNU parallel not installed (apt-get install parallel): left out of the report"; }
	@touch $@

# Every benchmark, then docs/benchmarks.md and docs/benchmarks.png (about 30 minutes);
# BENCH_ARGS=--quick for small sizes (a smoke test of the harness)
bench: $(BENCH_STAMP)
	$(PY) benchmarks/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache .demo build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
