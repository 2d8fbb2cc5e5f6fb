"""Fixtures: every database test runs on SQLite (a temp file) and on a real PostgreSQL.

`postgres_url` starts one private server for the session (see `postgres.py`); each test
that takes `database_url` gets a new empty database on it, or a new SQLite file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from courseredis.services.db.engine import create_engine, make_sessionmaker
from courseredis.services.db.migrate import upgrade_async
from tests.services.db.postgres import fresh_database

BACKENDS = ("sqlite", "postgresql")


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'courses.db'}"


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new empty database: a SQLite file, or a database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    server: str = request.getfixturevalue("postgres_url")
    async with fresh_database(server) as url:
        yield url


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    await upgrade_async(database_url)
    return database_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    db_engine = create_engine(migrated_url)
    yield db_engine
    await db_engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
