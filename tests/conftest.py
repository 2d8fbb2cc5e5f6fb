"""Fixtures: real `redis-server` processes, a single node and a 3x2 cluster, started once.

The topologies come from the stack files (`Pulumi.dev.yaml`, `Pulumi.prod.yaml`), so the
tests run on what `dev` and `prod` mean. `stack` is parametrized over both: a test that
takes `client` or `aclient` runs on the single node and on the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from courseredis.connection import AsyncClient, SyncClient, create_client, open_async_client
from courseredis.environments import load_environment
from courseredis.local import LocalStack, running_stack
from courseredis.settings import RedisSettings
from tests.support import settings_for


@pytest.fixture(scope="session")
def single_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    topology = load_environment("dev").redis
    with running_stack(topology, tmp_path_factory.mktemp("single"), env="dev") as stack:
        yield stack


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    topology = load_environment("prod").redis
    with running_stack(topology, tmp_path_factory.mktemp("cluster"), env="prod") as stack:
        yield stack


@pytest.fixture(scope="session", params=["single", "cluster"])
def stack(request: pytest.FixtureRequest) -> LocalStack:
    name = "single_node" if request.param == "single" else "cluster"
    result: LocalStack = request.getfixturevalue(name)
    return result


@pytest.fixture(scope="session")
def redis_settings(stack: LocalStack) -> RedisSettings:
    return settings_for(stack)


@pytest.fixture
def client(redis_settings: RedisSettings) -> Iterator[SyncClient]:
    redis_client = create_client(redis_settings)
    yield redis_client
    redis_client.close()


@pytest.fixture
async def aclient(redis_settings: RedisSettings) -> AsyncIterator[AsyncClient]:
    redis_client = await open_async_client(redis_settings)
    yield redis_client
    await redis_client.aclose()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
