# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlakit-installed
DEMO_MODEL ?= efficientnet-lite0
DEMO_TARGET ?= orin
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint bench clean

setup: $(STAMP)

# Every extra (sim: torch, plot: matplotlib, plan: OR-Tools, ray: Ray) and the dev tools. torch is installed first, pinned to
# the CPU build that lies on these machines' disk; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e '.[sim,plot,plan,ray,dev]'
	touch $@

# Check the default model, rewrite it for the DLA, and check the result again.
demo: setup
	$(VENV)/bin/dlakit check $(DEMO_MODEL) --target $(DEMO_TARGET)
	$(VENV)/bin/dlakit fix $(DEMO_MODEL) --target $(DEMO_TARGET) -o out/$(DEMO_MODEL).dla-ready.onnx
	$(VENV)/bin/dlakit check out/$(DEMO_MODEL).dla-ready.onnx --target $(DEMO_TARGET) --fallback-only

test: setup
	$(PY) -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check --no-cache src tests bench scripts
	$(VENV)/bin/ruff format --no-cache --check src tests bench scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
