# The README's two commands: `make demo` and `make test`. Each creates .venv and installs the
# pinned dependencies when they are missing or changed; Python 3.11 and Java 17 are assumed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo airflow test test-unit test-integration test-k8s lint check-prereqs clean bench schema validate screenshots

check-prereqs:
	@$(PYTHON) -c 'import sys; v=sys.version_info; sys.exit(0 if v[:2]==(3,11) else "need Python 3.11 (found %d.%d): install it or run make PYTHON=/path/to/python3.11" % v[:2])'
	@command -v java >/dev/null || { echo "need Java 17 (java not found): install openjdk-17-jre-headless"; exit 1; }
	@java -version 2>&1 | grep -Eq 'version "(1[1-9]|2[0-9])' || { echo "need Java 11-17 for H2O 3.46 (found: $$(java -version 2>&1 | head -1))"; exit 1; }

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml | check-prereqs
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Optional: the DAGs in a local Airflow deployment (UI, scheduler, DAG processor, triggerer on PostgreSQL) with
# the local S3 and HiveServer2; prints the URL and login; Ctrl-C stops it all. AIRFLOW_ARGS="--port 0" for any port.
airflow: $(STAMP)
	$(BIN)/python scripts/airflow.py $(AIRFLOW_ARGS)

# Benchmarks against the baselines, same run (not part of `make test`); BENCH_ARGS="--quick" for a short run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The pipeline file's JSON Schema and the README's table of fields, from the parser's declarations.
schema: $(STAMP)
	$(BIN)/python -m h2o_tasks schema --out dags/pipelines/pipeline.schema.json
	$(BIN)/python scripts/readme_fields.py

# Every problem of every pipeline file, H2O's parameter checks included (what the pre-commit hook runs).
validate: $(STAMP)
	$(BIN)/python -m h2o_tasks validate dags/pipelines

lint: $(STAMP)
	$(BIN)/ruff check .

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

test-k8s: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -q

# The README's screenshots of the Airflow UI (docs/ui-*.png, small PNGs), taken again by its browser tests.
screenshots: $(STAMP)
	H2O_AIRFLOW_SCREENSHOTS=$(CURDIR)/docs $(BIN)/python -m pytest tests/integration/test_ui_browser.py -q

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf .state .pytest_cache .ruff_cache
