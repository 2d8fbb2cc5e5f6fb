"""The private PostgreSQL server of the tests: found where Debian puts it, or a clear failure."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from courseredis.services.db.engine import create_engine
from tests.services.db.postgres import PostgresMissing, postgres_bin_dir


def test_missing_postgres_names_the_package(tmp_path) -> None:
    with pytest.raises(PostgresMissing, match=r"apt-get install -y postgresql"):
        postgres_bin_dir(tmp_path)


def test_the_newest_installed_version_is_used(tmp_path) -> None:
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
        (tmp_path / version / "bin" / "pg_ctl").touch()
    assert postgres_bin_dir(tmp_path) == tmp_path / "15" / "bin"


async def test_the_server_is_private_and_the_role_is_no_superuser(postgres_url) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT current_setting('listen_addresses'), rolsuper, rolcreatedb "
                        "FROM pg_roles WHERE rolname = current_user"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert tuple(row) == ("127.0.0.1", False, True)
