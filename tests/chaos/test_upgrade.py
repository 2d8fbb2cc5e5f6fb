"""Scenario 7, short: the prod cluster rolled from Redis onto Valkey under load, data intact.

How the data format is read and a downgrade refused is specified in
tests/local/test_data_format.py."""

from __future__ import annotations

from pathlib import Path

from courseredis.engines import PINNED, local_engine
from courseredis.local.data_format import reader, reads
from courseredis.ops.chaos import upgrade
from tests.chaos.support import assert_passed


def test_the_cluster_rolls_from_redis_onto_valkey_under_load(tmp_path: Path) -> None:
    """Where this machine's Valkey cannot read what its Redis writes (Debian 13: Redis 8.0
    writes RDB 12, Valkey 8.1 reads up to 11) the upgrade is refused before a node stops."""
    redis, valkey = local_engine("redis", PINNED["redis"]), local_engine("valkey", PINNED["valkey"])
    result = upgrade.run(tmp_path / "upgrade", upgrade.UpgradeOptions.short())
    if not reads("valkey", valkey.version, reader("redis", redis.version).highest):
        assert result.error is not None and "refusing to start valkey" in result.error
        return
    assert_passed(result)
    figures = result.figures
    assert figures["versions_before"] == f"redis {redis.version} x6"
    assert figures["versions_after"] == f"valkey {valkey.version} x6"
    assert figures["dataset_intact"] == f"{figures['dataset_keys']}/{figures['dataset_keys']}"
    assert figures["loaded_old_files"] == "6/6"
    assert figures["loaded_produced_by"] == [
        f"Loading RDB produced by Redis version {redis.version}"
    ]
    # One Valkey on the machine: the hop across a minor version is named, not skipped.
    assert figures["hops_not_done"] and figures["hops_not_done"][0].startswith("valkey ")
    assert figures["downgrade_refused"] is True
    assert figures["downgrade_message"].startswith(f"refusing to start redis {redis.version}")
