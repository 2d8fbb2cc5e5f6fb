"""Newer servers than the machine's packages, in podman containers, for the tests and
benchmarks of the native primitives (`courseredis.server_features`).

The machine's redis-server 7.0 and valkey-server 8.0 have none of the commands detected;
Debian 13's have some: its redis-server 8.0.2 (the rehearsal's stand-in for the Redis image
the charts pin) has HSETEX/HGETEX, its valkey-server 8.1.1 (`NATIVE_VALKEY`) `SET ... IFEQ`.
Each runs on the host's network on a free loopback port, without persistence, and is
removed by id when done. Missing images are built by `ImageBuilder` (once per machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from courseredis.engines import PINNED, image_reference
from courseredis.local.ports import free_ports
from courseredis.rehearsal.images import NATIVE_VALKEY, ImageBuilder
from courseredis.rehearsal.podman import Podman
from courseredis.waiting import wait_until

# Debian 13's redis-server 8.0.2 under the name the charts pin (the rehearsal's stand-in).
NEWER_REDIS = ":".join(image_reference("redis", PINNED["redis"]))

# name (engine and release, what test ids and reports say) -> (image, server binary)
SERVERS: dict[str, tuple[str, str]] = {
    "valkey-8.1": (NATIVE_VALKEY, "valkey-server"),
    "redis-8.0": (NEWER_REDIS, "redis-server"),
}


@contextmanager
def running(podman: Podman, name: str) -> Iterator[int]:
    """Server `name` (a key of SERVERS), answering PING, until the block ends; its port."""
    image, binary = SERVERS[name]
    ImageBuilder(podman, log=lambda line: None).ensure([image])
    port = free_ports(1)[0]
    container = podman.run(
        ["run", "-d", "--rm", "--network", "host", image, binary, "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    ).stdout.strip()  # fmt: skip
    try:
        with redis.Redis(port=port) as client:

            def answers() -> bool:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    return False

            wait_until(answers, timeout_s=30, what=f"{image} to answer PING")
        yield port
    finally:
        podman.run(["rm", "--force", "--time", "0", container], check=False)
