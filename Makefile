# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test lint typecheck unit bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: venv
	$(BIN)/python -m local.demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv openssl-cli
	$(BIN)/pytest

# tests/test_gateway_differential.py compares the gateway path model with the `openssl verify`
# command: install it on a fresh (Debian/Ubuntu) machine when it is missing.
.PHONY: openssl-cli
openssl-cli:
	@command -v openssl >/dev/null || { \
		echo "openssl command missing: installing it (apt-get install -y openssl)"; \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openssl; }
	@command -v openssl >/dev/null || { echo "ERROR: the openssl command could not be installed" >&2; exit 1; }

test: lint typecheck unit check-infra

# Performance benchmark (not part of `make test`; about 6 minutes): every scenario against
# the emulator with latency L, at MAX_CONCURRENCY and one call at a time; writes bench-results.json.
bench: venv
	$(BIN)/python -m bench.run

# Infrastructure checks (infra/, azure.yaml, scripts/) in a venv of their own: checkov pins many
# packages that must stay out of the app's .venv. checkov runs offline (--skip-download) once per
# network mode and hosting plan, on infra/ rendered with the values main.bicep passes in that
# variant (tests/infra/checkov_variants.py), and fails on any failed check; skips are in-line in
# the Bicep, each with its reason.
INFRA_VENV := .venv-infra
.PHONY: check-infra

$(INFRA_VENV)/.installed: requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $@

check-infra: $(INFRA_VENV)/.installed
	$(INFRA_VENV)/bin/python -m tests.infra.checkov_variants
	$(INFRA_VENV)/bin/python -m pytest -c tests/infra/pytest.ini --rootdir=. --confcutdir=tests/infra

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
