"""The ``ggus-mail`` connector: GGUS written by mail submission (spec A1, A4, C2).

* :class:`~ticketbridge.model.CreateTicket` -> a mail to the GGUS helpdesk address:
  subject = the title (one line), body = the description followed by the public comments.
  GGUS opens a ticket for TPM from it. The receipt has no ticket id: GGUS answers a
  submission with nothing but its notification mails.
* :class:`~ticketbridge.model.UpdateTicket` -> a mail whose subject carries
  ``GGUS-Ticket-ID: #<id>``; the public comments, joined by a blank line, are its body.
  GGUS appends the whole body to the ticket as a public diary entry.

What mail cannot do is refused with :class:`~ticketbridge.errors.RemoteRejected` naming
why, before anything is sent:

* **internal comments**: a mail body becomes *public* diary text, so an internal comment
  would be published (architecture invariant 7);
* **field changes** (status, priority, title, support unit ...): "no other field can be
  changed by mail" (A4). ``GHD_Last_Modifier``/``GHD_Last_Login`` are accepted and not
  sent (GGUS takes the sender as the modifier);
* **attachments**: not sent by this connector.

An update without public text sends nothing and answers a receipt saying so.

:meth:`GgusMailConnector.find_by_correlation` always answers None: GGUS offers no search
by mail and a mail create cannot carry ``GHD_Origin_ID``. :meth:`GgusMailConnector.fetch`
raises RemoteRejected: the snapshot of a GGUS ticket reached by mail comes from its XML
notification mails (``codecs/ggus_mail.py``), not from a request.

The Message-ID of every mail is derived from the operation (SHA-256 of its content and
target), ``<tb.ggus.<create|update>.<32 hex>@<sender domain>>``, and is the receipt's
``idempotency_key``. GGUS does not recognise a resent Message-ID, so a mail is never resent
here once ``DATA`` has begun. The SMTP session is kept open between operations, one per
thread; a kept session the server has closed is replaced once, when the failure came
before ``DATA`` (nothing of the message reached the server).

Errors (one translator): SMTP 530/535 and an AUTH the server does not offer ->
RemoteAuthFailed; 4xx, disconnects, refused connections, timeouts -> RemoteUnavailable;
other 5xx -> RemoteRejected with the server's text.
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime

from ticketbridge.connectors.ggus._common import diaries, is_internal, native_fields
from ticketbridge.connectors.ggus.settings import GgusMailSettings
from ticketbridge.connectors.smtp import KeptSmtp, SmtpSession, smtp_error, stable_message_id
from ticketbridge.errors import (
    ConfigError,
    Problem,
    RemoteRejected,
    RemoteUnavailable,
)
from ticketbridge.model import (
    AddAttachment,
    CreateTicket,
    Operation,
    Receipt,
    Ticket,
    UpdateTicket,
)

__all__ = ["GgusMailConnector", "message_id_for"]

#: Fields that name who writes; mail takes the sender instead, so they are not an error.
_WHO = frozenset({"GHD_Last_Modifier", "GHD_Last_Login"})


def message_id_for(op: CreateTicket | UpdateTicket, *, domain: str) -> str:
    """The Message-ID of the mail carrying ``op``: the same operation, the same Message-ID."""
    if isinstance(op, CreateTicket):
        kind, target = "create", f"key={op.correlation_key}"
        content: dict[str, object] = {"title": op.title, "description": op.description}
    else:
        kind, target = "update", f"ticket={op.ticket_id}"
        content = {}
    content |= {
        "helpdesk": op.helpdesk,
        "target": target,
        "fields": sorted(op.fields.items()),
        "comments": [[c.key, c.body, str(c.visibility)] for c in op.comments],
    }
    return stable_message_id(f"tb.ggus.{kind}", content, domain)


class GgusMailConnector:
    """GGUS by mail submission as a target helpdesk (``TargetConnector``)."""

    def __init__(self, name: str, settings: GgusMailSettings) -> None:
        missing = [k for k in ("helpdesk_address", "sender") if getattr(settings, k) is None]
        if missing:
            raise ConfigError(
                [
                    Problem(
                        f"a ggus-mail helpdesk used as a target needs {' and '.join(missing)}",
                        path=f"helpdesks.{name}",
                    )
                ]
            )
        if (settings.smtp_user is None) != (settings.smtp_password is None):
            raise ConfigError(
                [Problem("smtp_user and smtp_password go together", path=f"helpdesks.{name}")]
            )
        self.name = name
        self.settings = settings
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[SmtpSession] = []

    @property
    def helpdesk_address(self) -> str:
        assert self.settings.helpdesk_address is not None
        return self.settings.helpdesk_address

    @property
    def sender(self) -> str:
        assert self.settings.sender is not None
        return self.settings.sender

    # -- TargetConnector -----------------------------------------------------------------

    def apply(self, op: Operation) -> Receipt:
        """Mail a create or an update; refuse what mail cannot carry (module docstring)."""
        if isinstance(op, AddAttachment):
            raise RemoteRejected(
                self.name, "attachments are not supported by the ggus-mail connector"
            )
        internal = [c for c in op.comments if is_internal(c)]
        if internal:
            raise RemoteRejected(
                self.name,
                f"{len(internal)} internal comment(s) cannot go by mail: GGUS "
                "appends a mail's body as public diary text, so it would be "
                "published; use ggus-soap or ggus-rest for internal entries",
            )
        if isinstance(op, UpdateTicket):
            fields = sorted(n for n in native_fields(op.fields) if n not in _WHO)
            if fields:
                raise RemoteRejected(
                    self.name,
                    f"GGUS changes no field by mail (only the body is appended "
                    f"as a public diary entry): cannot set {', '.join(fields)}",
                )
            if not op.ticket_id.strip().isdigit():
                raise RemoteRejected(self.name, f"{op.ticket_id!r} is not a GGUS ticket id")
        msg, key = self._mail(op)
        if msg is None:
            assert isinstance(op, UpdateTicket)
            return Receipt(ticket_id=op.ticket_id.strip(), detail="no public text: nothing mailed")
        with _translate(self.name, "SMTP"):
            self._send(msg)
        if isinstance(op, CreateTicket):
            ignored = sorted(n for n in native_fields(op.fields) if n not in _WHO)
            note = f"; not carried by mail: {', '.join(ignored)}" if ignored else ""
            return Receipt(
                ticket_id=None,
                idempotency_key=key,
                detail=f"create mailed to {self.helpdesk_address}{note}",
            )
        return Receipt(
            ticket_id=op.ticket_id.strip(),
            idempotency_key=key,
            detail=f"update mailed to {self.helpdesk_address}",
        )

    def find_by_correlation(self, key: str) -> str | None:
        """Always None: GGUS has no search by mail, and a mailed create carries no
        GHD_Origin_ID. The id of a mailed create is learnt from GGUS' notification mail."""
        return None

    def fetch(self, ticket_id: str) -> Ticket:
        """Always RemoteRejected: a GGUS ticket reached by mail is read from its XML
        notification mails (codecs/ggus_mail.py), not fetched."""
        raise RemoteRejected(
            self.name,
            "ggus-mail cannot fetch a ticket: its snapshots come from GGUS' XML "
            "notification mails; use ggus-soap or ggus-rest to read tickets",
        )

    def close(self) -> None:
        """QUIT and close every thread's kept SMTP session."""
        with self._lock:
            everything, self._all = self._all, []
        for session in everything:
            session.close()
        self._local = threading.local()

    # -- mails ---------------------------------------------------------------------------

    def _mail(self, op: CreateTicket | UpdateTicket) -> tuple[EmailMessage | None, str]:
        domain = self.sender.rpartition("@")[2].strip("> ") or "ticketbridge.invalid"
        key = message_id_for(op, domain=domain)
        public, _ = diaries(op.comments)
        if isinstance(op, CreateTicket):
            subject = " ".join(op.title.split()) or "(Untitled Ticket)"
            body = "\n\n".join(p for p in (op.description.strip("\n"), public) if p.strip())
        else:
            if not public.strip():
                return None, key
            subject = f"GGUS-Ticket-ID: #{op.ticket_id.strip()}"
            body = public
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = self.sender
        msg["To"] = self.helpdesk_address
        msg["Subject"] = subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = key
        msg.set_content(body or "(No description given)", charset="utf-8")
        return msg, key

    # -- the kept session ----------------------------------------------------------------

    def _session(self) -> SmtpSession:
        mine: SmtpSession | None = getattr(self._local, "session", None)
        if mine is None:
            mine = SmtpSession(self._open)
            self._local.session = mine
            with self._lock:
                self._all.append(mine)
        return mine

    def _open(self) -> KeptSmtp:
        smtp = KeptSmtp(
            self.settings.smtp_host, self.settings.smtp_port, timeout=self.settings.timeout
        )
        try:
            if self.settings.smtp_user is not None and self.settings.smtp_password is not None:
                smtp.login(self.settings.smtp_user, self.settings.smtp_password.get_secret_value())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send(self, msg: EmailMessage) -> None:
        self._session().send(msg, sender=self.sender, recipients=[self.helpdesk_address])

    @property
    def kept(self) -> smtplib.SMTP | None:
        """This thread's kept SMTP session, if one is open (tests, diagnostics)."""
        return self._session().smtp


@contextlib.contextmanager
def _translate(helpdesk: str, what: str) -> Iterator[None]:
    """smtplib and socket errors into ticketbridge's error tree."""
    try:
        yield
    except smtplib.SMTPException as exc:  # before OSError: it is one
        raise smtp_error(helpdesk, what, exc) from exc
    except OSError as exc:  # refused, reset, unreachable, timed out
        raise RemoteUnavailable(helpdesk, f"{what}: {exc or type(exc).__name__}") from exc


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
