"""Pure helpers over the stdlib ``email`` package for reading trigger mails.

Everything a mail codec needs from a raw message, decided once here:

* :func:`parse_message`: bytes to :class:`~email.message.EmailMessage` with the modern
  policy (RFC 2047/2231 decoding, defects collected instead of raised), size bounded;
  :func:`parse_headers`: the same for the header block only (what the intake needs);
* :func:`decoded_subject`, :func:`message_id`, :func:`message_date`: the three headers
  the exchange relies on, always returned in one normal form;
* :func:`leaf_parts`, :func:`part_text`, :func:`iter_texts`: every text part and
  attachment as str, whatever its charset and transfer encoding;
* :func:`auto_reply_reason`: why a mail must never start an exchange (auto-replies,
  bounces, out-of-office notices), the first loop defence of spec/domain.md (d) item 2.

Raw-header parsing without RFC 2047 decoding or unfolding caused subject-parsing bugs in
the exchange this project descends from (spec/domain.md (d) item 8); hence a real MIME
parser, and NFC-normalised text. Library choice: design/libraries.md, row "MIME parsing".

Speed: the modern policy builds a header object (a small parse tree) every time a header
is *read*, and reading a part's content type, charset, file name and disposition reads
``Content-Type`` and ``Content-Disposition`` again and again. :data:`POLICY` is
``policy.default`` with one difference: the header objects it hands out are memoised by
(name, raw value), in a bounded cache shared by every message. Header objects are
immutable, so a message sees exactly the objects ``policy.default`` would build.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import EmailPolicy
from email.utils import parseaddr, parsedate_to_datetime
from functools import lru_cache
from typing import Any

from ticketbridge.errors import MalformedMessage

__all__ = [
    "POLICY",
    "MimeText",
    "auto_reply_reason",
    "decoded_subject",
    "iter_texts",
    "leaf_parts",
    "message_date",
    "message_id",
    "parse_headers",
    "parse_message",
    "part_text",
]

#: Default upper bound for a raw message, in bytes.
DEFAULT_MAX_BYTES = 10_000_000

# Header values longer than this are parsed every time, not kept in the cache.
_CACHED_VALUE_CHARS = 2000
_CACHED_HEADERS = 256  # the same few headers recur in every mail; each entry holds a parse tree


class _MemoisingPolicy(EmailPolicy):
    """``policy.default``, handing out memoised header objects (see the module docstring).

    Headers set on a message being built (``msg["From"] = ...``) are memoised the same
    way, so a policy cloned from :data:`POLICY` also builds mails faster.
    """

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name") or len(value) > _CACHED_VALUE_CHARS:
            return super().header_fetch_parse(name, value)
        return _fetch(self, name, value)

    def header_store_parse(self, name: str, value: Any) -> Any:
        if (
            hasattr(value, "name")
            or not isinstance(value, str)
            or len(value) > _CACHED_VALUE_CHARS
            or "\n" in value
            or "\r" in value
        ):
            return super().header_store_parse(name, value)
        # Without line breaks, fetch-parsing a value is exactly building its header.
        return (name, _fetch(self, name, value))


@lru_cache(maxsize=_CACHED_HEADERS)
def _fetch(policy: _MemoisingPolicy, name: str, value: str) -> Any:
    return EmailPolicy.header_fetch_parse(policy, name, value)


#: The policy every trigger mail is parsed with: ``policy.default``, memoising headers.
POLICY = _MemoisingPolicy()


@dataclass(frozen=True, slots=True)
class MimeText:
    """One leaf part of a message, decoded to text.

    ``content_type`` is lowercased (``text/plain``); ``filename`` is the part's file name
    or ""; ``is_attachment`` is true for ``Content-Disposition: attachment``; ``charset``
    is the codec actually used; ``lossy`` is true when undecodable bytes were replaced.
    """

    content_type: str
    text: str
    filename: str = ""
    is_attachment: bool = False
    charset: str = ""
    lossy: bool = False


def parse_message(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> EmailMessage:
    """Parse a raw RFC 5322 message.

    Raises :class:`MalformedMessage` ("message of N bytes exceeds limit M") when ``raw``
    is larger than ``max_bytes``; otherwise never raises: structural problems are recorded
    as ``defects`` on the message and its parts, as the stdlib does.
    """
    if len(raw) > max_bytes:
        raise MalformedMessage(f"message of {len(raw)} bytes exceeds limit {max_bytes}")
    msg = BytesParser(policy=POLICY).parsebytes(raw)
    if not isinstance(msg, EmailMessage):  # pragma: no cover - POLICY guarantees it
        raise MalformedMessage("message could not be parsed as an e-mail")
    return msg


def header_block(raw: bytes, limit: int = 256 * 1024) -> bytes:
    """The header block of ``raw`` (up to the first empty line), at most ``limit`` bytes."""
    head = raw[:limit]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return head[: min(ends)] if ends else head


def parse_headers(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> EmailMessage:
    """Parse only the header block of ``raw``; the body is not looked at.

    Headers read from the result are exactly those of :func:`parse_message`; its parts are
    not (it has none). Raises :class:`MalformedMessage` like :func:`parse_message` when
    ``raw`` is larger than ``max_bytes``.
    """
    if len(raw) > max_bytes:
        raise MalformedMessage(f"message of {len(raw)} bytes exceeds limit {max_bytes}")
    msg = BytesHeaderParser(policy=POLICY).parsebytes(header_block(raw, len(raw)))
    if not isinstance(msg, EmailMessage):  # pragma: no cover - POLICY guarantees it
        raise MalformedMessage("message could not be parsed as an e-mail")
    return msg


def _header(msg: Message, name: str) -> str:
    """A header's decoded, unfolded value, or "" when absent or unreadable."""
    try:
        value = msg.get(name)
    except Exception:  # the header factory can choke on hostile input: use the raw text
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if value is None:
        return ""
    text = str(value)
    # Unfold (RFC 5322 2.2.3) in case the header came through without the policy doing it.
    text = re.sub(r"\r?\n(?=[ \t])", "", text)
    return unicodedata.normalize("NFC", text)


def decoded_subject(msg: Message) -> str:
    """The Subject with RFC 2047 encoded words decoded, folding undone, ends stripped."""
    return _header(msg, "Subject").strip()


def message_id(msg: Message, raw: bytes) -> str:
    """The Message-ID in its normal form ``<local@domain>`` (whitespace removed).

    A mail without one gets a stable synthetic id derived from its bytes,
    ``<sha256-HEX@ticketbridge.invalid>``, so that the same delivery twice is still
    recognised as a duplicate.
    """
    value = re.sub(r"\s+", "", _header(msg, "Message-ID"))
    if value.startswith("<") and ">" in value:
        value = value[: value.index(">") + 1]
    elif value:
        value = f"<{value.strip('<>')}>"
    if value in ("", "<>"):
        return f"<sha256-{hashlib.sha256(raw).hexdigest()}@ticketbridge.invalid>"
    return value


def message_date(msg: Message) -> datetime | None:
    """The Date header as an aware UTC datetime, or None when missing or unparseable.

    A date without a usable zone (RFC 5322's ``-0000``) is read as UTC.
    """
    text = _header(msg, "Date").strip()
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def leaf_parts(msg: Message) -> Iterator[Message]:
    """Every non-multipart part of ``msg`` in document order (the message itself if flat).

    A part that claims to be multipart but could not be split (missing or wrong boundary)
    is *not* yielded: its body is unstructured MIME noise, not a text.
    """
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "multipart":
            continue
        yield part


def _codec_for(charset: str, content_type: str) -> str:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise MalformedMessage(f"unknown charset {charset!r} in a {content_type} part") from None


def _sniff_charset(data: bytes) -> str:
    """Pick a codec for bytes that declare no charset (attachments, octet-streams)."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if data[:2] == b"<\x00":
        return "utf-16-le"
    if data[:2] == b"\x00<":
        return "utf-16-be"
    declared = re.match(rb"\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", data)
    if declared:
        try:
            return codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            pass
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "windows-1252"
    return "utf-8"


def part_text(part: Message) -> MimeText:
    """Decode one leaf part to text: transfer encoding first, then charset.

    The charset comes from the part's ``charset`` parameter; without one, a BOM, an XML
    declaration or a UTF-8 check decides (windows-1252 as the last resort, which decodes
    any byte). Undecodable bytes in a declared charset become U+FFFD and set ``lossy``.
    CRLF and lone CR become LF; the text is NFC-normalised.

    Raises :class:`MalformedMessage` naming the charset when it is unknown.
    """
    content_type = part.get_content_type()
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    declared = part.get_param("charset")
    charset = declared if isinstance(declared, str) and declared.strip() else ""
    codec = _codec_for(charset.strip(), content_type) if charset else _sniff_charset(data)
    lossy = False
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        text = data.decode(codec, "replace")
        lossy = True
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    filename = part.get_filename() or ""
    return MimeText(
        content_type=content_type,
        text=text,
        filename=filename,
        is_attachment=part.get_content_disposition() == "attachment",
        charset=codec,
        lossy=lossy,
    )


def iter_texts(msg: Message) -> Iterator[MimeText]:
    """Every leaf part of ``msg`` decoded to text, in document order.

    Raises :class:`MalformedMessage` at the first part with an unknown charset; callers
    that want to skip such a part use :func:`leaf_parts` and :func:`part_text`.
    """
    for part in leaf_parts(msg):
        yield part_text(part)


# --- auto-replies and bounces -----------------------------------------------------------

_OUT_OF_OFFICE = re.compile(
    r"""^\s*(?:
        out\s+of\s+(?:the\s+)?office
      | automatic\s+reply
      | auto(?:matic)?[-\s]?(?:reply|response|antwort)
      | autoreply
      | abwesenheitsnotiz
      | abwesend
      | auto:
      | r[ée]ponse\s+automatique
      | absence\s+du\s+bureau
      | risposta\s+automatica
      | respuesta\s+autom[áa]tica
      | on\s+vacation
      | vacation\s+(?:reply|message|notice)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
_REPORT_TYPES = frozenset({"delivery-status", "disposition-notification"})
_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})


def auto_reply_reason(msg: Message) -> str | None:
    """Why ``msg`` is an auto-reply or bounce that must never start an exchange, or None.

    Checked, in this order: bounces (RFC 3464 ``multipart/report`` or a
    ``message/delivery-status`` part, a MAILER-DAEMON or postmaster sender, an empty
    ``Return-Path: <>``); then RFC 3834 ``Auto-Submitted`` (anything but ``no``),
    ``X-Autoreply`` / ``X-Autorespond``, ``Precedence: auto_reply|bulk|junk``; then an
    out-of-office subject ("Out of Office", "Automatic reply", "Abwesenheitsnotiz",
    "Auto:" ...). The reason names the evidence, e.g.
    ``"auto-reply: Auto-Submitted: auto-replied"`` or
    ``"bounce: multipart/report (report-type=delivery-status)"``.
    """
    # Bounces first: they often carry Auto-Submitted too, and "bounce" is the more
    # precise reason for an operator.
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
        return f"bounce: multipart/report (report-type={report_type or 'unspecified'})"
    if any(p.get_content_type() == "message/delivery-status" for p in msg.walk()):
        return "bounce: message/delivery-status part"
    sender = parseaddr(_header(msg, "From"))[1]
    if sender.partition("@")[0].lower() in _BOUNCE_SENDERS:
        return f"bounce: sender {sender}"
    return_path = _header(msg, "Return-Path")
    if return_path and re.fullmatch(r"\s*<\s*>\s*", return_path):
        return "bounce: empty Return-Path <>"

    auto_submitted = _header(msg, "Auto-Submitted").strip()
    if auto_submitted and auto_submitted.split(";")[0].strip().lower() != "no":
        return f"auto-reply: Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = _header(msg, name).strip()
        if value and value.lower() != "no":
            return f"auto-reply: {name}: {value}"
    precedence = _header(msg, "Precedence").strip()
    if precedence.lower() in _PRECEDENCE:
        return f"auto-reply: Precedence: {precedence}"

    subject = decoded_subject(msg)
    if _OUT_OF_OFFICE.search(subject):
        return f"out-of-office: Subject: {subject}"
    return None
