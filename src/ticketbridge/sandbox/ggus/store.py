"""The GGUS emulator's own database: one SQLite file (or ``:memory:``), safe from threads.

Tables: ``tickets`` (every B1 field), ``history`` (one row per change, the rows
OpGetTicketHist lists), ``articles`` (every text entry: description, diaries, solutions,
mail replies; the REST view's articles), ``attachments`` and ``outbox`` (every mail the
emulator sent or kept).

One connection, one lock, as in the Footprints emulator: the SMTP and HTTP threads share
it, and ``:memory:`` works from every thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "Article",
    "GgusTicket",
    "HistoryEntry",
    "OutboxMail",
    "StoredAttachment",
    "TicketStore",
]

#: Ticket columns other than request_id / created / modified, in B1 order.
TICKET_COLUMNS: tuple[str, ...] = (
    "short_description", "description", "status", "meta_status", "priority", "ticket_type",
    "type_of_problem", "ticket_category", "responsible_unit", "name", "loginname", "email",
    "phone", "affected_vo", "affected_site", "experiment_specific_problem",
    "date_time_of_problem", "origin_id", "origin_sg", "carbon_copy", "involve", "assign_to",
    "related_issue", "detailed_solution", "short_solution", "last_modifier", "last_login",
    "target_id", "incident_id", "product_name", "product_version", "eta",
)
#: History columns holding values (besides id, request_id, created).
HISTORY_COLUMNS: tuple[str, ...] = (
    "last_modifier", "last_login", "channel", "action", "status", "priority",
    "responsible_unit", "public_diary", "internal_diary", "detailed_solution",
    "diary_of_steps", "description", "type_of_problem", "affected_vo", "affected_site",
    "vo_specific", "assigned_to", "involve", "related_issue", "remind_on",
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tickets (request_id INTEGER PRIMARY KEY, "
    + ", ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in TICKET_COLUMNS)
    + ", created TEXT NOT NULL, modified TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "request_id INTEGER NOT NULL REFERENCES tickets(request_id), created TEXT NOT NULL, "
    + ", ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in HISTORY_COLUMNS)
    + ");\n"
    """CREATE INDEX IF NOT EXISTS history_request ON history(request_id);
CREATE TABLE IF NOT EXISTS articles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  INTEGER NOT NULL REFERENCES tickets(request_id),
    history_id  INTEGER REFERENCES history(id),
    kind        TEXT NOT NULL,      -- description | public | internal | solution | attachment
    body        TEXT NOT NULL,
    internal    INTEGER NOT NULL,
    author      TEXT NOT NULL,
    login       TEXT NOT NULL,
    sender      TEXT NOT NULL,      -- Agent | Customer | System
    type        TEXT NOT NULL,      -- note | email | web
    subject     TEXT NOT NULL,
    created     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_request ON articles(request_id);
CREATE TABLE IF NOT EXISTS attachments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id     INTEGER NOT NULL REFERENCES tickets(request_id),
    article_id     INTEGER REFERENCES articles(id),
    name           TEXT NOT NULL,
    data           BLOB NOT NULL,
    orig_size      INTEGER NOT NULL,
    content_type   TEXT NOT NULL,
    created        TEXT NOT NULL,
    last_modifier  TEXT NOT NULL,
    last_login     TEXT NOT NULL,
    origin_sg      TEXT NOT NULL,
    double         INTEGER NOT NULL   -- 1: GetOneAttachment sends it base64-encoded twice
);
CREATE INDEX IF NOT EXISTS attachments_request ON attachments(request_id);
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,        -- notification | rejection
    request_id  INTEGER,
    unit        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    recipients  TEXT NOT NULL,        -- JSON list
    subject     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    raw         BLOB NOT NULL,
    created     TEXT NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
"""
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class GgusTicket:
    """One GGUS ticket with every B1 field (attribute = field name in lower case).

    ``created`` is GHD_Date_Of_Creation, ``modified`` GHD_Date_Of_Change (UTC).
    """

    request_id: int
    short_description: str
    description: str
    status: str
    meta_status: str
    priority: str
    ticket_type: str
    type_of_problem: str
    ticket_category: str
    responsible_unit: str
    name: str
    loginname: str
    email: str
    phone: str
    affected_vo: str
    affected_site: str
    experiment_specific_problem: str
    date_time_of_problem: str
    origin_id: str
    origin_sg: str
    carbon_copy: str
    involve: str
    assign_to: str
    related_issue: str
    detailed_solution: str
    short_solution: str
    last_modifier: str
    last_login: str
    target_id: str
    incident_id: str
    product_name: str
    product_version: str
    eta: str
    created: datetime
    modified: datetime


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a ticket. ``channel``: mail, soap, rest, supporter or system;
    ``action``: created, modified, diary, routed, attachment; ``last_login``: who."""

    id: int
    request_id: int
    created: datetime
    last_modifier: str
    last_login: str
    channel: str
    action: str
    status: str
    priority: str
    responsible_unit: str
    public_diary: str
    internal_diary: str
    detailed_solution: str
    diary_of_steps: str
    description: str
    type_of_problem: str
    affected_vo: str
    affected_site: str
    vo_specific: str
    assigned_to: str
    involve: str
    related_issue: str
    remind_on: str


@dataclass(frozen=True, slots=True)
class Article:
    """One text entry (the REST view's article)."""

    id: int
    request_id: int
    history_id: int | None
    kind: str
    body: str
    internal: bool
    author: str
    login: str
    sender: str
    type: str
    subject: str
    created: datetime


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """One attachment. ``double``: served base64-encoded twice on SOAP (GOCTX-29)."""

    id: int
    request_id: int
    article_id: int | None
    name: str
    data: bytes
    orig_size: int
    content_type: str
    created: datetime
    last_modifier: str
    last_login: str
    origin_sg: str
    double: bool


@dataclass(frozen=True, slots=True)
class OutboxMail:
    """A mail the emulator sent (``delivered``) or kept because no smarthost is set."""

    id: int
    kind: str
    request_id: int | None
    unit: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    message_id: str
    raw: bytes
    created: datetime
    delivered: bool
    error: str | None


class TicketStore:
    """All reads and writes of the emulator's database."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock and one SQLite transaction; roll back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- tickets -------------------------------------------------------------------------

    def next_request_id(self, first_id: int) -> int:
        with self._lock:
            row = self._conn.execute("SELECT MAX(request_id) FROM tickets").fetchone()
        current = row[0]
        return first_id if current is None else max(first_id, int(current) + 1)

    def insert_ticket(self, request_id: int, values: Mapping[str, str], when: datetime) -> None:
        columns = [c for c in TICKET_COLUMNS if c in values]
        with self._lock:
            self._conn.execute(
                f"INSERT INTO tickets (request_id, {', '.join(columns)}, created, modified)"  # noqa: S608
                f" VALUES (?, {', '.join('?' for _ in columns)}, ?, ?)",
                (request_id, *(values[c] for c in columns), _iso(when), _iso(when)),
            )

    def update_ticket(self, request_id: int, values: Mapping[str, str], when: datetime) -> None:
        columns = [c for c in TICKET_COLUMNS if c in values]
        assignments = "".join(f"{c} = ?, " for c in columns)
        with self._lock:
            self._conn.execute(
                f"UPDATE tickets SET {assignments}modified = ? WHERE request_id = ?",  # noqa: S608
                (*(values[c] for c in columns), _iso(when), request_id),
            )

    def ticket(self, request_id: int) -> GgusTicket | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM tickets WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else _ticket(row)

    def tickets(self) -> list[GgusTicket]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM tickets ORDER BY request_id").fetchall()
        return [_ticket(row) for row in rows]

    # -- history and articles ------------------------------------------------------------

    def add_history(self, request_id: int, values: Mapping[str, str], when: datetime) -> int:
        columns = [c for c in HISTORY_COLUMNS if c in values]
        with self._lock:
            cursor = self._conn.execute(
                f"INSERT INTO history (request_id, created, {', '.join(columns)})"  # noqa: S608
                f" VALUES (?, ?, {', '.join('?' for _ in columns)})",
                (request_id, _iso(when), *(values[c] for c in columns)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def history(self, request_id: int) -> list[HistoryEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM history WHERE request_id = ? ORDER BY id", (request_id,)
            ).fetchall()
        return [
            HistoryEntry(id=r["id"], request_id=r["request_id"], created=_time(r["created"]),
                         **{c: r[c] for c in HISTORY_COLUMNS})
            for r in rows
        ]

    def add_article(
        self, request_id: int, history_id: int | None, *, kind: str, body: str,
        internal: bool, author: str, login: str, sender: str, type: str, subject: str,
        when: datetime,
    ) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO articles (request_id, history_id, kind, body, internal, author,"
                " login, sender, type, subject, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request_id, history_id, kind, body, int(internal), author, login, sender,
                 type, subject, _iso(when)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def articles(self, request_id: int) -> list[Article]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM articles WHERE request_id = ? ORDER BY id", (request_id,)
            ).fetchall()
        return [
            Article(id=r["id"], request_id=r["request_id"], history_id=r["history_id"],
                    kind=r["kind"], body=r["body"], internal=bool(r["internal"]),
                    author=r["author"], login=r["login"], sender=r["sender"], type=r["type"],
                    subject=r["subject"], created=_time(r["created"]))
            for r in rows
        ]

    def article_count(self, request_id: int) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM articles WHERE request_id = ?", (request_id,)).fetchone()
        return int(row[0])

    # -- attachments ---------------------------------------------------------------------

    def add_attachment(
        self, request_id: int, article_id: int | None, *, name: str, data: bytes,
        orig_size: int, content_type: str, last_modifier: str, last_login: str,
        origin_sg: str, double: bool, when: datetime,
    ) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO attachments (request_id, article_id, name, data, orig_size,"
                " content_type, created, last_modifier, last_login, origin_sg, double)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request_id, article_id, name, data, orig_size, content_type, _iso(when),
                 last_modifier, last_login, origin_sg, int(double)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def attachments(self, request_id: int) -> list[StoredAttachment]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM attachments WHERE request_id = ? ORDER BY id", (request_id,)
            ).fetchall()
        return [_attachment(r) for r in rows]

    def attachment(self, attachment_id: int) -> StoredAttachment | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
        return None if row is None else _attachment(row)

    # -- outbox --------------------------------------------------------------------------

    def add_outbox(
        self, *, kind: str, request_id: int | None, unit: str, sender: str,
        recipients: Sequence[str], subject: str, message_id: str, raw: bytes, when: datetime,
    ) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO outbox (kind, request_id, unit, sender, recipients, subject,"
                " message_id, raw, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, request_id, unit, sender, json.dumps(list(recipients)), subject,
                 message_id, raw, _iso(when)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def mark_outbox(self, row_id: int, *, delivered: bool, error: str | None) -> None:
        with self._lock:
            self._conn.execute("UPDATE outbox SET delivered = ?, error = ? WHERE id = ?",
                               (int(delivered), error, row_id))

    def outbox(self) -> list[OutboxMail]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
        return [
            OutboxMail(id=r["id"], kind=r["kind"], request_id=r["request_id"], unit=r["unit"],
                       sender=r["sender"], recipients=tuple(json.loads(r["recipients"])),
                       subject=r["subject"], message_id=r["message_id"], raw=bytes(r["raw"]),
                       created=_time(r["created"]), delivered=bool(r["delivered"]),
                       error=r["error"])
            for r in rows
        ]


def _ticket(row: sqlite3.Row) -> GgusTicket:
    values = {c: row[c] for c in TICKET_COLUMNS}
    return GgusTicket(request_id=row["request_id"], created=_time(row["created"]),
                      modified=_time(row["modified"]), **values)


def _attachment(r: sqlite3.Row) -> StoredAttachment:
    return StoredAttachment(
        id=r["id"], request_id=r["request_id"], article_id=r["article_id"], name=r["name"],
        data=bytes(r["data"]), orig_size=r["orig_size"], content_type=r["content_type"],
        created=_time(r["created"]), last_modifier=r["last_modifier"],
        last_login=r["last_login"], origin_sg=r["origin_sg"], double=bool(r["double"]))


# Every ticket column is an attribute of GgusTicket (checked once, at import).
assert {f.name for f in fields(GgusTicket)} == {"request_id", "created", "modified",
                                                *TICKET_COLUMNS}
