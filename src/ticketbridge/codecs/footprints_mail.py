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
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, parseaddr

from ticketbridge.model import Comment, CreateTicket, UpdateTicket, Visibility

__all__ = [
    "INTERNAL_DESCRIPTION",
    "KNOWN_FIELDS",
    "UNTITLED",
    "Submission",
    "canonical_label",
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

# Outgoing mails: 7-bit clean bodies (quoted-printable or base64), and headers folded only
# past SMTP's 998-character line limit. The standard library loses a space that falls on
# the boundary of two encoded words when it folds a non-ASCII subject at 78 characters.
_POLICY = email.policy.default.clone(max_line_length=998, cte_type="7bit")


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
    op: CreateTicket, *, to: str, sender: str, message_id: str, date: datetime
) -> EmailMessage:
    """The mail that opens ``op`` as a new issue through the email interface.

    The subject is the title (``(Untitled Ticket)`` when empty). The body holds the public
    comments, then the description, then one ``name=value`` line per field; the
    correlation key always travels as ``Originating Ticket Number``.
    """
    fields = dict(op.fields)
    if not any(canonical_label(name) == _ORIGINATING for name in fields):
        fields[_ORIGINATING] = op.correlation_key
    title = _one_line(op.title) or UNTITLED
    body = _body(op.comments, op.description, fields)
    return _message(to=to, sender=sender, subject=title, message_id=message_id, date=date,
                    body=body)


def encode_update(
    op: UpdateTicket,
    *,
    project: int,
    title: str,
    to: str,
    sender: str,
    message_id: str,
    date: datetime,
) -> EmailMessage:
    """The mail that updates issue ``op.ticket_id`` of ``project``.

    The subject is ``Re: <title> ISSUE=<id> PROJ=<project>``, as a reply to a Footprints
    notification; new text goes at the top of the body, field lines below it.
    """
    if not op.ticket_id.isdigit():
        raise ValueError(f"a Footprints issue number is numeric, got {op.ticket_id!r}")
    subject = f"Re: {_one_line(title) or UNTITLED} ISSUE={op.ticket_id} PROJ={project}"
    body = _body(op.comments, "", dict(op.fields))
    return _message(to=to, sender=sender, subject=subject, message_id=message_id, date=date,
                    body=body)


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
    *, to: str, sender: str, subject: str, message_id: str, date: datetime, body: str
) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(_utc(date))
    msg["Message-ID"] = message_id
    msg.set_content(body, charset="utf-8")
    return msg


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


def decode_submission(msg: Message) -> Submission:
    """Read a mail as Footprints' email interface does.

    Never raises on odd input: undecodable text is replaced, a mail without a text part
    has an empty body. ``problems`` lists what could not be read (a field whose value
    appears twice, a multi-line value never closed); the emulator rejects such mails.
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
    text, fields, problems = _parse_body(_body_text(msg))
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


def _body_text(msg: Message) -> str:
    part = next(
        (
            p
            for p in msg.walk()
            if p.get_content_type() == "text/plain" and not p.is_multipart()
            and p.get_content_disposition() != "attachment"
        ),
        None,
    )
    if part is None:
        return ""
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
