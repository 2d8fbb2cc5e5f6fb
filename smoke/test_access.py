"""Access: each service's ACL user reads and writes its own key prefixes only, and the
dangerous commands are denied to it, on every node.

Two ways, both on the live nodes:
- `ACL DRYRUN <user> <command...>` as the admin: the node's own verdict on every command of
  every pattern on every prefix, and on the dangerous commands, without running any of
  them (a user wrongly granted FLUSHALL must not get to flush anything here). It needs no
  service password, so it runs against every environment.
- a real login as each service user, when its password is given: a write and read of its
  own prefix, refused reads of another's prefix and of `CONFIG`. Without the password
  this part is skipped and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from courseredis import keys
from courseredis.acl import LOADTEST_USER
from courseredis.acl_probes import DANGEROUS, INVOCATIONS, fill
from courseredis.connection import SyncClient, create_client
from courseredis.redis_config import REPLICATION_USER
from courseredis.services import registry
from smoke.clients import redis_settings
from smoke.target import Target


def sample_key(pattern: keys.KeyPattern, service: str) -> str:
    """A key of `pattern` for `service` (its own consumer name for idempotency keys)."""
    if pattern is keys.IDEMPOTENCY:
        return pattern.example(consumer=service)
    return pattern.example()


def expectations(service: str) -> list[tuple[tuple[str, ...], bool, str]]:
    """(command, allowed?, why) for every pattern's commands on its keys, for `service`."""
    out: list[tuple[tuple[str, ...], bool, str]] = []
    for pattern in keys.PATTERNS:
        record = registry.service(service)
        writes = pattern in record.writes
        reads = record.uses(pattern)
        key = sample_key(pattern, service)
        for command in pattern.write_commands:
            out.append((_argv(command, key), writes, f"{pattern.name} write"))
        for command in pattern.read_commands:
            out.append((_argv(command, key), reads, f"{pattern.name} read"))
        if not reads:  # plain reads and writes of a prefix it does not use
            out.append((_argv("get", key), False, f"{pattern.name} not its prefix"))
            out.append((_argv("set", key), False, f"{pattern.name} not its prefix"))
        if pattern is keys.IDEMPOTENCY and writes:  # another consumer's claims are not its own
            other = next(s for s in registry.NAMES if s != service)
            foreign = sample_key(pattern, other)
            out.append((_argv("set", foreign), False, f"idempotency of {other}"))
    return out


def _argv(command: str, key: str) -> tuple[str, ...]:
    if command not in INVOCATIONS:
        raise AssertionError(
            f"the key schema grants {command!r}, which smoke/test_access.py cannot dry-run: "
            "add an invocation to courseredis.acl_probes.INVOCATIONS"
        )
    return fill(INVOCATIONS[command], key)


def dry_run(client: redis.Redis, user: str, commands: list[tuple[str, ...]]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for argv in commands:
        pipe.execute_command("ACL", "DRYRUN", user, *argv)  # type: ignore[no-untyped-call]
    replies: list[Any] = pipe.execute(raise_on_error=False)
    return replies


def allowed(reply: Any) -> bool:
    if isinstance(reply, Exception):
        raise AssertionError(f"ACL DRYRUN failed: {reply}")
    return str(reply) == "OK"


@pytest.mark.parametrize("service", registry.NAMES)
def test_service_user_reaches_its_own_prefixes_only(
    service: str, nodes: dict[str, redis.Redis]
) -> None:
    cases = expectations(service)
    wrong: list[str] = []
    for addr, client in nodes.items():
        replies = dry_run(client, service, [argv for argv, _, _ in cases])
        for (argv, expected, why), reply in zip(cases, replies, strict=True):
            if allowed(reply) != expected:
                verdict = "allowed" if allowed(reply) else f"denied ({reply})"
                wrong.append(f"{addr}: {' '.join(argv)} [{why}] is {verdict}")
    assert not wrong, f"ACL user {service!r} reaches the wrong keys: " + "; ".join(wrong[:20])


@pytest.mark.parametrize("service", registry.NAMES)
def test_dangerous_commands_are_denied_to_service_user(
    service: str, nodes: dict[str, redis.Redis]
) -> None:
    granted: dict[str, list[str]] = {}
    for addr, client in nodes.items():
        for argv, reply in zip(DANGEROUS, dry_run(client, service, list(DANGEROUS)), strict=True):
            if allowed(reply):
                granted.setdefault(" ".join(argv), []).append(addr)
    assert not granted, f"ACL user {service!r} may run dangerous commands: " + "; ".join(
        f"{command} on {addrs}" for command, addrs in granted.items()
    )


def test_no_unexpected_users(nodes: dict[str, redis.Redis]) -> None:
    """Every ACL user is one the platform defines (an extra one is a way around the rules)."""
    # With the redis_direct load suite's own user (acl.LOADTEST_USER), in every stack, and
    # the account replicas authenticate with (clusters and replicated stacks).
    expected = {"default", "admin", "exporter", REPLICATION_USER, LOADTEST_USER, *registry.NAMES}
    extra = {addr: sorted(set(c.acl_users()) - expected) for addr, c in nodes.items()}
    extra = {addr: users for addr, users in extra.items() if users}
    assert not extra, f"ACL users the platform does not define: {extra}"


# --- a real login as each service user ----------------------------------------------------


@pytest.fixture
def service_client(service: str, target: Target) -> Iterator[SyncClient]:
    account = target.service_users.get(service)
    if account is None:
        reason = target.service_users_missing.get(service, "no password given")
        pytest.skip(
            f"live login as {service!r} NOT checked: {reason}; its permissions were checked "
            "with ACL DRYRUN only"
        )
    client = create_client(redis_settings(target, account.username, account.password))
    yield client
    client.close()


def own_write(client: SyncClient, pattern: keys.KeyPattern, key: str) -> Any:
    """Write then read `key` the way its pattern does, with a short TTL; the read's reply."""
    if "set" in pattern.write_commands:
        client.set(key, "smoke", px=10_000)
        return client.get(key)
    if "hset" in pattern.write_commands:
        pipe = client.pipeline(transaction=False)
        pipe.hset(key, "smoke", "1")
        pipe.pexpire(key, 10_000)
        pipe.execute()
        return (
            client.hgetall(key) if "hgetall" in pattern.read_commands else client.hget(key, "smoke")
        )
    if "zadd" in pattern.write_commands:
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {"smoke": 1})
        pipe.pexpire(key, 10_000)
        pipe.execute()
        return client.zcard(key)
    raise AssertionError(f"no way to write {pattern.name} keys in this test")


@pytest.mark.parametrize("service", registry.NAMES)
def test_service_user_logs_in_and_writes_its_own_prefix_only(
    service: str, service_client: SyncClient, keyspace: SyncClient
) -> None:
    writes = registry.service(service).writes
    own = next(p for p in keys.PATTERNS if p in writes and p.redis_types[0] != "stream")
    key = sample_key(own, service)
    try:
        try:
            read_back = own_write(service_client, own, key)
        except RedisError as exc:
            raise AssertionError(
                f"ACL user {service!r} cannot write its own {key}: {exc}"
            ) from None
        assert read_back, f"ACL user {service!r} wrote {key} but reads back {read_back!r}"
    finally:
        keyspace.delete(key)
    foreign = next(p for p in keys.PATTERNS if not registry.service(service).uses(p))
    refused = []
    for what, attempt in (
        (
            f"GET {sample_key(foreign, service)}",
            lambda: service_client.get(sample_key(foreign, service)),
        ),
        ("CONFIG GET maxmemory-policy", lambda: service_client.config_get("maxmemory-policy")),
    ):
        try:
            attempt()
        except NoPermissionError:
            continue
        except ResponseError as exc:
            if "NOPERM" in str(exc):
                continue
            refused.append(f"{what}: unexpected error {exc}")
        else:
            refused.append(f"{what} was allowed")
    assert not refused, f"ACL user {service!r}: " + "; ".join(refused)
