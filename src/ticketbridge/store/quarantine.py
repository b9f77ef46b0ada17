"""Quarantine: triggers that could not be understood, with the reason, until an operator acts.

Quarantining marks the inbox entry ``quarantined`` and opens a quarantine row. Releasing
closes the row (the operator has dealt with it); the entry keeps its ``quarantined``
state, so it still shows how it ended. To process it again, replay it
(:func:`ticketbridge.store.inbox.replay`, which also releases it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from ticketbridge.errors import NotFound
from ticketbridge.store import audit
from ticketbridge.store.schema import InboxState, inbox
from ticketbridge.store.schema import quarantine as quarantine_table


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One quarantined trigger, as an operator sees it."""

    id: int
    inbox_id: int
    reason: str
    created_at: datetime
    released_at: datetime | None  #: None while it is still in quarantine
    source: str  #: from the inbox entry
    message_id: str | None
    received_at: datetime
    helpdesk: str | None
    ticket_id: str | None


def put(conn: Connection, inbox_id: int, reason: str, *, now: datetime) -> QuarantineEntry:
    """Quarantine the inbox entry with ``reason`` (and audit it). Raises NotFound."""
    entry = conn.execute(
        sa.update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(state=InboxState.QUARANTINED, reason=reason, processed_at=now)
        .returning(inbox.c.helpdesk, inbox.c.ticket_id, inbox.c.source, inbox.c.message_id)
    ).first()
    if entry is None:
        raise NotFound(f"no inbox entry {inbox_id}")
    quarantine_id = conn.execute(
        sa.insert(quarantine_table)
        .values(inbox_id=inbox_id, reason=reason, created_at=now)
        .returning(quarantine_table.c.id)
    ).scalar_one()
    audit.record(
        conn,
        helpdesk=entry.helpdesk,
        ticket_id=entry.ticket_id,
        kind="quarantine",
        summary=f"quarantined: {reason}",
        detail={"source": entry.source, "message_id": entry.message_id, "reason": reason},
        inbox_id=inbox_id,
        at=now,
    )
    return _one(conn, quarantine_table.c.id == quarantine_id)


def list_entries(conn: Connection, *, include_released: bool = False) -> list[QuarantineEntry]:
    """Quarantine rows, oldest first; only those not yet released unless asked."""
    condition: sa.ColumnElement[bool] = sa.true()
    if not include_released:
        condition = quarantine_table.c.released_at.is_(None)
    return _select(conn, condition)


def release(conn: Connection, inbox_id: int, *, now: datetime, missing_ok: bool = False) -> None:
    """Close the entry's open quarantine (and audit it).

    Raises NotFound when the entry is not in quarantine, unless ``missing_ok``.
    """
    released = conn.execute(
        sa.update(quarantine_table)
        .where(quarantine_table.c.inbox_id == inbox_id, quarantine_table.c.released_at.is_(None))
        .values(released_at=now)
    )
    if released.rowcount == 0:
        if missing_ok:
            return
        raise NotFound(f"inbox entry {inbox_id} is not in quarantine")
    entry = conn.execute(
        sa.select(inbox.c.helpdesk, inbox.c.ticket_id).where(inbox.c.id == inbox_id)
    ).one()
    audit.record(
        conn,
        helpdesk=entry.helpdesk,
        ticket_id=entry.ticket_id,
        kind="release",
        summary="released from quarantine",
        inbox_id=inbox_id,
        at=now,
    )


def _select(conn: Connection, condition: sa.ColumnElement[bool]) -> list[QuarantineEntry]:
    q = quarantine_table
    rows = conn.execute(
        sa.select(
            q.c.id,
            q.c.inbox_id,
            q.c.reason,
            q.c.created_at,
            q.c.released_at,
            inbox.c.source,
            inbox.c.message_id,
            inbox.c.received_at,
            inbox.c.helpdesk,
            inbox.c.ticket_id,
        )
        .join(inbox, inbox.c.id == q.c.inbox_id)
        .where(condition)
        .order_by(q.c.id)
    ).mappings()
    return [_quarantine_entry(row) for row in rows]


def _one(conn: Connection, condition: sa.ColumnElement[bool]) -> QuarantineEntry:
    (entry,) = _select(conn, condition)
    return entry


def _quarantine_entry(row: RowMapping) -> QuarantineEntry:
    return QuarantineEntry(
        id=row["id"],
        inbox_id=row["inbox_id"],
        reason=row["reason"],
        created_at=row["created_at"],
        released_at=row["released_at"],
        source=row["source"],
        message_id=row["message_id"],
        received_at=row["received_at"],
        helpdesk=row["helpdesk"],
        ticket_id=row["ticket_id"],
    )
