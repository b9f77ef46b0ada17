"""The Footprints e-mail interface: operations to mails, and mails to submissions. Pure.

Footprints (BMC/Numara, the OSG GOC ran project 71) reads mails sent to a project's
incoming address (spec/domain.md C4):

* a mail whose subject carries no ``ISSUE=<n> PROJ=<p>`` opens a new issue: the subject
  becomes the title, the body the description, the sender the submitter, CCs the CCs;
* a mail whose subject carries ``ISSUE=<n> PROJ=<p>`` updates that issue: the text at the
  top becomes a new description entry;
* in both, lines ``fieldname=data`` set fields. Labels are case-insensitive. A multi-line
  value runs until a line ``END fieldname`` (older versions continued a value with a
  trailing backslash on each line). A line whose label Footprints does not know stays in
  the description, as Footprints did.

Conventions of ours (not Footprints'), written down in docs/sandbox/footprints.md:

* Internal (agent-only) comments never go into the public body. They travel in the
  multi-line field ``Internal Description``, which the emulator stores as an internal
  description entry.
* Footprints has no escape for text that looks like a field line. The encoder *defuses*
  such text lines (and ``END <label>`` lines) by prefixing one space; the decoder only
  reads field lines that start in column 0. That single space is the only change text
  ever suffers on the way through.
* Each public comment is followed by a line `` -- by AUTHOR at YYYY-MM-DD HH:MM:SS UTC``
  (GOC-TX's attribution convention) when its author or time is known.
* Files travel as MIME attachments of the same mail (``multipart/mixed``: the text part
  first, then one ``Content-Disposition: attachment`` part per file, always base64, so the
  bytes arrive exactly). An attachment for an existing issue is an update mail with empty
  text. File names are cleaned the same way on both sides (:func:`attachment_name`); a
  name that is not plain ASCII travels RFC 2231-encoded (``filename*=utf-8''...``).
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Protocol

from ticketbridge.codecs import mime
from ticketbridge.model import Comment, CreateTicket, UpdateTicket, Visibility

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "INTERNAL_DESCRIPTION",
    "KNOWN_FIELDS",
    "UNTITLED",
    "FileLike",
    "MailAttachment",
    "Submission",
    "attachment_name",
    "canonical_label",
    "content_type",
    "decode_field_name",
    "decode_submission",
    "encode_create",
    "encode_field_name",
    "encode_update",
    "parse_notification_subject",
    "render_comment",
]

#: Footprints' title for an issue created without one (it requires a non-empty title).
UNTITLED = "(Untitled Ticket)"

#: Our field for agent-only text; the emulator stores it as an internal description entry.
INTERNAL_DESCRIPTION = "Internal Description"

#: The content type of a file whose type is unknown or unreadable.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Footprints stores field labels as column names with these substitutions (B3.7).
_NAME_CODES: tuple[tuple[str, str], ...] = (
    ("__b", " "),
    ("__u", "-"),
    ("__f", "/"),
    ("__P", "("),
    ("__p", ")"),
    ("__Q", "?"),
)

#: Every field label the email interface recognises, in its canonical spelling. Built-in
#: fields are lower case as Footprints' own keywords; project and address-book fields
#: carry their labels as shown in project 71.
KNOWN_FIELDS: tuple[str, ...] = (
    # built-in keywords
    "status",
    "priority",
    "assignees",
    "permanentCCs",
    "project",
    # project fields (project 71)
    "Ticket Type",
    "ENG Next Action Item",
    "ENG Next Action Date/Time (UTC)",
    "Originating Ticket Number",
    "Originating VO Support Center",
    "Destination VO Support Center",
    "Ready to Close?",
    # address-book fields
    "First Name",
    "Last Name",
    "Office Phone",
    "Email address",
    # our convention for agent-only text
    INTERNAL_DESCRIPTION,
)

_BY_LOWER: dict[str, str] = {label.lower(): label for label in KNOWN_FIELDS}

_ORIGINATING = "Originating Ticket Number"
_ISSUE_RE = re.compile(r"ISSUE=(\d+)\s+PROJ=(\d+)")
_FIELD_LINE_RE = re.compile(r"^([^=\s][^=]*?)[ \t]*=(.*)$")
_END_RE = re.compile(r"^END[ \t]+(.+?)[ \t]*$", re.IGNORECASE)
_REPLY_PREFIX_RE = re.compile(r"^\s*((re|fwd?|aw|wg)\s*:\s*)+", re.IGNORECASE)
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_CONTENT_TYPE_RE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)")
_PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+,()-]*")

# Outgoing mails: 7-bit clean bodies (quoted-printable or base64), and headers folded only
# past SMTP's 998-character line limit. The standard library loses a space that falls on
# the boundary of two encoded words when it folds a non-ASCII subject at 78 characters.
_POLICY = mime.POLICY.clone(max_line_length=998, cte_type="7bit")  # memoised headers


def encode_field_name(label: str) -> str:
    """The column name Footprints stores ``label`` under.

    ``encode_field_name("Originating Ticket Number") == "Originating__bTicket__bNumber"``.
    """
    out = label
    for code, char in _NAME_CODES:
        out = out.replace(char, code)
    return out


def decode_field_name(name: str) -> str:
    """The label behind a Footprints column name (the inverse of :func:`encode_field_name`)."""
    out = name
    for code, char in _NAME_CODES:
        out = out.replace(code, char)
    return out


def canonical_label(name: str) -> str | None:
    """The canonical spelling of a recognised field label, or None if it is not one.

    Accepts any letter case and the encoded column form (``Ticket__uType``).
    """
    return _BY_LOWER.get(decode_field_name(name.strip()).lower())


# --- encoding ---------------------------------------------------------------------------


def render_comment(comment: Comment) -> str:
    """A comment's text with the `` -- by AUTHOR at TIME`` attribution line, if known."""
    body = _normalise_newlines(comment.body).strip("\n")
    created = _format_time(comment.created) if comment.created is not None else ""
    if comment.author and created:
        trailer = f" -- by {comment.author} at {created}"
    elif comment.author:
        trailer = f" -- by {comment.author}"
    elif created:
        trailer = f" -- at {created}"
    else:
        return body
    return f"{body}\n{trailer}" if body else trailer


def encode_create(
    op: CreateTicket,
    *,
    to: str,
    sender: str,
    message_id: str,
    date: datetime,
    attachments: Iterable[FileLike] = (),
) -> EmailMessage:
    """The mail that opens ``op`` as a new issue through the email interface.

    The subject is the title (``(Untitled Ticket)`` when empty). The body holds the public
    comments, then the description, then one ``name=value`` line per field; the
    correlation key always travels as ``Originating Ticket Number``. Each of
    ``attachments`` becomes a MIME attachment of the mail.
    """
    fields = dict(op.fields)
    if not any(canonical_label(name) == _ORIGINATING for name in fields):
        fields[_ORIGINATING] = op.correlation_key
    title = _one_line(op.title) or UNTITLED
    body = _body(op.comments, op.description, fields)
    return _message(to=to, sender=sender, subject=title, message_id=message_id, date=date,
                    body=body, attachments=attachments)


def encode_update(
    op: UpdateTicket,
    *,
    project: int,
    title: str,
    to: str,
    sender: str,
    message_id: str,
    date: datetime,
    attachments: Iterable[FileLike] = (),
) -> EmailMessage:
    """The mail that updates issue ``op.ticket_id`` of ``project``.

    The subject is ``Re: <title> ISSUE=<id> PROJ=<project>``, as a reply to a Footprints
    notification; new text goes at the top of the body, field lines below it. Each of
    ``attachments`` becomes a MIME attachment; an operation without comments and fields
    gives an update mail with empty text, which only attaches the files.
    """
    if not op.ticket_id.isdigit():
        raise ValueError(f"a Footprints issue number is numeric, got {op.ticket_id!r}")
    subject = f"Re: {_one_line(title) or UNTITLED} ISSUE={op.ticket_id} PROJ={project}"
    body = _body(op.comments, "", dict(op.fields))
    return _message(to=to, sender=sender, subject=subject, message_id=message_id, date=date,
                    body=body, attachments=attachments)


def _body(comments: Iterable[Comment], description: str, fields: dict[str, str]) -> str:
    public = [render_comment(c) for c in comments if c.visibility is Visibility.PUBLIC]
    internal = [render_comment(c) for c in comments if c.visibility is not Visibility.PUBLIC]
    if internal:
        key = next((n for n in fields if canonical_label(n) == INTERNAL_DESCRIPTION), None)
        if key is not None:
            internal.insert(0, fields.pop(key))
        fields[INTERNAL_DESCRIPTION] = "\n\n".join(internal)

    blocks = [_defuse_text(text) for text in [*public, _normalise_newlines(description)]]
    blocks = [b.strip("\n") for b in blocks if b.strip()]
    lines = [_field_lines(name, value) for name, value in fields.items()]
    parts = ["\n\n".join(blocks)] if blocks else []
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _field_lines(name: str, value: str) -> str:
    if "=" in name or "\n" in name or not name.strip():
        raise ValueError(f"not a usable Footprints field label: {name!r}")
    value = _normalise_newlines(value)
    if "\n" not in value and not value.endswith("\\"):
        return f"{name}={value}"
    inner = "\n".join(
        " " + line if _is_terminator(line) else line for line in value.split("\n")
    )
    return f"{name}={inner}\nEND {name}"


def _defuse_text(text: str) -> str:
    """Prefix one space to lines the decoder would otherwise read as field syntax."""
    return "\n".join(
        " " + line if _is_terminator(line) or _field_line(line) is not None else line
        for line in text.split("\n")
    )


def _message(
    *,
    to: str,
    sender: str,
    subject: str,
    message_id: str,
    date: datetime,
    body: str,
    attachments: Iterable[FileLike] = (),
) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(_utc(date))
    msg["Message-ID"] = message_id
    msg.set_content(body, charset="utf-8")
    for item in attachments:
        _attach(msg, item)
    return msg


def _attach(msg: EmailMessage, item: FileLike) -> None:
    """Add one file as a base64 ``attachment`` part (exact bytes, any content type)."""
    maintype, _, subtype = content_type(item.content_type).partition("/")
    if maintype in ("message", "multipart"):
        # MIME allows neither base64 for these nor arbitrary bytes in them: sent as plain
        # data, so that the bytes arrive exactly (the type does not).
        maintype, _, subtype = DEFAULT_CONTENT_TYPE.partition("/")
    name = attachment_name(item.name)
    msg.add_attachment(bytes(item.data), maintype=maintype, subtype=subtype, cte="base64",
                       filename=name)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    part = parts[-1]
    assert isinstance(part, EmailMessage)
    if not _PLAIN_NAME_RE.fullmatch(name):
        # RFC 2231 keeps every character exactly (quotes, "=?...?=", non-ASCII): a quoted
        # ASCII name would be read back through RFC 2047 by the receiving parser. Set raw,
        # because the header classes render an ASCII value as a quoted string again.
        del part["Content-Disposition"]
        part.set_raw("Content-Disposition", _rfc2231_disposition(name))


def _rfc2231_disposition(name: str) -> str:
    """``attachment;`` and ``filename*0*=utf-8''…`` sections, folded one per line."""
    encoded = urllib.parse.quote(name, safe="")
    chunks: list[str] = []
    while encoded:
        cut = min(60, len(encoded))
        if "%" in encoded[max(cut - 2, 0):cut]:  # never split a %XX escape
            cut = encoded.rindex("%", 0, cut)
        chunks.append(encoded[:cut])
        encoded = encoded[cut:]
    if len(chunks) == 1:
        return f"attachment;\n filename*=utf-8''{chunks[0]}"
    sections = [f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{chunk}"
                for i, chunk in enumerate(chunks)]
    return "attachment;\n " + ";\n ".join(sections)


# --- attachments ------------------------------------------------------------------------


class FileLike(Protocol):
    """What an encoder needs of a file: :class:`~ticketbridge.model.Attachment` fits."""

    @property
    def name(self) -> str: ...

    @property
    def content_type(self) -> str: ...

    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """One file read from a mail: its cleaned name, lower-case content type and bytes."""

    name: str
    content_type: str
    data: bytes


def attachment_name(name: str) -> str:
    """A file name as it travels and is stored: the same rule on both sides.

    Leading and trailing whitespace (the trailing newlines GGUS returns, spec (d) 9) is
    stripped; path separators ``/`` and ``\\`` become ``_`` (as runtime/attachments.py
    cleans names), so a name never points into a directory; control characters and
    characters XML cannot carry become ``_``. An empty result is ``attachment``.
    Idempotent: ``attachment_name(attachment_name(x)) == attachment_name(x)``.
    """
    cleaned = name.strip().replace("/", "_").replace("\\", "_")
    out = "".join("_" if _unsafe_char(ch) else ch for ch in cleaned).strip()
    return out or "attachment"


def _unsafe_char(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in ("\ufffe", "\uffff")


def content_type(value: str) -> str:
    """``type/subtype`` in lower case, parameters dropped; unreadable ones are
    ``application/octet-stream``."""
    match = _CONTENT_TYPE_RE.fullmatch(value.split(";", 1)[0].strip().lower())
    return match.group(0) if match else DEFAULT_CONTENT_TYPE


# --- decoding ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """What Footprints reads from one mail sent to its incoming address.

    ``issue`` and ``project`` are set when the subject names an issue (an update).
    ``fields`` maps canonical labels (see :data:`KNOWN_FIELDS`) to values; ``text`` is
    everything in the body that is not a recognised field line.
    """

    subject: str
    title: str
    text: str
    issue: int | None = None
    project: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    sender: str = ""
    sender_name: str = ""
    cc: tuple[str, ...] = ()
    message_id: str = ""
    problems: tuple[str, ...] = ()
    attachments: tuple[MailAttachment, ...] = ()


def decode_submission(msg: Message) -> Submission:
    """Read a mail as Footprints' email interface does.

    Never raises on odd input: undecodable text is replaced, a mail without a text part
    has an empty body. ``problems`` lists what could not be read (a field whose value
    appears twice, a multi-line value never closed); the emulator rejects such mails.

    The body is the first ``text/plain`` part that is neither an attachment nor named;
    every other part with ``Content-Disposition: attachment`` or a file name, and every
    attached mail (``message/rfc822``), is an attachment, its bytes transfer-decoded.
    """
    subject = _header_text(msg.get("Subject"))
    match = _ISSUE_RE.search(subject)
    issue = int(match.group(1)) if match else None
    project = int(match.group(2)) if match else None
    title = _ISSUE_RE.sub("", subject) if match else subject
    title = _REPLY_PREFIX_RE.sub("", " ".join(title.split()))

    sender_name, sender = parseaddr(_header_text(msg.get("From")))
    cc = tuple(addr for _, addr in getaddresses([_header_text(v) for v in msg.get_all("Cc", [])])
               if addr)
    leaves = list(_leaves(msg))
    body_part = next((p for p in leaves if _is_body(p)), None)
    text, fields, problems = _parse_body(_part_text(body_part) if body_part else "")
    attachments = tuple(
        _read_attachment(p) for p in leaves if p is not body_part and _is_attachment(p)
    )
    return Submission(
        subject=subject,
        title=title,
        text=text,
        issue=issue,
        project=project,
        fields=fields,
        sender=sender,
        sender_name=sender_name,
        cc=cc,
        message_id=_header_text(msg.get("Message-ID")).strip(),
        problems=tuple(problems),
        attachments=attachments,
    )


def parse_notification_subject(subject: str) -> tuple[str, int] | None:
    """``(issue id, project)`` from a Footprints notification subject, or None.

    ``"CE down ISSUE=49 PROJ=114"`` gives ``("49", 114)``. RFC 2047 encoded words and
    folded headers are decoded first.
    """
    match = _ISSUE_RE.search(_header_text(subject))
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def _parse_body(body: str) -> tuple[str, dict[str, str], list[str]]:
    lines = _normalise_newlines(body).split("\n")
    text: list[str] = []
    fields: dict[str, str] = {}
    problems: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        parsed = _field_line(line)
        if parsed is None:
            text.append(line)
            i += 1
            continue
        label, first = parsed
        end = _find_terminator(lines, i + 1, label)
        if end is not None:
            value = "\n".join([first, *lines[i + 1 : end]]).strip()
            i = end + 1
        elif first.endswith("\\"):
            parts = [first[:-1]]
            i += 1
            while i < len(lines):
                nxt = lines[i]
                i += 1
                if nxt.endswith("\\"):
                    parts.append(nxt[:-1])
                else:
                    parts.append(nxt)
                    break
            else:
                problems.append(f"the value of {label!r} ends with a continuation backslash")
            value = "\n".join(parts).strip()
        else:
            value = first.strip()
            i += 1
        if label in fields and fields[label] != value:
            problems.append(f"field {label!r} is given twice with different values")
        fields[label] = value
    return "\n".join(text).strip("\n"), fields, problems


def _field_line(line: str) -> tuple[str, str] | None:
    match = _FIELD_LINE_RE.match(line)
    if match is None:
        return None
    label = canonical_label(match.group(1))
    return None if label is None else (label, match.group(2))


def _is_terminator(line: str, label: str | None = None) -> bool:
    match = _END_RE.match(line)
    if match is None:
        return False
    found = canonical_label(match.group(1))
    return found is not None and (label is None or found == label)


def _find_terminator(lines: list[str], start: int, label: str) -> int | None:
    for j in range(start, len(lines)):
        if _is_terminator(lines[j], label):
            return j
    return None


def _leaves(part: Message, *, top: bool = True) -> Iterator[Message]:
    """The leaf parts of a mail; an attached mail (``message/*``) is one leaf."""
    if not top and part.get_content_maintype() == "message":
        yield part
    elif part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _leaves(sub, top=False)
    else:
        yield part


def _is_body(part: Message) -> bool:
    return (part.get_content_type() == "text/plain"
            and part.get_content_disposition() != "attachment"
            and _filename(part) is None)


def _is_attachment(part: Message) -> bool:
    return (part.get_content_disposition() == "attachment"
            or _filename(part) is not None
            or part.get_content_maintype() == "message")


def _read_attachment(part: Message) -> MailAttachment:
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        data = first.as_bytes() if isinstance(first, Message) else b""
        default = "message.eml"
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        default = "attachment"
    name = _filename(part)
    return MailAttachment(
        name=attachment_name(name) if name is not None and name.strip() else default,
        content_type=content_type(part.get_content_type()),
        data=data,
    )


def _filename(part: Message) -> str | None:
    """The part's file name (``filename``, else the Content-Type's ``name``), or None.

    Read from the parsed header parameters when the message has them: the older
    ``get_filename`` drops angle brackets around a name (``<a>`` becomes ``a``).
    """
    for header, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        params = getattr(part.get(header), "params", None)
        if isinstance(params, Mapping) and params.get(param) is not None:
            return str(params[param])
    return part.get_filename()


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", errors="replace")


def _header_text(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except (ValueError, LookupError):
            pass
    return re.sub(r"\r?\n[ \t]+", " ", text)


# --- small helpers ----------------------------------------------------------------------


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _format_time(moment: datetime) -> str:
    return _utc(moment).strftime(_TIME_FORMAT)
