# collapse-hpc: every target installs what it needs (make setup) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/collapse-hpc
CONFIG ?= configs/demo.yaml
PROFILE ?=
GENERATIONS ?=
# runs/<the config file's name>, as the command's own default; make's notdir and basename split a name at spaces
space := $() $()
RUN ?= runs/$(subst |_|,$(space),$(basename $(notdir $(subst $(space),|_|,$(CONFIG)))))
EXECUTOR ?=
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/collapse-hpc/torch_extensions
export PYTHONNOUSERSITE := 1
# a path as one shell word, spaces and quotes included (RUN="runs/paper 2")
q = '$(subst ','\'',$(1))'
# a path given on the command line or in the environment is taken as written: make would expand a `$` in
# it as its own variable (RUN='runs/$x' read as runs/)
$(foreach v,CONFIG RUN PROFILE,$(if $(filter command line environment%,$(origin $(v))),$(eval override $(v) := $$(value $(v)))))

.PHONY: setup lock demo lint test test-slurm submit stage cancel status aggregate verify bench data image image-test sif clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

# The dev lock: the runtime lock (requirements.lock, what the GPU image installs) plus the tools
# to test, lint and lock; every file checked against its hash.
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv from requirements-dev.lock (idempotent)

LOCK_ARGS := -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: setup  ## regenerate both locks from pyproject.toml (pip-tools; keeps pins: UPGRADE="-P numpy" moves one)
	$(VENV)/bin/pip-compile $(LOCK_ARGS) $(UPGRADE) -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile $(LOCK_ARGS) --extra dev -c requirements.lock -o requirements-dev.lock pyproject.toml

demo: setup  ## the whole suite locally on CPU, offline, then the report: [CONFIG=configs/demo.yaml] [RUN=runs/<its name>] [GENERATIONS=] [EXECUTOR=local|debug|slurm]
	$(CLI) data prepare wikivital
	$(CLI) run $(call q,$(CONFIG)) --run $(call q,$(RUN)) $(if $(GENERATIONS),--generations $(GENERATIONS)) $(if $(EXECUTOR),--executor $(EXECUTOR))
	$(CLI) aggregate $(call q,$(RUN))

lint: setup  ## ruff, mypy over config, regimes, store and engine, import-linter's contracts (pyproject.toml's [tool.*]), function length
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	$(PY) tests/function_length.py --max 40 collapse_hpc/experiments/lm

test: lint  ## lint, then the whole test suite (Slurm tests excluded: make test-slurm) [PYTEST_ARGS="-x -k …"]
	$(PY) -m pytest -m "not slurm" $(PYTEST_ARGS)

test-slurm: setup  ## start the single-node Slurm dev cluster and run the Slurm tests [PYTEST_ARGS=]
	bash slurm/dev-cluster/start.sh
	$(PY) -m pytest -m slurm $(PYTEST_ARGS)

submit: setup  ## submit to Slurm: make submit GENERATIONS=10 [CONFIG=] [PROFILE=, else the run's earlier submit's, else the config's profile:, else slurm/site.yaml] [RUN=]
	$(CLI) submit $(call q,$(CONFIG)) --run $(call q,$(RUN)) $(if $(GENERATIONS),--generations $(GENERATIONS)) $(if $(PROFILE),--profile $(call q,$(PROFILE)))

stage: setup  ## on a login node with internet: data sets and models of CONFIG where PROFILE's jobs look
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 $(CLI) stage $(call q,$(CONFIG)) $(if $(PROFILE),--profile $(call q,$(PROFILE)))

cancel: setup  ## cancel RUN's queued and running Slurm jobs, or stop its local launcher (finished units stay)
	$(CLI) cancel $(call q,$(RUN))

status: setup  ## per chain of RUN (default runs/demo): generation reached, job states
	$(CLI) status $(call q,$(RUN))

aggregate: setup  ## tidy tables, figures and the results page of RUN (default runs/demo)
	$(CLI) aggregate $(call q,$(RUN))

verify: setup  ## re-hash every artefact of RUN against its manifest
	$(CLI) verify $(call q,$(RUN))

bench: setup  ## every benchmark under benchmarks/, each ending with its figure
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; done

data: setup  ## prepare the offline default corpora (wikivital, digits)
	$(CLI) data prepare wikivital
	$(CLI) data prepare digits

image:  ## build the GPU Docker image (needs a Docker engine): make image [IMAGE=collapse-hpc] [BASE_IMAGE=…] [TORCH_GUARD=warn]
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker not found; build the image on a machine with Docker (README: 1. Build the image (Containers))" >&2; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine answers (docker info failed); start one or build on a workstation with Docker" >&2; exit 2; }
	@set -e; version=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml); \
	commit=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD || commit=$$commit-dirty; } || commit=unknown; \
	set -x; DOCKER_BUILDKIT=1 docker build --platform linux/amd64 --build-arg VERSION=$$version --build-arg GIT_COMMIT=$$commit \
	  $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) $(if $(TORCH_GUARD),--build-arg TORCH_GUARD=$(TORCH_GUARD)) \
	  -t $(or $(IMAGE),collapse-hpc):$$version -t $(or $(IMAGE),collapse-hpc):latest .

image-test: setup  ## build the image with podman on a stand-in base, run a tiny config in it (root, Debian; no Docker needed)
	bash tests/containers/image/image-test.sh

sif:  ## convert the Docker image to collapse-hpc-<version>.sif (needs Apptainer): make sif [IMAGE=…] [SIF=…]
	@command -v apptainer >/dev/null 2>&1 || { echo "make sif: apptainer not found; build the SIF where Apptainer is, from docker save's archive (README: 2. Convert it to SIF and write your profile)" >&2; exit 2; }
	@set -e; version=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml); image=$(or $(IMAGE),collapse-hpc):$$version; \
	commit=$$(docker image inspect -f '{{ index .Config.Labels "org.opencontainers.image.revision" }}' $$image 2>/dev/null) \
	  || { echo "make sif: Docker image $$image not found (make image first)" >&2; exit 2; }; \
	set -x; apptainer build --force --build-arg IMAGE=$$image --build-arg VERSION=$$version \
	  --build-arg GIT_COMMIT=$$commit $(or $(SIF),collapse-hpc-$$version.sif) apptainer.def

clean:  ## remove runs/ (not data/ or .venv)
	rm -rf runs
