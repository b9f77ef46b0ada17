"""Small SQL helpers shared by the store modules."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that offers ``on_conflict_do_nothing``/``on_conflict_do_update``.

    Both dialects spell it the same way; only the construct's class differs. Typed as
    ``Any`` because the two classes share no common base that declares those methods.
    """
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_postgresql(conn: Connection) -> bool:
    """True when ``conn`` talks to PostgreSQL (else it is SQLite)."""
    return conn.dialect.name == "postgresql"
