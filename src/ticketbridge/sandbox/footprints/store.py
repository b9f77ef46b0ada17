"""The emulator's own database: one SQLite file (or ``:memory:``), safe to use from threads.

Footprints kept each project in MySQL tables (``MASTER71`` and friends). The emulator
keeps what its interfaces show: issues with their built-in, project and address-book
fields, the append-only description entries, the Message-IDs of mails it has processed,
and every mail it sent or kept (its outbox).

One connection, one lock: SQLite serialises writers anyway, and an emulator never needs
concurrent writers; the lock also makes ``:memory:`` usable from the SMTP and HTTP threads.

Speed, so that the emulator is never what a benchmark measures: a database file runs in
WAL mode with ``synchronous=NORMAL`` (a power loss may forget the last submissions: this
is an emulator); the engine processes each mail or SOAP call in one transaction
(:meth:`IssueStore.transaction` nests); and the Originating Ticket Number, the one field
searched, is kept casefolded in the indexed column ``issues.origin``, so a search costs
the same however many issues there are.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ticketbridge.codecs.mrwebservices import format_stamp

__all__ = ["Entry", "Issue", "IssueStore", "OutboxMail", "StoredAttachment"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issues (
    mrid          INTEGER PRIMARY KEY AUTOINCREMENT,
    project       INTEGER NOT NULL,
    title         TEXT NOT NULL,
    status        TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    ticket_type   TEXT NOT NULL,
    submitter     TEXT NOT NULL,
    contact       TEXT NOT NULL,      -- JSON: address-book fields by label
    assignees     TEXT NOT NULL,      -- space-separated, CC: prefix = permanent CC
    projfields    TEXT NOT NULL,      -- JSON: project fields by label
    created       TEXT NOT NULL,      -- ISO 8601, UTC
    modified      TEXT NOT NULL,      -- ISO 8601, UTC (lastdate + lasttime)
    origin        TEXT                -- Originating Ticket Number, casefolded (search)
);
CREATE TABLE IF NOT EXISTS descriptions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    mrid      INTEGER NOT NULL REFERENCES issues(mrid),
    data      TEXT NOT NULL,
    author    TEXT NOT NULL,
    internal  INTEGER NOT NULL,
    entered   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS descriptions_mrid ON descriptions(mrid);
CREATE TABLE IF NOT EXISTS attachments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    mrid          INTEGER NOT NULL REFERENCES issues(mrid),
    name          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    data          BLOB NOT NULL,
    size          INTEGER NOT NULL,
    author        TEXT NOT NULL,
    created       TEXT NOT NULL       -- ISO 8601, UTC
);
CREATE INDEX IF NOT EXISTS attachments_mrid ON attachments(mrid);
CREATE TABLE IF NOT EXISTS processed_messages (
    message_id  TEXT PRIMARY KEY,
    mrid        INTEGER,
    outcome     TEXT NOT NULL,
    processed   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,        -- notification | rejection
    mrid        INTEGER,
    sender      TEXT NOT NULL,
    recipients  TEXT NOT NULL,        -- JSON list
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    raw         BLOB NOT NULL,
    created     TEXT NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One description entry. ``stamp`` reads "Entered on MM/DD/YYYY at HH:MM:SS UTC by NAME"."""

    data: str
    author: str
    entered: datetime
    internal: bool = False

    @property
    def stamp(self) -> str:
        return format_stamp(self.entered, self.author)


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """One file attached to an issue: ``author`` is who sent it, ``created`` when (UTC)."""

    id: int
    name: str
    content_type: str
    data: bytes
    size: int
    author: str
    created: datetime


@dataclass(frozen=True, slots=True)
class Issue:
    """One Footprints issue as the emulator holds it. ``descriptions`` are newest first."""

    mrid: int
    project: int
    title: str
    status: str
    priority: int
    ticket_type: str
    submitter: str
    contact: Mapping[str, str]
    assignees: tuple[str, ...]
    project_fields: Mapping[str, str]
    descriptions: tuple[Entry, ...]
    created: datetime
    modified: datetime
    attachments: tuple[StoredAttachment, ...] = ()  # oldest first

    @property
    def lastdate(self) -> str:
        return self.modified.strftime("%Y-%m-%d")

    @property
    def lasttime(self) -> str:
        return self.modified.strftime("%H:%M:%S")

    @property
    def permanent_ccs(self) -> tuple[str, ...]:
        return tuple(a[3:] for a in self.assignees if a.startswith("CC:"))

    def field(self, label: str) -> str:
        """A project or address-book field by its label ("" when unset)."""
        if label == "Ticket Type":
            return self.ticket_type
        return self.project_fields.get(label) or self.contact.get(label) or ""


@dataclass(frozen=True, slots=True)
class OutboxMail:
    """A mail the emulator sent (``delivered``) or kept because no smarthost is set."""

    id: int
    kind: str
    mrid: int | None
    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    message_id: str
    raw: bytes
    created: datetime
    delivered: bool
    error: str | None


_ORIGIN = "Originating Ticket Number"


def origin_key(value: str) -> str:
    """How ``issues.origin`` holds an Originating Ticket Number (search is case-blind)."""
    return value.casefold()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _origin_of(project_fields: Mapping[str, str]) -> str | None:
    value = project_fields.get(_ORIGIN)
    return origin_key(value) if value else None


class IssueStore:
    """All reads and writes of the emulator's database."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction(), by the thread holding the lock
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode = WAL")  # stays "memory" for :memory:
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)
            self._upgrade()

    def _upgrade(self) -> None:
        """Bring a database file written by an older emulator up to this schema."""
        columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(issues)")}
        if "origin" not in columns:
            with self.transaction():
                self._conn.execute("ALTER TABLE issues ADD COLUMN origin TEXT")
                rows = self._conn.execute("SELECT mrid, projfields FROM issues").fetchall()
                for row in rows:
                    value = json.loads(row["projfields"]).get(_ORIGIN)
                    if value:
                        self._conn.execute("UPDATE issues SET origin = ? WHERE mrid = ?",
                                           (origin_key(value), row["mrid"]))
        self._conn.execute("CREATE INDEX IF NOT EXISTS issues_origin ON issues(origin)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock and one SQLite transaction; roll back on any error.

        Nested calls (in the same thread) join the outermost transaction.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- issues --------------------------------------------------------------------------

    def insert_issue(
        self,
        *,
        project: int,
        title: str,
        status: str,
        priority: int,
        ticket_type: str,
        submitter: str,
        contact: Mapping[str, str],
        assignees: Sequence[str],
        project_fields: Mapping[str, str],
        when: datetime,
    ) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO issues (project, title, status, priority, ticket_type, submitter,"
                " contact, assignees, projfields, created, modified, origin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (project, title, status, priority, ticket_type, submitter,
                 json.dumps(dict(contact)), " ".join(assignees),
                 json.dumps(dict(project_fields)), _iso(when), _iso(when),
                 _origin_of(project_fields)),
            )
            mrid = cursor.lastrowid
            assert mrid is not None
            return mrid

    def update_issue(
        self,
        mrid: int,
        *,
        title: str,
        status: str,
        priority: int,
        ticket_type: str,
        contact: Mapping[str, str],
        assignees: Sequence[str],
        project_fields: Mapping[str, str],
        when: datetime,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE issues SET title = ?, status = ?, priority = ?, ticket_type = ?,"
                " contact = ?, assignees = ?, projfields = ?, modified = ?, origin = ?"
                " WHERE mrid = ?",
                (title, status, priority, ticket_type, json.dumps(dict(contact)),
                 " ".join(assignees), json.dumps(dict(project_fields)), _iso(when),
                 _origin_of(project_fields), mrid),
            )

    def add_description(
        self, mrid: int, data: str, *, author: str, internal: bool, when: datetime
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO descriptions (mrid, data, author, internal, entered)"
                " VALUES (?, ?, ?, ?, ?)",
                (mrid, data, author, int(internal), _iso(when)),
            )

    def add_attachment(
        self, mrid: int, *, name: str, content_type: str, data: bytes, author: str,
        when: datetime,
    ) -> int:
        """Store one file of issue ``mrid``; returns its attachment id."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO attachments (mrid, name, content_type, data, size, author,"
                " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mrid, name, content_type, data, len(data), author, _iso(when)),
            )
            row_id = cursor.lastrowid
            assert row_id is not None
            return row_id

    def attachment(self, mrid: int, attachment_id: int) -> StoredAttachment | None:
        """One file of issue ``mrid`` (None when that issue has no such file)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM attachments WHERE id = ? AND mrid = ?", (attachment_id, mrid)
            ).fetchone()
            return None if row is None else _stored_attachment(row)

    def issue(self, mrid: int) -> Issue | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM issues WHERE mrid = ?", (mrid,)).fetchone()
            return None if row is None else self._issue(row)

    def issues(self) -> list[Issue]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM issues ORDER BY mrid").fetchall()
            return [self._issue(row) for row in rows]

    def issues_by_origin(self, value: str) -> list[Issue]:
        """Issues whose Originating Ticket Number equals ``value`` ignoring case, by number.

        An index look-up: its cost does not grow with the number of issues.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM issues WHERE origin = ? ORDER BY mrid", (origin_key(value),)
            ).fetchall()
            return [self._issue(row) for row in rows]

    def _issue(self, row: sqlite3.Row) -> Issue:
        entries = self._conn.execute(
            "SELECT * FROM descriptions WHERE mrid = ? ORDER BY id DESC", (row["mrid"],)
        ).fetchall()
        return Issue(
            mrid=row["mrid"],
            project=row["project"],
            title=row["title"],
            status=row["status"],
            priority=row["priority"],
            ticket_type=row["ticket_type"],
            submitter=row["submitter"],
            contact=json.loads(row["contact"]),
            assignees=tuple(row["assignees"].split()),
            project_fields=json.loads(row["projfields"]),
            descriptions=tuple(
                Entry(e["data"], e["author"], _time(e["entered"]), bool(e["internal"]))
                for e in entries
            ),
            created=_time(row["created"]),
            modified=_time(row["modified"]),
            attachments=tuple(
                _stored_attachment(a)
                for a in self._conn.execute(
                    "SELECT * FROM attachments WHERE mrid = ? ORDER BY id", (row["mrid"],)
                ).fetchall()
            ),
        )

    # -- processed messages --------------------------------------------------------------

    def processed(self, message_id: str) -> tuple[int | None, str] | None:
        """(mrid, outcome) of an earlier mail with this Message-ID, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT mrid, outcome FROM processed_messages WHERE message_id = ?",
                (message_id,),
            ).fetchone()
            return None if row is None else (row["mrid"], row["outcome"])

    def record_processed(
        self, message_id: str, mrid: int | None, outcome: str, when: datetime
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO processed_messages (message_id, mrid, outcome, processed)"
                " VALUES (?, ?, ?, ?)",
                (message_id, mrid, outcome, _iso(when)),
            )

    # -- outbox --------------------------------------------------------------------------

    def add_outbox(
        self,
        *,
        kind: str,
        mrid: int | None,
        sender: str,
        recipients: Sequence[str],
        subject: str,
        body: str,
        message_id: str,
        raw: bytes,
        when: datetime,
    ) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO outbox (kind, mrid, sender, recipients, subject, body, message_id,"
                " raw, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, mrid, sender, json.dumps(list(recipients)), subject, body, message_id,
                 raw, _iso(when)),
            )
            row_id = cursor.lastrowid
            assert row_id is not None
            return row_id

    def mark_outbox(self, row_id: int, *, delivered: bool, error: str | None) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET delivered = ?, error = ? WHERE id = ?",
                (int(delivered), error, row_id),
            )

    def outbox(self) -> list[OutboxMail]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
        return [
            OutboxMail(
                id=r["id"], kind=r["kind"], mrid=r["mrid"], sender=r["sender"],
                recipients=tuple(json.loads(r["recipients"])), subject=r["subject"],
                body=r["body"], message_id=r["message_id"], raw=bytes(r["raw"]),
                created=_time(r["created"]), delivered=bool(r["delivered"]), error=r["error"],
            )
            for r in rows
        ]


def _stored_attachment(row: sqlite3.Row) -> StoredAttachment:
    return StoredAttachment(
        id=row["id"], name=row["name"], content_type=row["content_type"],
        data=bytes(row["data"]), size=row["size"], author=row["author"],
        created=_time(row["created"]),
    )
