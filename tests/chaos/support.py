"""Running a chaos scenario's short form in a test, with its failures as the message."""

from __future__ import annotations

import json

from courseredis.ops.chaos.report import ScenarioResult


def assert_passed(result: ScenarioResult) -> None:
    details = json.dumps(result.figures, indent=1, default=str)[:4000]
    assert result.passed, "\n".join(result.failures()) + "\nfigures:\n" + details
