"""What a stored trigger says: which ticket on which helpdesk, and its snapshot if it has one.

Triggers come from a mailbox bound to a helpdesk, or from an operator command:

* a GGUS gen-1 notification (``ggus-mail``) carries the whole ticket as XML: the snapshot;
* a GGUS notification for a ``ggus-soap`` or ``ggus-rest`` helpdesk is only a trigger: the
  subject names the ticket (``GGUS-Ticket-ID: #id``), the snapshot is fetched;
* a Footprints notification names ``ISSUE=n PROJ=p`` in its subject; the snapshot is
  fetched through MRWebServices;
* an operator command (``ticketbridge send``) is stored as JSON with source ``operator``.

Everything here is pure: bytes and settings in, a :class:`Trigger` out, or BadInput.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ticketbridge.codecs import ggus_mail, mime
from ticketbridge.codecs.footprints_mail import parse_notification_subject
from ticketbridge.config.settings import Settings
from ticketbridge.connectors.footprints import FootprintsSettings
from ticketbridge.connectors.ggus.settings import GgusMailSettings
from ticketbridge.errors import InvalidValue, MalformedMessage
from ticketbridge.model import Ticket, TicketRef

#: The inbox source of operator commands.
OPERATOR = "operator"
#: Inbox sources of poll hits start with this (``poll:HELPDESK``).
POLL = "poll:"


@dataclass(frozen=True, slots=True)
class Trigger:
    """One decoded trigger."""

    ref: TicketRef
    snapshot: Ticket | None = None  # None: fetch it through the helpdesk's connector
    summary: str = ""
    message_id: str = ""
    warnings: tuple[str, ...] = ()
    command: dict[str, Any] = field(default_factory=dict)  # operator commands only


def helpdesk_of(source: str, settings: Settings) -> str:
    """The helpdesk whose triggers arrive through inbox ``source``."""
    binding = settings.receivers.get(source)
    return binding.helpdesk if binding else source


def trigger_key(raw: bytes, helpdesk: str, settings: Settings) -> str | None:
    """The ticket a raw mail is about, as ``helpdesk:id``, cheaply; None if unknown."""
    kind = settings.helpdesks[helpdesk].kind if helpdesk in settings.helpdesks else ""
    if kind == "footprints-mail":
        subject = _subject(raw)
        found = parse_notification_subject(subject) if subject else None
        return f"{helpdesk}:{found[0]}" if found else None
    ticket_id = ggus_mail.trigger_key(raw)
    return f"{helpdesk}:{ticket_id}" if ticket_id else None


def decode(source: str, raw: bytes, settings: Settings) -> Trigger:
    """Decode the trigger stored from inbox ``source``; raises BadInput for bad input."""
    if source == OPERATOR:
        return _command(raw)
    if source.startswith(POLL):
        try:
            hit = json.loads(raw)
            ref = TicketRef(str(hit["poll"]), str(hit["id"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedMessage(f"poll hit is not valid: {exc}") from exc
        return Trigger(ref, None, f"poll: {ref} updated at {hit.get('updated_at')}")
    helpdesk = helpdesk_of(source, settings)
    config = settings.helpdesks.get(helpdesk)
    if isinstance(config, GgusMailSettings):
        mail = ggus_mail.decode(raw, helpdesk=helpdesk, max_bytes=config.max_message_bytes)
        t = mail.ticket
        summary = f"{mail.subject[:120]!r} status={t.status!r} priority={t.priority!r}"
        return Trigger(t.ref, t, summary, mail.message_id, mail.warnings)
    msg = mime.parse_message(raw, max_bytes=settings.max_message_bytes(helpdesk))
    subject = mime.decoded_subject(msg)
    message_id = mime.message_id(msg, raw)
    if isinstance(config, FootprintsSettings):
        found = parse_notification_subject(subject)
        if found is None:
            raise MalformedMessage(f"no ISSUE=n PROJ=p in the subject {subject[:120]!r}")
        issue, project = found
        if project != config.project:
            raise InvalidValue(f"notification for project {project}, not {config.project}")
        return Trigger(
            TicketRef(helpdesk, issue), None, f"notification {subject[:120]!r}", message_id
        )
    ticket_id = ggus_mail.ggus_id_from_subject(subject)
    if ticket_id is None:
        raise MalformedMessage(f"no GGUS-Ticket-ID in the subject {subject[:120]!r}")
    return Trigger(
        TicketRef(helpdesk, ticket_id), None, f"notification {subject[:120]!r}", message_id
    )


def command_bytes(command: dict[str, Any]) -> bytes:
    """An operator command as it is stored in the inbox."""
    return json.dumps(command, sort_keys=True).encode()


def _command(raw: bytes) -> Trigger:
    try:
        command = json.loads(raw)
        ref = TicketRef.parse(command["ref"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedMessage(f"operator command is not valid: {exc}") from exc
    summary = f"operator: send {ref} to {command.get('to')} ({command.get('mode')})"
    return Trigger(ref, None, summary, command=command)


def _subject(raw: bytes) -> str:
    try:
        return mime.decoded_subject(mime.parse_message(raw.split(b"\n\n", 1)[0] + b"\n\n"))
    except Exception:  # a key is an optimisation; the worker reports bad mail properly
        return ""
