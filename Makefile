# Set-up and test commands; README.md documents each target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test proto checkpoint clean

# The project's virtual environment with every extra installed, pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The whole test suite. Tests start the Redis, gRPC servers and processes they need themselves.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerates the checked-in Python code from protos/ (tests/test_protos.py checks it is current).
proto: $(STAMP)
	$(BIN)/python -m clipsearch.protogen

# A random-weight CLIP checkpoint for running the services offline: make checkpoint ARCH=vit-b-16
ARCH ?= tiny
checkpoint: $(STAMP)
	$(BIN)/python -m embedder_service.checkpoint checkpoints/$(ARCH) --arch $(ARCH)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
