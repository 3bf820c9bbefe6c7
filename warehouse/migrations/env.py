"""Alembic environment: the warehouse database from the platform's configuration, the star
schema's and the API keys' metadata for autogenerate, the version table in ``public`` (the ``dw``
and ``api`` schemas are created by the migrations)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from warehouse.schema import API_SCHEMA, SCHEMA, ApiBase, Base

config = context.config
target_metadata = [Base.metadata, ApiBase.metadata]


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from config import load_settings

    return load_settings().platform.postgres.url()


def _include_name(name, type_, parent_names) -> bool:
    return type_ != "schema" or name in (SCHEMA, API_SCHEMA)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, include_schemas=True,
                      include_name=_include_name)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(_url(), poolclass=pool.NullPool)
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, include_schemas=True,
                      include_name=_include_name, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
