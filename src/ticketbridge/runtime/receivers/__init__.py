"""Mail receivers: read triggers from Maildir, mbox, POP3 and IMAP sources.

Each receiver hands every new message to a sink that stores it durably, and only then
acknowledges it at the source. See :mod:`ticketbridge.runtime.receivers.base` for the
contract and docs/receivers.md for each kind.
"""

from ticketbridge.runtime.receivers.base import (
    Receiver,
    Sink,
    StateStore,
    run_until_stopped,
)
from ticketbridge.runtime.receivers.settings import (
    ImapSettings,
    MaildirSettings,
    MboxSettings,
    Pop3Settings,
    ReceiverSettings,
    build_receiver,
    parse_receiver_settings,
)

__all__ = [
    "ImapSettings",
    "MaildirSettings",
    "MboxSettings",
    "Pop3Settings",
    "Receiver",
    "ReceiverSettings",
    "Sink",
    "StateStore",
    "build_receiver",
    "parse_receiver_settings",
    "run_until_stopped",
]
