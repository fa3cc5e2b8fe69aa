# Set-up and test commands; README.md documents each target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DEPS := tests/node/node_modules/.package-lock.json

.PHONY: venv node-deps test test-fast lint format typecheck check demo screenshot proto checkpoint bench clean

# The project's virtual environment with every extra installed, pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The Node.js packages of the polyglot test (tests/node), pinned by its package-lock.json. Where npm is
# missing this only says so; the test itself is skipped where node is missing.
$(NODE_DEPS): tests/node/package.json tests/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/node --ignore-scripts --no-audit --no-fund; \
	else \
		echo "npm not found: tests/node's packages are not installed"; \
	fi

node-deps: $(NODE_DEPS)

# Parallel workers for the unit and service tiers (pytest-xdist): each worker starts its own Redis and servers
# on free ports, and much of a service test's time is spent waiting, so workers overlap well even on 2 cores.
WORKERS ?= auto

# The whole test suite: the unit, service and system tiers (tests/unit, tests/service, tests/system). Tests start
# the Redis, gRPC servers and processes they need themselves. make test PYTEST_ARGS="-k search" runs a part.
# The system tier runs in one process after the others: its load, timing and scale tests want the machine.
test: $(STAMP) $(NODE_DEPS)
	@sh scripts/ensure-chromium.sh
	@$(BIN)/python -m pytest -n $(WORKERS) -m "not system" $(PYTEST_ARGS); first=$$?; \
	$(BIN)/python -m pytest -m system $(PYTEST_ARGS); second=$$?; \
	if [ $$first -eq 5 ] && [ $$second -eq 5 ]; then exit 5; fi; \
	for code in $$first $$second; do [ $$code -eq 0 ] || [ $$code -eq 5 ] || exit $$code; done

# What to run after each change: the unit and service tiers (in-process servers, real Redis), without the
# system tier's processes, kills, load and full-size models. Under 2 minutes on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) -m "not system" $(PYTEST_ARGS)

# Lint: ruff's rules and formatting (pyproject.toml [tool.ruff]), generated proto code that matches protos/, and
# Biome's rules and formatting for the page's JavaScript and the Node.js test (biome.json; Biome from PyPI).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m clipsearch.protogen --check
	$(BIN)/biome check

# Rewrites the tree in the project's format and applies ruff's safe fixes.
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/biome format --write

# Static types: mypy, strict for the four packages, the bodies of tests/ checked too (pyproject.toml [tool.mypy]).
typecheck: $(STAMP)
	$(BIN)/mypy

# Everything CI checks before the tests (also scripts/check).
check: lint typecheck

# The main job in one command: starts the stack, indexes sample photos and a generated video, then runs a
# text search, an image search and a classification. Offline: CLIP_MODEL=checkpoints/tiny make demo
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# docs/web.png and docs/web.zh-CN.png: the web page in Chromium, in English and in Chinese, over the demo's
# photos and video (CLIP_MODEL, else a tiny random-weight checkpoint in checkpoints/tiny, made when missing).
screenshot: $(STAMP)
	@sh scripts/ensure-chromium.sh
	$(BIN)/python scripts/screenshot.py

# Regenerates the checked-in Python code from protos/ (make lint and tests/unit/test_protos.py check it is current).
proto: $(STAMP)
	$(BIN)/python -m clipsearch.protogen

# A random-weight CLIP checkpoint for running the services offline: make checkpoint ARCH=vit-b-16
ARCH ?= tiny
checkpoint: $(STAMP)
	$(BIN)/python -m embedder_service.checkpoint checkpoints/$(ARCH) --arch $(ARCH)

# The benchmark suite (bench/): ViT-B/16 (random weights) on generated 1080p frames, photos and video, about
# 20 minutes on 2 cores; prints a table and writes JSON. make bench BENCH_ARGS=--quick takes a few minutes.
BENCH_JSON ?= bench/results/bench.json
bench: $(STAMP)
	$(BIN)/python -m bench --json $(BENCH_JSON) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis tests/node/node_modules
