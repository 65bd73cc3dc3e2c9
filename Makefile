# Two commands do all the set-up on a fresh machine:
#   make run    create the virtualenv, install, build the index if missing, serve on 127.0.0.1:8000
#   make test   the same install, plus what the tests need (Debian chromium), then run every test
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install index run test test-fast system-deps eval bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@echo "Installing (the first time, llama-cpp-python compiles from source: about 10 minutes on 2 cores; pip caches the wheel)"
	$(PIP) install --progress-bar off -e ".[dev]"
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

test: install system-deps
	$(PY) -m pytest -ra

test-fast: install
	$(PY) -m pytest -ra -m "not slow"

eval: index
	$(PY) -m eval report

bench: index
	$(PY) -m bench all

clean:
	rm -rf var/ .pytest_cache tests/artifacts
