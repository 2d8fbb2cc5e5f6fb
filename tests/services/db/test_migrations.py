"""The shipped migrations build exactly the models' schema, and run safely more than once."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from courseredis.services.db.engine import create_engine
from courseredis.services.db.migrate import (
    SchemaNotCurrent,
    check_schema_current,
    current_revision,
    downgrade_async,
    head_revision,
    upgrade,
    upgrade_async,
)
from courseredis.services.db.models import Base

TABLES = {"alembic_version", "courses", "enrollments", "users"}


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_schema_equals_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
        assert await connection.run_sync(_tables) == TABLES


async def test_the_comparison_sees_a_difference(engine: AsyncEngine) -> None:
    """The test above would pass vacuously if the comparison saw nothing at all."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql("DROP INDEX ix_enrollments_user_id")
        differences = await connection.run_sync(_differences)
    assert [d[0] for d in differences if isinstance(d, tuple)] == ["add_index"]


async def test_concurrent_upgrades_all_succeed(database_url: str) -> None:
    """Replicas that start together all migrate; the lock makes the later ones no-ops."""
    await asyncio.gather(*(upgrade_async(database_url) for _ in range(4)))
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == head_revision() == "0001"
    finally:
        await engine.dispose()


async def test_downgrade_to_base_then_upgrade_again(migrated_url: str) -> None:
    await downgrade_async(migrated_url, "base")
    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"alembic_version"}
        await upgrade_async(migrated_url)
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == TABLES
    finally:
        await engine.dispose()


async def test_check_schema_current_says_to_migrate(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaNotCurrent, match=r"has no schema.*migrate"):
            await check_schema_current(engine)
        await upgrade_async(database_url)
        await check_schema_current(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sync_upgrade_works_inside_a_running_loop(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


def test_sync_upgrade_works_without_a_loop(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'courses.db'}"
    upgrade(url)
    upgrade(url)
    assert (tmp_path / "nested" / "dir" / "courses.db").exists()
