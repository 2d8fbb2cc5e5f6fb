"""One factory for every Redis client of the project: sync or asyncio, node or cluster.

Retry policy, on purpose:
- connection errors and timeouts are retried with jittered exponential backoff, so a
  failover or a restart is ridden out instead of surfacing as an error at once;
- MOVED and ASK redirections are followed by the cluster client itself (it refreshes its
  slot table on MOVED), and a cluster that is down while a replica is promoted counts as a
  connection error for the retry above;
- a command is retried only when its reply was lost, so its effect is unknown: the
  patterns' writes are safe to repeat (a claim is `SET NX ... GET` and recognises its own
  token; compare-and-set and compare-and-delete run at most once in effect).

The asyncio cluster client must be initialized before concurrent use: redis-py's lazy
initialization races when many tasks send their first command at once (seen here with 200
tasks: connections closed under other tasks). `open_async_client` does it.

A cluster none of whose nodes answers is a `ConnectionError` here, like a single node that
does not answer. redis-py raises `RedisClusterException` then, which is not a `RedisError`:
it slipped past every policy built on `RedisError` (the services' 503, the cache's fall
back to the database) and came out as a 500 while all nodes were down (found by the chaos
scenario `outage`).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    RedisClusterException,
    TimeoutError,
)
from redis.retry import Retry

from courseredis.settings import RedisSettings

SyncClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"
AsyncClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"

_RETRIED = (ConnectionError, TimeoutError, ClusterDownError)


def _common(settings: RedisSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password.get_secret_value() if settings.password else None,
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "decode_responses": True,
        "health_check_interval": 30,
    }
    if settings.tls:
        options["ssl"] = True
        if settings.tls_ca_file:
            options["ssl_ca_certs"] = settings.tls_ca_file
    return options


def _backoff(settings: RedisSettings) -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(
        base=settings.retry_backoff_base_s, cap=settings.retry_backoff_cap_s
    )


def _nodes(settings: RedisSettings) -> list[tuple[str, int]]:
    out = []
    for node in settings.cluster_nodes:
        host, _, port = node.rpartition(":")
        out.append((host, int(port)))
    return out


def create_client(settings: RedisSettings | None = None) -> SyncClient:
    """A sync client for the node or cluster the settings name (from the environment if None)."""
    settings = settings or RedisSettings()
    retry = Retry(_backoff(settings), settings.retries, supported_errors=_RETRIED)
    if settings.is_cluster:
        return redis.cluster.RedisCluster(
            startup_nodes=[
                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in _nodes(settings)
            ],
            retry=retry,
            max_connections=settings.max_connections,
            **_common(settings),
        )
    assert settings.url is not None
    return redis.Redis.from_url(
        settings.url,
        retry=retry,
        retry_on_error=list(_RETRIED),
        max_connections=settings.max_connections,
        **_common(settings),
    )


class _AsyncRedisCluster(redis.asyncio.cluster.RedisCluster):
    """The asyncio cluster client, whose (re)initialization fails as a `ConnectionError`.

    redis-py re-reads the cluster's layout after a connection error, before its next
    attempt; when no node answers, that raises `RedisClusterException` ("Redis Cluster
    cannot be connected"), outside its retry loop and outside `RedisError`.
    """

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> redis.asyncio.cluster.RedisCluster:
        try:
            return await super().initialize(
                additional_startup_nodes_info=additional_startup_nodes_info,
                last_failed_node_name=last_failed_node_name,
            )
        except RedisClusterException as error:
            raise ConnectionError(f"no Redis cluster node is usable: {error}") from error


def create_async_client(settings: RedisSettings | None = None) -> AsyncClient:
    """An asyncio client for the node or cluster the settings name."""
    settings = settings or RedisSettings()
    retry = redis.asyncio.retry.Retry(
        _backoff(settings), settings.retries, supported_errors=_RETRIED
    )
    if settings.is_cluster:
        return _AsyncRedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in _nodes(settings)],
            retry=retry,
            max_connections=settings.max_connections,
            **_common(settings),
        )
    assert settings.url is not None
    return redis.asyncio.Redis.from_url(
        settings.url,
        retry=retry,
        retry_on_error=list(_RETRIED),
        max_connections=settings.max_connections,
        **_common(settings),
    )


async def open_async_client(settings: RedisSettings | None = None) -> AsyncClient:
    """An asyncio client, initialized: the slot table is loaded before any task uses it."""
    client = create_async_client(settings)
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()
    return client
