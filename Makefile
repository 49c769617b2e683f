# One command to see it work, one to test everything. Both bootstrap what they
# need (uv via pip, then locked environments) on a machine with Python 3.11.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# The adapters conflict with each other (Airflow and Prefect pin incompatible
# fastapi ranges); uv resolves them in separate forks of one lock.
export UV_PREVIEW_FEATURES := package-conflicts
VENV := .venv
# Bytecode for every process the targets start, kept in one cache outside the source tree.
# Machines that set PYTHONDONTWRITEBYTECODE (this one does) otherwise recompile every module
# MLflow, scikit-learn, pandas or an orchestrator import in every fresh process: the tests
# start hundreds, and importing MLflow, scikit-learn, pandas and GX took 24 s instead of 10.
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.venvs/.pycache
unexport PYTHONDONTWRITEBYTECODE
ADAPTERS := airflow dagster prefect
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: uv
uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.9"

.PHONY: env
env: uv ## Create the core environment (.venv): mlsteps with every backend, lint and docs tools.
	$(UV) sync --locked --group dev

.PHONY: $(addprefix env-,$(ADAPTERS))
$(addprefix env-,$(ADAPTERS)): env-%: uv ## Create an adapter's own environment in .venvs/<adapter>.
	UV_PROJECT_ENVIRONMENT=.venvs/$* $(UV) sync --locked --package mlsteps-$* --all-extras

.PHONY: env-scan
env-scan: uv ## checkov in its own environment (.venvs/scan): it pins packages Airflow and the core outgrew.
	UV_PROJECT_ENVIRONMENT=.venvs/scan $(UV) sync --locked --only-group scan

.PHONY: envs
envs: env env-scan $(addprefix env-,$(ADAPTERS)) ## All environments.

.PHONY: demo
demo: env ## Run the example end to end (embedded SQLite MLflow), serve it, predict once, stop (KEEP_SERVING=1 keeps it).
	$(VENV)/bin/python examples/penguins/prepare_data.py
	$(VENV)/bin/mlsteps run examples/penguins/pipeline.yaml
	$(VENV)/bin/mlsteps lineage --spec examples/penguins/pipeline.yaml --model penguins
	$(VENV)/bin/mlsteps deploy status --spec examples/penguins/pipeline.yaml
	rc=0; $(VENV)/bin/mlsteps deploy predict --spec examples/penguins/pipeline.yaml --input-example || rc=$$?; \
	$(if $(KEEP_SERVING),echo "still serving; stop it with: mlsteps deploy stop --spec examples/penguins/pipeline.yaml",$(VENV)/bin/mlsteps deploy stop --spec examples/penguins/pipeline.yaml --reason "end of make demo"); \
	exit $$rc

.PHONY: lint
lint: envs ## ruff (lint + format check) and mypy (strict) over packages/, each adapter in its own environment.
	$(VENV)/bin/ruff check packages tests examples scripts benchmarks
	$(VENV)/bin/ruff format --check packages tests examples scripts benchmarks
	$(VENV)/bin/mypy packages/mlsteps/src
	for a in $(ADAPTERS); do .venvs/$$a/bin/mypy packages/mlsteps-$$a/src; done

.PHONY: docs
docs: env ## Build the documentation site (strict: warnings are errors).
	$(VENV)/bin/mkdocs build --strict --site-dir site

.PHONY: test-core
test-core: envs ## Core package tests and cross-package tests (unit + integration).
	bash scripts/ensure-services.sh
	$(VENV)/bin/pytest packages/mlsteps/tests tests $(PYTEST_ARGS)

.PHONY: $(addprefix test-,$(ADAPTERS))
$(addprefix test-,$(ADAPTERS)): test-%: env-% ## An adapter's tests in its own environment.
	bash scripts/ensure-services.sh >/dev/null
	.venvs/$*/bin/pytest packages/mlsteps-$*/tests $(PYTEST_ARGS)

# The Prefect work-pool tests scan the rendered Job with checkov (its own env).
test-prefect: env-scan
test-dagster: env-scan

# CI: two streams at once (the machine has 2 CPUs and most tests use one): lint then the core
# and cross-package tests, and the docs build then the adapters' suites and the benchmark smoke.
# Lint and docs run side by side at the start of the streams, not before them, so they do
# not add their minute or two to the whole. Any failure fails `make test`.
.PHONY: test
test: envs ## Everything CI runs.
	bash scripts/ensure-services.sh
	$(MAKE) --no-print-directory -j2 --output-sync=target _test-core _test-rest

# Measured on the 2-CPU CI machine (2026-11-30): core tests about 26 min, lint about 4, the adapter
# suites about 20, the benchmark smoke about 7: lint goes with the core tests to even the streams.
.PHONY: _test-core _test-rest
_test-core: lint
	$(VENV)/bin/pytest packages/mlsteps/tests tests $(PYTEST_ARGS)
_test-rest: docs
	for a in $(ADAPTERS); do .venvs/$$a/bin/pytest packages/mlsteps-$$a/tests $(PYTEST_ARGS) || exit 1; done
	$(MAKE) --no-print-directory _bench-smoke

.PHONY: bench bench-5m bench-drift
bench: envs ## Benchmarks (parse cost, step and adapter overhead, data scale to 1M rows, ZenML, caching) -> benchmarks/results.md; BENCH_QUICK=1 for fewer runs.
	cd benchmarks && ../$(VENV)/bin/python run.py

bench-5m: envs ## Data scale at 5M rows (45 min on 2 CPUs before the per-step change) -> benchmarks/results_5m.md.
	cd benchmarks && BENCH_ROWS=5000000 BENCH_OUT=results_5m.md ../$(VENV)/bin/python run.py scale

bench-drift: envs ## monitor vs Evidently on 1M rows x 50 columns (several minutes) -> benchmarks/drift_results.md.
	cd benchmarks && ../$(VENV)/bin/python drift.py

.PHONY: audit
audit: env-scan ## pip-audit of every locked environment -> audit/*.md (pypi.org's JSON API, or AUDIT_OSV_URL=an OSV service; exit 2 if unreachable).
	UV="$(UV)" $(PYTHON) scripts/audit.py $(if $(AUDIT_OSV_URL),--osv-url $(AUDIT_OSV_URL))

.PHONY: bench-smoke _bench-smoke
bench-smoke: envs _bench-smoke ## Every benchmark at tiny sizes, one run, results thrown away (in `make test`, so they cannot rot).
# BENCHES: which benchmarks (default all, and drift); DRIFT_SMOKE=1 adds drift to a BENCHES list.
BENCHES ?=
DRIFT_SMOKE ?= $(if $(BENCHES),,1)
_bench-smoke:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd benchmarks; \
	BENCH_SMOKE=1 BENCH_OUT="$$tmp/results.md" ../$(VENV)/bin/python run.py $(BENCHES) >/dev/null; \
	if [ -n "$(DRIFT_SMOKE)" ]; then \
	  ../$(VENV)/bin/python drift.py --rows 5000 --data "$$tmp/drift" --out "$$tmp/drift.md" >/dev/null; fi; \
	echo "bench-smoke: ran $(or $(BENCHES),every benchmark)$(if $(DRIFT_SMOKE), and drift)"

.PHONY: clean
clean: ## Remove environments, caches and demo outputs.
	rm -rf $(VENV) .venvs site .pytest_cache .mypy_cache .ruff_cache examples/*/.mlsteps examples/*/data
