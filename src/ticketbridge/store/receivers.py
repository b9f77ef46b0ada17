"""Receiver state: what each receiver needs to resume where it stopped.

Examples: an IMAP receiver's UIDVALIDITY and last UID, a POP3 receiver's seen UIDLs, a
poller's updated-since watermark. One JSON document per receiver name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ticketbridge.store._sql import dialect_insert
from ticketbridge.store.schema import receiver_state


def load(conn: Connection, name: str) -> dict[str, Any]:
    """The receiver's saved state; an empty dict when it never saved any."""
    data = conn.execute(
        sa.select(receiver_state.c.data).where(receiver_state.c.name == name)
    ).scalar_one_or_none()
    return dict(data) if data else {}


def save(conn: Connection, name: str, data: Mapping[str, Any], *, now: datetime) -> None:
    """Replace the receiver's saved state with ``data`` (JSON-serialisable)."""
    statement = dialect_insert(conn, receiver_state).values(
        name=name, data=dict(data), updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[receiver_state.c.name],
        set_={"data": statement.excluded.data, "updated_at": statement.excluded.updated_at},
    )
    conn.execute(statement)
