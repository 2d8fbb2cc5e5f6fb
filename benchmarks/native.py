"""Native primitives against the Lua scripts, on the same server in the same run.

Per server: the `dev` stack's engine (the machine's packages, which have no native
primitive: both columns run the scripts, a check of the harness), and the newer engines the
tests run in podman (Debian 13's valkey-server 8.1.1 and redis-server 8.0.2). On each, the
lock's extension and acquire + release, once with what detection picks and once with
`LUA_ONLY`, alternating with PING slices as every benchmark does. Servers that cannot run
here (no root, no podman) are named with why, never silently left out.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from benchmarks.measure import Timing, measure_sync
from benchmarks.operations import ping_sync
from courseredis import keys
from courseredis.connection import SyncClient
from courseredis.engines import server_version
from courseredis.patterns.lock import Lock, LockOptions
from courseredis.rehearsal.newer_servers import SERVERS
from courseredis.server_features import LUA_ONLY, Primitives, primitives

# (name in the report, image, server binary): the servers the tests also run.
HEADER = ["server", "operation", "native path", "lua xPING", "native xPING", "native/lua"]


@dataclass(frozen=True)
class Pair:
    server: str  # engine and version as the server reports them
    operation: str
    native: str  # what detection picked, or "none"
    lua_ratio: float
    native_ratio: float

    def to_json(self) -> dict[str, object]:
        return {
            "server": self.server,
            "operation": self.operation,
            "native": self.native,
            "lua_ratio_to_ping": round(self.lua_ratio, 3),
            "native_ratio_to_ping": round(self.native_ratio, 3),
        }

    def row(self) -> list[str]:
        return [
            self.server,
            self.operation,
            self.native,
            f"{self.lua_ratio:.3f}",
            f"{self.native_ratio:.3f}",
            f"{self.native_ratio / self.lua_ratio:.2f}",
        ]


def _ops(lock: Lock, base: int) -> dict[str, Callable[[], object]]:
    # Each path its own lock names: the two hold their extended lock side by side.
    names = itertools.cycle(
        [keys.enrollment_lock(base + 1 + i // 100, 1 + i % 100) for i in range(1000)]
    )
    held = lock.acquire(keys.enrollment_lock(base, 1), LockOptions())

    def extend() -> None:
        lock.extend(held)

    def acquire_release() -> None:
        lock.release(lock.acquire(next(names)))

    return {"lock.extend": extend, "lock.acquire_release": acquire_release}


def _native_path(found: Primitives, operation: str) -> str:
    if operation == "lock.extend":
        return "SET IFEQ PX" if found.renew else "none"
    return found.release or "none"


def measure(client: SyncClient, timing: Timing) -> list[Pair]:
    """Both paths of each operation on this client's server, alternating with PING."""
    engine, version = server_version(client.info("server"))
    server = f"{engine} {'.'.join(map(str, version))}"
    found = primitives(client)
    ping = ping_sync(client, "single")
    detected, scripted = (
        _ops(Lock(client, native=found), 900),
        _ops(Lock(client, native=LUA_ONLY), 1900),
    )
    out = []
    for operation in detected:
        lua = measure_sync(scripted[operation], ping, timing)
        native = measure_sync(detected[operation], ping, timing)
        out.append(
            Pair(
                server,
                operation,
                _native_path(found, operation),
                lua.ratio_to_ping,
                native.ratio_to_ping,
            )
        )
    return out


@contextmanager
def _container(name: str) -> Iterator[redis.Redis]:
    from courseredis.rehearsal.newer_servers import running
    from courseredis.rehearsal.podman import Podman

    podman = Podman(Path(tempfile.mkdtemp(prefix="courseredis-bench-podman-")))
    with running(podman, name) as port, redis.Redis(port=port, decode_responses=True) as client:
        yield client


def newer_servers(timing: Timing, say: Callable[[str], None]) -> tuple[list[Pair], list[str]]:
    """The pairs on each newer server, and a line for each that could not run."""
    if os.geteuid() != 0:
        return [], [f"{name}: not run (rootful podman needs root)" for name in SERVERS]
    pairs: list[Pair] = []
    missing: list[str] = []
    for name, (image, _binary) in SERVERS.items():
        say(f"native primitives on {name} ({image}, podman) ...")
        try:
            with _container(name) as client:
                pairs += measure(client, timing)
        except Exception as error:  # a benchmark reports, it does not fail
            missing.append(f"{name}: not run ({error})")
    return pairs, missing
