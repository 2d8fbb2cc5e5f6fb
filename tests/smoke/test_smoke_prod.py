"""The smoke suite against a local `prod` stack (a 3x2 cluster): it passes, again and again
without leaving data behind, and each planted violation makes it fail naming the key or the
ACL user."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from courseredis.connection import SyncClient
from tests.smoke.support import (
    LocalStacks,
    SmokeRun,
    admin,
    every_node,
    keyspace,
    run_smoke,
)

SESSION = "session:0b5e55ed-0000-4000-8000-00000000beef"


@pytest.fixture(scope="module")
def prod(local_stacks: LocalStacks) -> tuple[Path, dict[str, Any]]:
    return local_stacks.get("prod")


@pytest.fixture(scope="module")
def first_run(prod) -> tuple[SmokeRun, dict[str, tuple[str, int | None]]]:
    """The first smoke run on the stack, and the keyspace it left."""
    stack_json, document = prod
    run = run_smoke(stack_json)
    return run, keyspace(document)


def test_passes_within_a_minute(first_run):
    run, _ = first_run
    assert run.returncode == 0, run.output
    assert run.seconds < 60, f"the smoke run took {run.seconds:.1f} s"
    assert "env prod (cluster, 6 node(s))" in run.output
    assert "placement not applicable" in run.output  # said, not silently passed


def _course_without_ttl(client: SyncClient, document: dict[str, Any]) -> Callable[[], object]:
    client.set("course:777777", '{"id": 777777}')
    return lambda: client.delete("course:777777")


def _key_outside_the_schema(client: SyncClient, document: dict[str, Any]) -> Callable[[], object]:
    client.set("planted:outside", "x")  # as a new user would: a key of no pattern, no TTL
    return lambda: client.delete("planted:outside")


def _session_with_a_wrong_ttl(client: SyncClient, document: dict[str, Any]) -> Callable[[], object]:
    client.hset(SESSION, mapping={"user_id": "1", "roles": "student"})
    client.expire(SESSION, 48 * 3600)
    return lambda: client.delete(SESSION)


def _flushall_granted(client: SyncClient, document: dict[str, Any]) -> Callable[[], object]:
    nodes = every_node(document)
    for node in nodes:
        node.execute_command("ACL", "SETUSER", "courses", "+flushall")

    def undo() -> None:
        for node in nodes:
            node.execute_command("ACL", "SETUSER", "courses", "-flushall")
            node.close()

    return undo


@pytest.mark.parametrize(
    ("plant", "failing", "named"),
    [
        (
            _course_without_ttl,
            {"test_no_key_without_a_ttl"},
            ["course:777777 (course_cache)", "has no TTL"],
        ),
        (
            _key_outside_the_schema,
            {"test_no_key_outside_the_schema", "test_no_key_without_a_ttl"},
            ["planted:outside", "outside the key schema"],
        ),
        (
            _session_with_a_wrong_ttl,
            {"test_no_ttl_above_its_rule"},
            [f"{SESSION} (session)", "is above the rule's 24 h"],
        ),
        (
            _flushall_granted,
            {"test_dangerous_commands_are_denied_to_service_user[courses]"},
            ["ACL user 'courses' may run dangerous commands: FLUSHALL"],
        ),
    ],
    ids=["course-key-without-ttl", "key-outside-schema", "session-wrong-ttl", "flushall-granted"],
)
def test_a_planted_violation_fails_the_suite_naming_it(prod, first_run, plant, failing, named):
    """Each run after the first is one more smoke run on the same stack: once the violation
    is taken back, the keyspace is the first run's again (no test data accumulates)."""
    stack_json, document = prod
    client = admin(document)
    undo = plant(client, document)
    try:
        run = run_smoke(stack_json)
    finally:
        undo()
        client.close()
    assert run.returncode == 1, run.output
    assert run.failed() == failing, f"failed {sorted(run.failed())}:\n{run.output}"
    for text in named:
        assert text in run.output, f"{text!r} not in:\n{run.output}"
    assert "already enrolled" in run.output  # one enrollment per student and course, ever
    assert keyspace(document) == first_run[1]
