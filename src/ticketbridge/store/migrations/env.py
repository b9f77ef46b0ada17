"""Alembic environment for the store.

At run time :func:`ticketbridge.store.migrate.upgrade` passes an open connection (inside
its locked transaction) in ``config.attributes["connection"]``. For writing a new
revision, ``alembic_config(url)`` supplies a URL instead; see docs/store.md.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ticketbridge.store.db import create_engine
from ticketbridge.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the migrations")
    engine = create_engine(url)
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
