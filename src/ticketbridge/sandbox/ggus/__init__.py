"""A faithful emulator of GGUS: mail submission, gen-1 XML notifications, the Remedy-era
SOAP services (GGUS, GGUS_HISTORY, GGUS_ATTACH) with their WSDLs, and the Zammad-era REST
API v1, over one database.

Modules: ``store`` (its SQLite database), ``engine`` (rules, notifications),
``servers`` (SMTP and HTTP), ``sandbox`` (:class:`GgusSandbox` and :func:`serve`);
``wsdl/`` holds the served WSDLs. docs/sandbox/ggus.md is the manual.
"""

from ticketbridge.sandbox.ggus.engine import (
    CATEGORIES,
    DEFAULT_UNITS,
    FINAL_STATUSES,
    PRIORITIES,
    STATUSES,
    TICKET_TYPES,
    TYPES_OF_PROBLEM,
    Actor,
    Ggus,
    GgusFault,
    MailOutcome,
    NewAttachment,
)
from ticketbridge.sandbox.ggus.sandbox import GgusSandbox, serve
from ticketbridge.sandbox.ggus.store import (
    Article,
    GgusTicket,
    HistoryEntry,
    OutboxMail,
    StoredAttachment,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_UNITS",
    "FINAL_STATUSES",
    "PRIORITIES",
    "STATUSES",
    "TICKET_TYPES",
    "TYPES_OF_PROBLEM",
    "Actor",
    "Article",
    "Ggus",
    "GgusFault",
    "GgusSandbox",
    "GgusTicket",
    "HistoryEntry",
    "MailOutcome",
    "NewAttachment",
    "OutboxMail",
    "StoredAttachment",
    "serve",
]
