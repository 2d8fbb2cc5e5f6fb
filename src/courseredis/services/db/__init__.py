"""The services' database: models, engines, migrations and demo data.

`python -m courseredis.services.db migrate|prepare|seed|revision` is the command line; the
services import `create_engine` / `make_sessionmaker` from `engine` and the models from
`models`.
"""
