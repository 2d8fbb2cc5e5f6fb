"""The data format of a node's files, which engine reads which, and the refused downgrade.

Each engine on this machine really writes its files here (an AOF whose base has an RDB
preamble, and dump.rdb) and the other engine is really started on them, through the local
stack's own `start_nodes` and `relaunch_nodes`.

What redis-server 7.0.15 itself does with Valkey 8.0.1's files, without the refusal (tried
by hand on Debian 12): with the AOF base rewritten by Valkey it exits at load,

    # Reading RDB base file on AOF loading...
    # Can't handle RDB format version 11
    # Error reading the RDB base file appendonly.aof.2.base.rdb, AOF loading aborted
    # Unrecoverable error reading the append only file appendonly.aof.2.base.rdb: ...

and while the AOF base is still the one Redis 7.0 wrote, it starts from the AOF, ignores
the RDB 11 dump.rdb beside it and overwrites that with its own at shutdown: Valkey's
snapshot is gone without a word. Hence a refusal that looks at every file, before the
process runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from courseredis.engines import ENGINES, PINNED, Engine, LocalEngine, local_engine
from courseredis.environments import RedisTopology
from courseredis.local import LocalStack, start_nodes, stop_stack
from courseredis.local.data_format import (
    AOF_DIRECTORY,
    DataFormatError,
    aof_base_files,
    check_readable,
    data_files,
    rdb_header,
    reader,
    reads,
)
from courseredis.local.nodes import (
    NodeProcess,
    node_client,
    node_directory,
    relaunch_nodes,
    shutdown_nodes,
    stop_pids,
)
from courseredis.waiting import wait_until


def _topology(persistence: str = "aof") -> RedisTopology:
    return RedisTopology.model_validate(
        {
            "mode": "standalone",
            "masters": 1,
            "replicas_per_master": 0,
            "persistence": persistence,
            "maxmemory": "64mb",
            "cluster_node_timeout_ms": 2000,
        }
    )


def _engine(name: Engine) -> LocalEngine:
    return local_engine(name, PINNED[name])


DATASET = {f"upgrade:string:{i}": f"value-{i}" for i in range(50)}
TTL_S = 3600


def _write(stack: LocalStack) -> None:
    """Keys of every kind in the AOF base (a rewrite) and after it (the incr file)."""
    with node_client(stack.nodes[0], stack.username, stack.password) as client:
        for i, (key, value) in enumerate(DATASET.items()):
            client.set(key, value, ex=TTL_S if i % 2 else None)
        client.hset("upgrade:hash", mapping={"a": "1", "b": "2"})
        client.rpush("upgrade:list", "x", "y")
        client.zadd("upgrade:zset", {"m": 1.5})
        client.xadd("upgrade:stream", {"f": "v"}, id="1-1")
        client.bgrewriteaof()
        wait_until(
            lambda: (
                client.info("persistence")["aof_rewrite_in_progress"] == 0
                and client.info("persistence")["aof_rewrite_scheduled"] == 0
            ),
            timeout_s=10,
            what="the AOF rewrite",
        )
        client.set("upgrade:after-rewrite", "incr", ex=TTL_S)
        client.sadd("upgrade:set", "s")


def _assert_has_the_dataset(addr: str, stack: LocalStack) -> None:
    with node_client(addr, stack.username, stack.password) as client:
        assert client.mget(list(DATASET)) == list(DATASET.values())
        for i, key in enumerate(DATASET):
            ttl = client.ttl(key)
            assert (0 < ttl <= TTL_S) if i % 2 else ttl == -1, (key, ttl)
        assert client.hgetall("upgrade:hash") == {"a": "1", "b": "2"}
        assert client.lrange("upgrade:list", 0, -1) == ["x", "y"]
        assert client.zscore("upgrade:zset", "m") == 1.5
        assert client.xrange("upgrade:stream") == [("1-1", {"f": "v"})]
        assert client.get("upgrade:after-rewrite") == "incr"
        assert client.smembers("upgrade:set") == {"s"}


@contextmanager
def _written_by(engine: LocalEngine, data_dir: Path) -> Iterator[LocalStack]:
    """A node of `engine` writes the dataset, then stops saving (SHUTDOWN SAVE)."""
    stack = start_nodes(_topology(), data_dir, env="test", redis_server=engine.binary)
    try:
        _write(stack)
    finally:
        stop_stack(stack, save=True)
    yield stack


@contextmanager
def _relaunched(
    stack: LocalStack, engine: LocalEngine, persistence: str = "aof"
) -> Iterator[NodeProcess]:
    node = NodeProcess(0, node_directory(stack.data_dir, 0), stack.ports[0], None)
    assert stack.password is not None
    relaunch_nodes(_topology(persistence), [node], password=stack.password, binary=engine.binary)
    try:
        yield node
    finally:
        accepted = shutdown_nodes([node.addr], stack.username, stack.password)
        stop_pids([(node.running_pid, node.port)], expect_exit=accepted)


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_here_writes_the_newest_format_the_table_says_it_reads(
    name: Engine, tmp_path: Path
) -> None:
    """READERS against the binaries: what a release writes is its highest readable format,
    in dump.rdb and in the AOF's base alike."""
    engine = _engine(name)
    with _written_by(engine, tmp_path) as stack:
        files = data_files(node_directory(stack.data_dir, 0))
    assert {f.path.name for f in files} == {"dump.rdb", "appendonly.aof.2.base.rdb"}
    assert {f.version for f in files} == {reader(engine.name, engine.version).highest}


def test_valkey_reads_the_aof_and_the_rdb_redis_wrote(tmp_path: Path) -> None:
    """The upgrade's premise: valkey-server started on Redis's directory has every key, with
    its value and TTL, from the AOF (base and incr) and, AOF off, from dump.rdb.

    Where this machine's Redis writes a format its Valkey does not read (Debian 13: Redis
    8.0 writes RDB 12, Valkey 8.1 reads up to 11), the start is refused instead."""
    redis, valkey = _engine("redis"), _engine("valkey")
    with _written_by(redis, tmp_path / "redis") as stack:
        directory = node_directory(stack.data_dir, 0)
        written = reader("redis", redis.version).highest
        if not reads("valkey", valkey.version, written):
            node = NodeProcess(0, directory, stack.ports[0], None)
            with pytest.raises(DataFormatError, match=f"RDB format {written}"):
                relaunch_nodes(_topology(), [node], password="-", binary=valkey.binary)
            return
        # The RDB alone, as Redis left it (Valkey's shutdown below rewrites dump.rdb).
        rdb_only = replace(stack, data_dir=tmp_path / "rdb-only")
        shutil.copytree(stack.data_dir, rdb_only.data_dir)
        shutil.rmtree(node_directory(rdb_only.data_dir, 0) / AOF_DIRECTORY)
        with _relaunched(stack, valkey) as node:
            _assert_has_the_dataset(node.addr, stack)
            log = node.logfile.read_text()
        assert f"Loading RDB produced by Redis version {redis.version}" in log
        assert "DB loaded from append only file" in log
        with _relaunched(rdb_only, valkey, persistence="none") as node:
            _assert_has_the_dataset(node.addr, rdb_only)
            assert "DB loaded from disk" in node.logfile.read_text()


def test_starting_redis_on_valkeys_newer_format_is_refused_before_it_runs(
    tmp_path: Path,
) -> None:
    """Valkey writes; redis-server on that directory is refused with the file, its format,
    the engine and release, and the newest format that release reads; no process starts.
    (Where this machine's Redis reads Valkey's format, Debian 13, it starts and has the
    data: no refusal is due.)"""
    redis, valkey = _engine("redis"), _engine("valkey")
    with _written_by(valkey, tmp_path) as stack:
        directory = node_directory(stack.data_dir, 0)
        written = reader("valkey", valkey.version).highest
        log_before = (directory / "redis.log").read_text()
        if reads("redis", redis.version, written):
            with _relaunched(stack, redis) as node:
                _assert_has_the_dataset(node.addr, stack)
            return
        node = NodeProcess(0, directory, stack.ports[0], None)
        assert stack.password is not None
        with pytest.raises(DataFormatError) as refused:
            relaunch_nodes(_topology(), [node], password=stack.password, binary=redis.binary)
    message = str(refused.value)
    assert f"redis {redis.version}" in message
    assert f"RDB format {written}" in message
    assert f"up to {reader('redis', redis.version).highest}" in message
    assert str(directory / "dump.rdb") in message or "base.rdb" in message
    assert node.pid is None
    assert (directory / "redis.log").read_text() == log_before  # no server ever ran


def test_the_table_knows_the_formats_of_both_projects() -> None:
    assert reader("redis", "7.0.15").highest == 10
    assert reads("redis", "7.2.4", 11) and not reads("redis", "7.2.4", 12)
    assert reads("redis", "8.0.2", 12) and not reads("redis", "8.0.2", 80)
    assert reads("valkey", "8.1.1", 11) and not reads("valkey", "8.1.1", 12)
    # Valkey 9 moved to 80 and leaves Redis's formats after the split alone.
    assert reads("valkey", "9.0.0", 80) and not reads("valkey", "9.0.0", 12)
    assert not reads("valkey", "9.1.4", 81) and reads("valkey", "9.2.0", 81)
    with pytest.raises(DataFormatError, match="predates"):
        reader("redis", "6.2.14")


def test_valkey_9_headers_and_quoted_manifest_names_are_read(tmp_path: Path) -> None:
    aof = tmp_path / AOF_DIRECTORY
    aof.mkdir()
    (aof / "my base.rdb").write_bytes(b"VALKEY080\xfa")
    (aof / "appendonly.aof.manifest").write_text(
        'file "my base.rdb" seq 3 type b\nfile appendonly.aof.3.incr.aof seq 3 type i\n'
    )
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0012\xfa")
    assert aof_base_files(tmp_path) == [aof / "my base.rdb"]
    assert [(f.magic, f.version) for f in data_files(tmp_path)] == [
        ("REDIS", 12),
        ("VALKEY", 80),
    ]
    with pytest.raises(DataFormatError, match=r"RDB 12-79 are Redis formats it refuses"):
        check_readable(tmp_path, "valkey", "9.1.4")
    assert rdb_header(tmp_path / "missing.rdb") is None
