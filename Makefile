# The project's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV ?= dev
export PATH := $(HOME)/.local/bin:$(PATH)
PY := .venv/bin/python

.PHONY: help setup up down status test lint typecheck pytest

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## Install redis-server (if root) and the Python environment
	@scripts/setup.sh

up: setup ## Start the local Redis for ENV=dev (one node) or ENV=prod (3x2 cluster)
	@$(PY) -m courseredis.local up --env $(ENV)

down: setup ## Stop the local Redis and remove its data
	@$(PY) -m courseredis.local down

status: setup ## Show the local Redis and its health
	@$(PY) -m courseredis.local status

lint: setup ## ruff: lint and format check
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

typecheck: setup ## mypy, strict
	@.venv/bin/mypy

pytest: setup ## The test suite only (real redis-server processes, started by the fixtures)
	@$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest ## Everything CI checks: lint, types, tests
