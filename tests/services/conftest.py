"""Fixtures for the services: a migrated, seeded database per Redis topology, and the
four services running against it and the real Redis of that topology."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from courseredis import keys
from courseredis.local import LocalStack
from courseredis.services import registry
from courseredis.services.db.migrate import upgrade
from courseredis.services.db.seed import DemoCredentials, seed
from courseredis.settings import RedisSettings
from tests.services.db.postgres import PostgresMissing, postgres_bin_dir, running_postgres
from tests.services.platform import Platform, running_platform
from tests.support import settings_for

STUDENTS = 8
COURSES = 30


def demo_password(username: str) -> str:
    return f"pw-{username}-demo"


def redis_per_service(stack: LocalStack) -> dict[str, RedisSettings]:
    """Each service connects as its own ACL user, as deployed."""
    users = getattr(stack, "users", None) or {}
    out = {}
    for service in registry.NAMES:
        if service in users:
            out[service] = RedisSettings.for_nodes(
                stack.nodes,
                cluster=stack.mode == "cluster",
                username=service,
                password=users[service],
            )
        else:
            out[service] = settings_for(stack)
    return out


@pytest.fixture(scope="session")
async def seeded_database(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, DemoCredentials]:
    path: Path = tmp_path_factory.mktemp(f"db-{stack.mode}") / "courses.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    credentials = await seed(url, courses=COURSES, students=STUDENTS, password=demo_password)
    return url, credentials


def forget_login_attempts(stack: LocalStack, credentials: DemoCredentials) -> None:
    """Each test starts with the demo accounts' login limits unspent, as each starts from a
    client address of its own (`running_platform`): the accounts are shared by the tests
    of a session, and the limit would count them all."""
    from courseredis.connection import create_client

    accounts = [u for u, _ in credentials.students] + [credentials.admin[0]]
    with create_client(settings_for(stack)) as client:
        for username in accounts:
            client.delete(keys.ratelimit_account(username, "login"))


@pytest.fixture
async def platform(
    stack: LocalStack, seeded_database: tuple[str, DemoCredentials]
) -> AsyncIterator[Platform]:
    forget_login_attempts(stack, seeded_database[1])
    async with running_platform(redis_per_service(stack), seeded_database[0]) as running:
        yield running


@pytest.fixture
def credentials(seeded_database: tuple[str, DemoCredentials]) -> DemoCredentials:
    return seeded_database[1]


@pytest.fixture
def admin_client(stack: LocalStack) -> Iterator[object]:
    from courseredis.connection import create_client

    client = create_client(settings_for(stack))
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PostgreSQL server for the session: fails, never skips, when not installed."""
    try:
        postgres_bin_dir()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with running_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url
