"""Newer servers than the machine's packages, in podman containers: where native primitives run.

The machine's redis-server 7.0 and valkey-server 8.0 have none of the commands
`courseredis.server_features` looks for; Debian 13's have some: its redis-server 8.0.2
(the image `redis:8.10.2-trixie` the rehearsal builds) has HSETEX/HGETEX, its valkey-server
8.1.1 (`NATIVE_VALKEY`) has `SET ... IFEQ`. Each runs once per test session on the host's
network, on a free loopback port, and is removed by id at the end. The images are built
by the rehearsal's `ImageBuilder` when missing (minutes, once per machine) and kept.

They need rootful podman, as the rehearsal does: without root or podman the tests are
skipped, except under CI (`CI=true`, which runs as root with podman), where that fails.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from courseredis.rehearsal.images import NATIVE_VALKEY, ImageBuilder
from courseredis.rehearsal.podman import Podman
from tests.support import wait_for_ping

# Debian 13's redis-server 8.0.2 under the name the charts pin (the rehearsal's stand-in).
NEWER_REDIS = "redis:8.10.2-trixie"


@dataclass(frozen=True)
class NewerServer:
    name: str  # what the tests' ids say: engine and release
    image: str
    binary: str
    port: int

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def async_client(self) -> redis.asyncio.Redis:
        return redis.asyncio.Redis(port=self.port, decode_responses=True)


SERVERS = {
    "redis-8.0": (NEWER_REDIS, "redis-server"),
    "valkey-8.1": (NATIVE_VALKEY, "valkey-server"),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def podman_or_skip(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    podman = Podman(tmp_path_factory.mktemp("newer-servers"))
    if os.geteuid() != 0 or not podman.available():
        why = "the newer servers run in rootful podman: run the tests as root with podman"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI must run them)")
        pytest.skip(why)
    return podman


def serve(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewerServer]:
    """The server `name` (a key of SERVERS) until the generator is closed; for a fixture:
    `yield from serve("valkey-8.1", tmp_path_factory)`."""
    podman = podman_or_skip(tmp_path_factory)
    image, binary = SERVERS[name]
    ImageBuilder(podman, log=lambda line: None).ensure([image])
    port = _free_port()
    container = podman.run(
        ["run", "-d", "--rm", "--network", "host", image, binary, "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    ).stdout.strip()  # fmt: skip
    try:
        server = NewerServer(name, image, binary, port)
        with server.client() as client:
            wait_for_ping(client, timeout_s=30)
        yield server
    finally:
        podman.run(["rm", "--force", "--time", "0", container], check=False)
