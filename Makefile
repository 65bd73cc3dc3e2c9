# Two commands do all the set-up on a fresh machine:
#   make run    create the virtualenv, install, build the index if missing, serve on 127.0.0.1:8000
#   make test   the same install, plus what the tests need (Debian chromium), then run every test
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

# llama-cpp-python compiles from source. It is built for a portable x86-64 baseline (AVX2, FMA,
# F16C), never with -march=native: a natively built wheel, reused from pip's cache on another CPU,
# dies with SIGILL there, and ggml's AMX kernels die with SIGILL even where the CPU advertises AMX
# (seen on a Xeon VM: `tileloadd`, docs/reliability.md "Tests and the CPU"). The wheel is kept in
# WHEELHOUSE (outside the project, so a fresh clone reuses it), keyed by version and flags.
LLAMA_CPP_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_FLAVOUR ?= avx2
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_FLAVOUR ?= generic
endif
WHEELHOUSE ?= $(HOME)/.cache/paperqa-lite/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_FLAVOUR)
LLAMA_WHEEL_STAMP := $(WHEELHOUSE)/.built

.PHONY: install index run test test-fast lint format system-deps eval bench clean

install: $(STAMP)

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(LLAMA_WHEEL_STAMP): | $(PY)
	@echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) ($(LLAMA_FLAVOUR)) once: about 10 minutes on 2 cores; kept in $(WHEELHOUSE)"
	mkdir -p $(WHEELHOUSE)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-cache-dir --progress-bar off \
		"llama-cpp-python==$(LLAMA_CPP_VERSION)" -w $(WHEELHOUSE)
	touch $@

$(STAMP): pyproject.toml Makefile $(LLAMA_WHEEL_STAMP) | $(PY)
	$(PIP) install --progress-bar off --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install --progress-bar off -e ".[dev,ray]"
	touch $(STAMP)

index: install
	$(PY) -m ingest --if-missing

run: index
	$(PY) -m app

# Debian's chromium for the browser test (as root via apt-get; skipped with a reason otherwise).
system-deps:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "warning: /usr/bin/chromium missing and not root: the browser test will be skipped"; fi

test: install system-deps lint
	$(PY) -m pytest -ra

# The fast tier: pure functions and the HTTP contract over fakes (no model loads).
test-fast: install
	$(PY) -m pytest -ra -m "not slow"

# ruff (lint and format check), mypy on app/ and ingest/, and the import contracts (lint-imports).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

eval: index
	$(PY) -m eval report

bench: index
	$(PY) -m bench all

clean:
	rm -rf var/ .pytest_cache tests/artifacts
