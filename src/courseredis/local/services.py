"""The registry's services as uvicorn processes on loopback, for the local stack and the tests.

Each runs `python -m courseredis.services <name>` with its settings in the environment,
exactly as the container does, connected to Redis as its own ACL user.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from courseredis.environments import RedisTopology
from courseredis.local import supervisor
from courseredis.local.ports import free_ports
from courseredis.local.processes import LocalStackError, tail
from courseredis.local.stack import LocalStack
from courseredis.services import registry
from courseredis.services.tokens import KeyPair
from courseredis.stack_file import ServiceProcess, StackFile
from courseredis.waiting import TimedOut, wait_until

_READY_TIMEOUT_S = 30.0
# Locally every client is on loopback, so a per-IP limit would lump them all together. The
# gateway believes X-Forwarded-For from 127.0.0.1 only (the load suites present one client
# IP per simulated user); a peer on another loopback address, 127.0.0.2 say, is still not
# trusted. LOCAL_GATEWAY_TRUSTED_PROXIES replaces the list ("" trusts nobody).
LOCAL_TRUSTED_PROXIES = "127.0.0.1/32"


def redis_environment(
    mode: str, nodes: list[str], username: str | None, password: str | None
) -> dict[str, str]:
    env = (
        {"REDIS_CLUSTER_NODES": ",".join(nodes)}
        if mode == "cluster"
        else {"REDIS_URL": f"redis://{nodes[0]}/0"}
    )
    if username:
        env["REDIS_USERNAME"] = username
    if password:
        env["REDIS_PASSWORD"] = password
    return env


def start_services(
    *,
    redis_env: Mapping[str, Mapping[str, str]],
    database_url: str,
    jwt_keys: KeyPair,
    workdir: Path,
    extra_env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
) -> list[ServiceProcess]:
    """Start the services (redis_env: service -> its REDIS_* variables); wait until ready.

    Every service gets the public key (JWT_PUBLIC_KEYS); only auth gets the private key
    (JWT_PRIVATE_KEY), as deployed. Each serves its metrics on a port of its own
    (METRICS_PORT), as deployed; the OpenAPI documents are on (DOCS_ENABLED), unlike
    deployed stacks: locally they are the developers' map.

    On any failure the processes already started are stopped and the error names the
    service with the end of its log.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    names = registry.NAMES  # in start order: the gateway last, it needs the rest
    chosen = free_ports(2 * len(names), host)
    ports = dict(zip(names, chosen[: len(names)], strict=True))
    metrics_ports = dict(zip(names, chosen[len(names) :], strict=True))
    urls = {name: f"http://{host}:{port}" for name, port in ports.items()}
    common = {
        "DATABASE_URL": database_url,
        "DOCS_ENABLED": "true",
        "JWT_PUBLIC_KEYS": jwt_keys.public_pem,
        **{s.upstream.setting: urls[s.name] for s in registry.UPSTREAMS if s.upstream},
        **(extra_env or {}),
    }
    started: list[ServiceProcess] = []
    try:
        for name in names:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("REDIS_", "GATEWAY_", "JWT_"))
            }
            env.update(common)
            env.update(redis_env[name])
            if name == registry.SIGNER:
                env["JWT_PRIVATE_KEY"] = jwt_keys.private_pem
            env["METRICS_PORT"] = str(metrics_ports[name])
            logfile = workdir / f"{name}.log"
            with logfile.open("ab") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "courseredis.services",
                        name,
                        "--host",
                        host,
                        "--port",
                        str(ports[name]),
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C in the terminal is ours to relay
                )
            started.append(
                ServiceProcess(
                    name=name,
                    url=urls[name],
                    metrics_url=f"http://{host}:{metrics_ports[name]}/metrics",
                    pid=process.pid,
                    logfile=str(logfile),
                )
            )
        for service in started:
            _wait_ready(service)
    except BaseException:
        stop_services(started)
        raise
    return started


def _wait_ready(service: ServiceProcess) -> None:
    process = _find(service.pid)

    def ready() -> bool:
        if process is None or not supervisor.running(process):
            raise LocalStackError(
                f"service {service.name} exited at start-up; its log ends:\n"
                f"{tail(Path(service.logfile))}"
            )
        try:
            with urllib.request.urlopen(service.url + "/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_until(ready, timeout_s=_READY_TIMEOUT_S, what=f"{service.name} ready", interval_s=0.1)
    except TimedOut:
        raise LocalStackError(
            f"service {service.name} not ready after {_READY_TIMEOUT_S:.0f} s; its log ends:\n"
            f"{tail(Path(service.logfile))}"
        ) from None


def _is_service(argv: list[str]) -> bool:
    return "courseredis.services" in argv


def _find(pid: int) -> psutil.Process | None:
    return supervisor.find(pid, _is_service)


def _alive(pid: int) -> bool:
    return _find(pid) is not None


def stop_services(services: Sequence[ServiceProcess], *, grace_s: float = 5.0) -> None:
    """SIGTERM the services we started (checked by their command line), then SIGKILL."""
    found = [_find(service.pid) for service in services]
    supervisor.stop([p for p in found if p is not None], grace_s=grace_s)


# --- the local stack's services: what `up`, `down` and `status` call -----------------------


def start_all(stack: LocalStack, topology: RedisTopology, data_dir: Path) -> dict[str, Any]:
    """Migrate and seed the database, start the services; the stack.json entries to record.

    The database is `DATABASE_URL` when set (say a local PostgreSQL), else a SQLite file in
    the environment's data directory. Demo passwords are drawn anew on every `up`.
    """
    from courseredis.services.db.engine import redacted
    from courseredis.services.db.migrate import upgrade
    from courseredis.services.db.seed import seed

    database_url = (
        os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'courses.db'}"
    )
    upgrade(database_url)
    credentials = asyncio.run(seed(database_url))
    redis_env = {
        name: redis_environment(stack.mode, stack.nodes, name, stack.users[name])
        for name in registry.NAMES
    }
    if topology.logout_replica_acks:
        redis_env["auth"]["REDIS_REPLICA_ACKS"] = str(topology.logout_replica_acks)
    processes = start_services(
        redis_env=redis_env,
        database_url=database_url,
        # A key pair per `up`, as the demo passwords: nothing signed before outlives it.
        jwt_keys=KeyPair.generate(),
        workdir=data_dir / "services",
        extra_env={
            "GATEWAY_TRUSTED_PROXIES": os.environ.get(
                "LOCAL_GATEWAY_TRUSTED_PROXIES", LOCAL_TRUSTED_PROXIES
            )
        },
    )
    return {
        "services": {p.name: p.url for p in processes},
        "metrics": {p.name: p.metrics_url for p in processes if p.metrics_url},
        "service_processes": [p.model_dump() for p in processes],
        "demo": credentials.to_json(),
        "database": redacted(database_url),
    }


def stop_all(document: StackFile) -> None:
    stop_services(document.service_processes or [])


def problems(document: StackFile) -> list[str]:
    processes = document.service_processes or []
    if not processes:
        return ["the services are not running"]
    return [
        f"service {p.name} (pid {p.pid}) is not running" for p in processes if not _alive(p.pid)
    ]


def describe(document: StackFile, state_file: Path) -> None:
    for name, url in (document.services or {}).items():
        print(f"{name}: {url}")
    demo = document.demo
    if demo:
        print(
            f"demo users: {len(demo.students)} students and "
            f"{demo.admin.username if demo.admin else None} (passwords: demo in {state_file})"
        )
