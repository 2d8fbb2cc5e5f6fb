"""Which native primitives a server offers the patterns, asked once per client.

The lock's compare-and-delete (release) and compare-and-pexpire (renewal) are Lua scripts
on every server; newer servers have commands that do the same in one step, without a
script's cost:

| primitive | command | servers |
|---|---|---|
| compare-and-delete | `DELIFEQ key token` | Valkey >= 9.0 |
| compare-and-delete | `DELEX key IFEQ token` | Redis >= 8.4, Valkey >= 9.2 |
| compare-and-pexpire | `SET key token IFEQ token PX ms` | Valkey >= 8.1, Redis >= 8.4 |
| hash field TTL | `HSETEX`, `HGETEX` | Redis >= 8.0, Valkey >= 9.0 |

The last is detected and reported, never used: its TTL is per field, not the key's, so it
cannot stand in for what `session_create.lua` and `session_touch.lua` do (docs/engines.md,
"Native primitives").

Detection reads `COMMAND INFO` (does the command exist) and `COMMAND DOCS SET` (does `SET`
take `IFEQ`) rather than a version: a server says what it has, and no table of releases
can be wrong about it. Service users may send `COMMAND` but not `INFO` (courseredis.acl),
so this works for them too. On a cluster every master is asked, and a primitive counts
only when all of them offer it (a cluster mid-upgrade runs mixed versions). The commands
the lock would send are then tried on a lock key with a token no lock ever holds, so that
they can change nothing: an ACL user that may not send one (`DELEX` is granted to no
service user while the ACL file must also load on servers that do not know it) keeps the
script, instead of a refused command and a script on every release.

`COURSEREDIS_NATIVE_PRIMITIVES=off` makes every client use the scripts; tests and benchmarks
pass `LUA_ONLY` to a pattern to run the fallback on a server that has the commands.
"""

from __future__ import annotations

import os
import secrets
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import NoPermissionError

from courseredis import keys
from courseredis.connection import AsyncClient, SyncClient

NATIVE_ENV = "COURSEREDIS_NATIVE_PRIMITIVES"

ReleaseCommand = Literal["DELIFEQ", "DELEX"]
_ASKED = ("DELIFEQ", "DELEX", "HSETEX", "HGETEX")


@dataclass(frozen=True)
class Primitives:
    """What the patterns may send natively to one client's server(s)."""

    # The compare-and-delete command, DELIFEQ preferred (it exists since Valkey 9.0, where
    # DELEX came in 9.2); None: compare_and_delete.lua.
    release: ReleaseCommand | None = None
    # SET ... IFEQ ... PX: None keeps compare_and_pexpire.lua.
    renew: bool = False
    # HSETEX / HGETEX, reported only (the sessions keep their scripts).
    hash_field_ttl: bool = False

    def describe(self) -> str:
        release = f"{self.release} (native)" if self.release else "compare_and_delete.lua"
        renew = "SET IFEQ PX (native)" if self.renew else "compare_and_pexpire.lua"
        fields = "offered, unused" if self.hash_field_ttl else "absent"
        return f"lock release: {release}; renewal: {renew}; HSETEX/HGETEX: {fields}"


LUA_ONLY = Primitives()


@dataclass(frozen=True)
class _Offered:
    """What one node's COMMAND INFO and COMMAND DOCS say it has."""

    commands: frozenset[str]
    set_ifeq: bool

    @staticmethod
    def combine(nodes: Iterable[_Offered]) -> _Offered:
        """What every node offers; nothing when no node answered."""
        listed = list(nodes)
        if not listed:
            return _Offered(frozenset(), False)
        commands = frozenset.intersection(*(node.commands for node in listed))
        return _Offered(commands, all(node.set_ifeq for node in listed))


def _names(reply: Any) -> frozenset[str]:
    """Command names from a COMMAND INFO reply (redis-py parses it into a dict by name; an
    unknown command is absent there, or a nil entry in the raw list)."""
    if isinstance(reply, dict):
        return frozenset(str(name).upper() for name, info in reply.items() if info)
    return frozenset(str(entry[0]).upper() for entry in reply or () if entry)


def _mentions_ifeq(reply: Any) -> bool:
    """Whether COMMAND DOCS SET names an `IFEQ` token anywhere among its arguments."""
    if isinstance(reply, (str, bytes)):
        return (reply.decode() if isinstance(reply, bytes) else reply).upper() == "IFEQ"
    if isinstance(reply, dict):
        return any(_mentions_ifeq(k) or _mentions_ifeq(v) for k, v in reply.items())
    if isinstance(reply, (list, tuple)):
        return any(_mentions_ifeq(item) for item in reply)
    return False


def _offered(info: Any, docs: Any) -> _Offered:
    return _Offered(_names(info), _mentions_ifeq(docs))


def _choose(offered: _Offered) -> tuple[ReleaseCommand | None, bool, bool]:
    release: ReleaseCommand | None = None
    if "DELIFEQ" in offered.commands:
        release = "DELIFEQ"
    elif "DELEX" in offered.commands:
        release = "DELEX"
    hash_ttl = {"HSETEX", "HGETEX"} <= offered.commands
    return release, offered.set_ifeq, hash_ttl


# A key of the lock's pattern for the ACL probes; the token is fresh each time, so neither
# probe can match a lock's value: DELIFEQ/DELEX delete nothing, SET IFEQ sets nothing.
_PROBE_KEY = keys.enrollment_lock(1, 1)


def _probes(release: ReleaseCommand | None, renew: bool) -> list[tuple[str, tuple[Any, ...]]]:
    token = "probe-" + secrets.token_hex(16)
    probes: list[tuple[str, tuple[Any, ...]]] = []
    if release is not None:
        probes.append(("release", release_command(release, _PROBE_KEY, token)))
    if renew:
        probes.append(("renew", renew_command(_PROBE_KEY, token, 1)))
    return probes


def release_command(command: ReleaseCommand, key: str, token: str) -> tuple[Any, ...]:
    """The native compare-and-delete: 1 when deleted, 0 when gone or another's value."""
    if command == "DELIFEQ":
        return ("DELIFEQ", key, token)
    return ("DELEX", key, "IFEQ", token)


def renew_command(key: str, token: str, lease_ms: int) -> tuple[Any, ...]:
    """The native compare-and-pexpire: writes the value it compares with, so the value stays
    the token, and sets the TTL; OK when done, nil when gone or another's value."""
    return ("SET", key, token, "IFEQ", token, "PX", lease_ms)


def _primitives(offered: _Offered, refused: set[str]) -> Primitives:
    release, renew, hash_ttl = _choose(offered)
    return Primitives(
        release=None if "release" in refused else release,
        renew=renew and "renew" not in refused,
        hash_field_ttl=hash_ttl,
    )


def forced_off() -> bool:
    return os.environ.get(NATIVE_ENV, "").strip().lower() in {"off", "0", "no", "false"}


# --- sync -------------------------------------------------------------------------------------


def _ask_sync(client: SyncClient) -> _Offered:
    execute: Any = client.execute_command  # redis-py leaves it untyped
    if isinstance(client, redis.cluster.RedisCluster):
        masters: Any = client.get_primaries()  # type: ignore[no-untyped-call]
        return _Offered.combine(
            _offered(
                execute("COMMAND INFO", *_ASKED, target_nodes=node),
                execute("COMMAND DOCS", "SET", target_nodes=node),
            )
            for node in masters
        )
    return _offered(execute("COMMAND INFO", *_ASKED), execute("COMMAND DOCS", "SET"))


def detect(client: SyncClient) -> Primitives:
    """Ask the server(s) now; `primitives` remembers the answer per client."""
    if forced_off():
        return LUA_ONLY
    offered = _ask_sync(client)
    release, renew, _ = _choose(offered)
    refused: set[str] = set()
    execute: Any = client.execute_command
    for name, command in _probes(release, renew):
        try:
            execute(*command)
        except NoPermissionError:
            refused.add(name)
    return _primitives(offered, refused)


_SYNC: weakref.WeakKeyDictionary[Any, Primitives] = weakref.WeakKeyDictionary()
_ASYNC: weakref.WeakKeyDictionary[Any, Primitives] = weakref.WeakKeyDictionary()


def primitives(client: SyncClient) -> Primitives:
    """The client's primitives, detected at its first use and then remembered."""
    try:
        return _SYNC[client]
    except KeyError:
        found = _SYNC[client] = detect(client)
        return found


# --- asyncio ----------------------------------------------------------------------------------


async def _ask_async(client: AsyncClient) -> _Offered:
    execute: Any = client.execute_command
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        nodes = []
        for node in client.get_primaries():
            info = await execute("COMMAND INFO", *_ASKED, target_nodes=node)
            docs = await execute("COMMAND DOCS", "SET", target_nodes=node)
            nodes.append(_offered(info, docs))
        return _Offered.combine(nodes)
    info = await execute("COMMAND INFO", *_ASKED)
    docs = await execute("COMMAND DOCS", "SET")
    return _offered(info, docs)


async def detect_async(client: AsyncClient) -> Primitives:
    if forced_off():
        return LUA_ONLY
    offered = await _ask_async(client)
    release, renew, _ = _choose(offered)
    refused: set[str] = set()
    for name, command in _probes(release, renew):
        try:
            await client.execute_command(*command)
        except NoPermissionError:
            refused.add(name)
    return _primitives(offered, refused)


async def primitives_async(client: AsyncClient) -> Primitives:
    try:
        return _ASYNC[client]
    except KeyError:
        found = _ASYNC[client] = await detect_async(client)
        return found
