# qmo developer commands. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help setup venv binaries crds manifests check lint format test test-unit demo gateway-e2e autoscaling-e2e cluster-up cluster-down gpu-bench gpu-quality clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: venv binaries ## everything a newcomer needs: Python env + Kubernetes test binaries

venv: $(VENV)/.installed ## the Python virtual environment with qmo and its dev tools

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

binaries: ## build (or reuse) kube-apiserver, etcd, kwok, helm... into ~/.cache/qmo
	e2e/build-binaries.sh

crds: venv ## regenerate crds/ and charts/qmo/crds/ from the API models
	$(BIN)/qmo crds

manifests: ## re-render deploy/kubectl/qmo.yaml and charts/qmo/README.md (after changing the chart)
	deploy/render-manifests.sh
	$(PY) charts/readme.py

lint: venv ## format check, lint, types, layering, generated files
	$(BIN)/ruff format --check operator tests e2e benchmarks
	$(BIN)/ruff check operator tests e2e benchmarks
	$(BIN)/mypy operator/qmo
	$(BIN)/lint-imports
	$(BIN)/qmo crds --out .qmo/crds-check/crds --out .qmo/crds-check/chart >/dev/null
	diff -r crds .qmo/crds-check/crds || { echo "crds/ is stale: run 'make crds'"; exit 1; }
	diff -r charts/qmo/crds .qmo/crds-check/chart || { echo "charts/qmo/crds is stale: run 'make crds'"; exit 1; }

format: venv ## apply ruff's formatting and autofixes
	$(BIN)/ruff format operator tests e2e benchmarks
	$(BIN)/ruff check --fix operator tests e2e benchmarks

test-unit: venv ## pure tests only: no cluster needed
	$(BIN)/pytest -m 'not cluster' $(PYTEST_ARGS)

test: venv binaries ## every test: unit + the local control plane (started and stopped by pytest)
	$(BIN)/pytest $(PYTEST_ARGS)

check: lint test ## the one gate CI runs

gateway-e2e: venv binaries ## opt-in, as root: requests through a real gateway (Traefik, built here)
	e2e/build-traefik.sh
	QMO_GATEWAY_E2E=1 $(BIN)/pytest tests/cluster/test_through_a_gateway.py $(PYTEST_ARGS)

autoscaling-e2e: venv binaries ## opt-in, as root: load, KEDA and Prometheus (built here) scale a model
	e2e/build-autoscaling-peers.sh
	QMO_AUTOSCALING_E2E=1 $(BIN)/pytest -s tests/cluster/test_autoscaling_under_load.py $(PYTEST_ARGS)

cluster-up: venv binaries ## start the local control plane with the mixed GPU fleet
	$(PY) -m e2e.cluster up

cluster-down: venv ## stop it, leaving no process behind
	$(PY) -m e2e.cluster down

demo: venv binaries ## the demo on the local control plane
	$(PY) -m e2e.demo

gpu-bench: ## on a GPU machine: build bf16/fp8/int8/int4 with qmo-builder and compare (docs/builder.md)
	OUT=$${OUT:-results} bash e2e/gpu/run_on_h100.sh

gpu-quality: ## on a GPU machine: variants scored by lm-eval and judged by the gate (e2e/gpu/results/h200-quality)
	OUT=$${OUT:-results} bash e2e/gpu/run_quality_on_h200.sh

clean: ## remove the venv and caches (not the ~/.cache/qmo binaries)
	rm -rf $(VENV) .qmo .mypy_cache .ruff_cache .pytest_cache
