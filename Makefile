# The project's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV ?= dev
export PATH := $(HOME)/.local/bin:$(PATH)
PY := .venv/bin/python

.PHONY: help setup up down status test lint typecheck pytest

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The main job. Without ENV it runs prod (the 3x2 cluster); `make demo ENV=dev` one node.
DEMO_ENV := $(if $(filter command line environment,$(origin ENV)),$(ENV),prod)
.PHONY: demo
demo: setup ## Stack up, smoke, load suites, summary and HTML report, stack down (KEEP=1)
	@$(PY) -m courseredis.demo --env $(DEMO_ENV) $(if $(LOAD_TIME),--load-time "$(LOAD_TIME)") $(if $(KEEP),--keep)

setup: ## Install redis-server, PostgreSQL (if root) and the Python environment
	@scripts/setup.sh

up: setup ## Start the local stack: ENV=dev (one node) or prod (3x2 cluster), + services; ENGINE=valkey
	@$(PY) -m courseredis.local up --env $(ENV) $(if $(ENGINE),--engine $(ENGINE))

down: setup ## Stop the local stack (services and Redis) and remove its data; end a rehearsal
	@$(PY) -m courseredis.local down
	@if [ -e .local/rehearsal/current.json ]; then $(PY) -m courseredis.rehearsal down; fi

status: setup ## Show the local stack and its health
	@$(PY) -m courseredis.local status

# Side-by-side benchmarks with the peers (limits, redis-py Lock, python-redis-lock, pottery)
# on a single node and a 3x2 cluster the run starts itself; writes reports/bench/peers.json.
.PHONY: bench
bench: setup ## Benchmarks vs the peers, node and cluster (BENCH_QUICK=1: seconds)
	@$(PY) -m benchmarks

# Failover, outage, restart, memory, hostile input, access: each on a stack it starts itself
# (about 3 minutes); writes reports/chaos/summary.json. docs/chaos.md explains the figures.
.PHONY: chaos
chaos: setup ## Chaos scenarios on local stacks; reports/chaos/summary.json
	@$(PY) -m courseredis.ops.chaos

# The post-deploy smoke suite: the local stack (.local/stack.json) with no SMOKE_* variable,
# else the deployed one they name (`pulumi stack output smokeCommand`). SMOKE_ARGS go to
# pytest (say --junitxml=reports/smoke.xml, -k access); docs/smoke.md lists the options.
SMOKE_ARGS ?=
AUDIT_ARGS ?=
.PHONY: smoke audit
smoke: setup ## Post-deploy smoke suite (SMOKE_* variables, SMOKE_ARGS=--junitxml=...)
	@$(PY) -m smoke $(SMOKE_ARGS)

audit: setup ## Keyspace audit of the local stack as JSON (AUDIT_ARGS=--match 'course:*')
	@$(PY) -m courseredis.ops.audit $(AUDIT_ARGS)

# The load suites against the local stack (`make up` first); every LOAD_* variable is read by
# loadtests/run.py and the locustfiles (gates: LOAD_MIN_HIT_RATIO, LOAD_MAX_P95_MS, ...).
# Unset, loadtests/run.py uses its own defaults (20s, the three suites).
LOAD_TIME ?=
LOAD_SUITES ?=
LOAD_USERS ?=
.PHONY: load
load: setup ## Run the load suites headless (LOAD_TIME=20s); reports in reports/load/<suite>/
	@$(PY) -m loadtests.run $(if $(LOAD_TIME),--time "$(LOAD_TIME)") $(if $(LOAD_SUITES),--suites "$(LOAD_SUITES)") $(if $(LOAD_USERS),--users $(LOAD_USERS))

lint: setup ## ruff: lint and format check
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

typecheck: setup ## mypy, strict
	@.venv/bin/mypy

pytest: setup ## The test suite only (real redis-server processes, started by the fixtures)
	@$(PY) -m pytest $(PYTEST_ARGS)

# The Redis-facing tests again on the second engine (docs/engines.md): with
# COURSEREDIS_ENGINE=valkey every local stack and bare node they start is valkey-server.
# Patterns, cluster bootstrap/repair/restart, services, smoke, ACL, the rendered configs on
# the real server, and one chaos scenario (failover under load); about 4 minutes.
VALKEY_TESTS := tests/patterns tests/services tests/smoke tests/test_cluster_bootstrap.py \
	tests/test_cluster_repair.py tests/test_cluster_restart.py tests/test_acl.py \
	tests/test_acl_probes.py tests/test_redis_config.py tests/charts/test_redis_conf_on_real_redis.py \
	tests/chaos/test_failover.py tests/test_engines.py
.PHONY: pytest-valkey
pytest-valkey: setup ## The Redis-facing tests on Valkey (COURSEREDIS_ENGINE=valkey)
	@echo "--- the Redis-facing tests on the second engine: valkey ---"
	@COURSEREDIS_ENGINE=valkey $(PY) -m pytest $(VALKEY_TESTS)

test: lint typecheck pytest pytest-valkey ## Everything CI checks: lint, types, tests (both engines)

# The deploy rehearsal: what `pulumi up -s $(ENV)` applies, on podman containers built from
# the Dockerfile (rootful; scripts/setup.sh installs podman). KEEP=1 leaves it running until
# `make down`; reports/rehearsal/<env>/summary.json says what passed and what it cannot honour.
.PHONY: rehearse
rehearse: setup ## Rehearse `pulumi up -s ENV` on podman (KEEP=1 leaves it; make down)
	@$(PY) -m courseredis.rehearsal up --env $(ENV) $(if $(KEEP),--keep) $(if $(IMAGE_FROM),--image-from $(IMAGE_FROM))

# The exported smokeCommand again, from a container on the kept rehearsal's network (the
# Dockerfile's smoke stage, `python -m smoke`); exits with the smoke suite's status.
.PHONY: rehearse-smoke
rehearse-smoke: setup ## The smokeCommand again against the kept rehearsal (make rehearse KEEP=1)
	@$(PY) -m courseredis.rehearsal smoke
