"""Scenario 1, short: a master killed under load; an acknowledged logout survives it.

How a write is acknowledged is specified in tests/patterns/test_replica_ack.py."""

from __future__ import annotations

from pathlib import Path

from courseredis.ops.chaos import failover
from tests.chaos.support import assert_passed


def test_a_master_killed_under_load(tmp_path: Path) -> None:
    result = failover.run(tmp_path / "failover", failover.FailoverOptions.short())
    assert_passed(result)
    figures = result.figures
    assert figures["http_500"] == 0
    assert figures["revocations_lost"] == 0
    # Without the acknowledgement, revocations the master took after losing its replica
    # are gone with it; the acknowledged ones were never acknowledged.
    assert figures["unacked_revocations_lost"].split("/")[0] != "0"
    assert figures["acked_probe"] != "acknowledged"
