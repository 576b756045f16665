# Launchdeck: `make dev` runs the whole platform locally, `make test` runs every check and test.
# Both work on a fresh machine with only python3 (and git): uv is installed from PyPI when missing
# and the locked environment is synced first.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv on PATH, else the copy pip installs for $(PYTHON) (the uv wheel runs as `python3 -m uv`).
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen

.PHONY: help ensure-uv ensure-bwrap ensure-chromium sync dev cli test test-containers images base-image lint format \
	schema bench clean clean-state

help:
	@echo "make dev          start Postgres, NATS, Caddy and the four services; deploy the example"
	@echo "make cli ARGS=... the launchdeck CLI, like ./launchdeck (e.g. ARGS='projects list')"
	@echo "make test         lint, type-check, check the layering and JSON Schemas, run the tests"
	@echo "make images       build the four service images with podman or docker (deploy/docker/)"
	@echo "make test-containers  the tests that need a container engine (images, compose, Dockerfile apps)"
	@echo "make lint         ruff check, ruff format --check, mypy, lint-imports (layering)"
	@echo "make format       ruff format and the safe ruff fixes"
	@echo "make schema       regenerate contracts/schema/ from the message Structs"
	@echo "make bench        run every bench/*.py"
	@echo "make clean        remove caches and build outputs"
	@echo "make clean-state  remove the dev state (.launchdeck/: database, releases, tokens)"

ensure-uv:
	@$(UV) --version >/dev/null 2>&1 || { \
	  echo "uv not found: installing it from PyPI"; \
	  $(PYTHON) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m ensurepip --user; \
	  $(PYTHON) -m pip install --quiet --user uv \
	    || $(PYTHON) -m pip install --quiet uv \
	    || $(PYTHON) -m pip install --quiet --user --break-system-packages uv; \
	}
	@$(UV) --version

# Builds run in bubblewrap (docs/operations.md): installed with apt-get when missing and we are
# root; otherwise one line says builds will run unsandboxed (the tests of the sandbox then fail).
ensure-bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "bubblewrap not found: installing it with apt-get (builds run sandboxed in it)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; } \
	      || echo "WARNING: could not install bubblewrap: builds will run WITHOUT a sandbox"; \
	  else \
	    echo "WARNING: bubblewrap (bwrap) is not installed: builds will run WITHOUT a sandbox;" \
	      "install it (e.g. sudo apt-get install bubblewrap; see docs/operations.md)"; \
	  fi; \
	}

# The dashboard's browser tests (tests/dashboard) drive Debian's Chromium through Playwright
# (Playwright's own browser download is not used): installed with apt-get when missing and we
# are root; otherwise one line says how (those tests then fail, unless
# LAUNCHDECK_SKIP_BROWSER_TESTS=1 opts out on a developer's machine).
ensure-chromium:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "chromium not found: installing it with apt-get (the dashboard's browser tests)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
	      || echo "WARNING: could not install chromium: the dashboard's browser tests will fail"; \
	  else \
	    echo "WARNING: chromium is not installed: the dashboard's browser tests will fail;" \
	      "install it (e.g. sudo apt-get install chromium) or set LAUNCHDECK_SKIP_BROWSER_TESTS=1"; \
	  fi; \
	}

sync: ensure-uv ensure-bwrap
	$(UV) sync --frozen

dev: sync
	$(RUN) launchdeck dev

# ./launchdeck at the repository root does the same without make, from any directory.
cli: sync
	$(RUN) launchdeck $(ARGS)

test: sync ensure-chromium
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports
	$(RUN) python -m launchdeck.contracts.schema --check
	$(RUN) pytest

# The local base image (Debian from debootstrap), for machines without a registry; elsewhere
# `make images BASE_IMAGE=python:3.11-slim` (the default) pulls the official one.
base-image:
	@deploy/images/make-base.sh

images:
	@deploy/images/build.sh

test-containers: sync
	$(RUN) pytest -m containers

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

format: sync
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

schema: sync
	$(RUN) python -m launchdeck.contracts.schema

bench: sync
	@for script in bench/[a-z]*.py; do \
	  name=$$(basename "$$script" .py); \
	  echo "== bench/$$name"; \
	  $(RUN) python -m "bench.$$name"; \
	done

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache dist build bench/results
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

clean-state:
	rm -rf .launchdeck
