"""Finding `redis-server`, and watching and stopping its processes by PID.

The nodes are daemonized (`daemonize yes`), so they are not our children: we cannot
`wait()` for them and learn their PIDs from their pidfiles. Before signalling a PID we
check `/proc/<pid>/cmdline` still names our `redis-server` (and its port), so a PID the
kernel has since given to another process is never killed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

MIN_REDIS_VERSION = (7, 0)
_POLL_S = 0.02


class LocalStackError(RuntimeError):
    """The local stack could not be started, checked or stopped; the message says why."""


class RedisServerMissingError(LocalStackError):
    """No usable `redis-server` binary."""


@functools.cache
def redis_server_binary(name: str = "redis-server") -> str:
    """The path of `redis-server`, checked to be Redis >= 7 (for `cluster-port`, ADDSLOTSRANGE)."""
    path = shutil.which(name)
    if path is None:
        raise RedisServerMissingError(
            f"{name} not found on PATH; install it with: sudo apt-get install redis-server"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"v=(\d+)\.(\d+)", out)
    if match is None:
        raise RedisServerMissingError(f"{path} --version printed no version: {out.strip()!r}")
    version = (int(match[1]), int(match[2]))
    if version < MIN_REDIS_VERSION:
        raise RedisServerMissingError(
            f"{path} is Redis {version[0]}.{version[1]}; the local stack needs Redis >= 7.0"
        )
    return path


def is_our_redis(pid: int, port: int | None = None) -> bool:
    """Whether `pid` is a live (not zombie) `redis-server`, listening on `port` if given.

    Redis rewrites its process title to `redis-server 127.0.0.1:<port> [cluster]`, which is
    what lets the port tell our node apart from another `redis-server`.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # The state follows the parenthesised command name; a zombie has exited already.
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    if "redis-server" not in cmdline:
        return False
    return port is None or f":{port}" in cmdline


def wait_gone(targets: Sequence[tuple[int, int | None]], timeout_s: float) -> list[int]:
    """Wait until none of the `(pid, port)` is our redis; return the PIDs still alive."""
    end = time.monotonic() + timeout_s
    while True:
        alive = [pid for pid, port in targets if is_our_redis(pid, port)]
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(_POLL_S)


def kill_verified(targets: Sequence[tuple[int, int | None]], sig: signal.Signals) -> None:
    for pid, port in targets:
        if is_our_redis(pid, port):
            with contextlib.suppress(ProcessLookupError):  # exited since the check
                os.kill(pid, sig)


def terminate(targets: Sequence[tuple[int, int | None]], *, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, the `(pid, port)` still running; wait for exit."""
    alive = [(pid, port) for pid, port in targets if is_our_redis(pid, port)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive:
            return
        kill_verified(alive, sig)
        still = set(wait_gone(alive, grace_s))
        alive = [(pid, port) for pid, port in alive if pid in still]
    if alive:
        raise LocalStackError(f"redis-server PIDs {[p for p, _ in alive]} survived SIGKILL")


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
