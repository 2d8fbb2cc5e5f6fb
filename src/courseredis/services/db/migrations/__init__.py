"""Alembic migrations of the services' database; run them with `courseredis.services.db.migrate`."""
