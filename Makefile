# kubenas — every target does its own setup on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BIN := bin
PYTEST_ARGS ?=

.PHONY: help venv test test-slow demo lint tools crds dashboards dashboard-png bench bench-quick clean

help:
	@echo "make demo   - run a real NAS search locally on bundled data"
	@echo "make test   - run the test suite (sets up .venv and tools)"
	@echo "make lint   - ruff"
	@echo "make tools  - unpack helm and kubectl into bin/"
	@echo "make crds   - regenerate crds/ and the chart's CRDs from the pydantic models"
	@echo "make dashboards    - regenerate both Grafana dashboard files from their Python source"
	@echo "make dashboard-png - the README's dashboard picture from a demo run scraped by Prometheus"
	@echo "make bench  - run the benchmarks and rewrite bench/RESULTS.md"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(BIN)/helm $(BIN)/kubectl: .ci/fetch-tools.sh | $(STAMP)
	bash .ci/fetch-tools.sh $(BIN) $(PY)

tools: $(BIN)/helm $(BIN)/kubectl

test: $(STAMP) tools
	bash .ci/system-packages.sh
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP) tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	$(PY) -m nas_operator.demo

crds: $(STAMP)
	$(PY) -m nas_operator.kube.crdgen --out crds

dashboards: $(STAMP)
	$(PY) -m nas_operator.monitoring.dashboard helm/dashboards/kubenas.json helm/kubenas/dashboards/kubenas.json

dashboard-png: $(STAMP)
	bash .ci/system-packages.sh
	$(PY) -m nas_operator.monitoring.picture examples/local-demo.yaml helm/dashboards/kubenas.png

bench: $(STAMP) tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m bench

bench-quick: $(STAMP) tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m bench --quick

clean:
	rm -rf $(VENV) $(BIN) demo-out .pytest_cache
