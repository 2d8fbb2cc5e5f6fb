"""Alembic's environment: runs the migrations on the connection `migrate.py` hands it.

There is no alembic.ini: `courseredis.services.db.migrate` builds the Config in code, opens
an async engine, and calls Alembic inside `AsyncConnection.run_sync`, passing the
synchronous face of that connection as `config.attributes["connection"]`. The whole upgrade
is one transaction (both backends have transactional DDL), so a failed migration leaves
the schema as it was. `migrate.py` takes the migration lock before Alembic starts.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from courseredis.services.db.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them on a database")
connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run migrations with `python -m courseredis.services.db migrate`, "
        "which passes the connection to use in config.attributes['connection']"
    )
run_migrations(connection)
