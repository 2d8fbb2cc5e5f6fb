"""URLs as operators write them, and the SQLite settings that let many writers share a file."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from courseredis.services.db.engine import (
    DEFAULT_DATABASE_URL,
    SQLITE_BUSY_TIMEOUT_MS,
    UnsupportedDatabaseURL,
    create_engine,
    normalize_url,
    redacted,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/courses", "postgresql+asyncpg://u:p@db:5432/courses"),
        ("postgresql://u:p@db/courses", "postgresql+asyncpg://u:p@db/courses"),
        ("postgresql+asyncpg://u:p@db/courses", "postgresql+asyncpg://u:p@db/courses"),
        ("postgres://u:p@db/c?sslmode=require", "postgresql+asyncpg://u:p@db/c?ssl=require"),
        ("sqlite:///.local/courses.db", "sqlite+aiosqlite:///.local/courses.db"),
        (DEFAULT_DATABASE_URL, DEFAULT_DATABASE_URL),
    ],
)
def test_urls_are_rewritten_to_the_async_drivers(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "url",
    ["mysql://u:secret@db/courses", "postgresql+psycopg2://u:secret@db/c", "redis://db:6379"],
)
def test_other_backends_are_refused_clearly(url: str) -> None:
    with pytest.raises(UnsupportedDatabaseURL, match="unsupported database URL scheme") as caught:
        create_engine(url)
    assert isinstance(caught.value, ValueError) and "secret" not in str(caught.value)


def test_an_unparseable_url_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError, match="cannot parse database URL") as caught:
        create_engine("not a url with secret")
    assert "secret" not in str(caught.value)


def test_redacted_hides_the_password() -> None:
    assert redacted("postgres://u:secret@db/c") == "postgres://u:***@db/c"


async def test_sqlite_pragmas(tmp_path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'new' / 'courses.db'}")
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        "foreign_keys": 1,
        "synchronous": 1,
    }
