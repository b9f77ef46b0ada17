"""Jobs: units of work claimed by workers, one at a time per key, in arrival order.

Ordering rule (architecture invariant 5)
    A job is claimable only when no *earlier* job (lower id) with the same ``key`` is
    pending, running, retrying or dead. So later triggers for a ticket wait behind a
    failing one, and behind a dead one until an operator requeues or finishes it; jobs of
    other keys flow past. ``done`` jobs no longer block.

Leases
    Claiming sets ``lease_owner`` and ``lease_until``. A running job whose lease has
    expired (its worker died or hung) is claimable again, and the new claim counts as a
    new attempt. A worker extends its lease with :func:`heartbeat`; every state change by
    a worker (:func:`complete`, :func:`retry_later`, :func:`bury`) only applies while that
    worker still holds the job, and each returns False when it does not.

Head of line, and the cost of a claim
    ``jobs.head`` is true for the *head* of each key: its unfinished job with the lowest
    id (the only one of its key that can be claimable). It is set by :func:`enqueue`
    (a new job is head when its key has no unfinished job) and moved by :func:`complete`
    (done is the only way out of the unfinished states, and never undone). A claim looks
    for candidates among heads only, through the partial index
    ``ix_jobs_head_state_not_before_id``, then re-checks each candidate with the full
    claimable condition through the partial index ``ix_jobs_unfinished_key_id``. Done
    jobs, and jobs waiting behind their head, are never visited: a claim is O(log n) in
    the number of jobs. It also visits the heads whose lease is live (at most one per
    worker) and the delayed heads that are due (``not_before`` passed), but not heads
    still waiting out a retry delay.

    The flag is only a way to find candidates; the re-check decides. So a head flag set
    too eagerly could cost a wasted look, never a wrong claim; a missing flag would leave
    a job unclaimed forever, which is what the locking below prevents.

    The predicates of the partial indexes are written into the queries literally (not
    as bound parameters), so that both planners can prove the index applies.

Claiming atomically
    SQLite: the claim runs in a ``BEGIN IMMEDIATE`` transaction, so claimers are
    serialised by the database's write lock. So are :func:`enqueue` and :func:`complete`,
    so the head flags are always exact.

    PostgreSQL: candidates are read without locks; for each, in id order, the claimer
    takes ``pg_try_advisory_xact_lock(NS, hashtext(key))`` (so no two claimers work on
    one key at once), then re-reads the job with the full claimable condition in a new
    statement (READ COMMITTED: a fresh snapshot that sees every claim committed before
    the advisory lock was granted) ``FOR UPDATE SKIP LOCKED``, and updates it.

    Head flags on PostgreSQL: :func:`enqueue` and :func:`complete` first take
    ``pg_advisory_xact_lock(HEAD_NS, hashtext(key))`` (waiting for it), then read the
    key's unfinished jobs in a new statement. Of an enqueue and a completion of the same
    key, whichever comes second therefore sees the other's committed work: the enqueuer
    sees the head done and becomes head, or the completer sees the new job and makes it
    head. The lock also makes enqueues of one key commit in id order. A transaction that
    enqueues or completes jobs of several keys holds several of these locks; if two such
    transactions take them in opposite orders PostgreSQL reports a deadlock and rolls
    one back (nothing in ticketbridge does that: each transaction touches one key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from ticketbridge.errors import NotFound
from ticketbridge.store._sql import is_postgresql
from ticketbridge.store.schema import InboxState, JobState, inbox, jobs

#: The kind of job a received trigger starts.
TRIGGER = "trigger"
#: The kind of job an operator's replay starts.
REPLAY = "replay"

#: States of an earlier job that hold back later jobs of the same key.
BLOCKING_STATES = (JobState.PENDING, JobState.RUNNING, JobState.RETRYING, JobState.DEAD)
#: States that still mean work to do.
OUTSTANDING_STATES = (JobState.PENDING, JobState.RUNNING, JobState.RETRYING)
# The queries below spell "blocking" as "not done" (the partial indexes' predicate).
assert set(BLOCKING_STATES) == set(JobState) - {JobState.DONE}

# First key of the two-int advisory locks used for claims ("tb" in ASCII). The migration
# lock uses the one-bigint form; PostgreSQL keeps the two key spaces apart.
_CLAIM_LOCK_NAMESPACE = 0x7462
# First key of the advisory locks serialising head-of-line changes of a key ("th").
_HEAD_LOCK_NAMESPACE = 0x7468
# How many claimable jobs one claim looks at before giving up for this round.
_CANDIDATES = 32


@dataclass(frozen=True, slots=True)
class Job:
    """A unit of work as stored."""

    id: int
    kind: str  #: trigger, replay, ...
    key: str  #: the ordering key: ``helpdesk:ticket`` or ``inbox:<id>`` when unknown
    state: JobState
    attempts: int  #: how many times it was claimed
    inbox_id: int | None  #: the trigger it processes; None for operator jobs
    not_before: datetime | None  #: not claimable before this time
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class JobCount:
    """How many jobs are in one state, and how long the oldest of them has existed."""

    count: int
    oldest_age: timedelta | None


def enqueue(
    conn: Connection,
    *,
    kind: str,
    key: str,
    now: datetime,
    inbox_id: int | None = None,
    not_before: datetime | None = None,
) -> int:
    """Add a pending job and return its id.

    The job is the head of its key's line when the key has no unfinished job.
    """
    _lock_head(conn, key)
    head = conn.execute(_NO_UNFINISHED, {"key": key}).scalar_one()
    values = {
        "kind": kind,
        "key": key,
        "head": bool(head),
        "state": JobState.PENDING,
        "attempts": 0,
        "inbox_id": inbox_id,
        "not_before": not_before,
        "created_at": now,
        "updated_at": now,
    }
    return int(conn.execute(_ENQUEUE, values).scalar_one())


def _is(column: sa.ColumnElement[str], *states: JobState) -> sa.ColumnElement[bool]:
    """``column = 'state'`` (or ``IN``) with the states as SQL literals, not parameters."""
    literals: list[sa.ColumnElement[str]] = [
        sa.literal_column(f"'{state.value}'") for state in states
    ]
    if len(literals) == 1:
        return column == literals[0]
    return column.in_(literals)


def _unfinished(table: sa.FromClause) -> sa.ColumnElement[bool]:
    """The predicate of ``ix_jobs_unfinished_key_id``: not done (blocking)."""
    return table.c.state != sa.literal_column(f"'{JobState.DONE.value}'")


def _unfinished_of(
    table: sa.FromClause, key: str | sa.ColumnElement[str]
) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.key == key, _unfinished(table))


# The claim's statements are built once: building them (aliases, the nested EXISTS) per
# call costs more than running them.
_NOW = sa.bindparam("now", type_=jobs.c.lease_until.type)
_JOB_ID = sa.bindparam("job_id", type_=sa.Integer())


def _claimable(now: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    earlier = jobs.alias("earlier")
    other = jobs.alias("other")
    ready = sa.or_(
        sa.and_(
            _is(jobs.c.state, JobState.PENDING, JobState.RETRYING),
            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
        ),
        sa.and_(_is(jobs.c.state, JobState.RUNNING), jobs.c.lease_until < now),
    )
    # Blocking states are exactly the unfinished ones (asserted above).
    held_back = (
        sa.exists().where(_unfinished_of(earlier, jobs.c.key)).where(earlier.c.id < jobs.c.id)
    )
    # Belt and braces: never hand out a job while any other job of its key holds a live
    # lease (a later job can only be running if an operator requeued an earlier one).
    sibling_running = (
        sa.exists()
        .where(_unfinished_of(other, jobs.c.key))
        .where(_is(other.c.state, JobState.RUNNING))
        .where(other.c.id != jobs.c.id)
        .where(other.c.lease_until >= now)
    )
    return sa.and_(ready, ~held_back, ~sibling_running)


# Heads that look claimable, by three index range scans over the partial index
# ix_jobs_head_state_not_before_id: pending heads without a delay (lowest ids first),
# pending or retrying heads whose delay has passed, running heads whose lease expired.
_FRESH = (
    sa.select(jobs.c.id, jobs.c.key)
    .where(jobs.c.head, _is(jobs.c.state, JobState.PENDING), jobs.c.not_before.is_(None))
    .order_by(jobs.c.id)
    .limit(_CANDIDATES)
)
_DUE = sa.select(jobs.c.id, jobs.c.key).where(
    jobs.c.head,
    _is(jobs.c.state, JobState.PENDING, JobState.RETRYING),
    jobs.c.not_before <= _NOW,
)
_EXPIRED = sa.select(jobs.c.id, jobs.c.key).where(
    jobs.c.head, _is(jobs.c.state, JobState.RUNNING), jobs.c.lease_until < _NOW
)
# The full claimable condition for one job, locking it on PostgreSQL.
_RECHECK = (
    sa.select(jobs.c.id)
    .where(jobs.c.id == _JOB_ID)
    .where(_claimable(_NOW))
    .with_for_update(skip_locked=True)
)


_TAKE = (
    sa.update(jobs)
    .where(jobs.c.id == _JOB_ID)
    .values(
        state=JobState.RUNNING,
        attempts=jobs.c.attempts + 1,
        lease_owner=sa.bindparam("worker", type_=sa.String()),
        lease_until=sa.bindparam("until", type_=jobs.c.lease_until.type),
        updated_at=_NOW,
    )
    .returning(*jobs.c)
)


def _candidates(conn: Connection, now: datetime) -> list[tuple[int, str]]:
    """Up to ``_CANDIDATES`` heads that look claimable, lowest id first.

    Cheap however many jobs exist: done jobs and jobs waiting behind their head are not
    visited (see the module docstring).
    """
    found: set[tuple[int, str]] = set()
    for statement in (_FRESH, _DUE, _EXPIRED):
        rows = conn.execute(statement, {"now": now})
        found.update((int(job_id), str(key)) for job_id, key in rows)
    return sorted(found)[:_CANDIDATES]


def claim(conn: Connection, worker: str, *, lease: timedelta, now: datetime) -> Job | None:
    """Claim the oldest claimable job for ``worker`` until ``now + lease``, or return None."""
    for job_id, key in _candidates(conn, now):
        if not _lock_key(conn, key):
            continue  # another claimer is working on this key right now
        locked = conn.execute(_RECHECK, {"job_id": job_id, "now": now}).first()
        if locked is None:
            continue  # claimed, finished or held back since we looked
        values = {"job_id": job_id, "worker": worker, "until": now + lease, "now": now}
        return _job(conn.execute(_TAKE, values).mappings().one())
    return None


def _lock_key(conn: Connection, key: str) -> bool:
    """Try to become the only claimer working on ``key`` until this transaction ends.

    Only PostgreSQL needs it; on SQLite, BEGIN IMMEDIATE already serialises claimers.
    """
    if not is_postgresql(conn):
        return True
    lock = sa.func.pg_try_advisory_xact_lock(_CLAIM_LOCK_NAMESPACE, sa.func.hashtext(key))
    return bool(conn.execute(sa.select(lock)).scalar_one())


def _lock_head(conn: Connection, key: str) -> None:
    """Wait until this transaction is the only one changing ``key``'s head of line.

    Only PostgreSQL needs it; on SQLite, BEGIN IMMEDIATE already serialises writers.
    """
    if is_postgresql(conn):
        lock = sa.func.pg_advisory_xact_lock(_HEAD_LOCK_NAMESPACE, sa.func.hashtext(key))
        conn.execute(sa.select(lock))


_KEY = sa.bindparam("key", type_=sa.String())
_NO_UNFINISHED = sa.select(~sa.exists().where(_unfinished_of(jobs, _KEY)))
_ENQUEUE = sa.insert(jobs).returning(jobs.c.id)
_FIRST_UNFINISHED = (
    sa.select(jobs.c.id).where(_unfinished_of(jobs, _KEY)).order_by(jobs.c.id).limit(1)
)
_MAKE_HEAD = sa.update(jobs).where(jobs.c.id == _JOB_ID, ~jobs.c.head).values(head=True)


def _promote(conn: Connection, key: str) -> None:
    """Make the unfinished job with the lowest id of ``key`` its head (if there is one)."""
    first = conn.execute(_FIRST_UNFINISHED, {"key": key}).scalar_one_or_none()
    if first is not None:
        conn.execute(_MAKE_HEAD, {"job_id": first})


def _held_by(job_id: int, worker: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        jobs.c.id == job_id, jobs.c.state == JobState.RUNNING, jobs.c.lease_owner == worker
    )


def heartbeat(
    conn: Connection, job_id: int, worker: str, *, lease: timedelta, now: datetime
) -> bool:
    """Extend ``worker``'s lease to ``now + lease``; False if the worker no longer holds it."""
    params = {"job_id": job_id, "worker": worker, "until": now + lease, "now": now}
    return conn.execute(_HEARTBEAT, params).rowcount == 1


_HELD = sa.and_(
    jobs.c.id == _JOB_ID,
    jobs.c.state == JobState.RUNNING,
    jobs.c.lease_owner == sa.bindparam("worker", type_=sa.String()),
)
_HELD_KEY = sa.select(jobs.c.key).where(_HELD)
_HEARTBEAT = (
    sa.update(jobs)
    .where(_HELD)
    .values(lease_until=sa.bindparam("until", type_=jobs.c.lease_until.type), updated_at=_NOW)
)
_COMPLETE = (
    sa.update(jobs)
    .where(_HELD)
    .values(state=JobState.DONE, head=False, lease_owner=None, lease_until=None, updated_at=_NOW)
)


def complete(conn: Connection, job_id: int, worker: str, *, now: datetime) -> bool:
    """Mark the job done; False (and nothing changed) if ``worker`` no longer holds it.

    The next unfinished job of its key becomes the head of the key's line.
    """
    params = {"job_id": job_id, "worker": worker, "now": now}
    key = conn.execute(_HELD_KEY, params).scalar_one_or_none()
    if key is None:
        return False
    _lock_head(conn, key)
    if conn.execute(_COMPLETE, params).rowcount != 1:
        return False
    _promote(conn, key)
    return True


def retry_later(
    conn: Connection,
    job_id: int,
    worker: str,
    *,
    error: str,
    not_before: datetime,
    now: datetime,
) -> bool:
    """Release the job to run again after ``not_before``; False if ``worker`` lost it."""
    result = conn.execute(
        sa.update(jobs)
        .where(_held_by(job_id, worker))
        .values(
            state=JobState.RETRYING,
            not_before=not_before,
            last_error=error,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def bury(conn: Connection, job_id: int, worker: str, *, error: str, now: datetime) -> bool:
    """Dead-letter the job (it holds back later jobs of its key until an operator acts).

    Its inbox entry, if still ``received``, becomes ``dead`` with the error as reason, so
    the trigger ends in a visible state. False (nothing changed) if ``worker`` lost the job.
    """
    inbox_id = conn.execute(
        sa.update(jobs)
        .where(_held_by(job_id, worker))
        .values(
            state=JobState.DEAD,
            last_error=error,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .returning(jobs.c.inbox_id)
    ).first()
    if inbox_id is None:
        return False
    if inbox_id[0] is not None:
        conn.execute(
            sa.update(inbox)
            .where(inbox.c.id == inbox_id[0], inbox.c.state == InboxState.RECEIVED)
            .values(state=InboxState.DEAD, reason=error, processed_at=now)
        )
    return True


def get(conn: Connection, job_id: int) -> Job:
    """The job with this id. Raises NotFound."""
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return _job(row)


def list_jobs(
    conn: Connection,
    *,
    states: tuple[JobState, ...] | None = None,
    key: str | None = None,
    limit: int = 100,
) -> list[Job]:
    """Jobs in id (arrival) order, optionally only in ``states`` or of one ``key``."""
    statement = sa.select(jobs)
    if states is not None:
        statement = statement.where(jobs.c.state.in_(states))
    if key is not None:
        statement = statement.where(jobs.c.key == key)
    rows = conn.execute(statement.order_by(jobs.c.id).limit(limit)).mappings()
    return [_job(row) for row in rows]


def counts(conn: Connection, *, now: datetime) -> dict[JobState, JobCount]:
    """For every job state: how many jobs, and the age of the oldest (None when empty)."""
    oldest = sa.func.min(jobs.c.created_at)
    rows = conn.execute(
        sa.select(jobs.c.state, sa.func.count(), oldest).group_by(jobs.c.state)
    ).all()
    result = {state: JobCount(0, None) for state in JobState}
    for state, count, created in rows:
        result[JobState(state)] = JobCount(int(count), now - created)
    return result


def outstanding_count(conn: Connection) -> int:
    """How many jobs still have work to do (pending, running or retrying)."""
    statement = sa.select(sa.func.count()).where(jobs.c.state.in_(OUTSTANDING_STATES))
    return int(conn.execute(statement).scalar_one())


def _requeue_where(conn: Connection, condition: sa.ColumnElement[bool], now: datetime) -> int:
    requeued = conn.execute(
        sa.update(jobs)
        .where(condition)
        .values(
            state=JobState.PENDING,
            attempts=0,
            not_before=None,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .returning(jobs.c.inbox_id)
    ).all()
    inbox_ids = [row[0] for row in requeued if row[0] is not None]
    if inbox_ids:
        conn.execute(
            sa.update(inbox)
            .where(inbox.c.id.in_(inbox_ids), inbox.c.state == InboxState.DEAD)
            .values(state=InboxState.RECEIVED, reason=None, processed_at=None)
        )
    return len(requeued)


def requeue(conn: Connection, job_id: int, *, now: datetime) -> bool:
    """Operator: make a dead or retrying job pending again, now, with attempts reset.

    Its inbox entry goes back from ``dead`` to ``received``. Returns False when the job is
    in another state (pending, running or done) and nothing changed. Raises NotFound.
    """
    get(conn, job_id)
    condition = sa.and_(jobs.c.id == job_id, jobs.c.state.in_([JobState.DEAD, JobState.RETRYING]))
    return _requeue_where(conn, condition, now) == 1


def requeue_dead(
    conn: Connection, *, now: datetime, key: str | None = None, kind: str | None = None
) -> int:
    """Operator: requeue every dead job (optionally of one key or kind); returns how many."""
    condition = jobs.c.state == JobState.DEAD
    if key is not None:
        condition = sa.and_(condition, jobs.c.key == key)
    if kind is not None:
        condition = sa.and_(condition, jobs.c.kind == kind)
    return _requeue_where(conn, condition, now)


def _job(row: RowMapping) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        key=row["key"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        inbox_id=row["inbox_id"],
        not_before=row["not_before"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
