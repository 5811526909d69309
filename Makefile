# Sensorhub developer commands. `make run` and `make test` install whatever is missing first,
# so either works as the very first command on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed

.PHONY: help install run test test-all lint fmt bench clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP) system-deps node_modules/.installed  ## install Python packages, redis-server and the Firebase emulator

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Sensorhub needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: system-deps
system-deps:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (apt)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@command -v npm >/dev/null || { \
		echo "installing Node.js and npm (apt)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: install  ## start MongoDB (embedded), Redis, Firebase emulator, SMTP sink, API, worker and beat
	@bash scripts/dev.sh

test: install  ## run the test suite against real servers started on free ports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install  ## the suite plus the slow tests (-m slow: large data sets)
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint + format check, mypy --strict, import layers (.importlinter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)  ## format the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the virtualenv, node_modules and local data
	rm -rf $(VENV) node_modules data .pytest_cache .mypy_cache .ruff_cache
