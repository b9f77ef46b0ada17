"""The store's tables, as SQLAlchemy Core metadata, and the values their state columns take.

One schema serves SQLite and PostgreSQL. Two column types paper over their differences:

* :class:`UTCDateTime` stores timestamps in UTC and always hands back tz-aware UTC
  datetimes (SQLite has no time zones; PostgreSQL ``timestamptz`` answers in the
  session's zone).
* :data:`JSONData` is ``JSONB`` on PostgreSQL and JSON text on SQLite.

This module describes the *current* shape. The migrations in ``migrations/versions``
build it step by step and never import it (a migration is frozen once released); a test
checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class InboxState(StrEnum):
    """Where a received trigger stands. Every row ends in one of the last five."""

    RECEIVED = "received"  #: stored; a job will decide what it means
    APPLIED = "applied"  #: the other side was brought up to date
    SKIPPED = "skipped"  #: nothing to do (no change, our own echo); ``reason`` says why
    IGNORED = "ignored"  #: an auto-reply or bounce; never started an exchange
    QUARANTINED = "quarantined"  #: bad input; ``reason`` says what is wrong
    DEAD = "dead"  #: its job gave up; ``reason`` holds the last error


class JobState(StrEnum):
    """Where a job stands. See docs/store.md for the transitions."""

    PENDING = "pending"  #: waiting for a worker (and for ``not_before``, if set)
    RUNNING = "running"  #: claimed by ``lease_owner`` until ``lease_until``
    RETRYING = "retrying"  #: failed; runs again once ``not_before`` has passed
    DONE = "done"  #: finished
    DEAD = "dead"  #: gave up; kept until an operator requeues it


class LinkState(StrEnum):
    """Where a link stands."""

    PENDING = "pending"  #: the b side is being created; ``b_id`` may still be unknown
    ACTIVE = "active"  #: known on both sides; updates flow
    CLOSED = "closed"  #: no further exchange


class Direction(StrEnum):
    """Which way something was copied across a link."""

    AB = "ab"  #: from the a side to the b side
    BA = "ba"  #: from the b side to the a side


class CopiedKind(StrEnum):
    """What was copied across a link."""

    COMMENT = "comment"
    ATTACHMENT = "attachment"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that goes in tz-aware and comes out tz-aware UTC.

    Naive datetimes are refused: a naive value is a bug (local time or UTC? nobody knows).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs tz-aware times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as text; the same zone for every row keeps comparisons correct.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
JSONData: sa.types.TypeEngine[Any] = sa.JSON().with_variant(JSONB(), "postgresql")


def _check_in(column: str, values: type[StrEnum]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(200), nullable=False),  # the receiver's name
    sa.Column("message_id", sa.String(998), nullable=True),  # NULL when the source gave none
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 hex of raw
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("helpdesk", sa.String(200), nullable=True),
    sa.Column("ticket_id", sa.String(200), nullable=True),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("message_id"),
    sa.UniqueConstraint("digest"),
    _check_in("state", InboxState),
    sa.Index(None, "state", "id"),
    sa.Index(None, "helpdesk", "ticket_id"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("inbox_id", sa.Integer, sa.ForeignKey("inbox.id"), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("key", sa.String(400), nullable=False),  # per-ticket ordering key
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", UTCDateTime, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # True for the head of its key's line: the unfinished (not done) job with the lowest
    # id of its key. Maintained by jobs.enqueue and jobs.complete (see jobs.py).
    sa.Column("head", sa.Boolean, nullable=False, server_default=sa.false()),
    _check_in("state", JobState),
    sa.Index(None, "state", "id"),
    sa.Index(None, "key", "id"),
    sa.Index(None, "inbox_id"),
    # Partial indexes serving claims in O(log n) however many jobs are done (jobs.py).
    # The predicates are spelt exactly as the queries in jobs.py spell them, so that
    # SQLite's planner can match them.
    sa.Index(
        "ix_jobs_head_state_not_before_id",
        "state",
        "not_before",
        "id",
        sqlite_where=sa.text("head = 1"),
        postgresql_where=sa.text("head"),
    ),
    sa.Index(
        "ix_jobs_unfinished_key_id",
        "key",
        "id",
        sqlite_where=sa.text("state <> 'done'"),
        postgresql_where=sa.text("state <> 'done'"),
    ),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("exchange", sa.String(200), nullable=False),
    sa.Column("a_helpdesk", sa.String(200), nullable=False),
    sa.Column("a_id", sa.String(200), nullable=False),
    sa.Column("b_helpdesk", sa.String(200), nullable=False),
    sa.Column("b_id", sa.String(200), nullable=True),  # NULL until the remote confirms
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("a_modified", UTCDateTime, nullable=True),  # newest a-side snapshot applied
    sa.Column("a_digest", sa.String(128), nullable=True),
    sa.Column("b_version", sa.String(200), nullable=True),
    sa.Column("b_digest", sa.String(128), nullable=True),
    sa.Column("data", JSONData, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("exchange", "a_helpdesk", "a_id"),
    sa.UniqueConstraint("b_helpdesk", "b_id"),
    _check_in("state", LinkState),
    sa.Index(None, "a_helpdesk", "a_id"),
)

copied = sa.Table(
    "copied",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("link_id", sa.Integer, sa.ForeignKey("links.id", ondelete="CASCADE"), nullable=False),
    sa.Column("direction", sa.String(2), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source_key", sa.String(400), nullable=False),
    sa.Column("dest_key", sa.String(400), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("link_id", "direction", "kind", "source_key"),
    _check_in("direction", Direction),
    _check_in("kind", CopiedKind),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("inbox_id", sa.Integer, sa.ForeignKey("inbox.id"), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("released_at", UTCDateTime, nullable=True),
    sa.Index(None, "inbox_id"),
)

# The audit trail deliberately has no foreign keys: it is an append-only log that must
# outlive any later pruning of inbox rows, jobs or links.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("helpdesk", sa.String(200), nullable=True),
    sa.Column("ticket_id", sa.String(200), nullable=True),
    sa.Column("link_id", sa.Integer, nullable=True),
    sa.Column("inbox_id", sa.Integer, nullable=True),
    sa.Column("job_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("detail", JSONData, nullable=False),
    sa.Index(None, "helpdesk", "ticket_id", "at"),
    sa.Index(None, "link_id"),
)

receiver_state = sa.Table(
    "receiver_state",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("data", JSONData, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


def utcnow() -> datetime:
    """The current time, tz-aware UTC (the store's default clock)."""
    return datetime.now(UTC)
