"""GGUS Remedy-era SOAP: doc/literal SOAP 1.1 envelopes of the AR System web services. Pure.

GGUS (on BMC Remedy AR System until 2024) exposed three web services, each with its own
WSDL and endpoint (spec/domain.md B2, C5)::

    GGUS           OpCreate, TicketCreate, TicketModify, TicketGet, TicketGetList
    GGUS_HISTORY   OpGetTicketHist
    GGUS_ATTACH    GetAttachIDs, GetOneAttachment, AddAttachment

Wire conventions (Remedy standard, reproduced by the GGUS emulator):

* namespace ``urn:GGUS``; every element of a request or response body is qualified;
* ``SOAPAction: "urn:GGUS/<Operation>"``;
* endpoint ``/arsys/services/ARService?server=<srv>&webService=<Service>``, WSDL at
  ``/arsys/WSDL/public/<srv>/<Service>``;
* credentials in the SOAP header ``AuthenticationInfo { userName, password,
  authentication, locale, timeZone }``;
* a request body is one element named after the operation whose children are flat
  string fields (``GHD_*`` on the ticket services, ``GAT_*`` on the attachment service);
* a response is ``<Operation>Response`` holding flat fields, or, for the list operations,
  one ``getListValues`` element per row;
* errors are SOAP faults whose faultstring is a Remedy error text, ``ERROR (302): Entry
  does not exist in database; ...``; :attr:`SoapFault.error_number` reads the number.

Element-name drift is part of the format, not smoothed over here: OpCreate takes
``GHD_EMail`` but TicketCreate ``GHD_Submitter_Mail``; OpCreate answers ``GHD_Request_ID``
but TicketCreate ``GHD_RequestID``; TicketGetList rows carry ``GHD_Request-ID``. The
operation table :data:`OPERATIONS` says exactly which names each operation uses; the
helpers :func:`request_id_of` and :func:`ticket_from_get` accept every spelling.

Every document is read by :func:`ticketbridge.codecs.xmlsafe.safe_parse` (no DTD, no
entities, bounded size and depth): refused documents raise
:class:`~ticketbridge.errors.UnsafeXML`, broken ones
:class:`~ticketbridge.errors.MalformedMessage`.

This module serves both sides: request builders and response parsers for a client
connector, :func:`parse_request` / :func:`build_response` / :func:`build_fault` for the
emulator, and the Remedy qualification language subset (:func:`parse_qualification`,
:func:`build_qualification`) used by TicketGetList.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import NamedTuple

from lxml import etree

from ticketbridge.codecs.xmlsafe import safe_parse
from ticketbridge.errors import InvalidValue, MalformedMessage
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility, text_digest

__all__ = [
    "ENDPOINT_PATH",
    "LIST_ELEMENT",
    "MAX_ATTACHMENT_BYTES",
    "MAX_DOCUMENT_BYTES",
    "NAMESPACE",
    "OPERATIONS",
    "SERVICES",
    "WSDL_PATH",
    "AttachmentData",
    "Call",
    "Credentials",
    "FieldValue",
    "FieldValues",
    "Operation",
    "SoapFault",
    "SoapRequest",
    "SoapResponse",
    "Term",
    "add_attachment",
    "build_fault",
    "build_qualification",
    "build_request",
    "build_response",
    "comments_from_history",
    "decode_attachment_data",
    "endpoint_path",
    "format_datetime",
    "get_attach_ids",
    "get_one_attachment",
    "is_auth_fault",
    "is_no_entry_fault",
    "op_create",
    "op_get_ticket_hist",
    "parse_attachment",
    "parse_datetime",
    "parse_qualification",
    "parse_request",
    "parse_response",
    "request_id_of",
    "soap_action",
    "ticket_create",
    "ticket_from_get",
    "ticket_get",
    "ticket_get_list",
    "ticket_modify",
    "wsdl_path",
]

NAMESPACE = "urn:GGUS"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
ENDPOINT_PATH = "/arsys/services/ARService"
WSDL_PATH = "/arsys/WSDL/public"
SERVICES: tuple[str, ...] = ("GGUS", "GGUS_HISTORY", "GGUS_ATTACH")
#: The element that wraps one row of a list answer.
LIST_ELEMENT = "getListValues"
#: Largest request or response document either side accepts (an attachment of 2 MB is
#: about 2.8 MB in base64, and a "double" one about 3.7 MB).
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
#: GGUS's attachment size limit (spec (d) item 9).
MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 16

_AUTH_ELEMENTS = ("userName", "password", "authentication", "locale", "timeZone")
_ERROR_RE = re.compile(r"ERROR\s*\((\d+)\)")
_NON_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


# --- the operation table ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation: its service, request elements, required ones and answer elements.

    ``rows`` is true when the answer is a list of :data:`LIST_ELEMENT` rows whose
    children are ``outputs``; otherwise ``outputs`` are the flat answer elements.
    """

    name: str
    service: str
    inputs: tuple[str, ...]
    required: tuple[str, ...]
    outputs: tuple[str, ...]
    rows: bool = False


_CREATE_COMMON = (
    "GHD_Date_Time_Of_Problem", "GHD_Description", "GHD_Internal_Diary", "GHD_Loginname",
    "GHD_Name", "GHD_Origin_ID", "GHD_Priority", "GHD_Responsible_Unit",
    "GHD_Short_Description", "GHD_Status", "GHD_Type_Of_Problem", "GHD_Last_Modifier",
    "GHD_Last_Login", "GHD_Origin_SG", "GHD_CarbonCopy", "GHD_Affected_Site",
    "GHD_Affected_VO", "GHD_Phone", "GHD_Related_Issue", "GHD_Public_Diary",
    "GHD_Experiment_Specific_Problem",
)
_CREATE_REQUIRED = ("GHD_Short_Description", "GHD_Last_Modifier", "GHD_Last_Login")

OPERATIONS: Mapping[str, Operation] = MappingProxyType({
    op.name: op
    for op in (
        Operation(
            "OpCreate", "GGUS",
            inputs=(*_CREATE_COMMON[:2], "GHD_EMail", *_CREATE_COMMON[2:]),
            required=_CREATE_REQUIRED,
            outputs=("GHD_Request_ID",),
        ),
        Operation(
            "TicketCreate", "GGUS",
            inputs=(*_CREATE_COMMON[:2], "GHD_Submitter_Mail", *_CREATE_COMMON[2:]),
            required=_CREATE_REQUIRED,
            outputs=("GHD_RequestID",),
        ),
        Operation(
            "TicketModify", "GGUS",
            inputs=(
                "GHD_Request_ID", "GHD_Last_Modifier", "GHD_Last_Login", "GHD_Status",
                "GHD_Priority", "GHD_Public_Diary", "GHD_Internal_Diary",
                "GHD_Detailed_Solution", "GHD_Short_Description", "GHD_Type_Of_Problem",
                "GHD_Responsible_Unit", "GHD_Assign_To", "GHD_Affected_Site",
                "GHD_Affected_VO", "GHD_Experiment_Specific_Problem", "GHD_Ticket_Category",
                "GHD_Target_ID", "GHD_Incident_ID", "GHD_Related_Issue", "GHD_Origin_ID",
                "GHD_Origin_SG",
            ),
            required=("GHD_Request_ID", "GHD_Last_Modifier", "GHD_Last_Login"),
            outputs=("GHD_Request_ID",),
        ),
        Operation(
            "TicketGet", "GGUS",
            inputs=("GHD_Request_ID",),
            required=("GHD_Request_ID",),
            outputs=(
                "GHD_Description", "GHD_Experiment_Specific_Problem", "GHD_Internal_Diary",
                "GHD_Last_Modifier", "GHD_Priority", "GHD_Request_ID", "GHD_Responsible_Unit",
                "GHD_Short_Description", "GHD_Detailed_Solution", "GHD_Status",
                "GHD_Type_Of_Problem", "GHD_Public_Diary", "GHD_Affected_Site",
                "GHD_Affected_VO", "GHD_Product_Name", "GHD_Product_Version",
                "GHD_Date_Of_Change", "GHD_Date_Of_Creation", "GHD_EMail", "GHD_Loginname",
                "GHD_Name", "GHD_Phone", "GHD_Ticket_Type", "GHD_Origin_SG", "GHD_ETA",
                "GHD_Related_Issue", "GHD_Origin_ID", "GHD_Meta_Status",
                "GHD_Ticket_Category",
            ),
        ),
        Operation(
            "TicketGetList", "GGUS",
            inputs=("Qualification", "GHD_Responsible_Unit", "GHD_Meta_Status", "GHD_Status",
                    "startRecord", "maxLimit"),
            required=(),
            outputs=(
                "GHD_Request-ID", "GHD_Name", "GHD_EMail", "GHD_Loginname", "GHD_Priority",
                "GHD_Status", "GHD_Meta_Status", "GHD_Short_Description",
                "GHD_Responsible_Unit", "GHD_Affected_Site", "GHD_Affected_VO",
                "GHD_Type_Of_Problem", "GHD_Ticket_Type", "GHD_Create_Date",
                "GHD_Modified_Date", "GHD_Origin_ID", "GHD_Origin_SG",
            ),
            rows=True,
        ),
        Operation(
            "OpGetTicketHist", "GGUS_HISTORY",
            inputs=("GHD_Request_ID", "startRecord", "maxLimit"),
            required=("GHD_Request_ID",),
            outputs=(
                "GHD_Creation_Date", "GHD_Last_Modifier", "GHD_Last_Login", "GHD_Status",
                "GHD_Priority", "GHD_Responsible_Unit", "GHD_Public_Diary",
                "GHD_Internal_Diary", "GHD_Detailed_Solution", "GHD_Diary_Of_Steps",
                "GHD_Description", "GHD_Type_Of_Problem", "GHD_VO", "GHD_VO_Specific",
                "GHD_Assigned_To", "GHD_Involve", "GHD_Related_Issue", "GHD_Remind_On",
                "GHD_Affected_Site", "GHD_Affected_VO",
            ),
            rows=True,
        ),
        Operation(
            "GetAttachIDs", "GGUS_ATTACH",
            inputs=("GAT_Request_ID",),
            required=("GAT_Request_ID",),
            outputs=("GAT_Attachment_ID", "GAT_Attachment_Name", "GAT_Last_Modifier",
                     "GAT_Create_Date", "GAT_Origin_SG"),
            rows=True,
        ),
        Operation(
            "GetOneAttachment", "GGUS_ATTACH",
            inputs=("GAT_Attachment_ID",),
            required=("GAT_Attachment_ID",),
            outputs=("GAT_Attachment_Name", "GAT_Attachment_Data", "GAT_Attachment_Orig_Size",
                     "GAT_Request_ID", "GAT_Origin_SG", "GAT_Last_Modifier",
                     "GAT_Create_Date"),
        ),
        Operation(
            "AddAttachment", "GGUS_ATTACH",
            inputs=("GAT_Request_ID", "GAT_Attachment_Name", "GAT_Attachment_Data",
                    "GAT_Attachment_Orig_Size", "GAT_Last_Modifier", "GAT_Last_Login",
                    "GAT_Origin_SG"),
            required=("GAT_Request_ID", "GAT_Attachment_Name", "GAT_Last_Modifier",
                      "GAT_Last_Login"),
            outputs=("GAT_Attachment_ID",),
        ),
    )
})


def soap_action(operation: str) -> str:
    """The SOAPAction header value for ``operation``: ``urn:GGUS/<Operation>``."""
    return f"{NAMESPACE}/{operation}"


def endpoint_path(server: str, service: str) -> str:
    """``/arsys/services/ARService?server=<srv>&webService=<Service>``."""
    return f"{ENDPOINT_PATH}?server={server}&webService={service}"


def wsdl_path(server: str, service: str) -> str:
    """``/arsys/WSDL/public/<srv>/<Service>``."""
    return f"{WSDL_PATH}/{server}/{service}"


# --- values -----------------------------------------------------------------------------


def format_datetime(moment: datetime) -> str:
    """An xsd:dateTime with an explicit offset, seconds precision: ``2013-05-02T10:11:12+00:00``."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.replace(microsecond=0).isoformat()


def parse_datetime(text: str) -> datetime:
    """An xsd:dateTime or Remedy's ``YYYY-MM-DD hh:mm[:ss]`` (no zone = UTC), as UTC.

    Raises :class:`InvalidValue` when ``text`` is neither.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{text!r} is not a date and time (YYYY-MM-DD hh:mm:ss)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _clean(text: str) -> str:
    # Characters XML 1.0 cannot carry become "?", as GOC-TX did before sending (spec (d) 8).
    return _NON_XML_RE.sub("?", text)


# --- envelopes --------------------------------------------------------------------------


class Call(NamedTuple):
    """A request ready to send: the service (for the URL), SOAPAction and body bytes."""

    service: str
    action: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """The ``AuthenticationInfo`` header."""

    user: str
    password: str
    authentication: str = ""
    locale: str = ""
    time_zone: str = ""


@dataclass(frozen=True, slots=True)
class SoapRequest:
    """One request as read from its envelope (server side).

    ``values`` are the body element's children in document order, by local name, with
    their text; an element marked ``xsi:nil`` has the value None.
    """

    operation: str
    namespace: str
    credentials: Credentials | None
    values: tuple[tuple[str, str | None], ...]

    def get(self, name: str, default: str = "") -> str:
        """The first value of element ``name``; ``default`` when absent, nil or empty."""
        for key, value in self.values:
            if key == name and value:
                return value
        return default

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.values)


@dataclass(frozen=True, slots=True)
class SoapResponse:
    """One answer (client side): flat ``values`` and, for list operations, ``rows``."""

    operation: str
    values: Mapping[str, str]
    rows: tuple[Mapping[str, str], ...] = ()


class SoapFault(Exception):
    """A SOAP fault; ``message`` is the Remedy error text (``ERROR (302): ...``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    @property
    def error_number(self) -> int | None:
        """The Remedy error number (302, 623 ...), or None when the text carries none."""
        match = _ERROR_RE.search(self.message)
        return int(match.group(1)) if match else None


def is_auth_fault(fault: SoapFault) -> bool:
    """Whether the fault says the credentials were refused (Remedy ERROR (623))."""
    return fault.error_number == 623 or "authentication failed" in fault.message.lower()


def is_no_entry_fault(fault: SoapFault) -> bool:
    """Whether the fault is Remedy's ``ERROR (302): Entry does not exist in database``.

    GGUS answers an *empty list* this way too (GetAttachIDs of a ticket without
    attachments, TicketGetList without matches): a client treats it as "nothing".
    """
    return fault.error_number == 302


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def _envelope(credentials: Credentials | None) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope",
                             nsmap={"soapenv": SOAP_ENV, "urn": NAMESPACE})
    header = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
    if credentials is not None:
        auth = etree.SubElement(header, _q("AuthenticationInfo"))
        for name, value in zip(
            _AUTH_ELEMENTS,
            (credentials.user, credentials.password, credentials.authentication,
             credentials.locale, credentials.time_zone),
            strict=True,
        ):
            etree.SubElement(auth, _q(name)).text = _clean(value)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    return envelope, body


def _serialise(envelope: etree._Element) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _text(value: str | int | bytes) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return _clean(str(value))


FieldValue = str | int | bytes | None
FieldValues = Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]]


def _pairs(values: FieldValues) -> list[tuple[str, FieldValue]]:
    return list(values.items()) if isinstance(values, Mapping) else list(values)


def build_request(operation: str, values: FieldValues, *, user: str, password: str) -> bytes:
    """A request envelope for ``operation`` with the AuthenticationInfo header.

    ``values`` maps element names to text (``int`` is written in decimal, ``bytes`` in
    base64); None values are left out. Element names are not checked against
    :data:`OPERATIONS`: a client may need to speak another WSDL version.
    """
    envelope, body = _envelope(Credentials(user, password))
    call = etree.SubElement(body, _q(operation))
    for name, value in _pairs(values):
        if value is None:
            continue
        etree.SubElement(call, _q(name)).text = _text(value)
    return _serialise(envelope)


def build_response(
    operation: str,
    values: FieldValues = (),
    rows: Sequence[FieldValues] = (),
) -> bytes:
    """A response envelope ``<Operation>Response`` (server side).

    Flat ``values`` first, then one :data:`LIST_ELEMENT` per row. A None value leaves the
    element out entirely (GGUS sends no data element for a 0-byte attachment).
    """
    envelope, body = _envelope(None)
    response = etree.SubElement(body, _q(f"{operation}Response"))
    for name, value in _pairs(values):
        if value is not None:
            etree.SubElement(response, _q(name)).text = _text(value)
    for row in rows:
        element = etree.SubElement(response, _q(LIST_ELEMENT))
        for name, value in _pairs(row):
            if value is not None:
                etree.SubElement(element, _q(name)).text = _text(value)
    return _serialise(envelope)


def build_fault(message: str, *, code: str = "soapenv:Server.userException") -> bytes:
    """A SOAP 1.1 fault envelope as Remedy's mid-tier sends it."""
    envelope, body = _envelope(None)
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = _clean(message)
    return _serialise(envelope)


def _parse_envelope(data: bytes) -> tuple[etree._Element, etree._Element]:
    root = safe_parse(data, max_bytes=MAX_DOCUMENT_BYTES, max_depth=MAX_DEPTH)
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MalformedMessage("not a SOAP 1.1 envelope")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None:
        raise MalformedMessage("SOAP envelope without a Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise MalformedMessage(f"SOAP Body must hold one element, found {len(children)}")
    return root, children[0]


def _leaf_text(element: etree._Element) -> str | None:
    if element.get("{http://www.w3.org/2001/XMLSchema-instance}nil") in ("true", "1"):
        return None
    if any(isinstance(c.tag, str) for c in element):
        raise MalformedMessage(
            f"element {etree.QName(element).localname} must hold text, not elements")
    return "".join(str(t) for t in element.itertext())


def _children(element: etree._Element) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str)]


def parse_request(data: bytes) -> SoapRequest:
    """Read a request envelope (server side). Raises UnsafeXML or MalformedMessage."""
    root, call = _parse_envelope(data)
    credentials: Credentials | None = None
    header = root.find(f"{{{SOAP_ENV}}}Header")
    if header is not None:
        auth = next((c for c in _children(header)
                     if etree.QName(c).localname == "AuthenticationInfo"), None)
        if auth is not None:
            found = {etree.QName(c).localname: _leaf_text(c) or "" for c in _children(auth)}
            credentials = Credentials(
                found.get("userName", ""), found.get("password", ""),
                found.get("authentication", ""), found.get("locale", ""),
                found.get("timeZone", ""))
    qname = etree.QName(call)
    values = tuple((etree.QName(c).localname, _leaf_text(c)) for c in _children(call))
    return SoapRequest(qname.localname, qname.namespace or "", credentials, values)


def parse_response(data: bytes) -> SoapResponse:
    """Read a response envelope (client side).

    Raises :class:`SoapFault` for a fault, UnsafeXML or MalformedMessage otherwise.
    """
    _, element = _parse_envelope(data)
    if element.tag == f"{{{SOAP_ENV}}}Fault":
        raise SoapFault((element.findtext("faultcode") or "").strip(),
                        (element.findtext("faultstring") or "").strip())
    operation = etree.QName(element).localname.removesuffix("Response")
    values: dict[str, str] = {}
    rows: list[Mapping[str, str]] = []
    for child in _children(element):
        name = etree.QName(child).localname
        if name == LIST_ELEMENT:
            rows.append(MappingProxyType(
                {etree.QName(c).localname: _leaf_text(c) or "" for c in _children(child)}))
        else:
            values.setdefault(name, _leaf_text(child) or "")
    return SoapResponse(operation, MappingProxyType(values), tuple(rows))


# --- client-side request builders --------------------------------------------------------


def _call(operation: str, values: FieldValues, user: str, password: str) -> Call:
    return Call(OPERATIONS[operation].service, soap_action(operation),
                build_request(operation, values, user=user, password=password))


def op_create(user: str, password: str, fields: Mapping[str, str]) -> Call:
    """OpCreate (InputMapping4, e-mail as ``GHD_EMail``); answer: ``GHD_Request_ID``."""
    return _call("OpCreate", fields, user, password)


def ticket_create(user: str, password: str, fields: Mapping[str, str]) -> Call:
    """TicketCreate (e-mail as ``GHD_Submitter_Mail``); answer: ``GHD_RequestID``."""
    return _call("TicketCreate", fields, user, password)


def ticket_modify(user: str, password: str, request_id: str | int,
                  fields: Mapping[str, str]) -> Call:
    """TicketModify; diary fields append a history entry. Answer: ``GHD_Request_ID``."""
    values = {"GHD_Request_ID": str(request_id),
              **{k: v for k, v in fields.items() if k != "GHD_Request_ID"}}
    return _call("TicketModify", values, user, password)


def ticket_get(user: str, password: str, request_id: str | int) -> Call:
    """TicketGet; the diary elements of the answer hold only the latest entry."""
    return _call("TicketGet", {"GHD_Request_ID": str(request_id)}, user, password)


def ticket_get_list(user: str, password: str, qualification: str, *,
                    start_record: int | None = None, max_limit: int | None = None) -> Call:
    """TicketGetList for a qualification (see :func:`build_qualification`)."""
    return _call("TicketGetList", {"Qualification": qualification,
                                   "startRecord": start_record, "maxLimit": max_limit},
                 user, password)


def op_get_ticket_hist(user: str, password: str, request_id: str | int, *,
                       start_record: int | None = None, max_limit: int | None = None) -> Call:
    """OpGetTicketHist (service GGUS_HISTORY): every history row, oldest first."""
    return _call("OpGetTicketHist", {"GHD_Request_ID": str(request_id),
                                     "startRecord": start_record, "maxLimit": max_limit},
                 user, password)


def get_attach_ids(user: str, password: str, request_id: str | int) -> Call:
    """GetAttachIDs (GGUS_ATTACH). No attachments is a fault: ``ERROR (302)``."""
    return _call("GetAttachIDs", {"GAT_Request_ID": str(request_id)}, user, password)


def get_one_attachment(user: str, password: str, attachment_id: str | int) -> Call:
    """GetOneAttachment (GGUS_ATTACH); read the answer with :func:`parse_attachment`."""
    return _call("GetOneAttachment", {"GAT_Attachment_ID": str(attachment_id)},
                 user, password)


def add_attachment(user: str, password: str, request_id: str | int, name: str, data: bytes,
                   *, last_modifier: str, last_login: str, origin_sg: str | None = None) -> Call:
    """AddAttachment; ``data`` is sent base64 once. Answer: ``GAT_Attachment_ID``."""
    return _call("AddAttachment", {
        "GAT_Request_ID": str(request_id), "GAT_Attachment_Name": name,
        "GAT_Attachment_Data": data, "GAT_Attachment_Orig_Size": len(data),
        "GAT_Last_Modifier": last_modifier, "GAT_Last_Login": last_login,
        "GAT_Origin_SG": origin_sg,
    }, user, password)


# --- client-side answer readers -----------------------------------------------------------

_REQUEST_ID_NAMES = ("GHD_Request_ID", "GHD_RequestID", "GHD_Request-ID")


def request_id_of(values: Mapping[str, str]) -> str:
    """The ticket id in an answer or row, whichever spelling it uses.

    Raises :class:`MalformedMessage` when there is none or it is not numeric.
    """
    for name in _REQUEST_ID_NAMES:
        value = values.get(name, "").strip()
        if value:
            if not (value.isascii() and value.isdigit()):
                raise MalformedMessage(f"{name} {value!r} is not a numeric GGUS ticket id")
            return value.lstrip("0") or "0"
    raise MalformedMessage("the answer carries no GGUS ticket id")


@dataclass(frozen=True, slots=True)
class AttachmentData:
    """GetOneAttachment's answer. ``data`` is decoded; ``encoded_twice`` tells the quirk."""

    name: str
    data: bytes
    orig_size: int | None
    request_id: str
    origin_sg: str = ""
    encoded_twice: bool = False


def decode_attachment_data(text: str, orig_size: int | None) -> tuple[bytes, bool]:
    """Decode ``GAT_Attachment_Data``, undoing GGUS's occasional double base64.

    Returns (data, encoded_twice). The data is decoded a second time when the first
    result does not have the announced original size but is itself base64 of exactly
    that size (GOC-TX's GOCTX-29). Without an original size the second decoding is never
    guessed. Raises :class:`MalformedMessage` for text that is not base64.
    """
    try:
        once = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage("GAT_Attachment_Data is not base64") from exc
    if orig_size is None or len(once) == orig_size:
        return once, False
    try:
        twice = base64.b64decode(b"".join(once.split()), validate=True)
    except (binascii.Error, ValueError):
        return once, False
    if len(twice) == orig_size:
        return twice, True
    return once, False


def parse_attachment(response: SoapResponse) -> AttachmentData:
    """Read GetOneAttachment's answer.

    A missing ``GAT_Attachment_Data`` element is a 0-byte file (GGUS sends none, GOC-TX's
    GOCTX-28); a name is returned exactly as stored, trailing newline included.
    """
    values = response.values
    size_text = values.get("GAT_Attachment_Orig_Size", "").strip()
    orig_size = int(size_text) if size_text.isdigit() else None
    if "GAT_Attachment_Data" in values:
        data, twice = decode_attachment_data(values["GAT_Attachment_Data"], orig_size)
    else:
        data, twice = b"", False
    name = values.get("GAT_Attachment_Name") or values.get("GAT_Attachment_attachmentName", "")
    return AttachmentData(name=name, data=data, orig_size=orig_size,
                          request_id=values.get("GAT_Request_ID", "").strip(),
                          origin_sg=values.get("GAT_Origin_SG", ""), encoded_twice=twice)


_DIARIES: tuple[tuple[str, str, Visibility], ...] = (
    ("GHD_Public_Diary", "public diary", Visibility.PUBLIC),
    ("GHD_Internal_Diary", "internal diary", Visibility.INTERNAL),
    ("GHD_Detailed_Solution", "solution", Visibility.PUBLIC),
    ("GHD_Diary_Of_Steps", "diary of steps", Visibility.PUBLIC),
)


def _optional_time(values: Mapping[str, str], *names: str) -> datetime | None:
    for name in names:
        text = values.get(name, "").strip()
        if text:
            try:
                return parse_datetime(text)
            except InvalidValue:
                continue
    return None


def ticket_from_get(values: Mapping[str, str], *, helpdesk: str = "ggus") -> Ticket:
    """A :class:`Ticket` snapshot from TicketGet's answer (or a TicketGetList row).

    ``comments`` are the latest diary entries the answer holds (TicketGet shows only the
    latest; use :func:`comments_from_history` for all); ``modified`` is
    GHD_Date_Of_Change (or GHD_Modified_Date). ``fields`` keeps every element.
    """
    modified = _optional_time(values, "GHD_Date_Of_Change", "GHD_Modified_Date")
    comments = tuple(
        Comment(key=text_digest(kind, values[name]), body=values[name],
                author=values.get("GHD_Last_Modifier", ""), created=modified,
                visibility=visibility, kind=kind)
        for name, kind, visibility in _DIARIES if values.get(name, "").strip()
    )
    return Ticket(
        ref=TicketRef(helpdesk, request_id_of(values)),
        title=values.get("GHD_Short_Description", ""),
        description=values.get("GHD_Description", ""),
        status=values.get("GHD_Status", "").strip().lower(),
        priority=values.get("GHD_Priority", "").strip().lower(),
        submitter=Contact(
            name=values.get("GHD_Name", ""),
            email=values.get("GHD_EMail") or values.get("GHD_Submitter_Mail")
            or values.get("GHD_E-Mail", ""),
            phone=values.get("GHD_Phone", ""),
            login=values.get("GHD_Loginname", ""),
        ),
        fields=MappingProxyType(dict(values)),
        comments=comments,
        modified=modified,
        created=_optional_time(values, "GHD_Date_Of_Creation", "GHD_Create_Date"),
    )


def comments_from_history(rows: Iterable[Mapping[str, str]]) -> tuple[Comment, ...]:
    """One comment per diary or solution text of OpGetTicketHist rows, oldest first.

    Rows without text (status-only changes) give nothing, as GOC-TX skipped them. The
    key is a digest of the row's time, kind and text, stable across calls.
    """
    comments: list[Comment] = []
    for row in rows:
        created = _optional_time(row, "GHD_Creation_Date")
        stamp = row.get("GHD_Creation_Date", "")
        for name, kind, visibility in _DIARIES:
            body = row.get(name, "")
            if body.strip():
                comments.append(Comment(
                    key=text_digest(stamp, kind, body), body=body,
                    author=row.get("GHD_Last_Modifier", ""), created=created,
                    visibility=visibility, kind=kind))
    return tuple(comments)


# --- the Remedy qualification language (the subset TicketGetList understands) -------------


@dataclass(frozen=True, slots=True)
class Term:
    """``'<field>' <op> "<value>"``; ``field`` as written (``GHD_Meta Status``)."""

    field: str
    op: str
    value: str


_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_TERM_RE = re.compile(
    r"""\s*'(?P<field>[^']+)'\s*(?P<op>!=|<=|>=|=|<|>)\s*"(?P<value>(?:[^"]|"")*)"\s*""")
_AND_RE = re.compile(r"\s*AND\s*", re.IGNORECASE)


def parse_qualification(text: str) -> tuple[Term, ...]:
    """Read ``'GHD_Field Name'="value" AND 'GHD_Modified Date' > "2013-01-01 00:00:00"``.

    Supported: terms of a quoted field name, one of ``= != < <= > >=`` and a
    double-quoted value (a ``"`` inside is doubled), joined by ``AND``. An empty text is
    no condition. Anything else (OR, NOT, parentheses, LIKE, unquoted values) raises
    :class:`InvalidValue` naming where the subset ends.
    """
    terms: list[Term] = []
    pos = 0
    size = len(text)
    if not text.strip():
        return ()
    while True:
        match = _TERM_RE.match(text, pos)
        if match is None:
            rest = text[pos:].strip()[:40]
            raise InvalidValue(
                f"unsupported qualification at {rest!r}: expected 'Field' <op> \"value\" "
                f"(operators {' '.join(_OPERATORS)}; terms joined by AND only)")
        terms.append(Term(match.group("field").strip(), match.group("op"),
                          match.group("value").replace('""', '"')))
        pos = match.end()
        if pos >= size:
            return tuple(terms)
        joiner = _AND_RE.match(text, pos)
        if joiner is None or joiner.end() == pos:
            rest = text[pos:].strip()[:40]
            raise InvalidValue(f"unsupported qualification at {rest!r}: only AND joins terms")
        pos = joiner.end()


def build_qualification(terms: Iterable[Term | tuple[str, str, str]]) -> str:
    """The qualification text for ``terms`` (field, op, value), joined by AND."""
    parts = []
    for term in terms:
        field, op, value = (term.field, term.op, term.value) if isinstance(term, Term) else term
        if op not in _OPERATORS:
            raise ValueError(f"unsupported operator {op!r}")
        if "'" in field:
            raise ValueError(f"a field name cannot contain a quote: {field!r}")
        escaped = value.replace('"', '""')
        parts.append(f"'{field}' {op} \"{escaped}\"")
    return " AND ".join(parts)
