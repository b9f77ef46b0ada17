"""GGUS generation-1 notification mails: an XML ``<Ticket>`` of ``GHD_*`` elements in a mail.

Pure: no file, network or clock access. :func:`decode` turns the raw bytes of one GGUS
notification into a :class:`GgusMail` carrying a :class:`~ticketbridge.model.Ticket`
snapshot; :func:`encode` builds such a mail (tests, benchmark, demo); :func:`trigger_key`
and :func:`ggus_id_from_subject` read the GGUS ticket id cheaply from the subject, so jobs
can be ordered per ticket before anything is decoded. Formats: spec/domain.md B1 (fields),
B3.1/B3.2 (enums), C1 (XML and its quirks), C2 (subjects), (d) items 1, 2 and 8.

Where the XML is found
    In the first leaf part, in document order, that holds a ``<Ticket`` start tag: any
    text part (plain, HTML, inside nested multiparts) or attachment (``application/xml``,
    ``text/xml``, ``*.xml``, ``application/octet-stream``), after its transfer encoding
    and charset are undone. Text before and after the XML is ignored. An XML declaration
    is dropped (the text is already decoded, so its ``encoding=`` is meaningless); a
    DOCTYPE is kept in front of the document so that the hardened parser refuses it. In
    HTML, XML that was escaped for display (``&lt;Ticket&gt;``) is recovered by dropping the
    HTML tags and unescaping. A candidate that does not parse is skipped for a later one;
    refused (unsafe) XML is never skipped: it rejects the whole mail.

Text clean-up (before parsing, then again on every value)
    CRLF and lone CR become LF; characters XML 1.0 forbids (C0 controls other than TAB,
    LF, CR; U+FFFE, U+FFFF; lone surrogates), literal or as numeric character references,
    are removed with a warning: the rest of the ticket is still good data, so the mail is
    not quarantined for them (spec (d) item 8). Text is NFC-normalised.

Values (:func:`normalise_value`)
    Empty elements are treated as absent. Of a duplicated element the first non-empty
    occurrence wins and the others are dropped with a warning ("duplicate element
    GHD_Experiment ignored"). Leading and trailing whitespace is removed. Multi-line
    fields (description, diaries, solutions) keep their line breaks. In every other field
    a line break is a mail-wrapping artefact (C1) and is collapsed by this rule:

    * a break with whitespace next to it sat *between* two tokens: the whole whitespace
      run becomes one space;
    * a *bare* break (no whitespace on either side) is the hard part. In the GGUS sample
      this project descends from, GGUS replaced a space with the break
      (``CN=Guenter<LF>Grein``, ``2009-01-12<LF>14:12:17``), so in free text a bare break
      becomes one space. But a break *inside* a token must not insert a space, so a bare
      break is joined without a space where the field's grammar forbids a space there:

      - e-mail address fields (``GHD_E-Mail`` and its spellings, CC, Involve, Assign_To):
        addresses contain no whitespace, so a bare break is always inside an address;
      - ticket ids (``GHD_Request-ID`` and its spellings): all whitespace is removed;
      - the DN / login (``GHD_Loginname``): a space is inserted only inside the value of
        a free-text attribute (CN, O, OU, L, ST, STREET, T, GN, SN), between two
        characters that are not both digits and neither of which is a DN delimiter
        (``/ = , + ; @ . : -``); everywhere else (DC, C, UID, emailAddress values, next to
        a delimiter, inside a number) the break is joined.

      So ``/DC=org/DC=exam<LF>ple/CN=Guenter<LF>Grein 12<LF>34`` becomes
      ``/DC=org/DC=example/CN=Guenter Grein 1234``, and ``jane.doe@exam<LF>ple.org``
      becomes ``jane.doe@example.org``.

Element-name drift (B1, (d) item 13)
    Every element is kept in ``Ticket.fields`` under the name it was found with, and the
    spellings of the e-mail, VO, request id and VO-specific flag are also stored under the
    canonical mail-XML name (``GHD_E-Mail``, ``GHD_Experiment``, ``GHD_Request-ID``,
    ``GHD_Experiment_Specific_Problem``); a second spelling with a different value is
    dropped with a warning.

Mapping into :class:`~ticketbridge.model.Ticket`
    ``ref`` = (helpdesk, GHD_Request-ID, or the subject's id when the XML has none; a
    GGUS id is an integer, so leading zeros are dropped); ``title`` = GHD_Short_Description;
    ``description`` = GHD_Description; ``status`` / ``priority`` lowercased and checked
    against B3.1 / B3.2 (+ ``normal``); ``submitter`` = Contact(GHD_Name, e-mail,
    GHD_Phone, GHD_Loginname); ``fields`` = every GHD_* element as above (status,
    priority, request id and the Yes/No flag in their checked form); ``comments`` = one
    Comment per non-empty diary/solution element (:data:`COMMENT_ELEMENTS`) with
    ``key = text_digest(kind, body)``, ``author`` = GHD_Last_Modifier and ``created`` =
    the mail's Date; ``modified`` = GHD_Date_Of_Change or GHD_Modified_Date, else the mail
    Date; ``created`` = GHD_Date_Time_Of_Problem. Timestamps without a zone are UTC; an
    unparseable timestamp is dropped with a warning.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime
from html import unescape
from types import MappingProxyType

from lxml import etree

from ticketbridge.codecs import mime
from ticketbridge.codecs.xmlsafe import safe_parse
from ticketbridge.errors import InvalidValue, MalformedMessage, UnsafeXML
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility, text_digest

__all__ = [
    "COMMENT_ELEMENTS",
    "GGUS_PRIORITIES",
    "GGUS_STATUSES",
    "MAIL_XML_ELEMENTS",
    "GgusMail",
    "decode",
    "encode",
    "ggus_id_from_subject",
    "normalise_value",
    "trigger_key",
]

#: GGUS status values (spec B3.1), in lifecycle order.
GGUS_STATUSES: tuple[str, ...] = (
    "new",
    "assigned",
    "in progress",
    "waiting for reply",
    "on hold",
    "reopened",
    "solved",
    "unsolved",
    "verified",
    "closed",
)
#: GGUS priority values (spec B3.2) plus the WSDL's fifth value ``normal``.
GGUS_PRIORITIES: tuple[str, ...] = (
    "less urgent",
    "urgent",
    "very urgent",
    "top priority",
    "normal",
)

#: The elements of a gen-1 notification, in the order GGUS wrote them (spec C1).
MAIL_XML_ELEMENTS: tuple[str, ...] = (
    "GHD_Request-ID",
    "GHD_Loginname",
    "GHD_Name",
    "GHD_E-Mail",
    "GHD_Phone",
    "GHD_Experiment",
    "GHD_Responsible_Unit",
    "GHD_Status",
    "GHD_Priority",
    "GHD_Short_Description",
    "GHD_Description",
    "GHD_Experiment_Specific_Problem",
    "GHD_Type_Of_Problem",
    "GHD_Date_Time_Of_Problem",
    "GHD_Diary_Of_Steps",
    "GHD_Public_Diary",
    "GHD_Short_Solution",
    "GHD_Detailed_Solution",
    "GHD_Internal_Diary",
    "GHD_Origin_ID",
    "GHD_Last_Modifier",
    "GHD_Affected_Site",
)

#: Diary and solution elements that become comments: (element, kind, visibility).
COMMENT_ELEMENTS: tuple[tuple[str, str, Visibility], ...] = (
    ("GHD_Public_Diary", "public diary", Visibility.PUBLIC),
    ("GHD_Diary_Of_Steps", "diary of steps", Visibility.PUBLIC),
    ("GHD_Internal_Diary", "internal diary", Visibility.INTERNAL),
    ("GHD_Detailed_Solution", "solution", Visibility.PUBLIC),
    ("GHD_Short_Solution", "short solution", Visibility.PUBLIC),
)

# Canonical mail-XML name -> every spelling seen across GGUS operations and WSDLs (B1).
_ALIASES: Mapping[str, tuple[str, ...]] = {
    "GHD_Request-ID": ("GHD_Request-ID", "GHD_Request_ID", "GHD_RequestID"),
    "GHD_E-Mail": ("GHD_E-Mail", "GHD_EMail", "GHD_E_Mail", "GHD_Submitter_Mail"),
    "GHD_Experiment": ("GHD_Experiment", "GHD_Affected_VO", "GHD_VO"),
    "GHD_Experiment_Specific_Problem": ("GHD_Experiment_Specific_Problem", "GHD_VO_Specific"),
}
_CANONICAL: Mapping[str, str] = {
    alias.lower(): canonical for canonical, aliases in _ALIASES.items() for alias in aliases
}

_MULTILINE = frozenset(
    {
        "ghd_description",
        "ghd_public_diary",
        "ghd_diary_of_steps",
        "ghd_internal_diary",
        "ghd_detailed_solution",
        "ghd_short_solution",
        "ghd_change_diary",
        "ghd_solution",
    }
)
_ADDRESS = frozenset(
    {a.lower() for a in _ALIASES["GHD_E-Mail"]}
    | {"ghd_carboncopy", "ghd_carbon_copy", "ghd_involve", "ghd_assign_to"}
)
_IDS = frozenset(a.lower() for a in _ALIASES["GHD_Request-ID"])
_DN = frozenset({"ghd_loginname"})
_DN_FREE_TEXT_ATTRIBUTES = frozenset({"CN", "O", "OU", "L", "ST", "STREET", "T", "GN", "SN"})
_DN_DELIMITERS = frozenset("/=,+;@.:-")
_DN_LOOKBACK = 256

_SUBJECT_ID = re.compile(r"GGUS-Ticket-ID:\s*#\s*(\d+)", re.IGNORECASE)
_ANY_ID = re.compile(r"#(\d+)")
_MAX_ID_DIGITS = 20

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_CHAR_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
_TICKET_START = re.compile(r"<Ticket(?=[\s>/])")
_TICKET_END = re.compile(r"</Ticket\s*>")
_PROLOG = re.compile(r"<\?xml\b|<!DOCTYPE", re.IGNORECASE)
_ESCAPED_TICKET = re.compile(r"&lt;Ticket(?:\s|&gt;|/)", re.IGNORECASE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_XMLISH_TYPES = ("xml", "octet-stream")
_HEADER_SCAN = 256 * 1024


@dataclass(frozen=True, slots=True)
class GgusMail:
    """One decoded GGUS notification.

    ``ticket`` is the snapshot the XML describes; ``message_id`` is normalised (or
    synthesised from the bytes when missing); ``subject`` is decoded; ``date`` is the
    mail's Date in UTC; ``warnings`` lists what was repaired or ignored on the way.
    """

    ticket: Ticket
    message_id: str
    subject: str
    date: datetime | None
    warnings: tuple[str, ...] = ()


# --- subject ------------------------------------------------------------------------------


def _normal_id(digits: str) -> str:
    return digits.lstrip("0") or "0"


def ggus_id_from_subject(subject: str) -> str | None:
    """The GGUS ticket id a subject names, or None.

    ``GGUS-Ticket-ID: #<digits>`` anywhere in the subject wins; otherwise the first
    ``#<digits>``; otherwise a subject that is nothing but digits (a 2016 GGUS variant).
    Leading zeros are dropped (``#00040637`` names ticket ``40637``).
    """
    for pattern in (_SUBJECT_ID, _ANY_ID):
        match = pattern.search(subject)
        if match and len(match.group(1)) <= _MAX_ID_DIGITS:
            return _normal_id(match.group(1))
    bare = subject.strip()
    if bare.isascii() and bare.isdigit() and len(bare) <= _MAX_ID_DIGITS:
        return _normal_id(bare)
    return None


def trigger_key(raw: bytes) -> str | None:
    """The GGUS ticket id from the Subject of ``raw``, reading only the header block.

    Cheap and total: it never raises; anything unreadable gives None.
    """
    try:
        head = mime.header_block(raw, _HEADER_SCAN)
        msg = BytesHeaderParser(policy=mime.POLICY).parsebytes(head)
        return ggus_id_from_subject(mime.decoded_subject(msg))
    except Exception:
        return None


# --- text clean-up ------------------------------------------------------------------------


def _is_xml_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _strip_invalid(text: str) -> tuple[str, int]:
    """Remove characters XML 1.0 forbids, literal or as character references."""
    removed = 0

    def drop_ref(match: re.Match[str]) -> str:
        nonlocal removed
        hexa, dec = match.groups()
        code = int(hexa, 16) if hexa else int(dec)
        if _is_xml_char(code):
            return match.group(0)
        removed += 1
        return ""

    text = _CHAR_REF.sub(drop_ref, text)
    text, literal = _INVALID_XML_CHARS.subn("", text)
    return text, removed + literal


def _clean(text: str, *, markup: bool = False) -> tuple[str, int]:
    """Line endings to LF, forbidden characters out, NFC; how many characters were removed.

    ``markup`` is true for XML source text, where numeric character references to
    forbidden characters are removed too; in a parsed value "&#1;" is just text.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if markup:
        text, removed = _strip_invalid(text)
    else:
        text, removed = _INVALID_XML_CHARS.subn("", text)
    return unicodedata.normalize("NFC", text), removed


def _dn_break(value: str, start: int, end: int) -> str:
    """What the bare line break at ``value[start:end]`` in a DN stands for: "" or " "."""
    if start == 0 or end == len(value):
        return ""
    left, right = value[start - 1], value[end]
    if left in _DN_DELIMITERS or right in _DN_DELIMITERS:
        return ""
    if left.isdigit() and right.isdigit():
        return ""
    # An RDN is short; looking back a bounded distance keeps hostile input linear.
    window = max(0, start - _DN_LOOKBACK)
    component_start = max(value.rfind("/", window, start), value.rfind(",", window, start)) + 1
    component = value[max(component_start, window) : start]
    attribute = component.partition("=")[0].strip().upper() if "=" in component else ""
    return " " if attribute in _DN_FREE_TEXT_ATTRIBUTES else ""


def _no_space(value: str, start: int, end: int) -> str:
    return ""


def _space(value: str, start: int, end: int) -> str:
    return " "


def _collapse_breaks(value: str, bare: Callable[[str, int, int], str]) -> str:
    """Replace each whitespace run holding a line break: bare ones by ``bare``, others by " ".

    A hand-written scan rather than a regex, so that long runs of blanks stay linear.
    """
    if "\n" not in value:
        return value
    out: list[str] = []
    pos = 0
    size = len(value)
    brk = value.find("\n")
    while brk != -1:
        start = brk
        while start > pos and value[start - 1] in " \t":
            start -= 1
        end = brk + 1
        while end < size and value[end] in " \t\n":
            end += 1
        out.append(value[pos:start])
        out.append(bare(value, start, end) if end - start == 1 else " ")
        pos = end
        brk = value.find("\n", pos)
    out.append(value[pos:])
    return "".join(out)


def normalise_value(name: str, value: str) -> str:
    """The normal form of element ``name``'s text, as :func:`decode` stores it.

    Cleans the text (see the module docstring: line endings, forbidden characters, NFC),
    strips it, keeps line breaks in multi-line fields and collapses them in every other
    field by the documented line-break rule. ``normalise_value(n, normalise_value(n, v))
    == normalise_value(n, v)``.
    """
    text, _ = _clean(value)
    key = name.lower()
    if key in _MULTILINE:
        return _LEADING_BLANK_LINES.sub("", text).rstrip()
    text = text.strip()
    if key in _IDS:
        return re.sub(r"\s+", "", text)
    if key in _ADDRESS:
        text = _collapse_breaks(text, _no_space)
    elif key in _DN:
        text = _collapse_breaks(text, _dn_break)
    else:
        text = _collapse_breaks(text, _space)
    return text.strip()


# --- finding the XML ----------------------------------------------------------------------


def _html_to_text(html: str) -> str:
    text = re.sub(r"(?i)<br\s*/?>", "\n", html)
    text = re.sub(r"(?i)</(?:p|div|tr|li|h[1-6]|pre)\s*>", "\n", text)
    text = re.sub(r"<[^<>]*>", "", text)  # [^<>] keeps a flood of "<" linear
    return unescape(text)


def _xml_candidate(text: str) -> str | None:
    """The ``<Ticket>`` document inside ``text`` (with any prolog in front), or None."""
    start = _TICKET_START.search(text)
    if start is None:
        return None
    begin = start.start()
    prolog_starts = [m.start() for m in _PROLOG.finditer(text, 0, start.start())]
    if prolog_starts:
        # The last XML declaration and the last DOCTYPE before the root both belong to it.
        decl = [p for p in prolog_starts if text.startswith("<?", p)]
        doctype = [p for p in prolog_starts if not text.startswith("<?", p)]
        candidates = [group[-1] for group in (decl, doctype) if group]
        begin = min(candidates)
    ends = list(_TICKET_END.finditer(text, start.end()))
    end = ends[-1].end() if ends else len(text)
    return text[begin:end]


def _part_candidate(part: mime.MimeText) -> str | None:
    if part.content_type == "text/html" and _TICKET_START.search(part.text) is None:
        if _ESCAPED_TICKET.search(part.text) is None:
            return None
        return _xml_candidate(_html_to_text(part.text))
    return _xml_candidate(part.text)


def _may_hold_xml(part: EmailMessage) -> bool:
    content_type = part.get_content_type()
    if part.get_content_maintype() == "text":
        return True
    if any(marker in content_type for marker in _XMLISH_TYPES):
        return True
    return (part.get_filename() or "").lower().endswith((".xml", ".txt"))


def _find_ticket_xml(msg: EmailMessage) -> tuple[etree._Element, list[str]]:
    """Parse the first usable ``<Ticket>`` XML in ``msg``; return it and the warnings."""
    warnings: list[str] = []
    charset_error: MalformedMessage | None = None
    first_error: MalformedMessage | None = None
    for part in mime.leaf_parts(msg):
        if not isinstance(part, EmailMessage) or not _may_hold_xml(part):
            continue
        try:
            decoded = mime.part_text(part)
        except MalformedMessage as exc:
            charset_error = charset_error or exc
            continue
        candidate = _part_candidate(decoded)
        if candidate is None:
            continue
        if decoded.lossy:
            warnings.append(
                f"undecodable bytes in the {decoded.content_type} part replaced ({decoded.charset})"
            )
        text, removed = _clean(candidate, markup=True)
        try:
            root = safe_parse(text)
        except UnsafeXML:
            raise
        except MalformedMessage as exc:
            first_error = first_error or exc
            continue
        if removed:
            noun = "character" if removed == 1 else "characters"
            warnings.append(f"{removed} control {noun} removed")
        if charset_error is not None:
            warnings.append(f"another part was skipped: {charset_error}")
        return root, warnings
    if first_error is not None:
        raise first_error
    if charset_error is not None:
        raise charset_error
    defects = sorted({type(d).__name__ for p in msg.walk() for d in p.defects})
    detail = f" (MIME defects: {', '.join(defects)})" if defects else ""
    raise MalformedMessage(f"no GGUS <Ticket> XML found in the message{detail}")


# --- values -------------------------------------------------------------------------------


def _parse_timestamp(text: str) -> datetime | None:
    """GGUS timestamps: ``YYYY-MM-DD hh:mm[:ss[.ffffff]]``, ISO 8601, zone optional (UTC)."""
    value = re.sub(r"\s*(?:UTC|GMT|Z)$", "", text.strip(), flags=re.IGNORECASE)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _collect(root: etree._Element, warnings: list[str]) -> dict[str, str]:
    """Every GHD_* child of the root: found name -> first non-empty normalised value."""
    found: dict[str, str] = {}
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        name = etree.QName(child).localname
        if not name.startswith("GHD_"):
            warnings.append(f"unknown element {name} ignored")
            continue
        value = normalise_value(name, "".join(str(t) for t in child.itertext()))
        if not value:
            continue
        if name in found:
            warnings.append(f"duplicate element {name} ignored")
            continue
        found[name] = value
    for name in list(found):
        canonical = _CANONICAL.get(name.lower())
        if canonical is None or name == canonical:
            continue
        if canonical not in found:
            found[canonical] = found[name]
        elif found[canonical] != found[name]:
            warnings.append(f"element {name} conflicts with {canonical} and is ignored")
    return found


def _enum(fields: dict[str, str], name: str, allowed: Iterable[str]) -> str:
    raw = fields.get(name, "")
    value = " ".join(raw.split()).lower()
    if not value:
        raise InvalidValue(f"{name} is missing or empty")
    if value not in allowed:
        raise InvalidValue(
            f"{name} {raw!r} is not a GGUS value (expected one of: {', '.join(allowed)})"
        )
    fields[name] = value
    return value


def _request_id(fields: dict[str, str], subject_id: str | None, warnings: list[str]) -> str:
    raw = fields.get("GHD_Request-ID", "")
    if not raw:
        if subject_id is None:
            raise InvalidValue(
                "GHD_Request-ID is missing or empty and the subject names no GGUS ticket id"
            )
        warnings.append(f"GHD_Request-ID missing; ticket id {subject_id} taken from the subject")
        fields["GHD_Request-ID"] = subject_id
        return subject_id
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_ID_DIGITS:
        raise InvalidValue(f"GHD_Request-ID {raw!r} is not a numeric GGUS ticket id")
    request_id = _normal_id(raw)
    if subject_id is not None and subject_id != request_id:
        raise InvalidValue(
            f"GHD_Request-ID {raw!r} differs from the subject's GGUS ticket id {subject_id!r}"
        )
    fields["GHD_Request-ID"] = request_id
    return request_id


def _yes_no(fields: dict[str, str]) -> None:
    for name in _ALIASES["GHD_Experiment_Specific_Problem"]:
        raw = fields.get(name)
        if raw is None:
            continue
        value = raw.strip().lower()
        if value not in ("yes", "no"):
            raise InvalidValue(f"{name} {raw!r} is not Yes or No")
        fields[name] = value.capitalize()


def _timestamp(
    fields: Mapping[str, str], names: tuple[str, ...], warnings: list[str]
) -> datetime | None:
    for name in names:
        raw = fields.get(name)
        if not raw:
            continue
        parsed = _parse_timestamp(raw)
        if parsed is None:
            warnings.append(f"{name} {raw!r} is not a timestamp; ignored")
            continue
        return parsed
    return None


def _comments(fields: Mapping[str, str], date: datetime | None) -> tuple[Comment, ...]:
    author = fields.get("GHD_Last_Modifier", "")
    comments = []
    for name, kind, visibility in COMMENT_ELEMENTS:
        body = fields.get(name, "")
        if body:
            comments.append(
                Comment(
                    key=text_digest(kind, body),
                    body=body,
                    author=author,
                    created=date,
                    visibility=visibility,
                    kind=kind,
                )
            )
    return tuple(comments)


# --- decode -------------------------------------------------------------------------------


def decode(raw: bytes, *, helpdesk: str = "ggus", max_bytes: int = 10_000_000) -> GgusMail:
    """Decode one GGUS notification mail into a ticket snapshot.

    Raises (all :class:`~ticketbridge.errors.BadInput`, so the mail is quarantined):
    :class:`MalformedMessage` for a mail over ``max_bytes``, an unknown charset, XML that
    does not parse, or no ``<Ticket>`` XML at all; :class:`UnsafeXML` for a DOCTYPE,
    entities, or oversize or too deep XML; :class:`InvalidValue` for a missing,
    non-numeric or contradicting request id, or a status, priority or Yes/No flag outside
    its enumeration.
    """
    msg = mime.parse_message(raw, max_bytes=max_bytes)
    subject = mime.decoded_subject(msg)
    mid = mime.message_id(msg, raw)
    date = mime.message_date(msg)

    root, warnings = _find_ticket_xml(msg)
    if etree.QName(root).localname != "Ticket":  # pragma: no cover - extraction guarantees it
        raise MalformedMessage(f"root element is <{root.tag}>, expected <Ticket>")
    fields = _collect(root, warnings)

    request_id = _request_id(fields, ggus_id_from_subject(subject), warnings)
    status = _enum(fields, "GHD_Status", GGUS_STATUSES)
    priority = _enum(fields, "GHD_Priority", GGUS_PRIORITIES)
    _yes_no(fields)

    created = _timestamp(fields, ("GHD_Date_Time_Of_Problem",), warnings)
    modified = _timestamp(fields, ("GHD_Date_Of_Change", "GHD_Modified_Date"), warnings)

    ticket = Ticket(
        ref=TicketRef(helpdesk, request_id),
        title=fields.get("GHD_Short_Description", ""),
        description=fields.get("GHD_Description", ""),
        status=status,
        priority=priority,
        submitter=Contact(
            name=fields.get("GHD_Name", ""),
            email=fields.get("GHD_E-Mail", ""),
            phone=fields.get("GHD_Phone", ""),
            login=fields.get("GHD_Loginname", ""),
        ),
        fields=MappingProxyType(fields),
        comments=_comments(fields, date),
        modified=modified or date,
        created=created,
    )
    return GgusMail(
        ticket=ticket, message_id=mid, subject=subject, date=date, warnings=tuple(warnings)
    )


# --- encode -------------------------------------------------------------------------------

_COMMENT_TARGET = {kind: name for name, kind, _ in COMMENT_ELEMENTS}


def _format_timestamp(value: datetime) -> str:
    utc = value.astimezone(UTC) if value.tzinfo else value
    pattern = "%Y-%m-%d %H:%M:%S.%f" if utc.microsecond else "%Y-%m-%d %H:%M:%S"
    return utc.strftime(pattern)


def _xml_safe(text: str) -> str:
    return _INVALID_XML_CHARS.sub("", text)


def _comment_elements(ticket: Ticket) -> dict[str, str]:
    """Diary/solution element texts from the ticket's comments.

    An internal comment always goes to GHD_Internal_Diary, whatever its kind, so that
    nothing internal is ever written into a public element; a public comment of an
    unknown kind goes to GHD_Public_Diary. Several comments for one element are joined
    by a blank line.
    """
    bodies: dict[str, list[str]] = {}
    for comment in ticket.comments:
        if comment.visibility is Visibility.INTERNAL:
            target = "GHD_Internal_Diary"
        else:
            # A public comment of kind "internal diary" still lands in the internal diary.
            target = _COMMENT_TARGET.get(comment.kind, "GHD_Public_Diary")
        bodies.setdefault(target, []).append(comment.body)
    return {name: "\n\n".join(texts) for name, texts in bodies.items()}


def encode(ticket: Ticket, *, to: str, sender: str, date: datetime, message_id: str) -> bytes:
    """A gen-1 GGUS notification mail for ``ticket`` (UTF-8, quoted-printable, CRLF).

    Subject ``GGUS-Ticket-ID: #<id> <title>``; the body is the XML ``<Ticket>`` with every
    mail-XML element of spec C1 (empty ones included), ``GHD_Date_Of_Change`` when the
    ticket has a ``modified`` stamp, then any other ``GHD_*`` field of the ticket. The
    ticket's own attributes win over same-named ``fields``. ``decode(encode(t))``
    reproduces ``t`` when ``t`` is in decoded normal form (see :func:`normalise_value`),
    its comments are one per kind of :data:`COMMENT_ELEMENTS` authored by
    GHD_Last_Modifier and created at ``date``, and ``modified`` is set.
    """
    fields = dict(ticket.fields)
    diaries = _comment_elements(ticket)
    last_modifier = fields.get("GHD_Last_Modifier") or next(
        (c.author for c in ticket.comments if c.author), ""
    )
    structured: dict[str, str] = {
        "GHD_Request-ID": ticket.ref.id,
        "GHD_Loginname": ticket.submitter.login,
        "GHD_Name": ticket.submitter.name,
        "GHD_E-Mail": ticket.submitter.email,
        "GHD_Phone": ticket.submitter.phone,
        "GHD_Status": ticket.status,
        "GHD_Priority": ticket.priority,
        "GHD_Short_Description": ticket.title,
        "GHD_Description": ticket.description,
        "GHD_Date_Time_Of_Problem": _format_timestamp(ticket.created) if ticket.created else "",
        "GHD_Last_Modifier": last_modifier,
        **diaries,
    }
    if ticket.modified is not None:
        structured["GHD_Date_Of_Change"] = _format_timestamp(ticket.modified)

    root = etree.Element("Ticket")
    names = list(MAIL_XML_ELEMENTS)
    if "GHD_Date_Of_Change" in structured:
        names.append("GHD_Date_Of_Change")
    names += [n for n in fields if n.startswith("GHD_") and n not in names]
    for name in names:
        element = etree.SubElement(root, name)
        element.text = _xml_safe(structured.get(name) or fields.get(name, ""))
    xml = etree.tostring(root, pretty_print=True, encoding="unicode")
    body = '<?xml version="1.0" encoding="UTF-8"?>\n' + xml

    title = " ".join(ticket.title.split())
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"GGUS-Ticket-ID: #{ticket.ref.id} {title}".rstrip()
    msg["Date"] = format_datetime(date if date.tzinfo else date.replace(tzinfo=UTC))
    msg["Message-ID"] = message_id
    msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes()
