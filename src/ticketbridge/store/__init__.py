"""The store: inbox, jobs, links, audit trail and receiver state in one SQL database.

SQLAlchemy Core over a synchronous engine, on SQLite (the default) or PostgreSQL,
chosen by the URL. Open it with :meth:`Store.open`, which migrates the schema to head.

Transactions
    Every :class:`Store` method is one transaction. To make several changes atomically
    (record a receipt, update the link, record what was copied, audit it), use
    :meth:`Store.transaction`: it yields a :class:`Transaction` offering the same
    methods, all inside one database transaction that commits when the ``with`` block
    ends and rolls back if it raises::

        with store.transaction() as tx:
            tx.update_link(link.id, b_version=receipt.version)
            tx.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, comment.key)
            tx.audit(helpdesk="ggus", ticket_id="40637", kind="receipt", summary="...", at=now)

    Both classes are thin shells over the module functions (``inbox.receive(conn, ...)``,
    ``jobs.claim(conn, ...)``...), which take a SQLAlchemy ``Connection`` and never
    commit; whoever holds the connection decides where the transaction ends.

Durability (docs/adr/0005-sqlite-durability.md)
    :meth:`Store.receive`, :meth:`Store.record_ignored` and :meth:`Store.create_link` of a
    ``pending`` link (the marker written before a create is sent) are on disk, power loss
    included, when they return. Other writes are atomic and survive a process crash, but
    on SQLite the newest of them may be rolled back by a power loss until the next durable
    commit or :meth:`Store.sync`. The same three operations inside a
    :meth:`Store.transaction` make that transaction durable when it commits.

Times are tz-aware UTC, in and out. Where a method records "now", the store's clock is
used (``Store.open(url, clock=...)`` to inject one in tests); job claiming and leases take
``now`` explicitly because workers compare it with leases they hold.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import Connection, Engine

from ticketbridge.store import audit as _audit
from ticketbridge.store import inbox as _inbox
from ticketbridge.store import jobs as _jobs
from ticketbridge.store import links as _links
from ticketbridge.store import quarantine as _quarantine
from ticketbridge.store import receivers as _receivers
from ticketbridge.store.audit import AuditEvent
from ticketbridge.store.db import DURABLE, READ_ONLY, create_engine
from ticketbridge.store.db import sync as _sync
from ticketbridge.store.inbox import InboxEntry, ReceiveResult
from ticketbridge.store.jobs import Job, JobCount
from ticketbridge.store.links import UNSET, LinkConflict, LinkRecord, _Unset
from ticketbridge.store.migrate import upgrade
from ticketbridge.store.quarantine import QuarantineEntry
from ticketbridge.store.schema import (
    CopiedKind,
    Direction,
    InboxState,
    JobState,
    LinkState,
    utcnow,
)

__all__ = [
    "AuditEvent",
    "CopiedKind",
    "Direction",
    "InboxEntry",
    "InboxState",
    "Job",
    "JobCount",
    "JobState",
    "LinkConflict",
    "LinkRecord",
    "LinkState",
    "QuarantineEntry",
    "ReceiveResult",
    "Store",
    "Transaction",
]

P = ParamSpec("P")
T = TypeVar("T")
Clock = Callable[[], datetime]


class _Operations:
    """The store's operations, each run through :meth:`_write` or :meth:`_read`."""

    _clock: Clock

    def _write(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    def _read(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    def _write_durable(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """A write that must be on disk (power loss included) when it is committed."""
        raise NotImplementedError

    # --- inbox ------------------------------------------------------------------------

    def receive(
        self,
        *,
        source: str,
        raw: bytes,
        message_id: str,
        key: str | None,
        received_at: datetime,
    ) -> ReceiveResult:
        """Store a trigger and enqueue its job together, or report a duplicate.

        A duplicate (same Message-ID, or same bytes) inserts nothing and returns the
        existing entry's id with ``duplicate=True``. An empty ``message_id`` means the
        source gave none; only the digest then detects duplicates.
        Durable when committed (see the module docstring).
        """
        return self._write_durable(
            _inbox.receive,
            source=source,
            raw=raw,
            message_id=message_id,
            key=key,
            received_at=received_at,
            now=self._clock(),
        )

    def record_ignored(
        self, *, source: str, raw: bytes, message_id: str, reason: str, received_at: datetime
    ) -> ReceiveResult:
        """Store an auto-reply or bounce as ``ignored`` with ``reason``; no job. Durable."""
        return self._write_durable(
            _inbox.record_ignored,
            source=source,
            raw=raw,
            message_id=message_id,
            reason=reason,
            received_at=received_at,
        )

    def inbox_entry(self, inbox_id: int) -> InboxEntry:
        """One entry with its raw bytes. Raises NotFound."""
        return self._read(_inbox.get, inbox_id)

    def list_inbox(
        self, state: InboxState | str | None = None, limit: int = 100
    ) -> list[InboxEntry]:
        """Newest entries first, optionally only those in ``state``."""
        wanted = None if state is None else InboxState(state)
        return self._read(_inbox.list_entries, state=wanted, limit=limit)

    def set_inbox_state(
        self,
        inbox_id: int,
        state: InboxState | str,
        reason: str | None = None,
        helpdesk: str | None = None,
        ticket_id: str | None = None,
    ) -> None:
        """Record where an entry stands (sets ``processed_at`` for final states)."""
        self._write(
            _inbox.set_state,
            inbox_id,
            InboxState(state),
            now=self._clock(),
            reason=reason,
            helpdesk=helpdesk,
            ticket_id=ticket_id,
        )

    # --- quarantine ---------------------------------------------------------------------

    def quarantine(self, inbox_id: int, reason: str) -> QuarantineEntry:
        """Quarantine an inbox entry with ``reason``, and audit it. Raises NotFound."""
        return self._write(_quarantine.put, inbox_id, reason, now=self._clock())

    def list_quarantine(self, include_released: bool = False) -> list[QuarantineEntry]:
        """What is in quarantine (and what was, if asked), oldest first."""
        return self._read(_quarantine.list_entries, include_released=include_released)

    def release_quarantine(self, inbox_id: int) -> None:
        """Take an entry off the quarantine list (it stays ``quarantined``). Raises NotFound.

        To process it again use :meth:`replay_inbox`, which releases it too.
        """
        self._write(_quarantine.release, inbox_id, now=self._clock())

    def replay_inbox(self, inbox_id: int, *, not_before: datetime | None = None) -> int:
        """Process a stored trigger again, atomically: release it from quarantine if it is
        there, set it back to ``received`` and enqueue a ``replay`` job keyed by its ticket
        (else ``inbox:<id>``); audited. Returns the job id. Raises NotFound.
        """
        return self._write(_inbox.replay, inbox_id, not_before=not_before, now=self._clock())

    # --- jobs ---------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        kind: str,
        key: str,
        inbox_id: int | None = None,
        not_before: datetime | None = None,
    ) -> int:
        """Add a pending job; returns its id."""
        return self._write(
            _jobs.enqueue,
            kind=kind,
            key=key,
            inbox_id=inbox_id,
            not_before=not_before,
            now=self._clock(),
        )

    def claim_job(self, worker: str, *, lease: timedelta, now: datetime) -> Job | None:
        """Claim the oldest claimable job (see docs/store.md), or None."""
        return self._write(_jobs.claim, worker, lease=lease, now=now)

    def heartbeat(self, job_id: int, worker: str, *, lease: timedelta, now: datetime) -> bool:
        """Extend the lease to ``now + lease``; False if ``worker`` lost the job."""
        return self._write(_jobs.heartbeat, job_id, worker, lease=lease, now=now)

    def complete_job(self, job_id: int, worker: str) -> bool:
        """Mark the job done; False (nothing changed) if ``worker`` lost it."""
        return self._write(_jobs.complete, job_id, worker, now=self._clock())

    def complete_and_claim(
        self, job_id: int, worker: str, *, lease: timedelta, now: datetime
    ) -> tuple[bool, Job | None]:
        """:meth:`complete_job`, then :meth:`claim_job`, in one transaction.

        The same as the two calls one after the other, for one commit instead of two.
        """
        return self._write(
            _complete_and_claim, job_id, worker, lease=lease, now=now, done_at=self._clock()
        )

    def retry_job_later(
        self, job_id: int, worker: str, *, error: str, not_before: datetime
    ) -> bool:
        """Let the job run again after ``not_before``; False if ``worker`` lost it."""
        return self._write(
            _jobs.retry_later, job_id, worker, error=error, not_before=not_before, now=self._clock()
        )

    def bury_job(self, job_id: int, worker: str, *, error: str) -> bool:
        """Dead-letter the job (and its inbox entry); False if ``worker`` lost it."""
        return self._write(_jobs.bury, job_id, worker, error=error, now=self._clock())

    def job(self, job_id: int) -> Job:
        """One job. Raises NotFound."""
        return self._read(_jobs.get, job_id)

    def list_jobs(
        self,
        states: Iterable[JobState | str] | None = None,
        *,
        key: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs in arrival order, optionally only in ``states`` or of one ``key``."""
        wanted = None if states is None else tuple(JobState(state) for state in states)
        return self._read(_jobs.list_jobs, states=wanted, key=key, limit=limit)

    def job_counts(self) -> dict[JobState, JobCount]:
        """For every job state: count and age of the oldest job (None when empty)."""
        return self._read(_jobs.counts, now=self._clock())

    def pending_count(self) -> int:
        """Jobs with work still to do: pending, running or retrying (not dead)."""
        return self._read(_jobs.outstanding_count)

    def requeue(self, job_id: int) -> bool:
        """Operator: run a dead or retrying job again now; False if in another state."""
        return self._write(_jobs.requeue, job_id, now=self._clock())

    def requeue_dead(self, *, key: str | None = None, kind: str | None = None) -> int:
        """Operator: requeue every dead job (optionally one key/kind); returns how many."""
        return self._write(_jobs.requeue_dead, key=key, kind=kind, now=self._clock())

    # --- links --------------------------------------------------------------------------

    def link(self, link_id: int) -> LinkRecord:
        """One link. Raises NotFound."""
        return self._read(_links.get, link_id)

    def find_link(self, exchange: str, a_helpdesk: str, a_id: str) -> LinkRecord | None:
        """The link of an a-side ticket in one exchange."""
        return self._read(_links.find, exchange, a_helpdesk, a_id)

    def find_link_by_b(self, b_helpdesk: str, b_id: str) -> LinkRecord | None:
        """The link whose b side is this ticket."""
        return self._read(_links.find_by_b, b_helpdesk, b_id)

    def find_link_by_ref(self, helpdesk: str, ticket_id: str) -> LinkRecord | None:
        """The oldest link with this ticket on either side (see :meth:`find_links_by_ref`)."""
        return self._read(_links.find_by_ref, helpdesk, ticket_id)

    def find_links_by_ref(self, helpdesk: str, ticket_id: str) -> list[LinkRecord]:
        """Every link with this ticket on either side; an a-side ticket may be in several
        exchanges."""
        return self._read(_links.find_all_by_ref, helpdesk, ticket_id)

    def create_link(
        self,
        *,
        exchange: str,
        a_helpdesk: str,
        a_id: str,
        b_helpdesk: str,
        b_id: str | None = None,
        state: LinkState | str = LinkState.PENDING,
        a_modified: datetime | None = None,
        a_digest: str | None = None,
        b_version: str | None = None,
        b_digest: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> LinkRecord:
        """Create a link, or return the existing one of that a-side ticket and exchange.

        Raises LinkConflict when the b-side ticket is already linked elsewhere. A
        ``pending`` link is durable when committed: it is what stops a second create after
        a crash (docs/adr/0004-footprints-idempotent-create.md), so it must be on disk
        before the create is sent.
        """
        write = self._write_durable if LinkState(state) is LinkState.PENDING else self._write
        return write(
            _links.create,
            exchange=exchange,
            a_helpdesk=a_helpdesk,
            a_id=a_id,
            b_helpdesk=b_helpdesk,
            b_id=b_id,
            state=LinkState(state),
            a_modified=a_modified,
            a_digest=a_digest,
            b_version=b_version,
            b_digest=b_digest,
            data=data,
            now=self._clock(),
        )

    def update_link(
        self,
        link_id: int,
        *,
        state: LinkState | str | _Unset = UNSET,
        b_id: str | _Unset | None = UNSET,
        a_modified: datetime | _Unset | None = UNSET,
        a_digest: str | _Unset | None = UNSET,
        b_version: str | _Unset | None = UNSET,
        b_digest: str | _Unset | None = UNSET,
        data: Mapping[str, Any] | _Unset = UNSET,
    ) -> LinkRecord:
        """Change only the fields given (``data`` is replaced whole); returns the new record.

        Raises NotFound, or LinkConflict when ``b_id`` is linked elsewhere.
        """
        return self._write(
            _links.update,
            link_id,
            state=state if isinstance(state, _Unset) else LinkState(state),
            b_id=b_id,
            a_modified=a_modified,
            a_digest=a_digest,
            b_version=b_version,
            b_digest=b_digest,
            data=data,
            now=self._clock(),
        )

    def list_links(
        self,
        exchange: str | None = None,
        helpdesk: str | None = None,
        state: LinkState | str | None = None,
    ) -> list[LinkRecord]:
        """Links in id order, optionally of one exchange, touching a helpdesk, in a state."""
        wanted = None if state is None else LinkState(state)
        return self._read(_links.list_links, exchange=exchange, helpdesk=helpdesk, state=wanted)

    def record_copied(
        self,
        link_id: int,
        direction: Direction | str,
        kind: CopiedKind | str,
        source_key: str,
        dest_key: str | None = None,
    ) -> bool:
        """Record a copied comment/attachment (idempotent); True if it is new.

        Repeating it with a ``dest_key`` fills in a destination key not known before.
        """
        return self._write(
            _links.record_copied,
            link_id,
            Direction(direction),
            CopiedKind(kind),
            source_key,
            dest_key=dest_key,
            now=self._clock(),
        )

    def copied_keys(
        self, link_id: int, direction: Direction | str, kind: CopiedKind | str
    ) -> set[str]:
        """Source keys of everything copied across the link in that direction."""
        return set(self.copied_map(link_id, direction, kind))

    def copied_map(
        self, link_id: int, direction: Direction | str, kind: CopiedKind | str
    ) -> dict[str, str | None]:
        """Source key -> destination key (None while unknown) of what was copied."""
        return self._read(_links.copied_map, link_id, Direction(direction), CopiedKind(kind))

    # --- audit --------------------------------------------------------------------------

    def audit(
        self,
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
        """Append an audit event; returns its id."""
        return self._write(
            _audit.record,
            helpdesk=helpdesk,
            ticket_id=ticket_id,
            kind=kind,
            summary=summary,
            at=at,
            detail=detail,
            link_id=link_id,
            inbox_id=inbox_id,
            job_id=job_id,
        )

    def timeline(self, helpdesk: str, ticket_id: str) -> list[AuditEvent]:
        """Events of the ticket and of every ticket linked to it, by time then id."""
        return self._read(_audit.timeline, helpdesk, ticket_id)

    def audit_events(
        self, *, kind: str | None = None, inbox_id: int | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Newest events first, optionally of one kind or about one inbox entry."""
        return self._read(_audit.events, kind=kind, inbox_id=inbox_id, limit=limit)

    # --- receivers ----------------------------------------------------------------------

    def receiver_state(self, name: str) -> dict[str, Any]:
        """A receiver's saved state; {} if none."""
        return self._read(_receivers.load, name)

    def save_receiver_state(self, name: str, data: Mapping[str, Any]) -> None:
        """Replace a receiver's saved state."""
        self._write(_receivers.save, name, data, now=self._clock())


def _complete_and_claim(
    conn: Connection,
    job_id: int,
    worker: str,
    *,
    lease: timedelta,
    now: datetime,
    done_at: datetime,
) -> tuple[bool, Job | None]:
    done = _jobs.complete(conn, job_id, worker, now=done_at)
    return done, _jobs.claim(conn, worker, lease=lease, now=now)


class Transaction(_Operations):
    """The store's operations inside one open transaction (see :meth:`Store.transaction`).

    ``connection`` is exposed for code that calls the module functions directly.
    """

    def __init__(self, connection: Connection, clock: Clock, *, durable: bool = False) -> None:
        self.connection = connection
        self._clock = clock
        self.durable = durable
        #: True once an operation that must be durable ran in a transaction that was not
        #: begun durable; :meth:`Store.transaction` then syncs after the commit.
        self.needs_sync = False

    def _write(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return fn(self.connection, *args, **kwargs)

    _read = _write

    def _write_durable(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if not self.durable:
            self.needs_sync = True
        return fn(self.connection, *args, **kwargs)


class Store(_Operations):
    """The database of one ticketbridge installation. Thread-safe: share one per process."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        """Wrap an engine made by :func:`ticketbridge.store.db.create_engine` (no migration)."""
        self.engine = engine
        self._clock = clock
        # SQLite has one writer at a time. Threads of this process queue for it here,
        # and are woken the moment it is free; SQLite's own busy handler (still what
        # other processes wait on) sleeps in steps of up to 100 ms between tries.
        self._writer: AbstractContextManager[object] = (
            threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @classmethod
    def open(cls, url: str, *, clock: Clock = utcnow) -> Store:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql://...``) and migrate to head.

        Raises StoreError for an unsupported URL.
        """
        engine = create_engine(url)
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Transaction]:
        """One write transaction: commits at the end of the block, rolls back on error.

        ``durable=True`` commits it durably (SQLite: ``synchronous=FULL``). Without it, the
        transaction is still made durable after its commit (by :meth:`sync`, before the
        block's exit returns) if it ran :meth:`receive`, :meth:`record_ignored` or created
        a ``pending`` link.
        """
        with self._writer, self.engine.connect() as conn:
            if durable:
                conn.execution_options(**{DURABLE: True})
            with conn.begin():
                tx = Transaction(conn, self._clock, durable=durable)
                yield tx
        if tx.needs_sync:
            self.sync()

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """One read-only transaction (one snapshot) for several reads.

        Only the reading methods of the :class:`Transaction` may be used in it.
        """
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield Transaction(conn, self._clock)

    def sync(self) -> None:
        """Make every write committed so far durable, power loss included.

        SQLite: one fsync of the WAL file, a few milliseconds even when nothing new was
        written, so call it when it matters (e.g. when a worker runs out of jobs).
        PostgreSQL: nothing to do.
        """
        _sync(self.engine)

    def _write(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self._writer, self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def _write_durable(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self._writer, self.engine.connect() as conn:
            conn.execution_options(**{DURABLE: True})
            with conn.begin():
                return fn(conn, *args, **kwargs)

    def _read(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                return fn(conn, *args, **kwargs)
