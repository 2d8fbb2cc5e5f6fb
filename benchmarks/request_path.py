"""The request path: what one authenticated gateway request costs in Redis, and what the
gateway costs in throughput.

The four services run as their own processes (`start_services`, as `make up` starts them),
each connected as its own ACL user. Over the same run:
- reads of cached courses sent straight to the courses service, then through the gateway,
  alternately, by a lean keep-alive HTTP/1.1 load generator (so the generator's own cost
  stays small next to the services'); throughput through the gateway next to direct;
- `INFO commandstats` of every node before and after each batch of requests: the Redis
  commands per request (masters: what the services sent; replicas: what replication
  applied), and by difference with the direct reads, the gateway's own;
- the sequential round trips: the gateway app in this process, on the same Redis and
  upstreams, with its Redis client wrapped to count each awaited call (a command, or a
  pipeline: on a cluster one pipeline goes to each node concerned, in parallel), per
  request.

The courses.read limits are raised for the run (GATEWAY_RATE_LIMITS: the defaults, 600 per
minute per IP and 300 per user, would refuse most of it); the algorithm stays the default.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from benchmarks.operations import Topology
from courseredis.local import LocalStack
from courseredis.local.services import (
    redis_environment,
    start_services,
    stop_services,
)
from courseredis.services import registry
from courseredis.services.db.migrate import upgrade
from courseredis.services.db.seed import seed
from courseredis.services.main import build
from courseredis.services.settings import GatewaySettings, RoutePolicy, ServiceSettings
from courseredis.services.tokens import KeyPair
from courseredis.settings import RedisSettings
from courseredis.stack_file import ServiceProcess
from courseredis.topology import split_addr

COURSES = 20
CONCURRENCY = 16
THROUGHPUT_TARGET = 0.5
ROUND_TRIP_TARGET = 1.0
_PASSWORD = "bench-password-" + secrets.token_urlsafe(8)
_RAISED = {
    "courses.read": {
        "per_ip": [{"limit": 10_000_000, "window_s": 60}],
        "per_user": [{"limit": 10_000_000, "window_s": 60}],
    }
}


@dataclass
class RequestPath:
    topology: Topology
    requests: int  # per measured batch, per path
    direct_rps: float
    gateway_rps: float
    gateway_statuses: dict[str, int]
    direct_statuses: dict[str, int]
    commands_per_request: dict[str, float]  # masters, gateway path (all services)
    direct_commands_per_request: dict[str, float]  # masters, direct path
    replica_commands_per_request: dict[str, float]  # replicas, gateway path
    round_trip_requests: int
    round_trips_per_request: float
    max_round_trips: int
    commands_per_batch: float
    nodes_per_batch: float

    @property
    def throughput_ratio(self) -> float:
        return self.gateway_rps / self.direct_rps

    @property
    def gateway_commands_per_request(self) -> dict[str, float]:
        names = set(self.commands_per_request) | set(self.direct_commands_per_request)
        out = {
            name: round(
                self.commands_per_request.get(name, 0.0)
                - self.direct_commands_per_request.get(name, 0.0),
                3,
            )
            for name in names
        }
        return {name: value for name, value in sorted(out.items()) if abs(value) >= 0.01}

    def to_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "requests_per_batch": self.requests,
            "direct_rps": round(self.direct_rps, 1),
            "gateway_rps": round(self.gateway_rps, 1),
            "throughput_ratio": round(self.throughput_ratio, 3),
            "throughput_target": THROUGHPUT_TARGET,
            "throughput_met": self.throughput_ratio >= THROUGHPUT_TARGET,
            "gateway_statuses": self.gateway_statuses,
            "direct_statuses": self.direct_statuses,
            "commands_per_request": self.commands_per_request,
            "direct_commands_per_request": self.direct_commands_per_request,
            "gateway_commands_per_request": self.gateway_commands_per_request,
            "replica_commands_per_request": self.replica_commands_per_request,
            "round_trip_requests": self.round_trip_requests,
            "round_trips_per_request": round(self.round_trips_per_request, 3),
            "max_round_trips": self.max_round_trips,
            "round_trip_target": ROUND_TRIP_TARGET,
            "round_trips_met": self.max_round_trips <= ROUND_TRIP_TARGET,
            "commands_per_batch": round(self.commands_per_batch, 3),
            "nodes_per_batch": round(self.nodes_per_batch, 3),
        }


# --- server statistics ------------------------------------------------------------------------


def _node_clients(stack: LocalStack) -> list[tuple[str, redis.Redis]]:
    out = []
    for node in stack.nodes:
        host, port = split_addr(node)
        client = redis.Redis(
            host=host,
            port=port,
            username=stack.username,
            password=stack.password,
            decode_responses=True,
        )
        role = str(client.info("replication")["role"])
        out.append((role, client))
    return out


def _commandstats(nodes: list[tuple[str, redis.Redis]]) -> dict[str, Counter[str]]:
    totals: dict[str, Counter[str]] = {"master": Counter(), "slave": Counter()}
    for role, client in nodes:
        for name, stats in client.info("commandstats").items():
            totals[role][name.removeprefix("cmdstat_")] += int(stats["calls"])
    return totals


def _per_request(before: Counter[str], after: Counter[str], requests: int) -> dict[str, float]:
    ignored = {"info"}  # our own INFO calls
    out = {}
    for name in sorted(after):
        calls = after[name] - before[name]
        if calls and name not in ignored:
            out[name] = round(calls / requests, 3)
    return out


# --- a lean HTTP/1.1 load generator -----------------------------------------------------------


async def _load(
    base_url: str, paths: Iterator[str], token: str, requests: int, concurrency: int
) -> tuple[float, Counter[str]]:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    statuses: Counter[str] = Counter()
    per_worker = [
        requests // concurrency + (i < requests % concurrency) for i in range(concurrency)
    ]

    async def worker(count: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in range(count):
                writer.write(
                    (
                        f"GET {next(paths)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n"
                    ).encode()
                )
                status = (await reader.readline()).split()[1].decode()
                length, cache = 0, ""
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    lowered = name.strip().lower()
                    if lowered == b"content-length":
                        length = int(value)
                    elif lowered == b"x-cache":
                        cache = value.strip().decode()
                await reader.readexactly(length)
                statuses[f"{status} {cache}".strip()] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in per_worker))
    return requests / (time.perf_counter() - start), statuses


# --- round trips, counted in the gateway's own client -----------------------------------------


class _CountingPipeline:
    def __init__(self, pipeline: Any, counter: _Counter) -> None:
        self._pipeline = pipeline
        self._counter = counter
        self._keys: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name == "EVALSHA":
            self._keys.append(str(args[3]))
        elif len(args) > 1:
            self._keys.append(str(args[1]))
        return self._pipeline.execute_command(*args, **options)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._counter.round_trips += 1
        self._counter.commands += len(self._keys)
        self._counter.nodes += self._counter.nodes_of(self._keys)
        return await self._pipeline.execute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


class _Counter:
    """Wraps the gateway's Redis client: every awaited call is one sequential round trip."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.round_trips = 0
        self.commands = 0
        self.nodes = 0

    def nodes_of(self, batch_keys: list[str]) -> int:
        if hasattr(self._client, "get_node_from_key"):
            return len({self._client.get_node_from_key(k).name for k in batch_keys})
        return 1

    def pipeline(self, *args: Any, **kwargs: Any) -> _CountingPipeline:
        return _CountingPipeline(self._client.pipeline(*args, **kwargs), self)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        self.commands += 1
        self.nodes += 1
        return await self._client.execute_command(*args, **options)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if callable(attribute) and asyncio.iscoroutinefunction(attribute):

            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.round_trips += 1
                self.commands += 1
                self.nodes += 1
                return await attribute(*args, **kwargs)

            return counted
        return attribute


async def _count_round_trips(
    stack: LocalStack,
    urls: dict[str, str],
    jwt_keys: KeyPair,
    database_url: str,
    token: str,
    requests: int,
) -> tuple[float, int, float, float]:
    gateway_settings = GatewaySettings(
        upstreams={s.name: urls[s.name] for s in registry.UPSTREAMS},
        rate_limits={k: RoutePolicy.model_validate(v) for k, v in _RAISED.items()},
    )
    app = build(
        "gateway",
        settings=ServiceSettings(jwt_public_keys=jwt_keys.public_pem, database_url=database_url),
        redis_settings=RedisSettings.for_nodes(
            stack.nodes,
            cluster=stack.mode == "cluster",
            username="gateway",
            password=stack.users["gateway"],
        ),
        gateway_settings=gateway_settings,
    )
    per_request: list[int] = []
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        counter = _Counter(runtime.redis)
        runtime.redis = counter
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(requests):
                before = counter.round_trips
                response = await http.get(f"/courses/{1 + i % COURSES}", headers=headers)
                response.raise_for_status()
                per_request.append(counter.round_trips - before)
        runtime.redis = counter._client
    return (
        statistics.fmean(per_request),
        max(per_request),
        counter.commands / max(1, counter.round_trips),
        counter.nodes / max(1, counter.round_trips),
    )


# --- the run ----------------------------------------------------------------------------------


def _login(gateway: str, username: str, password: str) -> str:
    response = httpx.post(
        gateway + "/auth/login", json={"username": username, "password": password}, timeout=30
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def run(stack: LocalStack, topology: Topology, workdir: Path, *, requests: int) -> RequestPath:
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{workdir / 'courses.db'}"
    upgrade(database_url)
    credentials = asyncio.run(
        seed(database_url, courses=COURSES, students=1, password=lambda _: _PASSWORD)
    )
    jwt_keys = KeyPair.generate()
    processes: list[ServiceProcess] = start_services(
        redis_env={
            name: redis_environment(stack.mode, stack.nodes, name, stack.users[name])
            for name in registry.NAMES
        },
        database_url=database_url,
        jwt_keys=jwt_keys,
        workdir=workdir / "services",
        extra_env={"GATEWAY_RATE_LIMITS": json.dumps(_RAISED), "LOG_LEVEL": "WARNING"},
    )
    try:
        urls = {p.name: p.url for p in processes}
        username, password = credentials.students[0]
        token = _login(urls["gateway"], username, password)
        nodes = _node_clients(stack)

        def paths() -> Iterator[str]:
            return itertools.cycle([f"/courses/{i}" for i in range(1, COURSES + 1)])

        async def measure() -> RequestPath:
            await _load(urls["gateway"], paths(), token, 2 * COURSES, 4)  # fill the cache
            await _load(urls["courses"], paths(), token, min(requests, 200), CONCURRENCY)
            await _load(urls["gateway"], paths(), token, min(requests, 200), CONCURRENCY)
            direct: list[float] = []
            through: list[float] = []
            statuses: dict[str, Counter[str]] = {"direct": Counter(), "gateway": Counter()}
            stats: dict[str, list[dict[str, Counter[str]]]] = {"direct": [], "gateway": []}
            for _ in range(2):
                for path, rates in (("direct", direct), ("gateway", through)):
                    base = urls["courses"] if path == "direct" else urls["gateway"]
                    before = _commandstats(nodes)
                    rate, seen = await _load(base, paths(), token, requests, CONCURRENCY)
                    after = _commandstats(nodes)
                    rates.append(rate)
                    statuses[path] += seen
                    stats[path].append(
                        {role: after[role] - before[role] for role in ("master", "slave")}
                    )

            def mean_per_request(path: str, role: str) -> dict[str, float]:
                total: Counter[str] = Counter()
                for delta in stats[path]:
                    total += delta[role]
                return _per_request(Counter(), total, requests * len(stats[path]))

            rt_requests = max(20, min(1000, requests))
            rt_mean, rt_max, per_batch, nodes_per_batch = await _count_round_trips(
                stack, urls, jwt_keys, database_url, token, rt_requests
            )
            return RequestPath(
                topology=topology,
                requests=requests,
                direct_rps=statistics.median(direct),
                gateway_rps=statistics.median(through),
                gateway_statuses=dict(statuses["gateway"]),
                direct_statuses=dict(statuses["direct"]),
                commands_per_request=mean_per_request("gateway", "master"),
                direct_commands_per_request=mean_per_request("direct", "master"),
                replica_commands_per_request=mean_per_request("gateway", "slave"),
                round_trip_requests=rt_requests,
                round_trips_per_request=rt_mean,
                max_round_trips=rt_max,
                commands_per_batch=per_batch,
                nodes_per_batch=nodes_per_batch,
            )

        result = asyncio.run(measure())
        for _, client in nodes:
            client.close()
        return result
    finally:
        stop_services(processes)
