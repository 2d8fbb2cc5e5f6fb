"""Scenario 5, short: hostile input through the gateway, then the keyspace audit.

The scenario runs once; each property is its own test. "No 5xx" is a plain test: the two
malformed requests the gateway once answered 500 are fixed (docs/chaos.md), so a 5xx now
is a regression.
"""

from __future__ import annotations

import pytest

from courseredis.ops.chaos import hostile
from courseredis.ops.chaos.report import ScenarioResult


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> ScenarioResult:
    workdir = tmp_path_factory.mktemp("hostile") / "run"
    return hostile.run(workdir, hostile.HostileOptions.short())


def _check(result: ScenarioResult, name: str) -> None:
    assert result.error is None, result.error
    found = [c for c in result.checks if c.name == name]
    assert found, f"no check {name!r}: {[c.name for c in result.checks]}"
    assert found[0].ok, found[0].detail


def test_the_scenario_ran(hostile_run: ScenarioResult) -> None:
    assert hostile_run.error is None, hostile_run.error
    assert hostile_run.figures["inputs_tried"] > 300


def test_no_forged_or_dead_token_is_accepted(hostile_run: ScenarioResult) -> None:
    _check(hostile_run, "no forged or dead token accepted")
    assert hostile_run.figures["jwt_accepted"] == 0


def test_the_token_lifecycle_holds(hostile_run: ScenarioResult) -> None:
    _check(hostile_run, "token lifecycle rules hold at every step")


def test_bad_logins_from_one_address_are_limited(hostile_run: ScenarioResult) -> None:
    _check(hostile_run, "bad logins from one address are rate limited")


def test_no_key_outside_the_schema(hostile_run: ScenarioResult) -> None:
    _check(hostile_run, "no key outside the schema")
    _check(hostile_run, "the audit finds no violation")
    assert hostile_run.figures["keys_scanned"] > 0


def test_the_services_stay_up(hostile_run: ScenarioResult) -> None:
    _check(hostile_run, "services stay up")


def test_no_input_gets_a_5xx(hostile_run: ScenarioResult) -> None:
    _check(hostile_run, "no 5xx for any input")
