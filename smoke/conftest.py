"""The smoke suite's options and shared fixtures.

Every option is also an environment variable (`smoke/target.py` lists them; `pytest smoke
--help` shows them under "smoke"). Checks that cannot run with what was given (no service
passwords, no testinfra host, no student account) are skipped with a reason that says
what was not checked and what to give; they never pass silently. In a deployed run a
skipped flow or key check also fails the run, naming it, unless `--allow-skips`
(`smoke/gate.py`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from courseredis.connection import SyncClient, create_client
from courseredis.environments import RedisTopology
from courseredis.ops.audit import AuditError, AuditReport, Credentials, audit_keyspace
from smoke import gate
from smoke.clients import node_client, redis_settings
from smoke.flows import FlowRecord, Scenario
from smoke.target import OPTIONS, Target, TargetError, resolve

_TARGET = pytest.StashKey[Target]()
_FLOWS = pytest.StashKey[FlowRecord]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smoke", "post-deploy smoke suite (each option also an env variable)")
    for option in OPTIONS:
        group.addoption(
            option.flag,
            dest=f"smoke_{option.dest}",
            default=None,
            help=f"{option.help} [env {option.env}]",
        )
    group.addoption(
        gate.ALLOW_SKIPS_FLAG,
        action="store_true",
        dest="smoke_allow_skips",
        default=False,
        help="accept a run whose flow or key checks were skipped (they are still named); "
        "without it a deployed run, or a local one with a student account, fails when any "
        "was skipped [no env variable: an opt-out shows on the command line]",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.option.help or getattr(config.option, "version", False):
        return

    def value_of(dest: str) -> str | None:
        value = config.getoption(f"smoke_{dest}")
        if dest == "smoke_hosts" and not value:
            value = config.getoption("hosts", default=None)  # testinfra's own --hosts
        return str(value) if value is not None else None

    try:
        target = resolve(value_of, cwd=Path.cwd(), environ=os.environ)
    except TargetError as exc:
        raise pytest.UsageError(f"smoke: {exc}") from None
    config.stash[_TARGET] = target
    config.pluginmanager.register(
        gate.Gate(target, allowed=bool(config.getoption("smoke_allow_skips"))), "smoke-gate"
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = config.stash.get(_TARGET, None)
    return target.describe() if target else []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    record = terminalreporter.config.stash.get(_FLOWS, None)
    if record is None:
        return
    terminalreporter.section("smoke flows")
    steps = ", ".join(f"{s} {d:.2f}s" for s, d in record.durations.items())
    terminalreporter.write_line(f"steps: {steps}")
    terminalreporter.write_line(
        f"student {record.student.username} (user {record.user_id}), course "
        f"{record.course_id}, client IP {record.client_ip} ({record.client_ip_how}), "
        f"{record.burst_sent} requests to reach the 429"
    )
    for note in record.notes:
        terminalreporter.write_line(note)
    for step, reason in record.failed.items():
        terminalreporter.write_line(f"FAILED step {step}: {reason}")


def target_of(config: pytest.Config) -> Target:
    return config.stash[_TARGET]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`infra_host` runs once per testinfra host (none given: one skipped case)."""
    if "infra_host" in metafunc.fixturenames:
        hosts: list[str | None] = [*target_of(metafunc.config).hosts] or [None]
        metafunc.parametrize(
            "infra_host", hosts, ids=[h or "no-host" for h in hosts], scope="session"
        )


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    return target_of(request.config)


@pytest.fixture(scope="session")
def topology(target: Target) -> RedisTopology:
    return target.env.redis


@pytest.fixture(scope="session")
def nodes(target: Target) -> Iterator[dict[str, redis.Redis]]:
    """Every given node, as the admin (address -> client)."""
    clients = {addr: node_client(addr, target) for addr in target.nodes}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="session")
def keyspace(target: Target) -> Iterator[SyncClient]:
    """The keyspace as the admin: a cluster client on a cluster, else the node."""
    client = create_client(
        redis_settings(target, target.redis_admin.username, target.redis_admin.password)
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def masters(nodes: dict[str, redis.Redis]) -> list[redis.Redis]:
    """The given nodes that are masters."""
    return [c for c in nodes.values() if c.info("replication").get("role") == "master"]


@pytest.fixture(scope="session")
def flows(
    target: Target,
    keyspace: SyncClient,
    masters: list[redis.Redis],
    request: pytest.FixtureRequest,
) -> Iterator[FlowRecord]:
    """The scenario, run once: what it did and what it left in Redis. Taken back at the end."""
    if target.gateway_url is None:
        pytest.skip(
            "gateway flows not run: no gateway URL (--gateway-url / SMOKE_GATEWAY_URL); the "
            "key pattern and TTL checks of the flows were NOT done"
        )
    if target.student is None:
        pytest.skip(
            "gateway flows not run: no student account (SMOKE_STUDENT_USERNAME and "
            "SMOKE_STUDENT_PASSWORD, or SMOKE_STUDENT_SECRET=<namespace>/<secret>); the key "
            "pattern and TTL checks of the flows were NOT done"
        )
    scenario = Scenario(target, keyspace, lambda: masters)
    try:
        record = scenario.run()
        request.config.stash[_FLOWS] = record
        yield record
    finally:
        problems = scenario.cleanup()
        scenario.close()
        if problems:
            raise AssertionError("could not delete the smoke run's keys: " + "; ".join(problems))


@pytest.fixture(scope="session")
def audit(target: Target, request: pytest.FixtureRequest) -> AuditReport:
    """The keyspace audit, run after the flows (when they run) while their keys are there."""
    # No flows, or failed flows (their tests say so): the audit runs all the same.
    with contextlib.suppress(pytest.skip.Exception, Exception):
        request.getfixturevalue("flows")
    try:
        return audit_keyspace(
            target.nodes,
            Credentials(
                target.redis_admin.username,
                target.redis_admin.password,
                tls=target.tls_ca_file is not None,
                tls_ca_file=target.tls_ca_file,
            ),
        )
    except AuditError as exc:
        raise AssertionError(f"the keyspace audit could not run: {exc}") from None
