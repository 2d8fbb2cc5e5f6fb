"""Running the smoke suite as users do: a local stack started with `courseredis.local up`,
then `python -m pytest smoke` in a subprocess, pointed at that stack's stack.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from courseredis.connection import SyncClient, create_client
from courseredis.demo import SMOKE_PYTEST_FLAGS
from courseredis.settings import RedisSettings
from courseredis.topology import split_addr

REPO = Path(__file__).resolve().parents[2]
# As `make smoke` and `make demo` run it: no cache, none of the unrelated heavy plugins.
SMOKE_FLAGS = SMOKE_PYTEST_FLAGS


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would steer the suite elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMOKE_", "REDIS_", "GATEWAY_", "PYTEST_"))
    }


def _local_cli(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "courseredis.local", *args, "--root", str(root)]


class LocalStacks:
    """Local stacks started with `courseredis.local up`, each in its own root, all at once.

    `start` launches every environment's `up` in the background, so the `prod` cluster
    boots while the `dev` tests run; `get` waits for one; `close` runs `down` for each.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self._ups: dict[str, subprocess.Popen[str]] = {}
        self._documents: dict[str, dict[str, Any]] = {}

    def root(self, env: str) -> Path:
        return self.base / env

    def start(self, *envs: str) -> None:
        for env in envs:
            if env in self._ups:
                continue
            self.root(env).mkdir(parents=True, exist_ok=True)
            self._ups[env] = subprocess.Popen(
                _local_cli(self.root(env), "up", "--env", env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=REPO,
                env=clean_env(),
            )

    def get(self, env: str) -> tuple[Path, dict[str, Any]]:
        """stack.json of the `env` stack and its content, once it is up."""
        self.start(env)
        if env not in self._documents:
            process = self._ups[env]
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, f"up --env {env} failed:\n{output}"
            path = self.root(env) / ".local" / "stack.json"
            self._documents[env] = json.loads(path.read_text())
        return self.root(env) / ".local" / "stack.json", self._documents[env]

    def close(self) -> None:
        problems = []
        for env, process in self._ups.items():
            if process.poll() is None:
                process.communicate(timeout=120)  # let `up` finish, then take it down
            down = subprocess.run(
                _local_cli(self.root(env), "down"),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=REPO,
                env=clean_env(),
            )
            if down.returncode != 0:
                problems.append(f"down {env}: {down.stdout}{down.stderr}")
        assert not problems, problems


@dataclass(frozen=True)
class SmokeRun:
    returncode: int
    output: str
    seconds: float

    def failed(self) -> set[str]:
        """The names of the tests that failed or errored (from the short summary)."""
        return set(re.findall(r"^(?:FAILED|ERROR) smoke/\S+?::(\S+)", self.output, re.M))


def run_smoke(
    stack_json: Path | None, *args: str, variables: Mapping[str, str] | None = None
) -> SmokeRun:
    """The suite in a subprocess, on `stack_json` (None: on what the SMOKE_* `variables`
    name, as a deployed run is given its target)."""
    started = time.monotonic()
    target = ["--stack-json", str(stack_json)] if stack_json is not None else []
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "smoke", *SMOKE_FLAGS, *target, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env={**clean_env(), **(variables or {})},
    )
    return SmokeRun(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


def admin(document: dict[str, Any]) -> SyncClient:
    part = document["redis"]
    return create_client(
        RedisSettings.for_nodes(
            part["nodes"],
            cluster=part["mode"] == "cluster",
            username=part["username"],
            password=part["password"],
        )
    )


def every_node(document: dict[str, Any]) -> list[redis.Redis]:
    part = document["redis"]
    clients = []
    for node in part["nodes"]:
        host, port = split_addr(node)
        clients.append(
            redis.Redis(
                host=host,
                port=port,
                username=part["username"],
                password=part["password"],
                decode_responses=True,
            )
        )
    return clients


def keyspace(document: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    """Every key on every master: its type, and its length when it is a stream."""
    found: dict[str, tuple[str, int | None]] = {}
    for client in every_node(document):
        with client:
            if client.info("replication")["role"] != "master":
                continue
            for key in client.scan_iter(count=1000):
                kind = str(client.type(key))
                found[key] = (kind, int(client.xlen(key)) if kind == "stream" else None)
    return found
