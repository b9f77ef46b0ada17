"""Bring a database to the newest schema with Alembic, programmatically.

No ``alembic.ini`` is needed: the script directory ships inside this package
(``ticketbridge/store/migrations``) and the configuration is built here.

Safe when several processes start at once: the whole upgrade runs in one transaction
that first takes a lock: ``pg_advisory_xact_lock`` on PostgreSQL, the database's write
lock (``BEGIN IMMEDIATE``) on SQLite. Whoever comes second waits, then finds the schema
at head and does nothing. Within one process a thread lock serialises upgrades too,
because Alembic's ``context``/``op`` proxies are process-global.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from ticketbridge.store._sql import is_postgresql

MIGRATIONS = Path(__file__).parent / "migrations"

# An arbitrary constant naming "the ticketbridge schema" among advisory locks.
_MIGRATION_LOCK = 0x7469636B6574  # "ticket"
_process_lock = threading.Lock()


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for our migrations (``url`` only for command-line use)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of ticketbridge."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None for an empty database."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Migrate the database behind ``engine`` to head; does nothing when it is there."""
    with _process_lock, engine.begin() as conn:
        if is_postgresql(conn):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
