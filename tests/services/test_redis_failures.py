"""When Redis fails, each pattern follows its policy, nothing answers 500, and service
comes back without a restart once Redis does."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from courseredis.local.ports import free_ports
from courseredis.services import registry
from courseredis.settings import RedisSettings
from tests.services.flows import login
from tests.services.platform import running_platform
from tests.support import server_binary


class Restartable:
    """A bare redis-server we can stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_ports(1)[0]
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            import time

            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    redis = Restartable(tmp_path)
    redis.start()
    yield redis
    redis.stop()


async def test_each_pattern_follows_its_policy_and_service_returns_with_redis(
    restartable, seeded_database, credentials
):
    settings = RedisSettings.for_nodes(
        [f"127.0.0.1:{restartable.port}"],
        cluster=False,
        retries=1,
        connect_timeout_s=0.3,
        socket_timeout_s=0.3,
    )
    services = dict.fromkeys(registry.NAMES, settings)
    async with running_platform(services, seeded_database[0]) as platform:
        student = await login(platform.gateway, *credentials.students[7])
        assert (
            await platform.gateway.get("/courses/2", headers=student.headers)
        ).status_code == 200

        restartable.stop()
        # The blacklist fails closed: no request is let through unchecked.
        read = await platform.gateway.get("/courses/2", headers=student.headers)
        assert read.status_code == 503
        assert "Retry-After" in read.headers
        # Login's limiter fails closed too (password guessing), with a reason.
        body = {"username": credentials.students[7][0], "password": credentials.students[7][1]}
        refused = await platform.gateway.post("/auth/login", json=body)
        assert refused.status_code == 503
        assert "rate limiter" in refused.json()["detail"]
        # Behind the gateway: the cache reads the database, the lock answers 503.
        direct = await platform.direct["courses"].get("/courses/2", headers=student.headers)
        assert direct.status_code == 200
        assert direct.headers["X-Cache"] == "miss"
        enroll = await platform.direct["enrollments"].post(
            "/courses/2/enrollments", headers=student.headers
        )
        assert enroll.status_code == 503
        assert (await platform.direct["auth"].get("/readyz")).status_code == 503

        restartable.start()  # an empty Redis: sessions are gone, so log in again
        for _ in range(50):
            ready = await platform.direct["gateway"].get("/readyz")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.1)
        again = await login(platform.gateway, *credentials.students[7])
        assert (await platform.gateway.get("/courses/2", headers=again.headers)).status_code == 200
