# The two set-up commands of the README. Both install what they need into .venv by themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TESTCONTAINERS_RYUK_DISABLED ?= true
export TC_HOST ?= 127.0.0.1

SCENARIO ?= toxics/production-chaos.yml

.PHONY: lab test lint env clean nightly

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# The main job: a real fault-injection run that ends in a report.
lab: $(STAMP)
	$(BIN)/lab run $(SCENARIO)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lab images --gateway haproxy --gateway nginx  # built here, not under a test's time limit
	$(BIN)/pytest -m "not battle"

# The nightly job, exactly as .github/workflows/nightly.yml runs it (NIGHTLY_SELECT=smoke: a part of it).
nightly: $(STAMP)
	$(BIN)/python .ci/nightly.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
