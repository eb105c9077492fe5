# The two set-up commands of the README. Both install what they need into .venv by themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TESTCONTAINERS_RYUK_DISABLED ?= true
export TC_HOST ?= 127.0.0.1

SCENARIO ?= toxics/production-chaos.yml

.PHONY: lab test lint env clean nightly browser

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# The main job: a real fault-injection run that ends in a report.
lab: $(STAMP)
	$(BIN)/lab run $(SCENARIO)

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lab images --gateway haproxy --gateway nginx  # built here, not under a test's time limit
	$(BIN)/pytest -m "not battle"

# The Faults tab's browser test drives Debian's chromium through its chromium-driver (no browser download):
# installed here when absent and we are root (as CI is), else the test says what to install and skips.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "note: the browser test needs: sudo apt-get install chromium chromium-driver"; fi

# The nightly job, exactly as .github/workflows/nightly.yml runs it (NIGHTLY_SELECT=smoke: a part of it).
nightly: $(STAMP)
	$(BIN)/python .ci/nightly.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
