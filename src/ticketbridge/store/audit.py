"""The audit trail: what happened to each ticket, in order, for operators.

Events are appended, never changed. A ticket's timeline also shows the events of every
ticket linked to it, so an operator looking at ``ggus:40637`` sees the Footprints side too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from ticketbridge.store.schema import audit as audit_table
from ticketbridge.store.schema import links


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened, at one moment, to one ticket (or to no known ticket yet)."""

    id: int
    at: datetime
    kind: str  #: trigger, decision, operation, receipt, error, quarantine, ignored, ...
    summary: str  #: one line for humans
    helpdesk: str | None
    ticket_id: str | None
    link_id: int | None
    inbox_id: int | None
    job_id: int | None
    detail: Mapping[str, Any]  #: structured facts; JSON-serialisable


# Built once: building the statement per event costs more than running it.
_RECORD = sa.insert(audit_table).returning(audit_table.c.id)


def record(
    conn: Connection,
    *,
    helpdesk: str | None,
    ticket_id: str | None,
    kind: str,
    summary: str,
    at: datetime,
    detail: Mapping[str, Any] | None = None,
    link_id: int | None = None,
    inbox_id: int | None = None,
    job_id: int | None = None,
) -> int:
    """Append one event and return its id."""
    values = {
        "at": at,
        "helpdesk": helpdesk,
        "ticket_id": ticket_id,
        "kind": kind,
        "summary": summary,
        "detail": dict(detail or {}),
        "link_id": link_id,
        "inbox_id": inbox_id,
        "job_id": job_id,
    }
    return int(conn.execute(_RECORD, values).scalar_one())


def timeline(conn: Connection, helpdesk: str, ticket_id: str) -> list[AuditEvent]:
    """Events for the ticket and for every ticket linked to it, by time, then by id."""
    linked = conn.execute(
        sa.select(
            links.c.id, links.c.a_helpdesk, links.c.a_id, links.c.b_helpdesk, links.c.b_id
        ).where(
            sa.or_(
                sa.and_(links.c.a_helpdesk == helpdesk, links.c.a_id == ticket_id),
                sa.and_(links.c.b_helpdesk == helpdesk, links.c.b_id == ticket_id),
            )
        )
    ).all()
    refs = {(helpdesk, ticket_id)}
    link_ids = set()
    for link_id, a_helpdesk, a_id, b_helpdesk, b_id in linked:
        link_ids.add(link_id)
        refs.add((a_helpdesk, a_id))
        if b_id is not None:
            refs.add((b_helpdesk, b_id))
    conditions = [
        sa.and_(audit_table.c.helpdesk == h, audit_table.c.ticket_id == t) for h, t in sorted(refs)
    ]
    if link_ids:
        conditions.append(audit_table.c.link_id.in_(sorted(link_ids)))
    rows = conn.execute(
        sa.select(audit_table)
        .where(sa.or_(*conditions))
        .order_by(audit_table.c.at, audit_table.c.id)
    ).mappings()
    return [_event(row) for row in rows]


def events(
    conn: Connection, *, kind: str | None = None, inbox_id: int | None = None, limit: int = 100
) -> list[AuditEvent]:
    """The newest events first, optionally of one kind or about one inbox entry."""
    statement = sa.select(audit_table)
    if kind is not None:
        statement = statement.where(audit_table.c.kind == kind)
    if inbox_id is not None:
        statement = statement.where(audit_table.c.inbox_id == inbox_id)
    rows = conn.execute(statement.order_by(audit_table.c.id.desc()).limit(limit)).mappings()
    return [_event(row) for row in rows]


def _event(row: RowMapping) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        summary=row["summary"],
        helpdesk=row["helpdesk"],
        ticket_id=row["ticket_id"],
        link_id=row["link_id"],
        inbox_id=row["inbox_id"],
        job_id=row["job_id"],
        detail=MappingProxyType(dict(row["detail"] or {})),
    )
