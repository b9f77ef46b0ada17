"""The canonical values ticketbridge speaks in. Pure: no I/O, no clock, no configuration.

A :class:`Ticket` is a *snapshot*: one ticket on one helpdesk at one moment, in that
helpdesk's own vocabulary (a GGUS ticket says ``status="in progress"``, a Footprints
ticket says ``status="Engineering"``). Translating between vocabularies is the job of
the mapping tables in :mod:`ticketbridge.exchange`, never of this module.

Operations are what the planner asks a connector to do on the other side; a
:class:`Receipt` is what the connector learnt from the remote in answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

EMPTY: Mapping[str, str] = MappingProxyType({})


class Visibility(StrEnum):
    """Who may read a comment. Internal comments never become public on the other side."""

    PUBLIC = "public"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class TicketRef:
    """Where one copy of a ticket lives: a configured helpdesk and that helpdesk's id."""

    helpdesk: str
    id: str

    def __str__(self) -> str:
        return f"{self.helpdesk}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> TicketRef:
        """Read ``HELPDESK:ID`` as operators type it."""
        helpdesk, sep, ticket_id = text.partition(":")
        if not sep or not helpdesk or not ticket_id:
            raise ValueError(f"expected HELPDESK:ID, got {text!r}")
        return cls(helpdesk, ticket_id)


@dataclass(frozen=True, slots=True)
class Contact:
    """A person named in a ticket (submitter, CC)."""

    name: str = ""
    email: str = ""
    phone: str = ""
    login: str = ""  # a login or an X.509 DN


@dataclass(frozen=True, slots=True)
class Comment:
    """One entry in a ticket's history: a diary line, a reply, a solution.

    ``key`` identifies the entry on its own helpdesk (an article id, or a digest of its
    text when the helpdesk gives none); copied comments are recorded by key so that a
    comment is never copied twice and never echoed back.
    """

    key: str
    body: str
    author: str = ""
    created: datetime | None = None
    visibility: Visibility = Visibility.PUBLIC
    kind: str = "comment"  # the helpdesk's own name for the entry, e.g. "public diary"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a ticket."""

    key: str
    name: str
    data: bytes
    content_type: str = "application/octet-stream"
    author: str = ""
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    """A snapshot of one ticket on one helpdesk, in that helpdesk's own vocabulary.

    ``modified`` is the version stamp used for ordering snapshots (GGUS: the mail's
    Date or ``GHD_Date_Of_Change``); ``fields`` holds every other native field by its
    native name (for GGUS the ``GHD_*`` element names).
    """

    ref: TicketRef
    title: str = ""
    description: str = ""
    status: str = ""
    priority: str = ""
    submitter: Contact = field(default_factory=Contact)
    fields: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    comments: tuple[Comment, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    modified: datetime | None = None
    created: datetime | None = None

    def field(self, name: str, default: str = "") -> str:
        """A native field's value, or ``default`` when it is absent or empty."""
        return self.fields.get(name) or default


def text_digest(*parts: str) -> str:
    """A short, stable digest of some text, used as a key for content without an id."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateTicket:
    """Open a new ticket on ``helpdesk``.

    ``correlation_key`` is written into the new ticket (Footprints' Originating Ticket
    Number, GGUS' GHD_Origin_ID, an RT custom field) so that a create whose outcome is
    unknown can be found again instead of being repeated. ``fields`` are native field
    values of the target; ``comments`` are entries to add after the description.
    """

    helpdesk: str
    correlation_key: str
    title: str
    description: str
    fields: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    comments: tuple[Comment, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateTicket:
    """Change fields of, and append entries to, an existing ticket on ``helpdesk``."""

    helpdesk: str
    ticket_id: str
    fields: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    comments: tuple[Comment, ...] = ()


@dataclass(frozen=True, slots=True)
class AddAttachment:
    """Attach a file to an existing ticket."""

    helpdesk: str
    ticket_id: str
    attachment: Attachment


Operation = CreateTicket | UpdateTicket | AddAttachment


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the remote answered to one operation.

    ``ticket_id`` is None when the remote accepted a create but did not tell us the new
    id (a mail interface); the link then waits for the id to be learnt.
    ``idempotency_key`` is the key a resend of the same operation carries (a Message-ID).
    """

    ticket_id: str | None
    version: str = ""
    idempotency_key: str = ""
    detail: str = ""
