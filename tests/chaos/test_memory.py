"""Scenario 4, short: a small maxmemory filled by cache entries."""

from __future__ import annotations

from pathlib import Path

from courseredis.ops.chaos import memory
from tests.chaos.support import assert_passed


def test_a_full_redis_keeps_security_data_and_refuses_cleanly(tmp_path: Path) -> None:
    result = memory.run(tmp_path / "memory", memory.MemoryOptions.short())
    assert_passed(result)
    assert result.figures["evicted_keys"] == 0
