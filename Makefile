# Sensorhub developer commands. `make run` and `make test` install whatever is missing first,
# so either works as the very first command on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APP_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' app/__init__.py)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed
# The lock is uv.lock, resolved by uv from pyproject.toml's ranges, and the hashed pip
# requirement files exported from it: requirements/runtime.txt (what the image runs),
# requirements/build.txt (pip and the build backend) and requirements/dev.txt (all of it plus
# the dev extra; what .venv holds).
#
# `make lock` writes an export only when it changed, so a no-op does not rebuild the venv.
export_lock = $(BIN)/uv export --quiet --frozen --no-emit-project $(2) > $(1).new \
	&& if cmp -s $(1).new $(1); then rm $(1).new; else mv $(1).new $(1) && echo "updated $(1)"; fi

.PHONY: help install run test test-all lint fmt bench clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP) system-deps node_modules/.installed console  ## install the locked Python packages, redis-server and the Firebase emulator

# A new or changed lock rebuilds the venv from scratch, so it holds exactly the locked set:
# pip checks every file against the lock's hashes, and the project goes in without deps.
$(STAMP): requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Sensorhub needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)
	@# ensurepip's setuptools (Python 3.11) is not in the lock; nothing here needs it.
	$(BIN)/python -m pip uninstall --quiet --quiet --yes setuptools
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

.PHONY: system-deps
system-deps:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (apt)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null || { \
		echo "installing chromium for the browser tests (apt)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@command -v npm >/dev/null || { \
		echo "installing Node.js and npm (apt)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

CONSOLE_SOURCES := $(shell find console -type f 2>/dev/null)

.PHONY: console
console: app/console/static/index.html  ## build the web console (Vite) into app/console/static; prints its size

app/console/static/index.html: $(CONSOLE_SOURCES) package-lock.json node_modules/.installed
	npm run --silent console-check
	npm run --silent console

run: install  ## start MongoDB (embedded), Redis, Firebase emulator, SMTP sink, API, worker and beat
	@bash scripts/dev.sh

# The suite runs in TEST_WORKERS pytest-xdist processes, each with servers of its own;
# tests/fixtures/distribution.py says which tests stay together and puts the longest first
# (so xdist's own reordering is off). One per core: three were up to ~10% faster on 2 cores,
# but kept both cores saturated, which slowed a second API process towards tests/security's
# 100 ms revocation bound. `make test TEST_WORKERS=0` runs the suite in one process.
TEST_WORKERS ?= 2
PYTEST_XDIST := --numprocesses $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# app/ is byte-compiled first, as pip does for the installed packages: the suite starts ~30
# Python processes that import it (API servers, Celery workers, CLIs), and where
# PYTHONDONTWRITEBYTECODE is set each of them would compile it again.
test: install  ## run the test suite against real servers started on free ports
	$(BIN)/python -m compileall -q app
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

.PHONY: fuzz client-check
fuzz: install  ## the API contract test (tests/contract) with many more examples per operation
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_SCENARIOS=$${FUZZ_SCENARIOS:-25} \
		$(BIN)/python -m pytest $(PYTEST_XDIST) tests/contract $(PYTEST_ARGS)

client-check: $(STAMP) node_modules/.installed  ## generate the TypeScript client from the OpenAPI document and type-check a usage file
	PYTHONPATH=. $(BIN)/python scripts/openapi.py clients/typescript-check/openapi.json
	npm run --silent client-check

test-all: install  ## the suite plus the slow tests (-m slow: large data sets)
	$(BIN)/python -m pytest $(PYTEST_XDIST) -m "slow or not slow" $(PYTEST_ARGS)

.PHONY: corpus
corpus: install  ## run the suite and add its new MongoDB command shapes to tests/compat/corpus.json
	SENSORHUB_UPDATE_CORPUS=1 $(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint + format check, mypy --strict, import layers (.importlinter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)  ## format the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: lock upgrade
lock: $(STAMP)  ## update uv.lock and requirements/*.txt after editing pyproject.toml (pins kept)
	$(BIN)/uv lock $(UV_LOCK_ARGS)
	@$(call export_lock,requirements/runtime.txt,--no-default-groups)
	@$(call export_lock,requirements/dev.txt,--extra dev --group build)
	@$(call export_lock,requirements/build.txt,--only-group build)

upgrade: UV_LOCK_ARGS := --upgrade
upgrade: lock  ## re-lock with the newest versions pyproject.toml allows; then make test and make audit

.PHONY: audit
audit: $(STAMP)  ## pip-audit and npm audit on the locks; accepted advisories: audit-allowlist.toml
	$(BIN)/python scripts/audit.py

.PHONY: image
image:  ## build the Docker image, labelled with the app version and the lock's hash
	docker build -t sensorhub:$(APP_VERSION) -t sensorhub:latest \
		--build-arg APP_VERSION=$(APP_VERSION) \
		--build-arg LOCK_SHA256=$$(sha256sum requirements/runtime.txt | cut -d' ' -f1) .

clean:  ## remove the virtualenv, node_modules and local data
	rm -rf $(VENV) node_modules data .pytest_cache .mypy_cache .ruff_cache
