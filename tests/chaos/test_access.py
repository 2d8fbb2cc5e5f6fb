"""Scenario 6: every service user is refused everything outside its part of the schema."""

from __future__ import annotations

from pathlib import Path

from courseredis.ops.chaos import access
from tests.chaos.support import assert_passed


def test_each_service_is_refused_outside_its_part(tmp_path: Path) -> None:
    result = access.run(tmp_path / "access", access.AccessOptions.short())
    assert_passed(result)
    assert result.figures["silently_allowed"] == 0
    assert result.figures["refused_as_expected"] > 1000
