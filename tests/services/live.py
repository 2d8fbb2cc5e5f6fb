"""The services as real processes (uvicorn, TCP on loopback) over a local Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from courseredis.local import LocalStack
from courseredis.local.services import (
    redis_environment,
    start_services,
    stop_services,
)
from courseredis.services import registry
from courseredis.services.db.migrate import upgrade
from courseredis.services.db.seed import DemoCredentials, seed
from courseredis.services.tokens import KeyPair
from courseredis.stack_file import ServiceProcess


@dataclass
class LiveServices:
    processes: list[ServiceProcess]
    credentials: DemoCredentials
    admin_token: str

    def url(self, name: str) -> str:
        return next(p.url for p in self.processes if p.name == name)


def service_redis_env(stack: LocalStack) -> dict[str, dict[str, str]]:
    users = getattr(stack, "users", None) or {}
    env = {}
    for name in registry.NAMES:
        if name in users:
            env[name] = redis_environment(stack.mode, stack.nodes, name, users[name])
        else:
            env[name] = redis_environment(stack.mode, stack.nodes, stack.username, stack.password)
    return env


@contextmanager
def live_services(stack: LocalStack, workdir: Path) -> Iterator[LiveServices]:
    url = f"sqlite+aiosqlite:///{workdir / 'courses.db'}"
    upgrade(url)
    credentials = asyncio.run(seed(url, courses=20, students=3, password=lambda u: f"pw-{u}-x"))
    processes = start_services(
        redis_env=service_redis_env(stack),
        database_url=url,
        jwt_keys=KeyPair.generate(),
        workdir=workdir / "logs",
    )
    try:
        gateway = next(p.url for p in processes if p.name == "gateway")
        username, password = credentials.admin
        request = urllib.request.Request(
            gateway + "/auth/login",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["access_token"]
        yield LiveServices(processes, credentials, token)
    finally:
        stop_services(processes)
