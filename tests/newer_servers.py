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
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from courseredis.rehearsal.newer_servers import SERVERS, running
from courseredis.rehearsal.podman import Podman


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


def podman_or_skip(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    podman = Podman(tmp_path_factory.mktemp("newer-servers"))
    if os.geteuid() != 0 or not podman.available():
        why = "the newer servers run in rootful podman: run the tests as root with podman"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI must run them)")
        pytest.skip(why)
    return podman


def serve(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewerServer]:
    """The server `name` (a key of `SERVERS`) until the generator is closed; for a fixture:
    `yield from serve("valkey-8.1", tmp_path_factory)`."""
    podman = podman_or_skip(tmp_path_factory)
    with running(podman, name) as port:
        image, binary = SERVERS[name]
        yield NewerServer(name, image, binary, port)
