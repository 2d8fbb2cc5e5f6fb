"""Async engines for the services' database: SQLite for a laptop, PostgreSQL for real.

`create_engine` takes the URL as operators write it (`postgres://...` included) and sets
each backend up for many concurrent writers:

SQLite allows one writer at a time. WAL lets readers go on beside it and `busy_timeout`
makes a writer wait for the lock instead of failing at once, but waiting is not enough on
its own: a transaction that starts as a reader (`BEGIN` is deferred) and then writes must
upgrade its lock, and if another connection committed in between, its snapshot is stale
and SQLite fails it at once with "database is locked", whatever the timeout. Every
transaction therefore starts with `BEGIN IMMEDIATE`, which takes the write lock up front
(waiting up to `busy_timeout`), so no transaction can be caught half-way. The cost is that
transactions on one SQLite file run one at a time, which a development database can afford.

PostgreSQL gets a bounded connection pool that checks a connection before handing it out,
so a restarted server costs one failed ping, not one failed request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.local/courses.db"

SQLITE_BUSY_TIMEOUT_MS = 5000
POOL_SIZE = 10
MAX_OVERFLOW = 20
POOL_RECYCLE_S = 1800

_SQLITE_DRIVER = "sqlite+aiosqlite"
_POSTGRES_DRIVER = "postgresql+asyncpg"
# What people write for each backend; each is rewritten to the async driver above.
_SQLITE_SCHEMES = {"sqlite", _SQLITE_DRIVER}
_POSTGRES_SCHEMES = {"postgres", "postgresql", _POSTGRES_DRIVER}


class UnsupportedDatabaseURL(ValueError):
    """The URL names no backend the services support, or cannot be parsed."""


def normalize_url(url: str) -> URL:
    """The URL with its async driver: `postgres://` and `postgresql://` become asyncpg.

    libpq's `sslmode=` query option, which hosted PostgreSQL URLs carry, becomes asyncpg's
    `ssl=` (asyncpg would reject `sslmode` as an unknown argument at the first connect).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UnsupportedDatabaseURL(
            f"cannot parse database URL {_redacted_text(url)!r}: expected "
            "sqlite+aiosqlite:///path/to/file.db or postgresql://user:password@host:5432/name"
        ) from None
    scheme = parsed.drivername
    if scheme in _SQLITE_SCHEMES:
        return parsed.set(drivername=_SQLITE_DRIVER)
    if scheme in _POSTGRES_SCHEMES:
        parsed = parsed.set(drivername=_POSTGRES_DRIVER)
        if "sslmode" in parsed.query and "ssl" not in parsed.query:
            parsed = parsed.update_query_dict(
                {"ssl": parsed.query["sslmode"]}
            ).difference_update_query(["sslmode"])
        return parsed
    raise UnsupportedDatabaseURL(
        f"unsupported database URL scheme {scheme!r}: use sqlite+aiosqlite:///path/to/file.db "
        "or postgresql://user:password@host:5432/name"
    )


def redacted(url: str | URL) -> str:
    """The URL without its password, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _redacted_text(url)


def _redacted_text(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Unparseable: keep the scheme only, the rest may hold a password.
        return url.split("://", 1)[0] + "://..." if "://" in url else "<unparseable URL>"


def create_engine(
    url: str, *, pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW, echo: bool = False
) -> AsyncEngine:
    """An engine for `url`, set up for its backend (see the module docstring).

    A SQLite file's directory is created if missing: SQLite creates the file, not the
    folders above it. Raises `UnsupportedDatabaseURL` (a ValueError) for any other backend.
    """
    parsed = normalize_url(url)
    options: dict[str, Any] = {"echo": echo}
    if parsed.drivername == _SQLITE_DRIVER:
        database = parsed.database
        in_memory = database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
        if not in_memory:
            assert database is not None
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            options.update(pool_size=pool_size, max_overflow=max_overflow)
        engine = _create_async_engine(parsed, **options)
        _configure_sqlite(engine)
        return engine
    options.update(
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=POOL_RECYCLE_S,
    )
    return _create_async_engine(parsed, **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (the async ORM cannot lazy-load)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def serialize_writers(connection: Connection, lock_name: str) -> None:
    """Make one transaction at a time run past this point, in every process.

    For work that reads, then writes what it read was missing (migrations, seeding), two
    processes at once would both find it missing. PostgreSQL takes a transaction-scoped
    advisory lock; on SQLite `BEGIN IMMEDIATE` already holds the one write lock.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": lock_name}
        )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver's own transaction handling would emit a deferred BEGIN; turn it off
        # and begin every transaction ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another connection may hold.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # Safe with WAL: a power cut may lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
