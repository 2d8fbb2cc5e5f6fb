"""The smoke suite as a post-deploy gate (`smoke/gate.py`): a deployed run with a skipped flow
or key check exits non-zero naming each one and why; `--allow-skips` accepts it; a full
target passes. Run on the local `dev` stack, given as a deployed target is (SMOKE_*
variables, no stack.json), and unit by unit on the plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from courseredis.services.db.prepare import SMOKE_USERNAME
from smoke import gate
from smoke.target import Target, resolve
from tests.smoke.support import LocalStacks, clean_env, run_smoke
from tests.smoke.test_target import STACK, no_options, write_stack

FLOW_CHECKS = [
    "test_login_writes_a_session_and_a_refresh_family",
    "test_course_read_is_cached_for_at_most_5_minutes",
    "test_enrollment_event_is_consumed_once_with_a_24h_marker",
    "test_every_key_the_flows_wrote_follows_the_schema",
]


@pytest.fixture(scope="module")
def dev(local_stacks: LocalStacks) -> tuple[Path, dict[str, Any]]:
    return local_stacks.get("dev")


def deployed(document: dict[str, Any]) -> dict[str, str]:
    """The local stack named as a deployed one is: SMOKE_* variables, no student account."""
    redis = document["redis"]
    return {
        "SMOKE_ENV": document["env"],
        "SMOKE_GATEWAY_URL": document["services"]["gateway"],
        "SMOKE_REDIS_NODES": ",".join(redis["nodes"]),
        "SMOKE_REDIS_USERNAME": redis["username"],
        "SMOKE_REDIS_PASSWORD": redis["password"],
    }


def gate_section(output: str) -> str:
    """The "smoke gate" section of the summary."""
    start = output.index(" smoke gate ")
    end = output.index("\n=", start + 1)
    return output[start:end]


def test_a_deployed_run_without_a_student_fails_naming_each_skipped_check(dev):
    _, document = dev
    run = run_smoke(None, variables=deployed(document))
    assert run.returncode == 1, run.output
    assert not run.failed(), run.output  # no check failed: the skips alone fail the run
    section = gate_section(run.output)
    assert "FAILED: 10 flow and key check(s) skipped in a deployed target" in section
    assert "no student account (SMOKE_STUDENT_USERNAME" in section
    for check in FLOW_CHECKS:
        assert f"smoke/test_keys.py::{check}" in section, section
    # Skips that are not flow or key checks are pytest's usual report, not the gate's.
    assert "host checks NOT run" in run.output and "host checks" not in section
    assert "smoke gate FAILED: 10 flow and key check(s) skipped" in run.output.splitlines()[-1]


def test_allow_skips_accepts_the_same_run_and_still_names_the_skips(dev):
    _, document = dev
    run = run_smoke(None, "--allow-skips", variables=deployed(document))
    assert run.returncode == 0, run.output
    section = gate_section(run.output)
    assert "10 flow and key check(s) skipped in a deployed target" in section
    assert "accepted by --allow-skips" in section
    for check in FLOW_CHECKS:
        assert f"smoke/test_keys.py::{check}" in section, section


def test_a_full_deployed_target_passes_the_gate(dev, tmp_path):
    _, document = dev
    redis = document["redis"]
    users = tmp_path / "users.json"
    users.write_text(json.dumps(redis["users"]))
    # Not the first demo student: test_smoke_dev's first run must be the one that enrolls
    # its student (it checks what that first run leaves), whatever order the files run in.
    student = document["demo"]["students"][1]
    admin = document["demo"]["admin"]
    variables = {
        **deployed(document),
        "SMOKE_STUDENT_USERNAME": student["username"],
        "SMOKE_STUDENT_PASSWORD": student["password"],
        "SMOKE_APP_ADMIN_USERNAME": admin["username"],
        "SMOKE_APP_ADMIN_PASSWORD": admin["password"],
        "SMOKE_SERVICE_USERS": str(users),
        "SMOKE_HOSTS": "local://",
    }
    run = run_smoke(None, variables=variables)
    assert run.returncode == 0, run.output
    assert "smoke: a deployed" not in run.output
    section = gate_section(run.output)
    assert "every flow and key check ran (a deployed target" in section, section
    assert "smoke gate FAILED" not in run.output


def test_the_smoke_student_alone_passes_the_gate_in_the_smoke_course(dev, tmp_path):
    """Issue 14: what a rollout gives the smoke run, and nothing more. `prepare` (the init
    containers' command) adds the smoke student and the smoke course to the stack's
    database; with that student and no app admin, every flow and key check runs: the
    student reads its own enrollment back, in the smoke course, not in a real one."""
    _, document = dev
    password = "a-generated-smoke-password"
    prepared = subprocess.run(
        [sys.executable, "-m", "courseredis.services.db", "prepare"],
        env={
            **clean_env(),
            "DATABASE_URL": document["database"],
            "SMOKE_ACCOUNT_USERNAME": SMOKE_USERNAME,
            "SMOKE_ACCOUNT_PASSWORD": password,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert prepared.returncode == 0, prepared.stderr
    said = re.search(r"smoke course (\d+)", prepared.stderr)
    assert said is not None, prepared.stderr
    course_id = int(said.group(1))
    redis = document["redis"]
    users = tmp_path / "users.json"
    users.write_text(json.dumps(redis["users"]))
    variables = {
        **deployed(document),
        "SMOKE_STUDENT_USERNAME": SMOKE_USERNAME,
        "SMOKE_STUDENT_PASSWORD": password,
        "SMOKE_SERVICE_USERS": str(users),
        "SMOKE_HOSTS": "local://",
    }
    run = run_smoke(None, variables=variables)
    assert run.returncode == 0, run.output
    assert "app admin: not given" in run.output
    assert f"course {course_id} is the smoke course" in run.output
    assert "no app admin account: the student read its enrollment back" in run.output
    # Exit 0 and no skip: test_the_enrollment_is_read_back ran, and passed.
    assert "every flow and key check ran (a deployed target" in gate_section(run.output)


def test_a_local_stack_without_a_student_account_does_not_gate(dev, tmp_path):
    _, document = dev
    bare = {k: v for k, v in document.items() if k != "demo"}
    copy = tmp_path / "stack.json"
    copy.write_text(json.dumps(bare))
    run = run_smoke(copy)
    assert run.returncode == 0, run.output
    section = gate_section(run.output)
    assert "not a gate here: the local stack without a student account" in section
    assert "smoke/test_keys.py::test_login_writes_a_session_and_a_refresh_family" in section


# --- the plugin, unit by unit --------------------------------------------------------------


def a_target(tmp_path: Path, **given: str) -> Target:
    """A deployed dev target (nothing is contacted), with the options `given`."""
    values = {
        "env": "dev",
        "gateway_url": "http://gateway.example:8000",
        "redis_nodes": "redis.course-redis-dev.svc.cluster.local:6379",
        "redis_password": "pw",
        **given,
    }
    return resolve(values.get, cwd=tmp_path, environ={})


def skipped(nodeid: str, reason: str, properties: list[tuple[str, object]]) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=nodeid,
        location=(nodeid.split("::")[0], 1, nodeid),
        keywords={},
        outcome="skipped",
        longrepr=(nodeid.split("::")[0], 1, f"Skipped: {reason}"),
        when="setup",
        user_properties=properties,
    )


class FakeSession:
    class config:  # noqa: N801 - stands in for session.config
        class pluginmanager:  # noqa: N801
            @staticmethod
            def get_plugin(name: str) -> None:
                return None

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.exitstatus: int = pytest.ExitCode.OK


class FakeItem:
    def __init__(self, nodeid: str, fixturenames: tuple[str, ...] = ()) -> None:
        self.nodeid = nodeid
        self.fixturenames = fixturenames


def finish(plugin: gate.Gate, session: FakeSession) -> None:
    hook: Generator[None, object, object] = plugin.pytest_sessionfinish(session)  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration):
        hook.send(None)


KEYS = "smoke/test_keys.py::test_login_writes_a_session_and_a_refresh_family"
MARKER = "smoke/test_keys.py::test_enrollment_event_is_consumed_once_with_a_24h_marker"
HOSTS = "smoke/test_hosts.py::test_redis_server_runs[no-host]"
STATE: list[tuple[str, object]] = [(gate.STATE_PROPERTY, gate.STATE_VALUE)]


def test_flow_and_key_checks_are_their_modules_and_the_users_of_their_fixtures():
    assert gate.is_flow_or_key_check(KEYS, ())
    assert gate.is_flow_or_key_check("smoke/test_keyspace.py::test_no_key_without_a_ttl", ())
    assert gate.is_flow_or_key_check("smoke/test_new.py::test_x", ("target", "flows"))
    assert gate.is_flow_or_key_check("smoke/test_new.py::test_y", ("audit",))
    assert not gate.is_flow_or_key_check(HOSTS, ("infra_host", "target"))
    assert not gate.is_flow_or_key_check("smoke/test_access.py::test_x[auth]", ("target",))


def test_who_gates(tmp_path):
    gates, why = gate.applies(a_target(tmp_path))
    assert gates and "deployed" in why  # deployed, no student account: it gates
    with_student = write_stack(tmp_path / "full", STACK)
    local = resolve(no_options, cwd=with_student.parents[1], environ={})
    assert local.local and local.student is not None
    assert gate.applies(local) == (True, "the local stack, with a student account")
    bare = write_stack(tmp_path / "bare", {k: v for k, v in STACK.items() if k != "demo"})
    local = resolve(no_options, cwd=bare.parents[1], environ={})
    assert local.local and local.student is None
    gates, why = gate.applies(local)
    assert not gates and "without a student account" in why


def test_a_skipped_flow_check_fails_a_deployed_run_and_is_named(tmp_path):
    plugin = gate.Gate(a_target(tmp_path), allowed=False)
    session = FakeSession([FakeItem(KEYS), FakeItem(HOSTS, ("infra_host",))])
    plugin.pytest_collection_finish(session)  # type: ignore[arg-type]
    plugin.pytest_runtest_logreport(skipped(KEYS, "no student account", []))
    plugin.pytest_runtest_logreport(skipped(HOSTS, "no testinfra host", []))  # not gated
    finish(plugin, session)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    assert plugin.lines[0].startswith("FAILED: 1 flow and key check(s) skipped")
    assert plugin.lines[1:] == ["  skipped: no student account", f"    - {KEYS}"]


def test_allow_skips_keeps_the_exit_status_and_the_names(tmp_path):
    plugin = gate.Gate(a_target(tmp_path), allowed=True)
    session = FakeSession([FakeItem(KEYS)])
    plugin.pytest_collection_finish(session)  # type: ignore[arg-type]
    plugin.pytest_runtest_logreport(skipped(KEYS, "no student account", []))
    finish(plugin, session)
    assert session.exitstatus == pytest.ExitCode.OK
    assert "accepted by --allow-skips" in plugin.lines[0] and f"    - {KEYS}" in plugin.lines


def test_a_skip_for_the_environments_state_is_named_but_never_gates(tmp_path):
    plugin = gate.Gate(a_target(tmp_path), allowed=False)
    session = FakeSession([FakeItem(MARKER)])
    plugin.pytest_collection_finish(session)  # type: ignore[arg-type]
    plugin.pytest_runtest_logreport(skipped(MARKER, "the marker has expired", STATE))
    finish(plugin, session)
    assert session.exitstatus == pytest.ExitCode.OK
    assert "skipped for the environment's state" in plugin.lines[0]
    assert f"    - {MARKER}" in plugin.lines


def test_an_already_failed_run_keeps_its_status_and_no_selected_check_is_said(tmp_path):
    plugin = gate.Gate(a_target(tmp_path), allowed=False)
    session = FakeSession([FakeItem(KEYS)])
    session.exitstatus = pytest.ExitCode.INTERRUPTED
    plugin.pytest_collection_finish(session)  # type: ignore[arg-type]
    plugin.pytest_runtest_logreport(skipped(KEYS, "no student account", []))
    finish(plugin, session)
    assert session.exitstatus == pytest.ExitCode.INTERRUPTED

    deselected = gate.Gate(a_target(tmp_path), allowed=False)
    session = FakeSession([FakeItem(HOSTS, ("infra_host",))])  # say `-k hosts`
    deselected.pytest_collection_finish(session)  # type: ignore[arg-type]
    finish(deselected, session)
    assert session.exitstatus == pytest.ExitCode.OK
    assert deselected.lines == ["no flow or key check selected"]
