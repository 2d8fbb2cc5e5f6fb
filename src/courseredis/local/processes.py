"""Finding `redis-server`, and watching and stopping its processes by PID.

The nodes are daemonized (`daemonize yes`), so they are not our children: we cannot
`wait()` for them and learn their PIDs from their pidfiles. A PID is taken as our node only
while its command line names `redis-server` (and its port); `supervisor` then holds on to
the process by PID and start time, so a PID the kernel has since given to another process
is never killed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psutil

from courseredis.engines import PINNED, SERVER_NAMES, Engine, EngineError, local_engine
from courseredis.local import supervisor


class LocalStackError(RuntimeError):
    """The local stack could not be started, checked or stopped; the message says why."""


class RedisServerMissingError(LocalStackError):
    """No usable `redis-server` binary."""


def redis_server_binary(name: str = "redis-server") -> str:
    """The path of a server binary (`redis-server` or `valkey-server`), checked to be recent
    enough for the local stack (`cluster-port`, ADDSLOTSRANGE: Redis >= 7.0, any Valkey)."""
    engine: Engine = "valkey" if "valkey" in Path(name).name else "redis"
    try:
        return local_engine(engine, PINNED[engine], binary=name).binary
    except EngineError as exc:
        raise RedisServerMissingError(str(exc)) from None


def is_our_redis(pid: int, port: int | None = None) -> bool:
    """Whether `pid` is a live (not zombie) `redis-server` or `valkey-server`, listening on
    `port` if given."""
    return _our_redis(pid, port) is not None


def _our_redis(pid: int, port: int | None) -> psutil.Process | None:
    # Redis rewrites its process title to `redis-server 127.0.0.1:<port> [cluster]` (Valkey
    # to `valkey-server ...`), which is what lets the port tell our node apart from another.
    def ours(argv: list[str]) -> bool:
        title = " ".join(argv)
        server = any(name in title for name in SERVER_NAMES)
        return server and (port is None or f":{port}" in title)

    return supervisor.find(pid, ours)


def _found(targets: Sequence[tuple[int, int | None]]) -> list[psutil.Process]:
    found = (_our_redis(pid, port) for pid, port in targets)
    return [p for p in found if p is not None]


def wait_gone(targets: Sequence[tuple[int, int | None]], timeout_s: float) -> list[int]:
    """Wait until none of the `(pid, port)` is our redis; return the PIDs still alive."""
    return [p.pid for p in supervisor.wait_exited(_found(targets), timeout_s)]


def terminate(targets: Sequence[tuple[int, int | None]], *, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, the `(pid, port)` still running; wait for exit."""
    survivors = supervisor.stop(_found(targets), grace_s=grace_s)
    if survivors:
        raise LocalStackError(f"redis-server PIDs {[p.pid for p in survivors]} survived SIGKILL")


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(content[-lines:]) or f"({path} is empty)"
