# The two commands in the README (`make demo`, `make test`) must work from a fresh clone
# on a machine with only Python >= 3.11: each target creates .venv and installs itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_ARGS ?=  # e.g. make demo DEMO_ARGS=--no-dashboard

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/regime-engine demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/kernels.py --json
	$(PY) benchmarks/deribit_ingest.py --json
	$(PY) benchmarks/pipeline.py --json
	$(PY) benchmarks/snapshot.py --json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
