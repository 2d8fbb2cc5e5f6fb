"""Redis clients for the suite: one node as the admin, or the whole keyspace as an account."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from courseredis.settings import RedisSettings
from courseredis.topology import split_addr
from smoke.target import Target


def node_client(addr: str, target: Target) -> redis.Redis:
    """A client for one node as the admin, short timeouts, no retries: a check, not a job."""
    host, port = split_addr(addr)
    return redis.Redis(
        host=host,
        port=port,
        username=target.redis_admin.username,
        password=target.redis_admin.password,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **tls_options(target),
    )


def tls_options(target: Target) -> dict[str, Any]:
    if target.tls_ca_file is None:
        return {}
    return {"ssl": True, "ssl_ca_certs": target.tls_ca_file}


def redis_settings(target: Target, username: str, password: str) -> RedisSettings:
    """Settings for the whole keyspace as one account: a cluster client on a cluster."""
    return RedisSettings.for_nodes(
        target.nodes,
        cluster=target.mode == "cluster",
        username=username,
        password=password,
        socket_timeout_s=5.0,
        connect_timeout_s=5.0,
        retries=2,
        tls=target.tls_ca_file is not None,
        tls_ca_file=target.tls_ca_file,
        address_map=target.address_map,
    )
