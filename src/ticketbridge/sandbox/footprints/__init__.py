"""A faithful emulator of OSG's Footprints (project 71): email interface and MRWebServices.

Modules: ``store`` (its SQLite database), ``engine`` (validation, issues, notifications),
``query`` (the SQL subset of ``search``), ``servers`` (SMTP and HTTP), ``sandbox``
(:class:`FootprintsSandbox` and :func:`serve`). docs/sandbox/footprints.md is the manual.
"""

from ticketbridge.sandbox.footprints.engine import (
    PRIORITIES,
    STATUSES,
    TICKET_TYPES,
    Footprints,
    FootprintsFault,
    MailOutcome,
)
from ticketbridge.sandbox.footprints.sandbox import DEFAULT_AGENTS, FootprintsSandbox, serve
from ticketbridge.sandbox.footprints.store import Entry, Issue, OutboxMail, StoredAttachment

__all__ = [
    "DEFAULT_AGENTS",
    "PRIORITIES",
    "STATUSES",
    "TICKET_TYPES",
    "Entry",
    "Footprints",
    "FootprintsFault",
    "FootprintsSandbox",
    "Issue",
    "MailOutcome",
    "OutboxMail",
    "StoredAttachment",
    "serve",
]
