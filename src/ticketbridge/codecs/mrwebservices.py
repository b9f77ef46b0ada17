"""Footprints MRWebServices: SOAP 1.1 rpc/encoded envelopes, both ways. Pure.

Footprints' web-service API is a Perl SOAP::Lite server at ``/MRcgi/MRWebServices.pl``
with namespace URI ``MRWebServices`` (spec/domain.md C6). Calls are rpc/encoded: the
body holds one element named after the method, its children are the positional
arguments (``user``, ``password``, ``extrainfo``, then the method's own), each typed
with ``xsi:type``. Structs are SOAP::Lite ``SOAPStruct`` elements, lists are
``SOAP-ENC:Array`` of ``item`` elements.

Values are plain Python: ``str``, ``int``, ``bool``, ``None``, ``list``, ``dict`` and
``bytes`` (written as ``SOAP-ENC:base64``). Reading honours what Footprints sends:
``xsd:string`` (XML-unescaped by the parser), ``SOAP-ENC:base64``/``xsd:base64Binary``
(decoded as UTF-8 text, or kept as bytes when the caller reads binary data: the
emulator's ``getAttachment``), ``xsd:int`` and friends.

Every document is read by :func:`ticketbridge.codecs.xmlsafe.safe_parse`: no DTD, no
entities, no network, bounded size and depth. Refused documents raise
:class:`~ticketbridge.errors.UnsafeXML`, broken ones
:class:`~ticketbridge.errors.MalformedMessage`.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from lxml import etree

from ticketbridge.codecs.xmlsafe import safe_parse
from ticketbridge.errors import MalformedMessage

__all__ = [
    "ENDPOINT_PATH",
    "MAX_DOCUMENT_BYTES",
    "NAMESPACE",
    "AttachmentInfo",
    "DescriptionEntry",
    "IssueDetails",
    "SoapCall",
    "SoapFault",
    "SoapValue",
    "attachment_response_limit",
    "build_call",
    "build_fault",
    "build_response",
    "build_search_query",
    "create_issue",
    "edit_issue",
    "format_stamp",
    "get_attachment",
    "get_issue_details",
    "is_auth_fault",
    "parse_call",
    "parse_response",
    "parse_stamp",
    "search",
    "soap_action",
]

SoapValue: TypeAlias = (
    str | int | bool | bytes | list["SoapValue"] | dict[str, "SoapValue"] | None
)

NAMESPACE = "MRWebServices"
ENDPOINT_PATH = "/MRcgi/MRWebServices.pl"
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32  # rpc/encoded bodies are shallow: envelope, body, call, args, struct, …

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
APACHE_SOAP = "http://xml.apache.org/xml-soap"  # SOAP::Lite's SOAPStruct namespace

_NSMAP = {"SOAP-ENV": SOAP_ENV, "SOAP-ENC": SOAP_ENC, "xsd": XSD, "xsi": XSI,
          "namesp2": APACHE_SOAP}
_XSI_TYPE = f"{{{XSI}}}type"
_XSI_NIL = f"{{{XSI}}}nil"
_INT_TYPES = {"int", "integer", "long", "short", "byte", "unsignedInt", "unsignedLong",
              "nonNegativeInteger", "positiveInteger"}
_BASE64_TYPES = {"base64", "base64Binary"}
# Characters XML 1.0 cannot carry (GOC-TX replaced them with "?" before sending).
_NON_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_AUTH_FAULT_RE = re.compile(r"password|authenticat|not authori[sz]ed|login", re.IGNORECASE)


class SoapFault(Exception):
    """A SOAP fault answered by the server."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True)
class SoapCall:
    """One rpc/encoded call as read from a request body."""

    method: str
    namespace: str
    params: tuple[tuple[str, SoapValue], ...]

    def param(self, index: int, name: str) -> SoapValue:
        """An argument by name, else by position (SOAP::Lite clients name them freely)."""
        for key, value in self.params:
            if key == name:
                return value
        return self.params[index][1] if index < len(self.params) else None


# --- values -----------------------------------------------------------------------------


def _clean(text: str) -> str:
    return _NON_XML_RE.sub("?", text)


def _append_value(parent: etree._Element, name: str, value: SoapValue) -> None:
    element = etree.SubElement(parent, name)
    if value is None:
        element.set(_XSI_NIL, "true")
    elif isinstance(value, bool):
        element.set(_XSI_TYPE, "xsd:boolean")
        element.text = "true" if value else "false"
    elif isinstance(value, int):
        element.set(_XSI_TYPE, "xsd:int")
        element.text = str(value)
    elif isinstance(value, str):
        element.set(_XSI_TYPE, "xsd:string")
        element.text = _clean(value)
    elif isinstance(value, bytes):
        element.set(_XSI_TYPE, "SOAP-ENC:base64")
        element.text = base64.b64encode(value).decode("ascii")
    elif isinstance(value, list):
        element.set(_XSI_TYPE, "SOAP-ENC:Array")
        element.set(f"{{{SOAP_ENC}}}arrayType", f"{_array_type(value)}[{len(value)}]")
        for item in value:
            _append_value(element, "item", item)
    else:
        element.set(_XSI_TYPE, "namesp2:SOAPStruct")
        for key, item in value.items():
            _append_value(element, key, item)


def _array_type(items: list[SoapValue]) -> str:
    if items and all(isinstance(i, str) for i in items):
        return "xsd:string"
    if items and all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        return "xsd:int"
    return "xsd:anyType"


def _type_name(element: etree._Element) -> tuple[str | None, str]:
    """(namespace URI, local name) of the element's xsi:type, or (None, "")."""
    raw = element.get(_XSI_TYPE)
    if not raw:
        return None, ""
    prefix, _, local = raw.rpartition(":")
    return element.nsmap.get(prefix or None), local


def _read_value(element: etree._Element, binary: bool = False) -> SoapValue:
    if element.get("href") is not None:
        raise MalformedMessage("multi-reference (href) values are not supported")
    if element.get(_XSI_NIL) in ("true", "1"):
        return None
    _, type_name = _type_name(element)
    children = [c for c in element if isinstance(c.tag, str)]
    is_array = type_name == "Array" or element.get(f"{{{SOAP_ENC}}}arrayType") is not None
    if is_array:
        return [_read_value(c, binary) for c in children]
    if children or type_name in ("SOAPStruct", "Struct", "Map"):
        return {etree.QName(c).localname: _read_value(c, binary) for c in children}
    text = element.text or ""
    if type_name in _INT_TYPES:
        try:
            return int(text.strip())
        except ValueError as exc:
            raise MalformedMessage(f"{etree.QName(element).localname}: not an integer") from exc
    if type_name == "boolean":
        return text.strip() in ("1", "true")
    if type_name in _BASE64_TYPES:
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
            return data if binary else data.decode("utf-8", errors="replace")
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessage(
                f"{etree.QName(element).localname}: invalid base64") from exc
    return text


# --- envelopes --------------------------------------------------------------------------


def _envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_NSMAP)
    envelope.set(f"{{{SOAP_ENV}}}encodingStyle", SOAP_ENC)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    return envelope, body


def _serialise(envelope: etree._Element) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def soap_action(method: str) -> str:
    """The SOAPAction header value SOAP::Lite clients send for ``method``."""
    return f'"{NAMESPACE}#{method}"'


def build_call(method: str, params: Sequence[tuple[str, SoapValue]]) -> bytes:
    """A request envelope calling ``method`` with positional, named ``params``."""
    envelope, body = _envelope()
    call = etree.SubElement(body, f"{{{NAMESPACE}}}{method}", nsmap={"namesp1": NAMESPACE})
    for name, value in params:
        _append_value(call, name, value)
    return _serialise(envelope)


def build_response(method: str, result: SoapValue) -> bytes:
    """A response envelope carrying ``result`` for ``method``."""
    envelope, body = _envelope()
    response = etree.SubElement(
        body, f"{{{NAMESPACE}}}{method}Response", nsmap={"namesp1": NAMESPACE})
    _append_value(response, "return", result)
    return _serialise(envelope)


def build_fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault envelope (``code`` like ``SOAP-ENV:Client``)."""
    envelope, body = _envelope()
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = _clean(message)
    return _serialise(envelope)


def _body_child(data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES,
                huge_text: bool = False) -> etree._Element:
    root = safe_parse(data, max_bytes=max_bytes, max_depth=MAX_DEPTH, huge_text=huge_text)
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MalformedMessage("not a SOAP 1.1 envelope")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None:
        raise MalformedMessage("SOAP envelope without a Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise MalformedMessage(f"SOAP Body must hold one element, found {len(children)}")
    return children[0]


def parse_call(data: bytes) -> SoapCall:
    """Read a request envelope (server side). Raises UnsafeXML or MalformedMessage."""
    element = _body_child(data)
    qname = etree.QName(element)
    params = tuple(
        (etree.QName(c).localname, _read_value(c)) for c in element if isinstance(c.tag, str)
    )
    return SoapCall(method=qname.localname, namespace=qname.namespace or "", params=params)


def parse_response(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES,
                   binary: bool = False) -> SoapValue:
    """The result of a response envelope (client side).

    With ``binary``, base64 values are returned as bytes (not decoded as text) and a text
    node may exceed libxml2's 10 MB default (one attachment's data); the document stays
    bounded by ``max_bytes``. Raises SoapFault for a fault, UnsafeXML or MalformedMessage
    for anything unreadable.
    """
    element = _body_child(data, max_bytes, huge_text=binary)
    if element.tag == f"{{{SOAP_ENV}}}Fault":
        code = element.findtext("faultcode") or ""
        message = element.findtext("faultstring") or ""
        raise SoapFault(code.strip(), message.strip())
    results = [c for c in element if isinstance(c.tag, str)]
    return _read_value(results[0], binary) if results else None


def is_auth_fault(fault: SoapFault) -> bool:
    """Whether a fault says the credentials were refused (as opposed to the data)."""
    return bool(_AUTH_FAULT_RE.search(fault.message))


# --- the Footprints methods -------------------------------------------------------------


def _method(name: str, goc: bool) -> str:
    return f"MRWebServices__{name}_goc" if goc else f"MRWebServices__{name}"


def _credentials(user: str, password: str) -> list[tuple[str, SoapValue]]:
    return [("user", user), ("password", password), ("extrainfo", "")]


def create_issue(user: str, password: str, args: Mapping[str, SoapValue], *,
                 goc: bool = False) -> tuple[str, bytes]:
    """(method, request body) for createIssue; the answer is the new issue number."""
    method = _method("createIssue", goc)
    return method, build_call(method, [*_credentials(user, password), ("args", dict(args))])


def edit_issue(user: str, password: str, args: Mapping[str, SoapValue], *,
               goc: bool = False) -> tuple[str, bytes]:
    """(method, request body) for editIssue; ``args`` must carry projectID and mrID."""
    method = _method("editIssue", goc)
    return method, build_call(method, [*_credentials(user, password), ("args", dict(args))])


def get_issue_details(user: str, password: str, project: int, mrid: int, *,
                      goc: bool = False) -> tuple[str, bytes]:
    """(method, request body) for getIssueDetails."""
    method = _method("getIssueDetails", goc)
    return method, build_call(
        method, [*_credentials(user, password), ("projectnumber", project), ("mrid", mrid)])


def get_attachment(user: str, password: str, project: int, mrid: int, attachment_id: int,
                   *, goc: bool = False) -> tuple[str, bytes]:
    """(method, request body) for getAttachment, an extension of the emulator (stock
    Footprints served files through its web UI): the answer is the file's bytes as
    ``SOAP-ENC:base64``; read it with ``parse_response(..., binary=True)``."""
    method = _method("getAttachment", goc)
    return method, build_call(method, [*_credentials(user, password), ("projectID", project),
                                       ("mrID", mrid), ("attachmentID", attachment_id)])


def attachment_response_limit(size: int) -> int:
    """The largest getAttachment answer to accept for a file of ``size`` bytes: its base64
    text (line breaks allowed every 76 characters) plus room for the envelope."""
    encoded = 4 * ((max(size, 0) + 2) // 3)
    return encoded + 2 * (encoded // 76 + 1) + 64 * 1024


def search(user: str, password: str, query: str) -> tuple[str, bytes]:
    """(method, request body) for search; the answer is a list of row structs."""
    method = "MRWebServices__search"
    return method, build_call(method, [*_credentials(user, password), ("query", query)])


def build_search_query(project: int, where: Mapping[str, str],
                       columns: Sequence[str] = ()) -> str:
    """``SELECT mrID[, col…] FROM MASTER<project> WHERE col = 'value' [AND …]``.

    Column names must already be encoded (``Originating__bTicket__bNumber``).
    """
    for name in [*columns, *where]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not a Footprints column name: {name!r}")
    if not where:
        raise ValueError("a Footprints search needs at least one condition")
    select = ", ".join(["mrID", *[c for c in columns if c != "mrID"]])
    conditions = " AND ".join(
        f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in where.items())
    # Footprints' own SQL dialect, built for its search call: quotes are doubled above.
    return f"SELECT {select} FROM MASTER{project} WHERE {conditions}"  # noqa: S608


# --- issue details ----------------------------------------------------------------------

_STAMP_RE = re.compile(
    r"Entered on (\d{2})/(\d{2})/(\d{4}) at (\d{2}):(\d{2}):(\d{2}) UTC by (.*)$")


def format_stamp(moment: datetime, author: str) -> str:
    """``Entered on MM/DD/YYYY at HH:MM:SS UTC by NAME``."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("Entered on %m/%d/%Y at %H:%M:%S UTC by ") + author


def parse_stamp(stamp: str) -> tuple[datetime | None, str]:
    """(time, author) from a description stamp; (None, "") when it cannot be read."""
    match = _STAMP_RE.search(stamp.strip())
    if match is None:
        return None, ""
    month, day, year, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None, match.group(7).strip()
    return moment, match.group(7).strip()


@dataclass(frozen=True, slots=True)
class DescriptionEntry:
    """One entry of an issue's append-only description, as getIssueDetails lists it."""

    data: str
    stamp: str
    internal: bool = False


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """One file of an issue, as getIssueDetails lists it (an emulator extension [R])."""

    id: int
    name: str
    size: int
    content_type: str
    created: datetime | None
    author: str = ""


@dataclass(frozen=True, slots=True)
class IssueDetails:
    """The answer of getIssueDetails, typed.

    ``fields`` holds every other returned key by its encoded column name
    (``Originating__bTicket__bNumber``, ``First__bName``, ``Ticket__uType`` …).
    ``descriptions`` are newest first, as Footprints lists them; their text is
    HTML-unescaped here (Footprints HTML-escapes description text in answers).
    """

    mrid: int
    project: int
    title: str
    status: str
    priority: int
    submitter: str
    assignees: tuple[str, ...]
    descriptions: tuple[DescriptionEntry, ...]
    fields: Mapping[str, str]
    lastdate: str
    lasttime: str
    createdate: str = ""
    createtime: str = ""
    attachments: tuple[AttachmentInfo, ...] = ()

    @property
    def modified(self) -> datetime | None:
        """lastdate + lasttime as a UTC datetime."""
        return _join_date(self.lastdate, self.lasttime)

    @property
    def created(self) -> datetime | None:
        """createdate + createtime as a UTC datetime."""
        return _join_date(self.createdate, self.createtime)

    @classmethod
    def from_soap(cls, value: SoapValue) -> IssueDetails:
        """Read the struct getIssueDetails returns. Raises MalformedMessage if it is not one."""
        if not isinstance(value, dict):
            raise MalformedMessage("getIssueDetails did not return a struct")
        known = {"mrid", "projectid", "title", "status", "priority", "submitter", "assignees",
                 "alldescriptions", "lastdate", "lasttime", "createdate", "createtime",
                 "attachments"}
        lower = {k.lower(): v for k, v in value.items()}
        entries: list[DescriptionEntry] = []
        raw_entries = lower.get("alldescriptions") or []
        if not isinstance(raw_entries, list):
            raise MalformedMessage("allDescriptions is not a list")
        for item in raw_entries:
            if not isinstance(item, dict):
                raise MalformedMessage("an allDescriptions item is not a struct")
            entries.append(DescriptionEntry(
                data=html.unescape(_text(item.get("data"))),
                stamp=_text(item.get("stamp")),
                internal=_text(item.get("internal")) in ("1", "true", "True"),
            ))
        files = lower.get("attachments") or []
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise MalformedMessage("attachments is not a list of structs")
        try:
            attachments = tuple(_attachment_info(f) for f in files if isinstance(f, dict))
            mrid = int(_text(lower.get("mrid")))
            project = int(_text(lower.get("projectid")) or "0")
            priority = int(_text(lower.get("priority")) or "0")
        except ValueError as exc:
            raise MalformedMessage(f"getIssueDetails: {exc}") from exc
        return cls(
            mrid=mrid,
            project=project,
            title=_text(lower.get("title")),
            status=_text(lower.get("status")),
            priority=priority,
            submitter=_text(lower.get("submitter")),
            assignees=tuple(_text(lower.get("assignees")).split()),
            descriptions=tuple(entries),
            fields={k: _text(v) for k, v in value.items() if k.lower() not in known},
            lastdate=_text(lower.get("lastdate")),
            lasttime=_text(lower.get("lasttime")),
            createdate=_text(lower.get("createdate")),
            createtime=_text(lower.get("createtime")),
            attachments=attachments,
        )


def _attachment_info(item: dict[str, SoapValue]) -> AttachmentInfo:
    lower = {k.lower(): v for k, v in item.items()}
    day, _, time = _text(lower.get("created")).partition(" ")
    return AttachmentInfo(
        id=int(_text(lower.get("id"))),
        name=_text(lower.get("name")),
        size=int(_text(lower.get("size")) or "0"),
        content_type=_text(lower.get("contenttype")),
        created=_join_date(day, time),
        author=_text(lower.get("author")),
    )


def _text(value: SoapValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | str):
        return str(value)
    raise MalformedMessage("expected a scalar value, got a struct or list")


def _join_date(day: str, time: str) -> datetime | None:
    if not day:
        return None
    try:
        return datetime.strptime(f"{day} {time or '00:00:00'}", "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=UTC)
    except ValueError:
        return None
