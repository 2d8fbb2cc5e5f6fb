"""The redis-py internals that `courseredis.connection` overrides are still as it expects.

Its client classes override or call private parts of redis-py (cluster initialization,
slot routing, command policies, the hiredis packer), which can change in any release.
pyproject.toml pins the range they were written for; when a new redis-py changes one of
them, this fails naming it, before a cluster client misroutes or a failover raises a
`TypeError` in production.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
import redis

from courseredis import connection


def _internal(path: str) -> Any:
    module, _, attributes = path.partition(":")
    found: Any = importlib.import_module(module)
    for name in attributes.split("."):
        found = getattr(found, name)
    return found


def _shape(function: Any) -> str:
    """The parameters (names, kinds, defaults), without annotations: their spelling varies."""
    signature = inspect.signature(function)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


# The internal, the parameters it had when the override was written, and what relies on it.
INTERNALS = [
    (
        "redis.asyncio.cluster:RedisCluster.initialize",
        "(self, additional_startup_nodes_info=None, last_failed_node_name=None)",
        "_AsyncRedisCluster.initialize (an override passing both on)",
    ),
    (
        "redis.asyncio.cluster:RedisCluster._determine_slot",
        "(self, command, *args)",
        "_AsyncRedisCluster._determine_slot (an override)",
    ),
    (
        "redis.cluster:RedisCluster.determine_slot",
        "(self, *args)",
        "_RedisCluster.determine_slot (an override)",
    ),
    (
        "redis.cluster:NodesManager.initialize",
        "(self, additional_startup_nodes_info=None, disconnect_startup_nodes_pools=True,"
        " last_failed_node_name=None)",
        "_RedisCluster.__init__ (wraps it to raise ConnectionError)",
    ),
    (
        "redis.commands.policies:StaticPolicyResolver.resolve",
        "(self, command_name)",
        "_KeyedPolicies.resolve (an override)",
    ),
    (
        "redis.commands.policies:StaticPolicyResolver.with_fallback",
        "(self, fallback)",
        "_KeyedPolicies.with_fallback (an override)",
    ),
    (
        "redis.commands.policies:AsyncStaticPolicyResolver.resolve",
        "(self, command_name)",
        "_AsyncKeyedPolicies.resolve (an override)",
    ),
    (
        "redis.commands.policies:AsyncStaticPolicyResolver.with_fallback",
        "(self, fallback)",
        "_AsyncKeyedPolicies.with_fallback (an override)",
    ),
    (
        "redis._parsers.commands:CommandPolicies",
        "(request_policy=<RequestPolicy.DEFAULT_KEYLESS: 'default_keyless'>,"
        " response_policy=<ResponsePolicy.DEFAULT_KEYLESS: 'default_keyless'>)",
        "_KEYED (built with DEFAULT_KEYED policies)",
    ),
    (
        "redis.asyncio:Connection.pack_command",
        "(self, *args)",
        "_AsyncConnection.pack_command (an override)",
    ),
    (
        "redis.connection:HiredisRespSerializer.pack",
        "(self, *args)",
        "_AsyncConnection.pack_command (packs with it)",
    ),
]


@pytest.mark.parametrize(("internal", "expected", "user"), INTERNALS, ids=[i[0] for i in INTERNALS])
def test_an_overridden_internal_keeps_the_signature_it_was_written_for(
    internal: str, expected: str, user: str
) -> None:
    try:
        found = _internal(internal)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"redis-py {redis.__version__} has no {internal} ({error}); {user} needs it")
    actual = _shape(found)
    assert actual == expected, (
        f"redis-py {redis.__version__} changed {internal}: it is now {actual}, "
        f"the override was written for {expected}; review {user} in courseredis.connection "
        "before widening the redis pin in pyproject.toml"
    )


@pytest.mark.parametrize(
    ("override", "internal"),
    [
        (connection._AsyncRedisCluster.initialize, "redis.asyncio.cluster:RedisCluster.initialize"),
        (
            connection._AsyncRedisCluster._determine_slot,
            "redis.asyncio.cluster:RedisCluster._determine_slot",
        ),
        (connection._RedisCluster.determine_slot, "redis.cluster:RedisCluster.determine_slot"),
        (connection._AsyncConnection.pack_command, "redis.asyncio:Connection.pack_command"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__qualname__,
)
def test_each_override_takes_what_the_internal_takes(override: Any, internal: str) -> None:
    assert _shape(override) == _shape(_internal(internal)), (
        f"{override.__qualname__} in courseredis.connection no longer matches {internal}"
    )


@pytest.mark.parametrize(
    "cluster", ["redis.cluster:RedisCluster", "redis.asyncio.cluster:RedisCluster"]
)
def test_the_cluster_clients_take_a_policy_resolver(cluster: str) -> None:
    parameters = inspect.signature(_internal(cluster).__init__).parameters
    assert "policy_resolver" in parameters, (
        f"redis-py {redis.__version__}'s {cluster} takes no policy_resolver: "
        "courseredis.connection passes its keyed-command policies there"
    )
