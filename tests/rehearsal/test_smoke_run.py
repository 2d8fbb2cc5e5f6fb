"""The exported smokeCommand, understood and run as a container on the rehearsal's network.

No podman: the command's parsing, the container's `podman run` and the step's figures from
a JUnit file. The rehearsal itself runs it for real (`test_rehearse.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from courseredis.environments import load_environment
from courseredis.rehearsal import kubectl
from courseredis.rehearsal.podman import LABEL
from courseredis.rehearsal.smoke import (
    Network,
    SmokeCommandError,
    junit_figures,
    network_of,
    parse_smoke_command,
    run_args,
)
from infra import values
from infra.settings import StackSettings


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_programs_own_smoke_command_is_understood(env):
    settings = StackSettings.from_config(env, load_environment(env).config)
    variables = parse_smoke_command(values.smoke_command(settings))
    assert variables["SMOKE_REDIS_USERNAME"] == "admin"
    assert variables["SMOKE_REDIS_PASSWORD_SECRET"].startswith(f"{settings.namespace}/")
    assert variables["SMOKE_HOSTS"].startswith("kubectl://redis-0?namespace=")
    assert set(variables) >= {"SMOKE_GATEWAY_URL", "SMOKE_REDIS_NODES", "SMOKE_HOSTS"}


def test_quoting_is_undone_as_a_shell_would():
    variables = parse_smoke_command("A='x y' B=\"a&b\" C= make smoke")
    assert variables == {"A": "x y", "B": "a&b", "C": ""}


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("SMOKE_ENV=prod make smoke SMOKE_ARGS=-x", "make smoke SMOKE_ARGS=-x"),
        ("SMOKE_ENV=prod python -m smoke", "python -m smoke"),
        ("SMOKE_ENV=prod make smoke; rm -rf /", "rm -rf"),
        ("SMOKE_ENV=prod", "''"),
        ("", "''"),
        ("SMOKE_ENV='unterminated make smoke", "not shell words"),
    ],
)
def test_anything_but_variables_then_make_smoke_is_refused_naming_it(command, why):
    with pytest.raises(SmokeCommandError, match="smokeCommand") as raised:
        parse_smoke_command(command)
    assert why in str(raised.value)


def test_the_container_is_on_the_rehearsals_network_with_its_resolver_and_label(tmp_path):
    status = {
        "network": "crh-abc123-net",
        "dns": "10.200.0.10",
        "search": ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"],
    }
    network = network_of(status, "10.200.0.77")
    assert network == Network(
        "crh-abc123-net", "10.200.0.77", "10.200.0.10", tuple(status["search"])
    )
    args = run_args(
        "IMAGE", "abc123", network, ["SMOKE_B", "SMOKE_A"], tmp_path / "kubectl",
        tmp_path / "requests", tmp_path / "reports",
    )  # fmt: skip
    line = " ".join(args)
    assert args[0] == "run" and "--rm" in args
    assert f"--label {LABEL}=abc123" in line  # down and the sweep find it
    assert "--network crh-abc123-net --ip 10.200.0.77 --dns 10.200.0.10" in line
    assert "--dns-option ndots:5" in line
    assert line.count("--dns-search") == 3
    assert f"{tmp_path / 'kubectl'}:/usr/local/bin/kubectl:ro" in args
    assert f"{tmp_path / 'requests'}:{kubectl.CONTAINER_REQUESTS}" in args
    assert f"{kubectl.REQUESTS_ENV}={kubectl.CONTAINER_REQUESTS}" in args
    # The command's variables by name only: their values never reach a command line.
    assert args[args.index("SMOKE_A") - 1 :][:4] == ["--env", "SMOKE_A", "--env", "SMOKE_B"]
    assert args[-2:] == ["IMAGE", "--junitxml=/reports/smoke.xml"]


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="2"
 tests="7" time="3.1">
<testcase classname="smoke.test_keyspace" name="test_no_key_without_a_ttl" time="0.1">
<failure message="planted has no TTL">...</failure></testcase>
<testcase classname="smoke.test_hosts" name="test_config" time="0.1"><error message="x"/></testcase>
<testcase classname="smoke.test_topology" name="test_ok" time="0.1"/>
</testsuite></testsuites>
"""


def test_the_figures_come_from_the_junit_file(tmp_path):
    path = tmp_path / "smoke.xml"
    path.write_text(JUNIT)
    assert junit_figures(path) == {
        "tests_passed": 3,
        "tests_failed": 2,
        "tests_skipped": 2,
        "failed_tests": [
            "smoke.test_keyspace::test_no_key_without_a_ttl",
            "smoke.test_hosts::test_config",
        ],
    }


def test_no_junit_file_says_so(tmp_path: Path):
    figures = junit_figures(tmp_path / "smoke.xml")
    assert figures["junit"] == "missing"
    assert figures["tests_passed"] == 0
