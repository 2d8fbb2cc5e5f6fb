"""Helpers shared by the tests: settings and clients for a local stack, key-schema
assertions, a Redis that is out of memory."""

from __future__ import annotations

import contextlib
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from courseredis import keys
from courseredis.engines import PINNED, Engine, engine_override, local_engine
from courseredis.local import LocalStack
from courseredis.settings import RedisSettings
from courseredis.topology import split_addr
from courseredis.waiting import wait_until


def run_engine() -> Engine:
    """The engine this test run's servers are: `COURSEREDIS_ENGINE` (the Makefile's second
    run, on Valkey), else the stack files' Redis."""
    return engine_override() or "redis"


def server_binary() -> str:
    """The server binary of `run_engine()` on this machine, for tests that start a bare one."""
    engine = run_engine()
    return local_engine(engine, PINNED[engine]).binary


def wait_for_ping(
    client: redis.Redis,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    timeout_s: float = 10,
) -> None:
    """Until a server just started answers PING; at once an error with its log if its
    process exited instead (waiting longer would only hide why)."""

    def answered() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text() if log else ''}")
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    wait_until(answered, timeout_s=timeout_s, what="the server to answer PING")


def settings_for(stack: LocalStack) -> RedisSettings:
    return RedisSettings.for_nodes(
        stack.nodes,
        cluster=stack.mode == "cluster",
        username=stack.username,
        password=stack.password,
    )


def assert_follows_schema(client: Any, key: str, *, max_ttl: timedelta | None = None) -> int:
    """The key exists, matches its pattern and type, and has a TTL within its rule.

    Returns the TTL in ms for further checks.
    """
    match = keys.classify(key)
    assert match is not None, f"{key} is outside the key schema"
    redis_type = client.type(key)
    assert redis_type in match.pattern.redis_types, f"{key} is a {redis_type}"
    ttl_ms = client.pttl(key)
    assert ttl_ms > 0, f"{key} has no TTL ({ttl_ms})"
    limit = max_ttl or match.pattern.ttl.max
    assert limit is not None
    assert ttl_ms <= limit / timedelta(milliseconds=1), f"{key} TTL {ttl_ms} ms > {limit}"
    return int(ttl_ms)


async def assert_follows_schema_async(
    client: Any, key: str, *, max_ttl: timedelta | None = None
) -> int:
    match = keys.classify(key)
    assert match is not None, f"{key} is outside the key schema"
    redis_type = await client.type(key)
    assert redis_type in match.pattern.redis_types, f"{key} is a {redis_type}"
    ttl_ms = await client.pttl(key)
    assert ttl_ms > 0, f"{key} has no TTL ({ttl_ms})"
    limit = max_ttl or match.pattern.ttl.max
    assert limit is not None
    assert ttl_ms <= limit / timedelta(milliseconds=1), f"{key} TTL {ttl_ms} ms > {limit}"
    return int(ttl_ms)


@contextlib.contextmanager
def memory_full(client):
    """Every node refuses writes (OOM), as a Redis at its `maxmemory` with `noeviction`."""
    everywhere = {"target_nodes": "all"} if hasattr(client, "get_nodes") else {}

    def config(name):
        reply = client.config_get(name, **everywhere)
        return next(iter(reply.values()))[name] if everywhere else reply[name]

    saved = {name: config(name) for name in ("maxmemory", "maxmemory-policy")}
    client.config_set("maxmemory-policy", "noeviction", **everywhere)
    client.config_set("maxmemory", 1, **everywhere)
    try:
        yield
    finally:
        for name, value in saved.items():
            client.config_set(name, value, **everywhere)


def flush_scripts(client: Any) -> None:
    """Every node forgets its scripts, as after a restart or a failover to a replica."""
    everywhere = {"target_nodes": "all"} if hasattr(client, "get_nodes") else {}
    client.execute_command("SCRIPT", "FLUSH", **everywhere)


def node(stack: LocalStack, index: int) -> redis.Redis:
    """A client of one node of the stack as its admin, failing at once (no retries)."""
    host, port = split_addr(stack.nodes[index])
    return redis.Redis(
        host=host,
        port=port,
        username=stack.username,
        password=stack.password,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )
