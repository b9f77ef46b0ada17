"""The inbox: every trigger received, stored before its source is acknowledged.

A trigger is stored together with the job that will process it, in one transaction
(architecture invariant 1). Duplicates are recognised by Message-ID and by the sha256 of
the raw bytes; both are unique columns, so two receivers racing on one message cannot
both insert it: the loser's insert fails inside a savepoint and it reports the winner's
row as a duplicate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from ticketbridge.errors import NotFound
from ticketbridge.model import TicketRef
from ticketbridge.store import audit, jobs, quarantine
from ticketbridge.store.schema import InboxState, inbox

#: States in which an inbox entry is finished (``processed_at`` is set).
FINAL_STATES = frozenset(InboxState) - {InboxState.RECEIVED}


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One stored trigger."""

    id: int
    source: str  #: the receiver that got it
    message_id: str | None  #: None when the source gave none
    digest: str  #: sha256 hex of ``raw``
    received_at: datetime
    state: InboxState
    reason: str | None  #: why it was skipped, ignored, quarantined or dead
    helpdesk: str | None  #: the ticket it concerns, once known
    ticket_id: str | None
    processed_at: datetime | None
    raw: bytes  #: the bytes exactly as received


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    """What storing a trigger did."""

    inbox_id: int  #: the new entry, or the existing one when ``duplicate``
    job_id: int | None  #: the job enqueued for it; None for duplicates and ignored mail
    duplicate: bool


def digest_of(raw: bytes) -> str:
    """The duplicate-detection digest of a raw trigger: sha256, hex."""
    return hashlib.sha256(raw).hexdigest()


def ref_of_key(key: str | None) -> TicketRef | None:
    """The ticket a job key names (``ggus:40637``), or None for ``inbox:<id>`` and the like."""
    if key is None or key.startswith("inbox:"):
        return None
    try:
        return TicketRef.parse(key)
    except ValueError:
        return None


# Statements built once (building them per call costs more than running them).
_INSERT = sa.insert(inbox).returning(inbox.c.id)
_GET = sa.select(inbox).where(inbox.c.id == sa.bindparam("inbox_id_", type_=sa.Integer()))
_SET_STATE = sa.update(inbox).where(inbox.c.id == sa.bindparam("inbox_id_", type_=sa.Integer()))


def _insert(
    conn: Connection,
    *,
    source: str,
    raw: bytes,
    message_id: str,
    received_at: datetime,
    state: InboxState,
    reason: str | None = None,
    ref: TicketRef | None = None,
) -> tuple[int, bool]:
    """Insert an entry; return (id, False), or (existing id, True) for a duplicate."""
    digest = digest_of(raw)
    values = {
        "source": source,
        "message_id": message_id or None,
        "digest": digest,
        "raw": raw,
        "received_at": received_at,
        "state": state,
        "reason": reason,
        "helpdesk": ref.helpdesk if ref else None,
        "ticket_id": ref.id if ref else None,
        "processed_at": received_at if state in FINAL_STATES else None,
    }
    try:
        # A savepoint, so that a duplicate leaves the surrounding transaction usable.
        with conn.begin_nested():
            inserted = conn.execute(_INSERT, values)
            return int(inserted.scalar_one()), False
    except IntegrityError:
        same = inbox.c.digest == digest
        if message_id:
            same = sa.or_(same, inbox.c.message_id == message_id)
        existing = conn.execute(
            sa.select(inbox.c.id).where(same).order_by(inbox.c.id).limit(1)
        ).scalar_one_or_none()
        if existing is None:
            raise  # not a duplicate after all: let the caller see the real error
        return int(existing), True


def receive(
    conn: Connection,
    *,
    source: str,
    raw: bytes,
    message_id: str,
    key: str | None,
    received_at: datetime,
    now: datetime,
) -> ReceiveResult:
    """Store a trigger and enqueue its ``trigger`` job, or recognise a duplicate.

    ``key`` is the job's ordering key when the receiver already knows the ticket
    (``ggus:40637``); then the entry is tagged with that ticket and an audit ``trigger``
    event is written. Without a key the job is keyed ``inbox:<id>``.
    """
    ref = ref_of_key(key)
    inbox_id, duplicate = _insert(
        conn,
        source=source,
        raw=raw,
        message_id=message_id,
        received_at=received_at,
        state=InboxState.RECEIVED,
        ref=ref,
    )
    if duplicate:
        return ReceiveResult(inbox_id, None, True)
    job_id = jobs.enqueue(
        conn, kind=jobs.TRIGGER, key=key or f"inbox:{inbox_id}", inbox_id=inbox_id, now=now
    )
    if ref is not None:
        audit.record(
            conn,
            helpdesk=ref.helpdesk,
            ticket_id=ref.id,
            kind="trigger",
            summary=f"received from {source}" + (f": {message_id}" if message_id else ""),
            detail={"source": source, "message_id": message_id, "digest": digest_of(raw)},
            inbox_id=inbox_id,
            job_id=job_id,
            at=received_at,
        )
    return ReceiveResult(inbox_id, job_id, False)


def record_ignored(
    conn: Connection,
    *,
    source: str,
    raw: bytes,
    message_id: str,
    reason: str,
    received_at: datetime,
) -> ReceiveResult:
    """Store an auto-reply or bounce as ``ignored`` with ``reason``, without a job."""
    inbox_id, duplicate = _insert(
        conn,
        source=source,
        raw=raw,
        message_id=message_id,
        received_at=received_at,
        state=InboxState.IGNORED,
        reason=reason,
    )
    if not duplicate:
        audit.record(
            conn,
            helpdesk=None,
            ticket_id=None,
            kind="ignored",
            summary=f"ignored from {source}: {reason}",
            detail={"source": source, "message_id": message_id, "reason": reason},
            inbox_id=inbox_id,
            at=received_at,
        )
    return ReceiveResult(inbox_id, None, duplicate)


def get(conn: Connection, inbox_id: int) -> InboxEntry:
    """The entry with its raw bytes. Raises NotFound."""
    row = conn.execute(_GET, {"inbox_id_": inbox_id}).mappings().first()
    if row is None:
        raise NotFound(f"no inbox entry {inbox_id}")
    return _entry(row)


def list_entries(
    conn: Connection, *, state: InboxState | None = None, limit: int = 100
) -> list[InboxEntry]:
    """The newest entries first."""
    statement = sa.select(inbox)
    if state is not None:
        statement = statement.where(inbox.c.state == state)
    rows = conn.execute(statement.order_by(inbox.c.id.desc()).limit(limit)).mappings()
    return [_entry(row) for row in rows]


def set_state(
    conn: Connection,
    inbox_id: int,
    state: InboxState,
    *,
    now: datetime,
    reason: str | None = None,
    helpdesk: str | None = None,
    ticket_id: str | None = None,
) -> None:
    """Record where an entry stands; ``helpdesk``/``ticket_id`` are kept unless given.

    Raises NotFound.
    """
    values: dict[str, object] = {
        "state": state,
        "reason": reason,
        "processed_at": now if state in FINAL_STATES else None,
    }
    if helpdesk is not None:
        values["helpdesk"] = helpdesk
    if ticket_id is not None:
        values["ticket_id"] = ticket_id
    values["inbox_id_"] = inbox_id
    result = conn.execute(_SET_STATE, values)
    if result.rowcount != 1:
        raise NotFound(f"no inbox entry {inbox_id}")


def replay(
    conn: Connection, inbox_id: int, *, now: datetime, not_before: datetime | None = None
) -> int:
    """Process a stored trigger again: back to ``received`` plus a ``replay`` job.

    An open quarantine of the entry is released first. The job is keyed by the entry's
    ticket when known (so it queues behind that ticket's other jobs), else ``inbox:<id>``.
    Returns the job id. Raises NotFound.
    """
    entry = get(conn, inbox_id)
    quarantine.release(conn, inbox_id, now=now, missing_ok=True)
    set_state(conn, inbox_id, InboxState.RECEIVED, now=now)
    key = f"{entry.helpdesk}:{entry.ticket_id}" if entry.helpdesk and entry.ticket_id else None
    job_id = jobs.enqueue(
        conn,
        kind=jobs.REPLAY,
        key=key or f"inbox:{inbox_id}",
        inbox_id=inbox_id,
        not_before=not_before,
        now=now,
    )
    audit.record(
        conn,
        helpdesk=entry.helpdesk,
        ticket_id=entry.ticket_id,
        kind="replay",
        summary=f"replay of inbox entry {inbox_id} (was {entry.state})",
        detail={"previous_state": str(entry.state), "previous_reason": entry.reason},
        inbox_id=inbox_id,
        job_id=job_id,
        at=now,
    )
    return job_id


def _entry(row: RowMapping) -> InboxEntry:
    return InboxEntry(
        id=row["id"],
        source=row["source"],
        message_id=row["message_id"],
        digest=row["digest"],
        received_at=row["received_at"],
        state=InboxState(row["state"]),
        reason=row["reason"],
        helpdesk=row["helpdesk"],
        ticket_id=row["ticket_id"],
        processed_at=row["processed_at"],
        raw=row["raw"],
    )
