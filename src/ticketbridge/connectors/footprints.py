"""The ``footprints-mail`` connector: write by mail, read and search by MRWebServices.

Footprints is written through its email interface (spec/domain.md C4), as the 2006
exchange did: one mail per operation to the project's incoming address. It is read through
MRWebServices (C6): ``getIssueDetails`` for a snapshot, ``search`` on Originating Ticket
Number to find the ticket a create produced (the email interface never answers with the
new number; docs/adr/0004-footprints-idempotent-create.md).

Choices made here:

* **Message-ID** of every mail is derived from the operation (a SHA-256 of its content and
  target), ``<tb.<kind>.<32 hex>@<sender domain>>``, and returned as the receipt's
  ``idempotency_key``: a resend of the same operation carries the same Message-ID.
* **Title**: an update's subject must carry the ticket's title. The connector reads it with
  getIssueDetails (which also proves the ticket exists). The email interface cannot rename
  a ticket, so a ``title`` in an update's fields is applied with one ``editIssue`` call
  (notifications suppressed) before the mail is sent, and the mail carries the new title.
* **Errors** are translated in one place (:func:`_translate`): network trouble, timeouts and
  SMTP 4xx are RemoteUnavailable; SMTP 5xx and SOAP faults about the data are
  RemoteRejected; SMTP 535 and SOAP faults about credentials are RemoteAuthFailed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ticketbridge.codecs import mrwebservices as mrws
from ticketbridge.codecs.footprints_mail import (
    canonical_label,
    decode_field_name,
    encode_create,
    encode_field_name,
    encode_update,
)
from ticketbridge.errors import (
    BadInput,
    RemoteAuthFailed,
    RemoteRejected,
    RemoteUnavailable,
)
from ticketbridge.model import (
    AddAttachment,
    Comment,
    Contact,
    CreateTicket,
    Operation,
    Receipt,
    Ticket,
    TicketRef,
    UpdateTicket,
    Visibility,
    text_digest,
)

__all__ = ["FootprintsConnector", "FootprintsSettings", "message_id_for"]

_ORIGINATING = "Originating Ticket Number"


class FootprintsSettings(BaseModel):
    """A Footprints project reached by its email interface and MRWebServices."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["footprints-mail"]
    project: int = Field(71, gt=0)
    incoming_address: str
    sender: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, gt=0, lt=65536)
    soap_url: str
    user: str
    password: SecretStr
    submitter: str = "ggus"  # the Footprints user named in SOAP writes (title changes)
    timeout: float = Field(30, gt=0)
    ticket_url: str = "https://ticket.example.org/{id}"

    @field_validator("soap_url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if urllib.parse.urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("soap_url must be an http:// or https:// URL")
        return value


def message_id_for(op: CreateTicket | UpdateTicket, *, project: int, domain: str) -> str:
    """The Message-ID of the mail carrying ``op``: the same operation, the same Message-ID."""
    if isinstance(op, CreateTicket):
        kind, target = "create", f"key={op.correlation_key}"
        content: dict[str, object] = {"title": op.title, "description": op.description}
    else:
        kind, target = "update", f"issue={op.ticket_id}"
        content = {}
    content |= {
        "helpdesk": op.helpdesk,
        "project": project,
        "target": target,
        "fields": sorted(op.fields.items()),
        "comments": [
            [c.key, c.body, c.author, c.created.isoformat() if c.created else "",
             str(c.visibility), c.kind]
            for c in op.comments
        ],
    }
    digest = hashlib.sha256(
        json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
    ).hexdigest()[:32]
    return f"<tb.{kind}.{digest}@{domain}>"


class FootprintsConnector:
    """A Footprints project as a target helpdesk (connectors/base.py ``TargetConnector``)."""

    def __init__(self, name: str, settings: FootprintsSettings) -> None:
        self.name = name
        self.settings = settings

    # -- TargetConnector -----------------------------------------------------------------

    def apply(self, op: Operation) -> Receipt:
        """Mail a create or an update; see the module docstring for the details.

        A create answers ``Receipt(ticket_id=None)``: the number is learnt by
        :meth:`find_by_correlation`. Raises RemoteUnavailable, RemoteRejected or
        RemoteAuthFailed.
        """
        if isinstance(op, AddAttachment):
            raise RemoteRejected(
                self.name, "attachments are not supported by the footprints-mail connector")
        msg, key = self._mail(op)
        recipients = [self.settings.incoming_address]
        with _translate(self.name, "SMTP"):
            with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port,
                              timeout=self.settings.timeout) as smtp:
                refused = smtp.send_message(msg, from_addr=self.settings.sender,
                                            to_addrs=recipients)
        if refused:  # pragma: no cover - one recipient: refusal raises instead
            raise RemoteRejected(self.name, f"recipients refused: {refused}")
        if isinstance(op, CreateTicket):
            return Receipt(ticket_id=None, idempotency_key=key,
                           detail=f"create mailed to {self.settings.incoming_address}")
        return Receipt(ticket_id=op.ticket_id, idempotency_key=key,
                       detail=f"update mailed to {self.settings.incoming_address}")

    def find_by_correlation(self, key: str) -> str | None:
        """The oldest issue whose Originating Ticket Number is ``key`` (MRWebServices search)."""
        query = mrws.build_search_query(
            self.settings.project, {encode_field_name(_ORIGINATING): key})
        rows = self._call(*mrws.search(self.settings.user, self._password, query))
        if not isinstance(rows, list):
            raise RemoteUnavailable(self.name, "search answered something other than a list")
        ids: list[int] = []
        for row in rows:
            if isinstance(row, dict):
                value = next((v for k, v in row.items() if k.lower() == "mrid"), None)
                if isinstance(value, int | str) and str(value).strip().isdigit():
                    ids.append(int(value))
        return str(min(ids)) if ids else None

    def fetch(self, ticket_id: str) -> Ticket:
        """The issue as a snapshot. Raises RemoteRejected when it does not exist."""
        details = self._details(ticket_id)
        return self._ticket(details)

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""

    # -- mails ---------------------------------------------------------------------------

    @property
    def _password(self) -> str:
        return self.settings.password.get_secret_value()

    def _mail(self, op: CreateTicket | UpdateTicket) -> tuple[EmailMessage, str]:
        domain = self.settings.sender.rpartition("@")[2].strip("> ") or "ticketbridge.invalid"
        key = message_id_for(op, project=self.settings.project, domain=domain)
        now = datetime.now(UTC)
        if isinstance(op, CreateTicket):
            msg = encode_create(op, to=self.settings.incoming_address,
                                sender=self.settings.sender, message_id=key, date=now)
            return msg, key
        fields = dict(op.fields)
        new_title = fields.pop("title", None)
        details = self._details(op.ticket_id)
        title = details.title
        if new_title is not None and " ".join(new_title.split()) not in ("", details.title):
            self._rename(details, new_title)
            title = new_title
        mail_op = UpdateTicket(helpdesk=op.helpdesk, ticket_id=op.ticket_id, fields=fields,
                               comments=op.comments)
        msg = encode_update(mail_op, project=self.settings.project, title=title,
                            to=self.settings.incoming_address, sender=self.settings.sender,
                            message_id=key, date=now)
        return msg, key

    def _rename(self, details: mrws.IssueDetails, title: str) -> None:
        args: dict[str, mrws.SoapValue] = {
            "projectID": self.settings.project,
            "mrID": details.mrid,
            "title": title,
            "submitter": self.settings.submitter,
            # Not an empty hash: Footprints dies on one (spec C6).
            "mail": {"assignees": 0, "contact": 0, "permanentCCs": 0},
        }
        self._call(*mrws.edit_issue(self.settings.user, self._password, args))

    # -- SOAP ----------------------------------------------------------------------------

    def _details(self, ticket_id: str) -> mrws.IssueDetails:
        if not ticket_id.strip().isdigit():
            raise RemoteRejected(self.name, f"{ticket_id!r} is not a Footprints issue number")
        result = self._call(*mrws.get_issue_details(
            self.settings.user, self._password, self.settings.project, int(ticket_id)))
        with _translate(self.name, "getIssueDetails answer"):
            return mrws.IssueDetails.from_soap(result)

    def _call(self, method: str, body: bytes) -> mrws.SoapValue:
        # soap_url is checked to be http(s) by FootprintsSettings.
        request = urllib.request.Request(  # noqa: S310
            self.settings.soap_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": 'text/xml; charset="utf-8"',
                "SOAPAction": mrws.soap_action(method),
            },
        )
        with _translate(self.name, method):
            try:
                with urllib.request.urlopen(  # noqa: S310
                    request, timeout=self.settings.timeout
                ) as response:
                    payload = response.read(mrws.MAX_DOCUMENT_BYTES + 1)
            except urllib.error.HTTPError as exc:
                # SOAP 1.1 answers faults with HTTP 500 and a fault envelope.
                payload = exc.read(mrws.MAX_DOCUMENT_BYTES + 1)
                if not payload.lstrip().startswith(b"<"):
                    raise
            return mrws.parse_response(payload)

    # -- snapshots -----------------------------------------------------------------------

    def _ticket(self, details: mrws.IssueDetails) -> Ticket:
        fields: dict[str, str] = {}
        for column, value in details.fields.items():
            fields[canonical_label(column) or decode_field_name(column)] = value
        fields["assignees"] = " ".join(details.assignees)
        fields["project"] = str(details.project)
        entries = list(reversed(details.descriptions))  # oldest first
        comments = tuple(self._comment(e) for e in entries)
        first_public = next((e.data for e in entries if not e.internal), "")
        contact = Contact(
            name=" ".join(p for p in (fields.get("First Name", ""),
                                      fields.get("Last Name", "")) if p),
            email=fields.get("Email address", ""),
            phone=fields.get("Office Phone", ""),
            login=details.submitter,
        )
        return Ticket(
            ref=TicketRef(self.name, str(details.mrid)),
            title=details.title,
            description=first_public,
            status=details.status,
            priority=str(details.priority),
            submitter=contact,
            fields={k: v for k, v in fields.items() if v},
            comments=comments,
            modified=details.modified,
            created=details.created,
        )

    @staticmethod
    def _comment(entry: mrws.DescriptionEntry) -> Comment:
        created, author = mrws.parse_stamp(entry.stamp)
        internal = entry.internal
        return Comment(
            key=text_digest(entry.stamp, entry.data),
            body=entry.data,
            author=author,
            created=created,
            visibility=Visibility.INTERNAL if internal else Visibility.PUBLIC,
            kind="internal description" if internal else "description",
        )


# --- the one error translator -----------------------------------------------------------


@contextlib.contextmanager
def _translate(helpdesk: str, what: str) -> Iterator[None]:
    """Turn smtplib, urllib, socket and SOAP errors into ticketbridge's error tree."""
    try:
        yield
    except smtplib.SMTPAuthenticationError as exc:
        raise RemoteAuthFailed(helpdesk, f"{what}: {_smtp_text(exc)}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        text = "; ".join(f"{rcpt}: {code} {_decode(msg)}"
                         for rcpt, (code, msg) in exc.recipients.items())
        raise _by_smtp_code(helpdesk, min(codes, default=550), f"{what}: {text}") from exc
    except smtplib.SMTPResponseException as exc:
        raise _by_smtp_code(helpdesk, exc.smtp_code, f"{what}: {_smtp_text(exc)}") from exc
    except smtplib.SMTPException as exc:  # disconnected, no recipients accepted, ...
        raise RemoteUnavailable(helpdesk, f"{what}: {exc}") from exc
    except mrws.SoapFault as exc:
        if mrws.is_auth_fault(exc):
            raise RemoteAuthFailed(helpdesk, f"{what}: {exc.message}") from exc
        raise RemoteRejected(helpdesk, f"{what}: {exc.message}") from exc
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise RemoteAuthFailed(helpdesk, f"{what}: HTTP {exc.code}") from exc
        if exc.code == 429 or exc.code >= 500:
            raise RemoteUnavailable(helpdesk, f"{what}: HTTP {exc.code}") from exc
        raise RemoteRejected(helpdesk, f"{what}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise RemoteUnavailable(helpdesk, f"{what}: {exc.reason}") from exc
    except OSError as exc:  # refused, reset, unreachable, timed out (TimeoutError)
        raise RemoteUnavailable(helpdesk, f"{what}: {exc}") from exc
    except BadInput as exc:  # an unreadable answer: a proxy error page, a truncated body
        raise RemoteUnavailable(helpdesk, f"{what}: unreadable answer: {exc}") from exc


def _by_smtp_code(
    helpdesk: str, code: int, message: str
) -> RemoteAuthFailed | RemoteUnavailable | RemoteRejected:
    if code in (530, 535):
        return RemoteAuthFailed(helpdesk, message)
    if 400 <= code < 500:
        return RemoteUnavailable(helpdesk, message)
    return RemoteRejected(helpdesk, message)


def _smtp_text(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_decode(exc.smtp_error)}"


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

