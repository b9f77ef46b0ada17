"""Links: one ticket known on both sides of an exchange, and what was copied across it.

A link is unique per (exchange, a-side ticket), and a b-side ticket belongs to at most
one link. ``b_id`` stays NULL while a create on the b side is unconfirmed.

``copied`` records each comment and attachment copied across a link, per direction, by
its key on the source side (and on the destination side once known). It is how a
comment is never copied twice and never echoed back (architecture invariant 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from ticketbridge.errors import NotFound, StoreError
from ticketbridge.model import TicketRef
from ticketbridge.store._sql import dialect_insert
from ticketbridge.store.schema import CopiedKind, Direction, LinkState, copied, links


class _Unset(Enum):
    UNSET = "unset"


#: Marks an :func:`update` argument that was not given (None is a value there).
UNSET = _Unset.UNSET


class LinkConflict(StoreError):
    """The b-side ticket already belongs to another link (``existing``)."""

    def __init__(self, message: str, existing: LinkRecord | None) -> None:
        self.existing = existing
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A link as stored: both references and what each side looked like last time."""

    id: int
    exchange: str
    a_helpdesk: str
    a_id: str
    b_helpdesk: str
    b_id: str | None  #: None until the b side confirms a create
    state: LinkState
    a_modified: datetime | None  #: ``modified`` of the newest a-side snapshot applied
    a_digest: str | None  #: digest of the mapped a-side fields at the last exchange
    b_version: str | None  #: the b side's version stamp after our last write
    b_digest: str | None
    data: Mapping[str, Any]  #: per-side last applied status, priority, ... (JSON)
    created_at: datetime
    updated_at: datetime

    @property
    def a(self) -> TicketRef:
        """The a-side ticket."""
        return TicketRef(self.a_helpdesk, self.a_id)

    @property
    def b(self) -> TicketRef | None:
        """The b-side ticket, once its id is known."""
        return None if self.b_id is None else TicketRef(self.b_helpdesk, self.b_id)


# Statements built once (building them per call costs more than running them).
_LINK_ID = sa.bindparam("link_id_", type_=sa.Integer())
_INSERT = sa.insert(links).returning(*links.c)
_GET = sa.select(links).where(links.c.id == _LINK_ID)
_FIND = (
    sa.select(links)
    .where(
        links.c.exchange == sa.bindparam("exchange_", type_=sa.String()),
        links.c.a_helpdesk == sa.bindparam("a_helpdesk_", type_=sa.String()),
        links.c.a_id == sa.bindparam("a_id_", type_=sa.String()),
    )
    .limit(1)
)
_UPDATE = sa.update(links).where(links.c.id == _LINK_ID).returning(*links.c)
_COPIED_MAP = sa.select(copied.c.source_key, copied.c.dest_key).where(
    copied.c.link_id == _LINK_ID,
    copied.c.direction == sa.bindparam("direction_", type_=sa.String()),
    copied.c.kind == sa.bindparam("kind_", type_=sa.String()),
)
_RECORD_COPIED: dict[str, Any] = {}  # per dialect name


def _record_copied_statement(conn: Connection) -> Any:
    statement = _RECORD_COPIED.get(conn.dialect.name)
    if statement is None:
        statement = (
            dialect_insert(conn, copied)
            .on_conflict_do_nothing(
                index_elements=[
                    copied.c.link_id,
                    copied.c.direction,
                    copied.c.kind,
                    copied.c.source_key,
                ]
            )
            .returning(copied.c.id)
        )
        _RECORD_COPIED[conn.dialect.name] = statement
    return statement


def create(
    conn: Connection,
    *,
    exchange: str,
    a_helpdesk: str,
    a_id: str,
    b_helpdesk: str,
    now: datetime,
    b_id: str | None = None,
    state: LinkState = LinkState.PENDING,
    a_modified: datetime | None = None,
    a_digest: str | None = None,
    b_version: str | None = None,
    b_digest: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> LinkRecord:
    """Create a link, or return the existing one for (exchange, a_helpdesk, a_id).

    Raises LinkConflict when the b-side ticket already belongs to another link.
    """
    values = {
        "exchange": exchange,
        "a_helpdesk": a_helpdesk,
        "a_id": a_id,
        "b_helpdesk": b_helpdesk,
        "b_id": b_id,
        "state": state,
        "a_modified": a_modified,
        "a_digest": a_digest,
        "b_version": b_version,
        "b_digest": b_digest,
        "data": dict(data or {}),
        "created_at": now,
        "updated_at": now,
    }
    try:
        with conn.begin_nested():
            row = conn.execute(_INSERT, values).mappings()
            return _link(row.one())
    except IntegrityError as exc:
        existing = find(conn, exchange, a_helpdesk, a_id)
        if existing is not None:
            return existing
        other = find_by_b(conn, b_helpdesk, b_id) if b_id is not None else None
        if other is not None:
            raise LinkConflict(
                f"{b_helpdesk}:{b_id} is already linked to {other.a} ({other.exchange})", other
            ) from exc
        raise


def get(conn: Connection, link_id: int) -> LinkRecord:
    """The link with this id. Raises NotFound."""
    row = conn.execute(_GET, {"link_id_": link_id}).mappings().first()
    if row is None:
        raise NotFound(f"no link {link_id}")
    return _link(row)


def find(conn: Connection, exchange: str, a_helpdesk: str, a_id: str) -> LinkRecord | None:
    """The link of an a-side ticket in one exchange, or None."""
    params = {"exchange_": exchange, "a_helpdesk_": a_helpdesk, "a_id_": a_id}
    row = conn.execute(_FIND, params).mappings().first()
    return None if row is None else _link(row)


def find_by_b(conn: Connection, b_helpdesk: str, b_id: str) -> LinkRecord | None:
    """The link whose b side is this ticket, or None."""
    return _first(conn, sa.and_(links.c.b_helpdesk == b_helpdesk, links.c.b_id == b_id))


def find_by_ref(conn: Connection, helpdesk: str, ticket_id: str) -> LinkRecord | None:
    """The oldest link with this ticket on either side, or None (see :func:`find_all_by_ref`)."""
    found = find_all_by_ref(conn, helpdesk, ticket_id)
    return found[0] if found else None


def find_all_by_ref(conn: Connection, helpdesk: str, ticket_id: str) -> list[LinkRecord]:
    """Every link with this ticket on either side (an a-side ticket may be in several)."""
    condition = sa.or_(
        sa.and_(links.c.a_helpdesk == helpdesk, links.c.a_id == ticket_id),
        sa.and_(links.c.b_helpdesk == helpdesk, links.c.b_id == ticket_id),
    )
    return list_links(conn, condition=condition)


def list_links(
    conn: Connection,
    *,
    exchange: str | None = None,
    helpdesk: str | None = None,
    state: LinkState | None = None,
    condition: sa.ColumnElement[bool] | None = None,
) -> list[LinkRecord]:
    """Links in id order, optionally of one exchange, touching one helpdesk, in one state."""
    statement = sa.select(links)
    if exchange is not None:
        statement = statement.where(links.c.exchange == exchange)
    if helpdesk is not None:
        statement = statement.where(
            sa.or_(links.c.a_helpdesk == helpdesk, links.c.b_helpdesk == helpdesk)
        )
    if state is not None:
        statement = statement.where(links.c.state == state)
    if condition is not None:
        statement = statement.where(condition)
    rows = conn.execute(statement.order_by(links.c.id)).mappings()
    return [_link(row) for row in rows]


def update(
    conn: Connection,
    link_id: int,
    *,
    now: datetime,
    state: LinkState | _Unset = UNSET,
    b_id: str | _Unset | None = UNSET,
    a_modified: datetime | _Unset | None = UNSET,
    a_digest: str | _Unset | None = UNSET,
    b_version: str | _Unset | None = UNSET,
    b_digest: str | _Unset | None = UNSET,
    data: Mapping[str, Any] | _Unset = UNSET,
) -> LinkRecord:
    """Change the given fields (``data`` is replaced as a whole) and return the new record.

    Raises NotFound, or LinkConflict when ``b_id`` names a ticket linked elsewhere.
    """
    given: dict[str, Any] = {
        "state": state,
        "b_id": b_id,
        "a_modified": a_modified,
        "a_digest": a_digest,
        "b_version": b_version,
        "b_digest": b_digest,
        "data": dict(data) if isinstance(data, Mapping) else data,
    }
    values = {name: value for name, value in given.items() if value is not UNSET}
    values["updated_at"] = now
    values["link_id_"] = link_id
    try:
        with conn.begin_nested():
            row = conn.execute(_UPDATE, values).mappings().first()
    except IntegrityError as exc:
        other = find_by_b(conn, get(conn, link_id).b_helpdesk, str(b_id))
        raise LinkConflict(
            f"ticket {b_id} is already linked (link {other and other.id})", other
        ) from exc
    if row is None:
        raise NotFound(f"no link {link_id}")
    return _link(row)


def record_copied(
    conn: Connection,
    link_id: int,
    direction: Direction,
    kind: CopiedKind,
    source_key: str,
    *,
    now: datetime,
    dest_key: str | None = None,
) -> bool:
    """Record that ``source_key`` was copied; True if it was not recorded before.

    Idempotent. A repeat with a ``dest_key`` fills in a destination key still unknown.
    """
    inserted = conn.execute(
        _record_copied_statement(conn),
        {
            "link_id": link_id,
            "direction": direction,
            "kind": kind,
            "source_key": source_key,
            "dest_key": dest_key,
            "created_at": now,
        },
    ).first()
    if inserted is None and dest_key is not None:
        conn.execute(
            sa.update(copied)
            .where(
                copied.c.link_id == link_id,
                copied.c.direction == direction,
                copied.c.kind == kind,
                copied.c.source_key == source_key,
                copied.c.dest_key.is_(None),
            )
            .values(dest_key=dest_key)
        )
    return inserted is not None


def copied_map(
    conn: Connection, link_id: int, direction: Direction, kind: CopiedKind
) -> dict[str, str | None]:
    """Source key -> destination key (None if unknown) of everything copied that way."""
    params = {"link_id_": link_id, "direction_": direction, "kind_": kind}
    rows = conn.execute(_COPIED_MAP, params).all()
    return {source: dest for source, dest in rows}


def _first(conn: Connection, condition: sa.ColumnElement[bool]) -> LinkRecord | None:
    row = conn.execute(sa.select(links).where(condition).limit(1)).mappings().first()
    return None if row is None else _link(row)


def _link(row: RowMapping) -> LinkRecord:
    return LinkRecord(
        id=row["id"],
        exchange=row["exchange"],
        a_helpdesk=row["a_helpdesk"],
        a_id=row["a_id"],
        b_helpdesk=row["b_helpdesk"],
        b_id=row["b_id"],
        state=LinkState(row["state"]),
        a_modified=row["a_modified"],
        a_digest=row["a_digest"],
        b_version=row["b_version"],
        b_digest=row["b_digest"],
        data=MappingProxyType(dict(row["data"] or {})),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
