# One command to set up and test: `make test`. Needs only Python 3.10+ and the package registries.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch / torchvision pinned to the releases this project is tested with (CUDA builds run on CPU too).
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# `make demo DEMO_ARGS="--set loss.name=multi_similarity"` passes options to `lookalike demo`.
DEMO_OUT ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
DEMO_ARGS ?=

.PHONY: install test lint format clean omniglot demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache

omniglot: install
	$(VENV)/bin/lookalike train --config configs/omniglot_cnn.yaml --out runs/omniglot-$$(date +%Y%m%d-%H%M%S)

# The whole system on the built-in data set (no download): data, split, metrics before, CPU training,
# metrics after, calibration, a gallery, searches, and report.html in $(DEMO_OUT).
demo: install
	$(VENV)/bin/lookalike demo --out $(DEMO_OUT) $(DEMO_ARGS)
