"""Schema migrations, run from code: no alembic.ini, no `alembic` command needed.

The migrations ship inside the package (`migrations/`), so an installed service can
migrate its database with `python -m courseredis.services.db migrate` or by calling
`upgrade(url)` / `await upgrade_async(url)`. Alembic runs inside `AsyncConnection.run_sync`
on the connection opened here (see `migrations/env.py`), in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from courseredis.services.db.engine import (
    create_engine,
    normalize_url,
    redacted,
    serialize_writers,
)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
CLI = "python -m courseredis.services.db"
MIGRATION_LOCK = "courseredis.services.db.migrations"

# A step of Alembic work, run on the synchronous face of an async connection.
_Step = Callable[[Connection], None]


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this code was written for."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's Config for the shipped migrations, optionally bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id: what `upgrade` brings a database to."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations under {MIGRATIONS_DIR}"
    return head


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision`; safe to run from several processes.

    Concurrent runs queue on a lock (see `_run`), and a run that finds the
    schema current changes nothing.
    """
    await _run(url, lambda connection: command.upgrade(alembic_config(connection), revision))


async def downgrade_async(url: str, revision: str) -> None:
    """Migrate down to `revision` ("base" drops every table the migrations made)."""
    await _run(url, lambda connection: command.downgrade(alembic_config(connection), revision))


def upgrade(url: str, revision: str = "head") -> None:
    """`upgrade_async` for synchronous callers, from inside a running event loop too.

    `asyncio.run` cannot nest, so inside a running loop the migration runs on a private
    loop in a worker thread, and this call blocks the caller's loop until it is done.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade_async(url, revision))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate") as pool:
        pool.submit(lambda: asyncio.run(upgrade_async(url, revision))).result()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def check_schema_current(engine: AsyncEngine) -> None:
    """Raise `SchemaNotCurrent`, saying what to run, unless the schema is at head."""
    found = await current_revision(engine)
    expected = head_revision()
    if found != expected:
        state = "has no schema" if found is None else f"is at revision {found}"
        raise SchemaNotCurrent(
            f"the database at {redacted(engine.url)} {state}, this code needs {expected}: "
            f"run `{CLI} migrate --database-url URL` first"
        )


async def _run(url: str, step: _Step) -> None:
    """Run `step` in one transaction, after every other migration anywhere has finished.

    Service replicas may start, and migrate, at the same moment: the second waits for the
    lock, then finds the schema at head and does nothing. The lock is taken before Alembic
    starts, not in env.py, because Alembic keeps the running migration in module globals
    (`alembic.context`): two migrations in one process must not interleave either, and a
    task waiting for the lock inside Alembic would already have replaced them.
    """
    async with _sqlite_file_lock(url):
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(serialize_writers, MIGRATION_LOCK)
                await connection.run_sync(step)
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def _sqlite_file_lock(url: str) -> AsyncIterator[None]:
    """On SQLite, migrations queue on a lock file instead (no advisory locks there).

    Waiting on SQLite's own busy timeout is not enough: a migration can hold the write lock
    longer than that on a loaded machine, and the waiter fails with "database is locked".
    flock works across processes and between two opens in one process alike.
    """
    parsed = normalize_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database:
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
