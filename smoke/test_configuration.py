"""Configuration, on every node: persistence as the environment requires, the memory policy,
the `default` user off."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl

import redis

from courseredis.environments import RedisTopology
from courseredis.redis_config import APPENDFSYNC, MAXMEMORY_POLICY
from courseredis.topology import split_addr
from smoke.target import Target

_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


def memory_bytes(text: str) -> int:
    """`256mb` -> bytes, as Redis reads it (1024-based)."""
    found = re.fullmatch(r"([0-9]+)(b|kb|mb|gb)", text.lower())
    assert found, f"maxmemory {text!r} is not like 256mb"
    return int(found.group(1)) * _UNITS[found.group(2)]


def config(client: redis.Redis, name: str) -> str:
    return str(client.config_get(name).get(name, ""))


def test_eviction_policy_is_noeviction(nodes: dict[str, redis.Redis]) -> None:
    wrong = {
        addr: value
        for addr, client in nodes.items()
        if (value := config(client, "maxmemory-policy")) != MAXMEMORY_POLICY
    }
    assert not wrong, (
        f"maxmemory-policy must be {MAXMEMORY_POLICY} (an evicted revocation re-validates a "
        f"revoked token); these nodes differ: {wrong}"
    )


def test_maxmemory_is_the_environments(
    nodes: dict[str, redis.Redis], topology: RedisTopology
) -> None:
    expected = memory_bytes(topology.maxmemory)
    wrong = {
        addr: value
        for addr, client in nodes.items()
        if (value := config(client, "maxmemory")) != str(expected)
    }
    assert not wrong, f"maxmemory must be {topology.maxmemory} ({expected} bytes): {wrong}"


def test_persistence_is_the_environments(
    nodes: dict[str, redis.Redis], topology: RedisTopology, target: Target
) -> None:
    problems = []
    for addr, client in nodes.items():
        appendonly = config(client, "appendonly")
        if topology.persistence == "aof":
            info = client.info("persistence")
            if appendonly != "yes":
                problems.append(f"{addr}: appendonly {appendonly} (wants yes)")
            if (fsync := config(client, "appendfsync")) != APPENDFSYNC:
                problems.append(f"{addr}: appendfsync {fsync} (wants {APPENDFSYNC})")
            if info.get("aof_last_write_status") != "ok":
                problems.append(
                    f"{addr}: aof_last_write_status {info.get('aof_last_write_status')}"
                )
        else:
            if appendonly != "no":
                problems.append(f"{addr}: appendonly {appendonly} (wants no)")
            if (save := config(client, "save")) != "":
                problems.append(f"{addr}: RDB snapshots on (save {save!r}; wants none)")
    assert not problems, f"{target.env.name} persistence is {topology.persistence}: " + "; ".join(
        problems
    )


def anonymous_ping(addr: str, tls_ca_file: str | None) -> str:
    """What a node answers a client that did not authenticate (RESP2 `PING`, raw socket:
    redis-py would send HELLO first, which Redis refuses differently)."""
    host, port = split_addr(addr)
    with contextlib.ExitStack() as stack:
        sock: socket.socket = stack.enter_context(
            socket.create_connection((host, port), timeout=5.0)
        )
        if tls_ca_file is not None:
            context = ssl.create_default_context(cafile=tls_ca_file)
            sock = stack.enter_context(context.wrap_socket(sock, server_hostname=host))
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode(errors="replace").strip()


def test_default_user_is_off(nodes: dict[str, redis.Redis], target: Target) -> None:
    problems = []
    for addr, client in nodes.items():
        user = client.acl_getuser("default") or {}
        flags = user.get("flags", [])
        assert isinstance(flags, list)
        if "off" not in flags:
            problems.append(f"{addr}: ACL GETUSER default flags {flags}")
        reply = anonymous_ping(addr, target.tls_ca_file)
        if not reply.startswith("-NOAUTH"):
            problems.append(f"{addr}: answers {reply!r} to PING without authentication")
    assert not problems, "the default user must be off: " + "; ".join(problems)
