# Vigil: `make demo` and `make test` work on a fresh Debian machine as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEB_PKGS := prometheus prometheus-alertmanager prometheus-node-exporter victoria-metrics
DEB_BINS := prometheus promtool prometheus-alertmanager prometheus-node-exporter victoria-metrics

.PHONY: test demo setup debs lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Install the Debian packages the integration tests and benchmarks run, when missing.
debs:
	@missing=0; for b in $(DEB_BINS); do command -v $$b >/dev/null 2>&1 || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing Debian packages: $(DEB_PKGS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PKGS) >/dev/null; \
	fi

setup: $(VENV)/.installed debs

lint: setup
	$(VENV)/bin/ruff check detector remediator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ingest.py

demo:
	@echo "make demo is not available yet: it arrives with the deploy/ issue (#7)."
	@echo "Today: 'make test' runs the suite; 'make bench' measures ingestion;"
	@echo "'.venv/bin/vigil-detector serve' receives Prometheus remote-write on 127.0.0.1:9420."
	@exit 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
