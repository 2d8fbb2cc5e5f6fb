"""The platform a scenario runs against: its own Redis, database and four service processes.

Each scenario starts its own: a local stack of `redis-server` processes (`start_stack`, the
code `make up` runs), a migrated and seeded SQLite database, and the four services as
uvicorn processes connected as their own ACL users (`start_services`), all on loopback.
Unlike `make up`, the scenario keeps the JWT signing key (the hostile-input scenario signs
tokens with it) and fixed demo passwords.

The gateway trusts X-Forwarded-For from 127.0.0.1 only, so that simulated users can each
present their own client address (per-IP rate limits then count each user's requests).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from courseredis.environments import RedisTopology, load_environment
from courseredis.local import LocalStack, start_stack, stop_stack
from courseredis.local.nodes import NodeProcess, node_directory, relaunch_nodes
from courseredis.local.processes import LocalStackError, is_our_redis, redis_server_binary
from courseredis.local.services import redis_environment, start_services, stop_services
from courseredis.local.stack import recorded_bus_port
from courseredis.services import registry
from courseredis.services.db.migrate import upgrade
from courseredis.services.db.seed import DemoCredentials, seed
from courseredis.services.tokens import KeyPair
from courseredis.settings import RedisSettings
from courseredis.stack_file import ServiceProcess
from courseredis.topology import ClusterNode, parse_cluster_nodes, split_addr

STUDENT_PASSWORD = "chaos-student-pw"
ADMIN_PASSWORD = "chaos-admin-pw"
JWT_ISSUER = "course-platform"
# How long a logout waits for its replica before it answers 503 (REDIS_REPLICA_ACK_TIMEOUT_MS).
REPLICA_ACK_TIMEOUT_MS = 250


@dataclass
class LivePlatform:
    """A running platform. `stack` changes when a scenario kills or moves nodes."""

    env: str
    topology: RedisTopology
    workdir: Path
    stack: LocalStack
    database_url: str
    jwt_keys: KeyPair  # auth signs with its private key; the attacks need both halves
    credentials: DemoCredentials
    services: list[ServiceProcess]

    def url(self, service: str) -> str:
        return next(p.url for p in self.services if p.name == service)

    @property
    def gateway(self) -> str:
        return self.url("gateway")

    @property
    def clustered(self) -> bool:
        return self.stack.mode == "cluster"

    def admin_settings(self, **overrides: Any) -> RedisSettings:
        return RedisSettings.for_nodes(
            self.stack.nodes,
            cluster=self.clustered,
            username=self.stack.username,
            password=self.stack.password,
            **overrides,
        )

    def service_settings(self, service: str, **overrides: Any) -> RedisSettings:
        return RedisSettings.for_nodes(
            self.stack.nodes,
            cluster=self.clustered,
            username=service,
            password=self.stack.users[service],
            **overrides,
        )

    def node(self, addr: str) -> redis.Redis:
        """A client of one node as the admin, with no retries: callers poll themselves."""
        host, port = split_addr(addr)
        return redis.Redis(
            host=host,
            port=port,
            username=self.stack.username,
            password=self.stack.password,
            socket_timeout=1.0,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def cluster_view(self, addr: str) -> list[ClusterNode]:
        with self.node(addr) as client:
            return parse_cluster_nodes(str(client.execute_command("CLUSTER", "NODES")))

    def services_gone(self) -> list[str]:
        """The services whose process is gone (empty: all alive)."""
        gone = []
        for service in self.services:
            try:
                os.kill(service.pid, 0)
            except ProcessLookupError:
                gone.append(service.name)
        return gone


@contextmanager
def live_platform(
    workdir: Path,
    *,
    env: str = "prod",
    topology: RedisTopology | None = None,
    students: int = 40,
    courses: int = 50,
    replica_acks: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LivePlatform]:
    """Start Redis, the database and the services under `workdir`; always stop them.

    `replica_acks`: the auth service confirms logouts with a replica where the topology
    has replicas (`RedisTopology.logout_replica_acks`, as deployed), the configuration these
    scenarios measure; False measures what the acknowledgement costs.
    """
    topology = topology or load_environment(env).redis
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    stack = start_stack(topology, workdir / "redis", env=env)
    platform: LivePlatform | None = None
    services: list[ServiceProcess] = []
    try:
        database_url = f"sqlite+aiosqlite:///{workdir / 'courses.db'}"
        upgrade(database_url)
        credentials = asyncio.run(
            seed(
                database_url,
                courses=courses,
                students=students,
                # Two distinct passwords: two argon2 hashes, whatever the number of students.
                password=lambda u: ADMIN_PASSWORD if u == "admin" else STUDENT_PASSWORD,
            )
        )
        redis_env = {
            name: redis_environment(stack.mode, stack.nodes, name, stack.users[name])
            for name in registry.NAMES
        }
        acks = topology.logout_replica_acks if replica_acks else 0
        if acks:
            redis_env["auth"]["REDIS_REPLICA_ACKS"] = str(acks)
            redis_env["auth"]["REDIS_REPLICA_ACK_TIMEOUT_MS"] = str(REPLICA_ACK_TIMEOUT_MS)
        jwt_keys = KeyPair.generate()
        services = start_services(
            redis_env=redis_env,
            database_url=database_url,
            jwt_keys=jwt_keys,
            workdir=workdir / "services",
            extra_env={"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32", **(extra_env or {})},
        )
        platform = LivePlatform(
            env, topology, workdir, stack, database_url, jwt_keys, credentials, services
        )
        yield platform
    finally:
        stop_services(services)
        stop_stack(platform.stack if platform is not None else stack)


# --- nodes ------------------------------------------------------------------------------------


def index_of(stack: LocalStack, addr: str) -> int:
    return stack.nodes.index(addr)


def sigkill_node(stack: LocalStack, index: int) -> None:
    """SIGKILL node `index` by its PID, after checking the PID still is that node."""
    pid, port = stack.pids[index], stack.ports[index]
    if not is_our_redis(pid, port):
        raise LocalStackError(f"pid {pid} is not the redis-server of {stack.nodes[index]}")
    os.kill(pid, signal.SIGKILL)


def relaunch_node(stack: LocalStack, topology: RedisTopology, index: int) -> LocalStack:
    """Start node `index` again at its address from its files (a pod coming back)."""
    directory = node_directory(stack.data_dir, index)
    node = NodeProcess(
        index,
        directory,
        stack.ports[index],
        recorded_bus_port(directory) if stack.mode == "cluster" else None,
        host=stack.hosts[index],
    )
    if stack.password is None:
        raise LocalStackError("the stack has no admin password")
    (started,) = relaunch_nodes(
        topology, [node], password=stack.password, binary=stack.binary or redis_server_binary()
    )
    pids = list(stack.pids)
    pids[index] = started.running_pid
    return replace(stack, pids=pids)


# --- tokens -----------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    """The claims of one of our access tokens, unverified: the scenario only reads them."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
