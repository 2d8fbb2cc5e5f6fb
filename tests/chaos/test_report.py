"""The summary and the table `make chaos` prints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from courseredis.ops.chaos import runner
from courseredis.ops.chaos.report import ScenarioResult, summary_document, table, write_summary


def _result(ok: bool) -> ScenarioResult:
    result = ScenarioResult("x", "X scenario", figures={"a": 1.234, "b": True}, headline=("a", "b"))
    result.check("holds", ok, "" if ok else "it did not")
    return result


def test_a_scenario_passes_only_when_every_check_holds() -> None:
    assert _result(True).passed
    assert not _result(False).passed
    assert not ScenarioResult("y", "Y").passed  # no check ran: no pass
    errored = _result(True)
    errored.error = "RuntimeError: boom"
    assert not errored.passed and "error: RuntimeError: boom" in errored.failures()


def test_the_summary_has_one_entry_per_scenario(tmp_path: Path) -> None:
    path = tmp_path / "chaos" / "summary.json"
    write_summary(path, summary_document([_result(True), _result(False)], time.monotonic()))
    document = json.loads(path.read_text())
    assert document["passed"] is False
    assert [s["passed"] for s in document["scenarios"]] == [True, False]
    assert document["scenarios"][0]["figures"] == {"a": 1.234, "b": True}
    assert document["host"]["cpus"]


def test_the_table_shows_the_headline_figures() -> None:
    text = table([_result(True), _result(False)])
    assert "| X scenario | pass | a 1.23, b yes |" in text
    assert "| X scenario | FAIL |" in text


def test_the_runner_knows_every_scenario_once() -> None:
    assert runner.NAMES == (
        "failover",
        "outage",
        "restart",
        "memory",
        "hostile",
        "access",
        "rolling_upgrade",
    )
    with pytest.raises(SystemExit, match="unknown scenarios"):
        runner.main(["--only", "nope"])
