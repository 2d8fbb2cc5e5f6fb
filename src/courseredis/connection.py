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
from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.policies import (
    AsyncPolicyResolver,
    AsyncStaticPolicyResolver,
    PolicyResolver,
    StaticPolicyResolver,
)
from redis.connection import HiredisRespSerializer
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)
from redis.retry import Retry
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from courseredis.settings import RedisSettings
from courseredis.topology import split_addr

SyncClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"
AsyncClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"

_RETRIED = (ConnectionError, TimeoutError, ClusterDownError)

# Redis could not do it: down, failing over (a stale connection to a demoted master, slots
# without a master), or out of memory for a write. Each pattern then follows its failure
# policy (a rate limit open or closed, the cache reading the database). Any other error
# (NOPERM from a wrong ACL, a script error) is a fault, to raise: never ridden out quietly.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    *_RETRIED,
    TryAgainError,
    ReadOnlyError,
    OutOfMemoryError,
)

# The commands the patterns send on their keys (one key each, or one script's keys). The
# cluster clients route any command they know no policy for by its key; but to learn that
# it has a key, they work out its slot once, then again to route it. Declaring these keyed
# up front skips the first: one slot computation per call instead of two.
_KEYED_COMMANDS = frozenset(("get", "set", "del", "exists", "hgetall", "evalsha", "eval"))
_KEYED = CommandPolicies(
    request_policy=RequestPolicy.DEFAULT_KEYED, response_policy=ResponsePolicy.DEFAULT_KEYED
)


class _AsyncConnection(redis.asyncio.Connection):
    """An asyncio connection that packs commands with hiredis, in C, as the sync ones do.

    redis-py's asyncio connections pack in Python, about 0.6 µs an argument: a lock's
    7-argument SET took 6 µs to pack, 2 µs in C. With many tasks on one event loop, the
    client's CPU is what bounds throughput.
    """

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        packed: list[bytes] = self._packer.pack(*args)  # type: ignore[arg-type]
        return packed


def _pack_with_hiredis(cluster: redis.asyncio.cluster.RedisCluster) -> None:
    """Give the asyncio cluster client's nodes `_AsyncConnection`s (it takes no class).

    Its nodes open connections lazily, so at construction none exists yet: the startup
    nodes and the ones it discovers later all build theirs from these settings. TLS
    connections (another class) are left as they are.
    """
    manager = cluster.nodes_manager
    if manager.connection_kwargs.get("connection_class") is not redis.asyncio.Connection:
        return
    manager.connection_kwargs["connection_class"] = _AsyncConnection
    for node in manager.startup_nodes.values():
        node.connection_class = _AsyncConnection


# Where the key of each of those commands sits, when it has one key: the cluster clients
# otherwise find it through their generic command parser, on every call.
_KEY_FIRST = frozenset(("GET", "SET", "DEL", "EXISTS", "HGETALL"))
_SCRIPTS = frozenset(("EVALSHA", "EVAL"))


def _known_slot(keyslot: Any, command: object, args: tuple[Any, ...]) -> int | None:
    """The slot of a one-key command of the patterns' (`args` after the name); None for
    any other command, which the cluster client routes its own way."""
    if command in _KEY_FIRST:
        if len(args) == 1 or (command == "SET" and len(args) > 1):
            slot: int = keyslot(args[0])
            return slot
    elif command in _SCRIPTS and len(args) > 2 and args[1] == 1:
        slot = keyslot(args[2])
        return slot
    return None


def _no_node_usable(error: RedisClusterException) -> ConnectionError:
    return ConnectionError(f"no Redis cluster node is usable: {error}")


class _RedisCluster(redis.cluster.RedisCluster):
    """The sync cluster client, routing the patterns' one-key commands without parsing,
    whose (re)reading of the cluster's layout fails as a `ConnectionError`.

    redis-py re-reads the layout after a connection error; when no node answers, that
    raises `RedisClusterException`, which is not a `RedisError`: no outage policy of the
    patterns would see it (the asyncio client has the same guard, `_AsyncRedisCluster`).
    Commands and pipelines share the nodes manager, so guarding its `initialize` covers both.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except RedisClusterException as error:
            raise _no_node_usable(error) from error
        initialize = self.nodes_manager.initialize

        def guarded(*args: Any, **kwargs: Any) -> None:
            try:
                initialize(*args, **kwargs)
            except RedisClusterException as error:
                raise _no_node_usable(error) from error

        self.nodes_manager.initialize = guarded  # type: ignore[method-assign]

    def determine_slot(self, *args: Any) -> int | None:
        slot = _known_slot(self.keyslot, args[0], args[1:])
        if slot is None:
            slot = super().determine_slot(*args)
        return slot


class _KeyedPolicies(StaticPolicyResolver):
    def resolve(self, command_name: str) -> CommandPolicies | None:
        if command_name in _KEYED_COMMANDS:
            return _KEYED
        return super().resolve(command_name)

    def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
        return _KeyedPolicies(fallback)


class _AsyncKeyedPolicies(AsyncStaticPolicyResolver):
    async def resolve(self, command_name: str) -> CommandPolicies | None:
        if command_name in _KEYED_COMMANDS:
            return _KEYED
        return await super().resolve(command_name)

    def with_fallback(self, fallback: AsyncPolicyResolver) -> AsyncPolicyResolver:
        return _AsyncKeyedPolicies(fallback)


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
    return [split_addr(node) for node in settings.cluster_nodes]


def _remap(settings: RedisSettings) -> dict[str, Any]:
    """The cluster clients' `address_remap` when the settings map announced names to IPs.

    redis-py applies it where it reads the layout (`NodesManager.initialize`, which both
    overrides here pass on to), so every node it learns is reached at its IP. A MOVED or ASK
    names the announced host and is not remapped by redis-py: that connection fails, which
    counts as a connection error, and the retry re-reads the layout, remapped."""
    if not settings.address_map:
        return {}
    names = dict(settings.address_map)

    def remap(address: tuple[str, int]) -> tuple[str, int]:
        host, port = address
        return names.get(host, host), port

    return {"address_remap": remap}


def create_client(settings: RedisSettings | None = None) -> SyncClient:
    """A sync client for the node or cluster the settings name (from the environment if None)."""
    settings = settings or RedisSettings()
    retry = Retry(_backoff(settings), settings.retries, supported_errors=_RETRIED)
    if settings.is_cluster:
        return _RedisCluster(
            startup_nodes=[
                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in _nodes(settings)
            ],
            retry=retry,
            max_connections=settings.max_connections,
            policy_resolver=_KeyedPolicies(),
            **_remap(settings),
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
    """The asyncio cluster client, whose (re)initialization fails as a `ConnectionError`,
    and which routes the patterns' one-key commands without parsing them.

    redis-py re-reads the cluster's layout after a connection error, before its next
    attempt; when no node answers, that raises `RedisClusterException` ("Redis Cluster
    cannot be connected"), outside its retry loop and outside `RedisError`.
    """

    async def _determine_slot(self, command: str, *args: Any) -> int:
        slot = _known_slot(self.keyslot, command, args)
        if slot is None:
            slot = await super()._determine_slot(command, *args)
        return slot

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
            raise _no_node_usable(error) from error


def create_async_client(settings: RedisSettings | None = None) -> AsyncClient:
    """An asyncio client for the node or cluster the settings name."""
    settings = settings or RedisSettings()
    retry = redis.asyncio.retry.Retry(
        _backoff(settings), settings.retries, supported_errors=_RETRIED
    )
    if settings.is_cluster:
        cluster = _AsyncRedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in _nodes(settings)],
            retry=retry,
            max_connections=settings.max_connections,
            policy_resolver=_AsyncKeyedPolicies(),
            **_remap(settings),
            **_common(settings),
        )
        if HIREDIS_AVAILABLE:
            _pack_with_hiredis(cluster)
        return cluster
    assert settings.url is not None
    options = _common(settings)
    if HIREDIS_AVAILABLE and not settings.tls and settings.url.startswith("redis://"):
        options["connection_class"] = _AsyncConnection
    return redis.asyncio.Redis.from_url(
        settings.url,
        retry=retry,
        retry_on_error=list(_RETRIED),
        max_connections=settings.max_connections,
        **options,
    )


async def open_async_client(settings: RedisSettings | None = None) -> AsyncClient:
    """An asyncio client, initialized: the slot table is loaded before any task uses it."""
    client = create_async_client(settings)
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()
    return client
