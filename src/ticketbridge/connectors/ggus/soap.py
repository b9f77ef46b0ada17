"""The ``ggus-soap`` connector: GGUS (Remedy era) through its SOAP web services.

Writes (spec/domain.md A3.3, B2, C5):

* :class:`~ticketbridge.model.CreateTicket` -> **OpCreate**: ``GHD_Short_Description`` =
  title, ``GHD_Description`` = description, ``GHD_Status``/``GHD_Priority`` from the
  fields ``status``/``priority``, ``GHD_Responsible_Unit`` from the fields (default the
  configured unit, TPM), ``GHD_Origin_ID`` = the correlation key, ``GHD_Origin_SG`` = the
  configured reverse assignee, ``GHD_Last_Login`` = the SOAP user, ``GHD_Last_Modifier``
  from the fields (default configured), every other ``GHD_*`` field of the operation as it
  is. Comments become ``GHD_Public_Diary`` / ``GHD_Internal_Diary`` by visibility.
* :class:`~ticketbridge.model.UpdateTicket` -> **TicketModify** with ``title``/``status``/
  ``priority`` as ``GHD_Short_Description``/``GHD_Status``/``GHD_Priority``, the ``GHD_*``
  fields (``GHD_Detailed_Solution`` ...), and the comments: the public ones joined by a
  blank line into one ``GHD_Public_Diary`` entry, the internal ones into one
  ``GHD_Internal_Diary`` entry. Internal text never goes into a public element.
* :class:`~ticketbridge.model.AddAttachment` -> **AddAttachment** (GGUS_ATTACH).

A field the operation's input map does not have is refused before anything is sent
(RemoteRejected naming it), never dropped silently. After a write the ticket is read
back once (TicketGet) for the receipt's ``version`` (``GHD_Date_Of_Change``); when that
read fails the write still counts and the version stays empty.

Reads: :meth:`GgusSoapConnector.fetch` = TicketGet + OpGetTicketHist (+ GetAttachIDs and
GetOneAttachment). The snapshot's fields carry the gen-1 mail-XML names
(``GHD_Request-ID``, ``GHD_E-Mail``, ``GHD_Experiment`` ... next to the SOAP spellings), as
:mod:`ticketbridge.codecs.ggus_mail` produces them, so the GGUS -> Footprints mapping
reads a fetched ticket exactly as a notification mail. Comments come from the history
rows with diary or solution text (author = Last_Modifier, created = Creation_Date,
visibility by element), keyed like the mail codec's. ``modified`` = ``GHD_Date_Of_Change``.

Attachment quirks ((d) 9, A3.2): GetAttachIDs answers "no attachments" with ``ERROR
(302)`` (an empty list here); a 0-byte file comes without a data element (empty data);
data encoded base64 twice is decoded twice (``ggus_soap.decode_attachment_data``); names
lose trailing newlines.

:meth:`GgusSoapConnector.find_by_correlation` = TicketGetList on ``'GHD_Origin_ID'`` and
``'GHD_Origin_SG'``; no match (``ERROR (302)``) is None, several give the oldest.

Errors (one translator, :func:`_translate`): ``ERROR (623)`` and HTTP 401/403 ->
RemoteAuthFailed; refused/reset/timed-out connections, HTTP 429/5xx without a SOAP
envelope and ``ERROR (90)`` (mid-tier cannot reach the AR server) -> RemoteUnavailable;
every other fault -> RemoteRejected with GGUS' text. Connections: see ``_http``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType

from ticketbridge.codecs import ggus_soap as soap
from ticketbridge.connectors.ggus._common import (
    clean_name,
    content_type,
    diaries,
    mail_xml_fields,
    native_fields,
    rekey,
)
from ticketbridge.connectors.ggus._http import (
    HttpAnswer,
    HttpStatusError,
    HttpTransport,
    translate_http,
)
from ticketbridge.connectors.ggus.settings import GgusSoapSettings
from ticketbridge.errors import (
    BadInput,
    RemoteAuthFailed,
    RemoteError,
    RemoteRejected,
    RemoteUnavailable,
)
from ticketbridge.model import (
    Attachment,
    CreateTicket,
    Operation,
    Receipt,
    Ticket,
    TicketRef,
    UpdateTicket,
)

__all__ = ["GgusSoapConnector"]

#: Remedy errors that say "try again later" rather than "never like this".
_TRANSIENT_ERRORS = frozenset({90})
#: Reads: repeated once on a new connection when a kept one turns out dead.
_READS = frozenset({"TicketGet", "TicketGetList", "OpGetTicketHist", "GetAttachIDs",
                    "GetOneAttachment"})


class GgusSoapConnector:
    """GGUS over SOAP as a target helpdesk (connectors/base.py ``TargetConnector``)."""

    def __init__(self, name: str, settings: GgusSoapSettings) -> None:
        self.name = name
        self.settings = settings
        self.http = HttpTransport(settings.url, connect_timeout=settings.connect_timeout,
                                  read_timeout=settings.read_timeout,
                                  max_bytes=soap.MAX_DOCUMENT_BYTES)

    # -- TargetConnector -----------------------------------------------------------------

    def apply(self, op: Operation) -> Receipt:
        """OpCreate, TicketModify or AddAttachment; see the module docstring."""
        if isinstance(op, CreateTicket):
            answer = self._call(soap.op_create(self._user, self._password, self._create(op)))
            ticket_id = self._request_id(answer, "OpCreate")
            return Receipt(ticket_id=ticket_id, version=self._version(ticket_id),
                           detail=f"created by OpCreate in {self._unit(op)}")
        if isinstance(op, UpdateTicket):
            ticket_id = self._ticket_id(op.ticket_id)
            self._call(soap.ticket_modify(self._user, self._password, ticket_id,
                                          self._modify(op)))
            return Receipt(ticket_id=ticket_id, version=self._version(ticket_id),
                           detail="updated by TicketModify")
        ticket_id = self._ticket_id(op.ticket_id)
        attachment = op.attachment
        answer = self._call(soap.add_attachment(
            self._user, self._password, ticket_id, clean_name(attachment.name),
            attachment.data, last_modifier=attachment.author or self.settings.last_modifier,
            last_login=self._user, origin_sg=self.settings.origin_sg))
        attachment_id = answer.values.get("GAT_Attachment_ID", "").strip()
        return Receipt(ticket_id=ticket_id, version=self._version(ticket_id),
                       detail=f"attachment:{attachment_id}")

    def find_by_correlation(self, key: str) -> str | None:
        """The oldest ticket with ``GHD_Origin_ID`` = ``key`` and our ``GHD_Origin_SG``."""
        qualification = soap.build_qualification([
            ("GHD_Origin_ID", "=", key), ("GHD_Origin_SG", "=", self.settings.origin_sg)])
        answer = self._list(soap.ticket_get_list(self._user, self._password, qualification))
        if answer is None:
            return None  # no match: GGUS answers an empty list with ERROR (302)
        ids: list[int] = []
        for row in answer.rows:
            with _translate(self.name, "TicketGetList answer"):
                found = soap.request_id_of(row)
            if row.get("GHD_Origin_ID", "").strip() == key:
                ids.append(int(found))
        return str(min(ids)) if ids else None

    def fetch(self, ticket_id: str) -> Ticket:
        """TicketGet + OpGetTicketHist (+ attachments). RemoteRejected if it does not exist."""
        request_id = self._ticket_id(ticket_id)
        answer = self._call(soap.ticket_get(self._user, self._password, request_id))
        rows = self._list(soap.op_get_ticket_hist(self._user, self._password, request_id))
        history = rows.rows if rows is not None else ()
        with _translate(self.name, "TicketGet answer"):
            base = soap.ticket_from_get(answer.values, helpdesk=self.name)
        values = dict(answer.values)
        if base.modified is not None:
            values["GHD_Date_Of_Change"] = soap.format_datetime(base.modified)
        if base.created is not None and not values.get("GHD_Date_Time_Of_Problem"):
            # TicketGet has no Date_Time_Of_Problem; the mail's "date opened" is nearest
            # to the creation time.
            values["GHD_Date_Time_Of_Problem"] = base.created.strftime("%Y-%m-%d %H:%M:%S")
        attachments = self._attachments(request_id) if self.settings.fetch_attachments else ()
        return Ticket(
            ref=TicketRef(self.name, base.ref.id),
            title=base.title,
            description=base.description,
            status=base.status,
            priority=base.priority,
            submitter=base.submitter,
            fields=MappingProxyType(mail_xml_fields(values)),
            comments=rekey(soap.comments_from_history(history)),
            attachments=attachments,
            modified=base.modified,
            created=base.created,
        )

    def close(self) -> None:
        """Close the kept HTTP connections of every thread."""
        self.http.close()

    # -- operations ----------------------------------------------------------------------

    @property
    def _user(self) -> str:
        return self.settings.user

    @property
    def _password(self) -> str:
        return self.settings.password.get_secret_value()

    def _unit(self, op: CreateTicket) -> str:
        return op.fields.get("GHD_Responsible_Unit") or self.settings.responsible_unit

    def _create(self, op: CreateTicket) -> dict[str, str]:
        fields = native_fields(op.fields)
        public, internal = diaries(op.comments)
        for element, text in (("GHD_Public_Diary", public), ("GHD_Internal_Diary", internal)):
            if text:
                given = fields.get(element, "")
                fields[element] = f"{given}\n\n{text}" if given else text
        fields.update({
            "GHD_Short_Description": op.title,
            "GHD_Description": op.description,
            "GHD_Responsible_Unit": self._unit(op),
            "GHD_Origin_ID": op.correlation_key,
            "GHD_Origin_SG": self.settings.origin_sg,
            "GHD_Last_Login": self._user,
            "GHD_Last_Modifier": fields.get("GHD_Last_Modifier")
            or self.settings.last_modifier,
        })
        self._check("OpCreate", fields)
        return {k: v for k, v in fields.items() if v != ""}

    def _modify(self, op: UpdateTicket) -> dict[str, str]:
        fields = native_fields(op.fields)
        public, internal = diaries(op.comments)
        if "GHD_Public_Diary" in fields or "GHD_Internal_Diary" in fields:
            raise RemoteRejected(self.name, "diary text travels as comments, not as fields")
        if public:
            fields["GHD_Public_Diary"] = public
        if internal:
            fields["GHD_Internal_Diary"] = internal
        fields["GHD_Last_Login"] = self._user
        fields["GHD_Last_Modifier"] = (fields.get("GHD_Last_Modifier")
                                       or self.settings.last_modifier)
        self._check("TicketModify", fields)
        return {k: v for k, v in fields.items() if v != "" and k != "GHD_Request_ID"}

    def _check(self, operation: str, fields: Mapping[str, str]) -> None:
        inputs = soap.OPERATIONS[operation].inputs
        unknown = sorted(name for name in fields if name not in inputs)
        if unknown:
            raise RemoteRejected(
                self.name, f"{operation} cannot carry {', '.join(unknown)} (its input map: "
                           f"{', '.join(inputs)})")

    def _ticket_id(self, ticket_id: str) -> str:
        value = ticket_id.strip()
        if not (value.isascii() and value.isdigit()):
            raise RemoteRejected(self.name, f"{ticket_id!r} is not a GGUS ticket id")
        return value.lstrip("0") or "0"

    def _request_id(self, answer: soap.SoapResponse, what: str) -> str:
        with _translate(self.name, f"{what} answer"):
            return soap.request_id_of(answer.values)

    def _version(self, ticket_id: str) -> str:
        """``GHD_Date_Of_Change`` after a write; "" when it cannot be read (the write stands)."""
        try:
            answer = self._call(soap.ticket_get(self._user, self._password, ticket_id))
            text = answer.values.get("GHD_Date_Of_Change", "").strip()
            return soap.format_datetime(soap.parse_datetime(text)) if text else ""
        except (RemoteError, BadInput):
            return ""

    def _attachments(self, request_id: str) -> tuple[Attachment, ...]:
        listed = self._list(soap.get_attach_ids(self._user, self._password, request_id))
        if listed is None:
            return ()  # GGUS answers "no attachments" with ERROR (302)
        rows = listed.rows
        found: list[Attachment] = []
        for row in rows:
            attachment_id = row.get("GAT_Attachment_ID", "").strip()
            if not attachment_id:
                continue
            answer = self._list(soap.get_one_attachment(self._user, self._password,
                                                        attachment_id))
            if answer is None:
                continue  # removed between the two calls
            with _translate(self.name, "GetOneAttachment answer"):
                data = soap.parse_attachment(answer)
            name = clean_name(data.name or row.get("GAT_Attachment_Name", ""))
            found.append(Attachment(
                key=f"attachment:{attachment_id}", name=name, data=data.data,
                content_type=content_type(name),
                author=answer.values.get("GAT_Last_Modifier")
                or row.get("GAT_Last_Modifier", ""),
                created=_time(answer.values.get("GAT_Create_Date")
                              or row.get("GAT_Create_Date", ""))))
        return tuple(found)

    # -- transport -----------------------------------------------------------------------

    def _call(self, call: soap.Call) -> soap.SoapResponse:
        """Send one call; its answer. Every failure is translated (``ERROR (302)`` too:
        RemoteRejected, "does not exist")."""
        operation = call.action.rpartition("/")[2]
        path = soap.endpoint_path(self.settings.ars_server, call.service)
        headers = {"Content-Type": 'text/xml; charset="utf-8"',
                   "SOAPAction": f'"{call.action}"'}
        with _translate(self.name, operation):
            answer = self.http.request("POST", path, body=call.body, headers=headers,
                                       idempotent=operation in _READS)
            return _parse(answer)

    def _list(self, call: soap.Call) -> soap.SoapResponse | None:
        """:meth:`_call` for the calls whose ``ERROR (302)`` means "nothing": None then."""
        try:
            return self._call(call)
        except RemoteRejected as exc:
            fault = exc.__cause__
            if isinstance(fault, soap.SoapFault) and soap.is_no_entry_fault(fault):
                return None
            raise


def _parse(answer: HttpAnswer) -> soap.SoapResponse:
    # SOAP 1.1 answers faults with HTTP 500 and a fault envelope: read it when there is one.
    if not 200 <= answer.status < 300 and not answer.body.lstrip().startswith(b"<"):
        raise HttpStatusError(answer, answer.body.decode("utf-8", "replace").strip()[:200])
    return soap.parse_response(answer.body)


def _time(text: str) -> datetime | None:
    try:
        return soap.parse_datetime(text) if text.strip() else None
    except BadInput:
        return None


@contextlib.contextmanager
def _translate(helpdesk: str, what: str) -> Iterator[None]:
    """SOAP faults, HTTP failures and unreadable answers into ticketbridge's error tree."""
    try:
        with translate_http(helpdesk, what):
            yield
    except soap.SoapFault as exc:
        if soap.is_auth_fault(exc):
            raise RemoteAuthFailed(helpdesk, f"{what}: {exc.message}") from exc
        if exc.error_number in _TRANSIENT_ERRORS:
            raise RemoteUnavailable(helpdesk, f"{what}: {exc.message}") from exc
        raise RemoteRejected(helpdesk, f"{what}: {exc.message}") from exc
    except BadInput as exc:  # an unreadable answer: a proxy's error page, a truncated body
        raise RemoteUnavailable(helpdesk, f"{what}: unreadable answer: {exc}") from exc
