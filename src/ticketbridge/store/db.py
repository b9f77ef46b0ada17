"""Engines: one URL in, a synchronous SQLAlchemy engine configured for our locking rules out.

SQLite (``sqlite:///path``)
    Every connection gets ``journal_mode=WAL`` (readers never block the one writer),
    ``busy_timeout=5000`` (wait for the write lock instead of failing) and
    ``foreign_keys=ON``.

    Durability (docs/adr/0005-sqlite-durability.md): write transactions run with
    ``synchronous=NORMAL`` (atomic and consistent, safe against a process crash, but the
    WAL is not fsynced at commit, so after a power loss the newest commits may be rolled
    back), except on connections marked :data:`DURABLE`: those commit with
    ``synchronous=FULL``, which fsyncs the WAL, and with it every frame committed before.
    SQLite refuses to change ``synchronous`` inside a transaction, so the level is set just
    before the ``BEGIN`` (and only when it differs from the connection's current one).
    :func:`sync` makes every commit so far durable after the fact.

    A deferred ``BEGIN`` that later upgrades from reading to writing fails at once with
    ``SQLITE_BUSY`` when another connection writes, and ``busy_timeout`` does not help
    there. So we take transaction control away from the sqlite3 module
    (``isolation_level = None``) and emit the BEGIN ourselves: ``BEGIN IMMEDIATE`` for
    every transaction, except on connections marked read-only with :data:`READ_ONLY`,
    which use a plain deferred ``BEGIN``.

PostgreSQL (``postgresql://...``)
    Always the psycopg 3 driver (``postgresql+psycopg``), READ COMMITTED. Concurrency
    is handled by row locks and advisory locks in the queries themselves (see jobs.py).
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from ticketbridge.errors import StoreError

#: Execution option marking a connection whose transactions only read.
READ_ONLY = "ticketbridge_read_only"
#: Execution option marking a connection whose write transactions must be on disk when
#: they commit, power loss included (SQLite: ``synchronous=FULL``; PostgreSQL: always).
DURABLE = "ticketbridge_durable"

# Where on_begin remembers a pooled SQLite connection's synchronous level.
_SYNCHRONOUS = "ticketbridge_synchronous"

BUSY_TIMEOUT_MS = 5000


def normalise_url(url: str | URL) -> URL:
    """Parse ``url`` and pick our driver: psycopg 3 for PostgreSQL, sqlite3 for SQLite.

    Raises StoreError for any other database.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.get_driver_name() not in ("pysqlite", ""):
            raise StoreError(f"unsupported SQLite driver in {parsed!r}; use sqlite:///path")
        if parsed.database in (None, "", ":memory:"):
            raise StoreError("an in-memory SQLite database cannot be shared; give a file path")
        return parsed.set(drivername="sqlite")
    raise StoreError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://")


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A synchronous engine for ``url`` with the pragmas and BEGIN handling described above."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000}
        engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 module; on_begin below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so that switching to WAL waits for a concurrent opener.
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()
        connection_record.info[_SYNCHRONOUS] = "NORMAL"

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        # Not inside a transaction yet: SQLite accepts the change only here.
        level = "FULL" if options.get(DURABLE) else "NORMAL"
        info = conn.connection.info
        if info.get(_SYNCHRONOUS) != level:
            conn.exec_driver_sql(f"PRAGMA synchronous = {level}")
            info[_SYNCHRONOUS] = level
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sync(engine: Engine) -> None:
    """Make every transaction committed so far durable (power loss included).

    SQLite: fsync the WAL file, which is what a ``synchronous=FULL`` commit does after
    writing its frames; it covers every frame written before, whichever connection wrote
    it. Frames already checkpointed were synced by the checkpoint (WAL with
    ``synchronous=NORMAL`` syncs the WAL before, and the database after, a checkpoint).
    When there is no WAL file, the database file is synced. PostgreSQL: nothing to do;
    its commits are durable.
    """
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    assert database, "normalise_url refuses SQLite URLs without a file"
    for path in (f"{database}-wal", database):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
