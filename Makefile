# The two commands in the README (`make demo`, `make test`) must work from a fresh clone
# on a machine with only Python >= 3.11: each target creates .venv and installs itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_ARGS ?=  # e.g. make demo DEMO_ARGS=--no-dashboard

.PHONY: demo test bench lint clean kafka-jars

# Apache Kafka's broker jars from Maven Central (deploy/kafka-jars/pom.xml), kept outside the
# repo between runs; without java or mvn the Apache Kafka tests skip (reason `apache-kafka:`).
KAFKA_VERSION := 4.1.2
KAFKA_JARS := $(HOME)/.cache/regime-engine/kafka-$(KAFKA_VERSION)

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

kafka-jars:
	@if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then \
		echo "kafka-jars: java or mvn not found: the Apache Kafka tests will skip"; \
	elif [ ! -f "$(KAFKA_JARS)/kafka_2.13-$(KAFKA_VERSION).jar" ]; then \
		rm -rf "$(KAFKA_JARS).tmp" && \
		mvn -q -B -f deploy/kafka-jars/pom.xml dependency:copy-dependencies \
			-DincludeScope=runtime -DoutputDirectory="$(KAFKA_JARS).tmp" && \
		mv "$(KAFKA_JARS).tmp" "$(KAFKA_JARS)" || \
		echo "kafka-jars: mvn failed: the Apache Kafka tests will skip"; \
	fi

test: lint kafka-jars
	$(PY) -m pytest -q

bench: $(STAMP) kafka-jars
	$(PY) benchmarks/kernels.py --json
	$(PY) benchmarks/deribit_ingest.py --json
	$(PY) benchmarks/pipeline.py --json
	$(PY) benchmarks/failover.py --json
	$(PY) benchmarks/snapshot.py --json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
