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
* **Attachments**: an :class:`~ticketbridge.model.AddAttachment` is an update mail with
  empty text and the file as a MIME attachment (the issue is read first, as for any
  update). :meth:`FootprintsConnector.fetch` lists an issue's files from getIssueDetails
  and reads each with ``MRWebServices__getAttachment``, an extension of the emulator
  (stock Footprints served files through its web UI); ``fetch_attachments: false`` turns
  that off. An attachment's key is the emulator's attachment id.
* **Title**: an update's subject must carry the ticket's title. The connector reads it with
  getIssueDetails (which also proves the ticket exists). The email interface cannot rename
  a ticket, so a ``title`` in an update's fields is applied with one ``editIssue`` call
  (notifications suppressed) before the mail is sent, and the mail carries the new title.
* **Errors** are translated in one place (:func:`_translate`): network trouble, timeouts and
  SMTP 4xx are RemoteUnavailable; SMTP 5xx and SOAP faults about the data are
  RemoteRejected; SMTP 535 and SOAP faults about credentials are RemoteAuthFailed.
* **Connections are kept open** between operations: one SMTP session and one HTTP/1.1
  keep-alive connection for MRWebServices, *per thread* (each worker thread has its own;
  the connector is thread-safe and :meth:`FootprintsConnector.close` closes them all).
  A connection that fails is closed and the next operation opens a new one.

  A kept connection the server has dropped in the meantime (restart, idle timeout) is
  retried once on a new connection, transparently, only when that cannot duplicate
  anything: for a mail, only when the failure came before the ``DATA`` command was sent
  (at ``MAIL`` or ``RCPT``: nothing of the message reached the server; real Footprints
  does not recognise a resent Message-ID, so a mail that may have arrived is never resent
  here, and the failure is reported as RemoteUnavailable for the worker to judge). For
  MRWebServices, when the request failed on a reused connection without any answer: the
  calls made here are reads (getIssueDetails, getAttachment, search) or a rename to a
  given title, so
  repeating one changes nothing. Timeouts are never retried here. A failure on a new
  connection is reported as before.
* **Proxies**: MRWebServices honours the ``http_proxy``/``https_proxy``/``no_proxy``
  environment variables, as urllib does.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import smtplib
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ticketbridge.codecs import mrwebservices as mrws
from ticketbridge.codecs.footprints_mail import (
    attachment_name,
    canonical_label,
    decode_field_name,
    encode_create,
    encode_field_name,
    encode_update,
)
from ticketbridge.connectors.smtp import KeptSmtp, SmtpSession, smtp_error, stable_message_id
from ticketbridge.errors import (
    BadInput,
    RemoteAuthFailed,
    RemoteRejected,
    RemoteUnavailable,
)
from ticketbridge.model import (
    AddAttachment,
    Attachment,
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
    #: Whether :meth:`FootprintsConnector.fetch` downloads attachments (getAttachment).
    fetch_attachments: bool = True

    @field_validator("soap_url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if urllib.parse.urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("soap_url must be an http:// or https:// URL")
        return value


def message_id_for(op: Operation, *, project: int, domain: str) -> str:
    """The Message-ID of the mail carrying ``op``: the same operation, the same Message-ID."""
    if isinstance(op, AddAttachment):
        item = op.attachment
        return stable_message_id(
            "tb.attachment",
            {
                "helpdesk": op.helpdesk,
                "project": project,
                "target": f"issue={op.ticket_id}",
                "key": item.key,
                "name": item.name,
                "content_type": item.content_type,
                "author": item.author,
                "created": item.created.isoformat() if item.created else "",
                "data": hashlib.sha256(item.data).hexdigest(),
            },
            domain,
        )
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
            [
                c.key,
                c.body,
                c.author,
                c.created.isoformat() if c.created else "",
                str(c.visibility),
                c.kind,
            ]
            for c in op.comments
        ],
    }
    return stable_message_id(f"tb.{kind}", content, domain)


class FootprintsConnector:
    """A Footprints project as a target helpdesk (connectors/base.py ``TargetConnector``)."""

    def __init__(self, name: str, settings: FootprintsSettings) -> None:
        self.name = name
        self.settings = settings
        self._local = threading.local()  # this thread's _Connections
        self._lock = threading.Lock()
        self._all: list[_Connections] = []  # every thread's, for close()

    # -- TargetConnector -----------------------------------------------------------------

    def apply(self, op: Operation) -> Receipt:
        """Mail a create, an update or an attachment; see the module docstring.

        A create answers ``Receipt(ticket_id=None)``: the number is learnt by
        :meth:`find_by_correlation`. Raises RemoteUnavailable, RemoteRejected or
        RemoteAuthFailed.
        """
        msg, key = self._mail(op)
        recipients = [self.settings.incoming_address]
        with _translate(self.name, "SMTP"):
            refused = self._send(msg, recipients)
        if refused:  # pragma: no cover - one recipient: refusal raises instead
            raise RemoteRejected(self.name, f"recipients refused: {refused}")
        if isinstance(op, CreateTicket):
            return Receipt(
                ticket_id=None,
                idempotency_key=key,
                detail=f"create mailed to {self.settings.incoming_address}",
            )
        if isinstance(op, AddAttachment):
            name = attachment_name(op.attachment.name)
            return Receipt(
                ticket_id=op.ticket_id,
                idempotency_key=key,
                detail=f"attachment {name!r} ({len(op.attachment.data)} bytes) mailed to "
                f"{self.settings.incoming_address}",
            )
        return Receipt(
            ticket_id=op.ticket_id,
            idempotency_key=key,
            detail=f"update mailed to {self.settings.incoming_address}",
        )

    def find_by_correlation(self, key: str) -> str | None:
        """The oldest issue whose Originating Ticket Number is ``key`` (MRWebServices search)."""
        query = mrws.build_search_query(
            self.settings.project, {encode_field_name(_ORIGINATING): key}
        )
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
        attachments: tuple[Attachment, ...] = ()
        if self.settings.fetch_attachments:
            attachments = tuple(self._attachment(details.mrid, a) for a in details.attachments)
        return self._ticket(details, attachments)

    def close(self) -> None:
        """Close the kept connections of every thread (a later call opens new ones)."""
        with self._lock:
            everything, self._all = self._all, []
        for connections in everything:
            connections.close()
        self._local = threading.local()

    # -- kept connections ----------------------------------------------------------------

    def _connections(self) -> _Connections:
        mine: _Connections | None = getattr(self._local, "connections", None)
        if mine is None:
            mine = _Connections(self._open_smtp)
            self._local.connections = mine
            with self._lock:
                self._all.append(mine)
        return mine

    def _open_smtp(self) -> KeptSmtp:
        return KeptSmtp(
            self.settings.smtp_host, self.settings.smtp_port, timeout=self.settings.timeout
        )

    def _send(self, msg: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
        """Send over this thread's SMTP session (see connectors/smtp.py on retries)."""
        return self._connections().smtp.send(
            msg, sender=self.settings.sender, recipients=recipients
        )

    def _post(
        self, body: bytes, headers: dict[str, str], limit: int = mrws.MAX_DOCUMENT_BYTES
    ) -> tuple[int, str, bytes]:
        """POST to the SOAP endpoint over this thread's kept connection: status, reason,
        body (at most ``limit`` + 1 bytes)."""
        mine = self._connections()
        conn = mine.http
        reused = conn is not None
        target = _Target.of(self.settings.soap_url)
        for _attempt in range(2):
            if conn is None:
                conn = target.connect(self.settings.timeout)
                mine.http = conn
            try:
                conn.request("POST", target.request_uri, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read(limit + 1)
            except (http.client.HTTPException, OSError) as exc:
                mine.drop_http()
                if not (reused and _stale(exc)):
                    raise
                conn, reused = None, False  # the kept connection had gone: once more, fresh
                continue
            if response.will_close or len(payload) > limit or not response.isclosed():
                mine.drop_http()  # not reusable: closing, or a body left unread
            return response.status, response.reason, payload
        raise AssertionError("unreachable")  # pragma: no cover

    # -- mails ---------------------------------------------------------------------------

    @property
    def _password(self) -> str:
        return self.settings.password.get_secret_value()

    def _mail(self, op: Operation) -> tuple[EmailMessage, str]:
        domain = self.settings.sender.rpartition("@")[2].strip("> ") or "ticketbridge.invalid"
        key = message_id_for(op, project=self.settings.project, domain=domain)
        now = datetime.now(UTC)
        if isinstance(op, CreateTicket):
            msg = encode_create(
                op,
                to=self.settings.incoming_address,
                sender=self.settings.sender,
                message_id=key,
                date=now,
            )
            return msg, key
        if isinstance(op, AddAttachment):
            # Read first, as for an update: proves the issue exists, gives its title.
            details = self._details(op.ticket_id)
            msg = encode_update(
                UpdateTicket(helpdesk=op.helpdesk, ticket_id=op.ticket_id),
                project=self.settings.project,
                title=details.title,
                to=self.settings.incoming_address,
                sender=self.settings.sender,
                message_id=key,
                date=now,
                attachments=[op.attachment],
            )
            return msg, key
        fields = dict(op.fields)
        new_title = fields.pop("title", None)
        details = self._details(op.ticket_id)
        title = details.title
        if new_title is not None and " ".join(new_title.split()) not in ("", details.title):
            self._rename(details, new_title)
            title = new_title
        mail_op = UpdateTicket(
            helpdesk=op.helpdesk, ticket_id=op.ticket_id, fields=fields, comments=op.comments
        )
        msg = encode_update(
            mail_op,
            project=self.settings.project,
            title=title,
            to=self.settings.incoming_address,
            sender=self.settings.sender,
            message_id=key,
            date=now,
        )
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
        result = self._call(
            *mrws.get_issue_details(
                self.settings.user, self._password, self.settings.project, int(ticket_id)
            )
        )
        with _translate(self.name, "getIssueDetails answer"):
            return mrws.IssueDetails.from_soap(result)

    def _attachment(self, mrid: int, info: mrws.AttachmentInfo) -> Attachment:
        """One file of an issue, its bytes read with getAttachment."""
        method, body = mrws.get_attachment(
            self.settings.user, self._password, self.settings.project, mrid, info.id
        )
        data = self._call(
            method, body, binary=True, limit=mrws.attachment_response_limit(info.size)
        )
        if not isinstance(data, bytes):
            raise RemoteUnavailable(
                self.name, f"getAttachment {info.id}: the answer is not base64 data"
            )
        return Attachment(
            key=str(info.id),
            name=info.name,
            data=data,
            content_type=info.content_type or "application/octet-stream",
            author=info.author,
            created=info.created,
        )

    def _call(
        self,
        method: str,
        body: bytes,
        *,
        binary: bool = False,
        limit: int = mrws.MAX_DOCUMENT_BYTES,
    ) -> mrws.SoapValue:
        headers = {
            "Content-Type": 'text/xml; charset="utf-8"',
            "SOAPAction": mrws.soap_action(method),
        }
        with _translate(self.name, method):
            status, reason, payload = self._post(body, headers, limit)
            # SOAP 1.1 answers faults with HTTP 500 and a fault envelope.
            if not 200 <= status < 300 and not payload.lstrip().startswith(b"<"):
                raise _HttpError(status, reason)
            return mrws.parse_response(payload, max_bytes=limit, binary=binary)

    # -- snapshots -----------------------------------------------------------------------

    def _ticket(
        self, details: mrws.IssueDetails, attachments: tuple[Attachment, ...] = ()
    ) -> Ticket:
        fields: dict[str, str] = {}
        for column, value in details.fields.items():
            fields[canonical_label(column) or decode_field_name(column)] = value
        fields["assignees"] = " ".join(details.assignees)
        fields["project"] = str(details.project)
        entries = list(reversed(details.descriptions))  # oldest first
        comments = tuple(self._comment(e) for e in entries)
        first_public = next((e.data for e in entries if not e.internal), "")
        contact = Contact(
            name=" ".join(
                p for p in (fields.get("First Name", ""), fields.get("Last Name", "")) if p
            ),
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
            attachments=attachments,
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


# --- kept connections ------------------------------------------------------------------


class _Connections:
    """One thread's kept SMTP session and HTTP connection."""

    def __init__(self, open_smtp: Callable[[], KeptSmtp]) -> None:
        self.smtp = SmtpSession(open_smtp)
        self.http: http.client.HTTPConnection | None = None

    def drop_http(self) -> None:
        conn, self.http = self.http, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.smtp.close()
        self.drop_http()


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` says a kept HTTP connection had been closed by the other end."""
    if isinstance(exc, TimeoutError):
        return False
    return isinstance(
        exc, http.client.RemoteDisconnected | http.client.BadStatusLine | ConnectionError
    )


class _Target:
    """Where MRWebServices requests go: the endpoint, or a proxy from the environment."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        path = parts.path or "/"
        self.request_uri = f"{path}?{parts.query}" if parts.query else path
        proxies = urllib.request.getproxies()
        proxy = proxies.get(parts.scheme)
        self.proxy: tuple[str, int] | None = None
        if proxy and not urllib.request.proxy_bypass(self.host):
            proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            self.proxy = (proxy_parts.hostname or "localhost", proxy_parts.port or 80)
            if not self.https:
                self.request_uri = urllib.parse.urlunsplit(parts._replace(fragment=""))

    _cache: ClassVar[dict[str, _Target]] = {}  # per URL

    @classmethod
    def of(cls, url: str) -> _Target:
        target = cls._cache.get(url)
        if target is None:
            target = cls._cache[url] = cls(url)
        return target

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            context = ssl.create_default_context()
            if self.proxy is None:
                return http.client.HTTPSConnection(
                    self.host, self.port, timeout=timeout, context=context
                )
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                *self.proxy, timeout=timeout, context=context
            )
            conn.set_tunnel(self.host, self.port)
            return conn
        host, port = self.proxy or (self.host, self.port)
        return http.client.HTTPConnection(host, port, timeout=timeout)


class _HttpError(Exception):
    """An HTTP answer other than 2xx without a SOAP envelope."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"HTTP {code} {reason}")
        self.code = code
        self.reason = reason


# --- the one error translator -----------------------------------------------------------


@contextlib.contextmanager
def _translate(helpdesk: str, what: str) -> Iterator[None]:
    """Turn smtplib, urllib, socket and SOAP errors into ticketbridge's error tree."""
    try:
        yield
    except smtplib.SMTPException as exc:  # before OSError: it is one
        raise smtp_error(helpdesk, what, exc) from exc
    except mrws.SoapFault as exc:
        if mrws.is_auth_fault(exc):
            raise RemoteAuthFailed(helpdesk, f"{what}: {exc.message}") from exc
        raise RemoteRejected(helpdesk, f"{what}: {exc.message}") from exc
    except _HttpError as exc:
        if exc.code in (401, 403):
            raise RemoteAuthFailed(helpdesk, f"{what}: HTTP {exc.code}") from exc
        if exc.code == 429 or exc.code >= 500:
            raise RemoteUnavailable(helpdesk, f"{what}: HTTP {exc.code}") from exc
        raise RemoteRejected(helpdesk, f"{what}: HTTP {exc.code} {exc.reason}") from exc
    except http.client.HTTPException as exc:  # a garbled or truncated HTTP answer
        raise RemoteUnavailable(helpdesk, f"{what}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # refused, reset, unreachable, timed out (TimeoutError)
        raise RemoteUnavailable(helpdesk, f"{what}: {exc}") from exc
    except BadInput as exc:  # an unreadable answer: a proxy error page, a truncated body
        raise RemoteUnavailable(helpdesk, f"{what}: unreadable answer: {exc}") from exc


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
