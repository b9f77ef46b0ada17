"""Test databases: a ``store_url``/``store`` pair of fixtures run on SQLite and PostgreSQL.

PostgreSQL is required, never skipped: every ``postgresql`` case creates a fresh
database ``tb_test_<random>`` on the server at ``TICKETBRIDGE_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth) and drops it afterwards.
If the server cannot be reached, those cases fail with a message saying so.

Other test modules get a PostgreSQL URL of their own with :func:`make_pg_database`::

    from tests.support.databases import make_pg_database

    def test_something():
        with make_pg_database() as url:
            store = Store.open(url)
            ...
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from ticketbridge.store import Store

PG_ENV = "TICKETBRIDGE_TEST_PG"
DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASES = ("sqlite", "postgresql")


def pg_server_url() -> URL:
    """The maintenance database URL of the test PostgreSQL server (psycopg driver)."""
    return make_url(os.environ.get(PG_ENV) or DEFAULT_PG_SERVER).set(
        drivername="postgresql+psycopg"
    )


def _admin_engine(server: URL) -> sa.Engine:
    return sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@contextmanager
def make_pg_database(prefix: str = "tb_test") -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards.

    Fails the calling test (does not skip it) when the server is unreachable.
    """
    server = pg_server_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = _admin_engine(server)
    try:
        problem = None
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            problem = str(exc.orig).strip()
        if problem is not None:
            pytest.fail(
                f"PostgreSQL is required for these tests but {server.render_as_string()} "
                f"cannot be reached ({problem}). Start the server, or point {PG_ENV} "
                "at one (trust auth, a role allowed to CREATE DATABASE).",
                pytrace=False,
            )
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def make_sqlite_url(directory: Path) -> str:
    """A URL for a new SQLite database file in ``directory``."""
    return f"sqlite:///{directory / 'ticketbridge.db'}"


@pytest.fixture(
    params=[
        pytest.param(db, marks=[pytest.mark.pg] if db == "postgresql" else []) for db in DATABASES
    ],
    ids=list(DATABASES),
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        yield make_sqlite_url(tmp_path)
    else:
        with make_pg_database() as url:
            yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of an empty PostgreSQL database (for PostgreSQL-only tests)."""
    with make_pg_database() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on ``store_url``, closed afterwards."""
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
