"""MIME helpers: size bound, headers in one normal form, every part as text, auto-replies."""

from __future__ import annotations

import base64
import quopri
import re
from datetime import UTC, datetime

import pytest

from ticketbridge.codecs import mime
from ticketbridge.errors import MalformedMessage

HEAD = b"From: helpdesk@ggus.example.org\nTo: osg-tx@goc.example.org\nMIME-Version: 1.0\n"


def message(extra_headers: str = "", body: bytes = b"hello\n", content_type: str = "") -> bytes:
    ctype = f"Content-Type: {content_type}\n" if content_type else ""
    return HEAD + extra_headers.encode("ascii") + ctype.encode("ascii") + b"\n" + body


# --- parse_message -------------------------------------------------------------------------


def test_parse_message_refuses_a_message_over_the_limit_naming_both_sizes() -> None:
    raw = message(body=b"x" * 500)
    with pytest.raises(MalformedMessage) as caught:
        mime.parse_message(raw, max_bytes=400)
    assert str(caught.value) == f"message of {len(raw)} bytes exceeds limit 400"


def test_parse_message_accepts_a_message_at_the_limit() -> None:
    raw = message()
    assert mime.parse_message(raw, max_bytes=len(raw)).get_content_type() == "text/plain"


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Subject: GGUS-Ticket-ID: #40637 plain\n", "GGUS-Ticket-ID: #40637 plain"),
        (
            'Subject: GGUS-Ticket-ID: #40701 TEAM ticket for "X" "SRM at\n X not responding"\n',
            'GGUS-Ticket-ID: #40701 TEAM ticket for "X" "SRM at X not responding"',
        ),
        (
            "Subject: =?UTF-8?B?R0dVUy1UaWNrZXQtSUQ6ICM0MDcxMiBTw7xk?=\n",
            "GGUS-Ticket-ID: #40712 Süd",
        ),
        (
            "Subject: =?ISO-8859-1?Q?GGUS-Ticket-ID:_#40755_h=E4lt?=\n =?ISO-8859-1?Q?_alle?=\n",
            "GGUS-Ticket-ID: #40755 hält alle",
        ),
        ("", ""),
    ],
    ids=["plain", "folded", "rfc2047 B", "rfc2047 Q folded", "missing"],
)
def test_decoded_subject(header: str, expected: str) -> None:
    assert mime.decoded_subject(mime.parse_message(message(header))) == expected


def test_decoded_subject_is_nfc_normalised() -> None:
    encoded = base64.b64encode("Caf\u0065\u0301".encode()).decode()
    msg = mime.parse_message(message(f"Subject: =?UTF-8?B?{encoded}?=\n"))
    assert mime.decoded_subject(msg) == "Café"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Message-ID: <abc.1@ggus.example.org>\n", "<abc.1@ggus.example.org>"),
        ("Message-ID:   <abc.1@ggus.example.org>  \n", "<abc.1@ggus.example.org>"),
        ("Message-ID:\n <abc.1@ggus.example.org>\n", "<abc.1@ggus.example.org>"),
        ("Message-ID: abc.1@ggus.example.org\n", "<abc.1@ggus.example.org>"),
    ],
    ids=["plain", "padded", "folded", "no angle brackets"],
)
def test_message_id_is_normalised(header: str, expected: str) -> None:
    raw = message(header)
    assert mime.message_id(mime.parse_message(raw), raw) == expected


def test_a_missing_message_id_is_synthesised_stably_from_the_bytes() -> None:
    raw = message("Subject: no id\n")
    other = message("Subject: no id either\n")
    first = mime.message_id(mime.parse_message(raw), raw)
    assert re.fullmatch(r"<sha256-[0-9a-f]{64}@ticketbridge\.invalid>", first)
    assert mime.message_id(mime.parse_message(raw), raw) == first
    assert mime.message_id(mime.parse_message(other), other) != first


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Date: Mon, 02 Mar 2026 09:00:00 +0000\n", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("Date: Mon, 02 Mar 2026 10:30:00 +0130\n", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("Date: Mon, 02 Mar 2026 09:00:00 -0000\n", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("Date: yesterday at noon\n", None),
        ("", None),
    ],
    ids=["utc", "offset", "unknown zone", "garbage", "missing"],
)
def test_message_date_is_aware_utc_or_none(header: str, expected: datetime | None) -> None:
    value = mime.message_date(mime.parse_message(message(header)))
    assert value == expected
    if value is not None:
        assert value.utcoffset() is not None
        assert value.tzinfo is UTC


# --- parts as text -------------------------------------------------------------------------

TEXT = "Grüße - 5 € <Ticket>\nzweite Zeile"


@pytest.mark.parametrize(
    ("charset", "cte"),
    [
        ("utf-8", "quoted-printable"),
        ("utf-8", "base64"),
        ("iso-8859-15", "quoted-printable"),
        ("windows-1252", "base64"),
        ("utf-16", "base64"),
        ("utf-8", "8bit"),
    ],
)
def test_text_parts_are_decoded_with_any_charset_and_transfer_encoding(
    charset: str, cte: str
) -> None:
    data = TEXT.encode(charset)
    body = {
        "quoted-printable": quopri.encodestring(data),
        "base64": base64.encodebytes(data),
        "8bit": data,
    }[cte]
    raw = message(
        f"Content-Transfer-Encoding: {cte}\n",
        body,
        content_type=f'text/plain; charset="{charset}"',
    )
    [part] = list(mime.iter_texts(mime.parse_message(raw)))
    assert part.text.rstrip("\n") == TEXT
    assert part.content_type == "text/plain"
    assert not part.lossy


def test_an_unknown_charset_names_the_charset() -> None:
    raw = message(body=b"<Ticket/>", content_type='text/plain; charset="x-klingon"')
    with pytest.raises(MalformedMessage) as caught:
        list(mime.iter_texts(mime.parse_message(raw)))
    assert "unknown charset 'x-klingon'" in str(caught.value)


def test_crlf_becomes_lf_and_undecodable_bytes_are_flagged() -> None:
    raw = message(body=b"a\r\nb \xff\r\n", content_type='text/plain; charset="utf-8"')
    [part] = list(mime.iter_texts(mime.parse_message(raw)))
    assert part.text == "a\nb \ufffd\n"
    assert part.lossy


@pytest.mark.parametrize(
    ("data", "expected_codec"),
    [
        ("<Ticket>é</Ticket>".encode("utf-16"), "utf-16"),
        (
            '<?xml version="1.0" encoding="ISO-8859-1"?><Ticket>é</Ticket>'.encode("latin-1"),
            "iso8859-1",
        ),
        ("<Ticket>é</Ticket>".encode(), "utf-8"),
        ("<Ticket>é</Ticket>".encode("cp1252"), "windows-1252"),
    ],
    ids=["bom", "xml declaration", "utf-8", "fallback"],
)
def test_attachments_without_charset_are_sniffed(data: bytes, expected_codec: str) -> None:
    raw = message(
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="ticket.xml"\n',
        base64.encodebytes(data),
        content_type="application/octet-stream",
    )
    [part] = list(mime.iter_texts(mime.parse_message(raw)))
    assert part.text.endswith("<Ticket>é</Ticket>")
    assert part.is_attachment
    assert part.filename == "ticket.xml"
    assert part.charset == expected_codec


def test_nested_multiparts_are_walked_in_document_order() -> None:
    body = (
        b"--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
        b"--inner\nContent-Type: text/plain\n\nplain\n"
        b"--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n"
        b"--outer\nContent-Type: text/xml\n\n<Ticket/>\n--outer--\n"
    )
    raw = message(body=body, content_type='multipart/mixed; boundary="outer"')
    parts = list(mime.iter_texts(mime.parse_message(raw)))
    assert [(p.content_type, p.text.strip()) for p in parts] == [
        ("text/plain", "plain"),
        ("text/html", "<p>html</p>"),
        ("text/xml", "<Ticket/>"),
    ]


def test_a_multipart_without_boundary_yields_no_parts() -> None:
    raw = message(
        body=b"--x\nContent-Type: text/plain\n\n<Ticket/>\n--x--\n", content_type="multipart/mixed"
    )
    msg = mime.parse_message(raw)
    assert list(mime.leaf_parts(msg)) == []
    assert msg.defects


# --- auto-replies and bounces --------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "content_type", "words"),
    [
        ("Auto-Submitted: auto-replied\n", "", "auto-reply: Auto-Submitted: auto-replied"),
        ("Auto-Submitted: auto-generated\n", "", "auto-reply: Auto-Submitted: auto-generated"),
        ("X-Autoreply: yes\n", "", "auto-reply: X-Autoreply: yes"),
        ("X-Autorespond: vacation\n", "", "auto-reply: X-Autorespond: vacation"),
        ("Precedence: bulk\n", "", "auto-reply: Precedence: bulk"),
        ("Precedence: junk\n", "", "auto-reply: Precedence: junk"),
        ("Precedence: auto_reply\n", "", "auto-reply: Precedence: auto_reply"),
        (
            "",
            'multipart/report; report-type=delivery-status; boundary="b"',
            "bounce: multipart/report (report-type=delivery-status)",
        ),
        ("Return-Path: <>\n", "", "bounce: empty Return-Path <>"),
        ("Subject: Out of Office: GGUS-Ticket-ID: #1\n", "", "out-of-office: Subject: Out of"),
        ("Subject: Automatic reply: GGUS-Ticket-ID: #1\n", "", "out-of-office"),
        ("Subject: Abwesenheitsnotiz: GGUS-Ticket-ID: #1\n", "", "out-of-office"),
        ("Subject: Auto: GGUS-Ticket-ID: #1 x\n", "", "out-of-office"),
        ("Subject: AutoReply: GGUS-Ticket-ID: #1 x\n", "", "out-of-office"),
    ],
)
def test_auto_reply_reason_names_the_evidence(headers: str, content_type: str, words: str) -> None:
    body = b"--b\nContent-Type: text/plain\n\nx\n--b--\n" if content_type else b"x\n"
    msg = mime.parse_message(message(headers, body, content_type=content_type))
    reason = mime.auto_reply_reason(msg)
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.example.org", "postmaster@example.org"])
def test_bounce_senders_are_recognised(sender: str) -> None:
    raw = f"From: Mail Delivery System <{sender}>\nSubject: Undelivered\n\nx\n".encode()
    assert mime.auto_reply_reason(mime.parse_message(raw)) == f"bounce: sender {sender}"


@pytest.mark.parametrize(
    "headers",
    [
        "Subject: GGUS-Ticket-ID: #40637 UPDATE CE at UCSD rejects CMS pilots\n",
        "Auto-Submitted: no\nSubject: GGUS-Ticket-ID: #1 x\n",
        "Precedence: list\n",
        "Subject: GGUS-Ticket-ID: #1 Out of office hours downtime at UCSD\n",
        "Return-Path: <helpdesk@ggus.example.org>\n",
    ],
    ids=["notification", "auto-submitted no", "list", "ooo words in a title", "return path"],
)
def test_ordinary_mails_are_not_auto_replies(headers: str) -> None:
    assert mime.auto_reply_reason(mime.parse_message(message(headers))) is None


# --- the memoising policy and header-only parsing -----------------------------------------

_TRICKY = (
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\n"
    b"To: a@example.org,\n b@example.org\n"
    b"Subject: =?utf-8?b?w5xiZXIgZGVu?= =?iso-8859-1?q?_Tr=E4ger?= GGUS-Ticket-ID: #1\n"
    b"Message-ID: <  x@y >\n"
    b"Date: Mon, 2 Mar 2026 09:00:00 +0100\n"
    b"Content-Type: text/plain; charset*=utf-8''utf-8; name=\"a b.xml\"\n"
    b"Content-Disposition: attachment; filename*=utf-8''%C3%A4.xml\n"
    b"\n"
    b"body\n"
)


def test_memoised_headers_are_those_of_the_default_policy() -> None:
    from email import policy
    from email.parser import BytesParser

    plain = BytesParser(policy=policy.default).parsebytes(_TRICKY)
    for _ in range(2):  # the second round is served from the cache
        memo = mime.parse_message(_TRICKY)
        for name in ("From", "To", "Subject", "Message-ID", "Date", "Content-Type"):
            mine, theirs = memo[name], plain[name]
            # Header classes are made per policy instance: compare what they are made of.
            assert [c.__name__ for c in type(mine).__mro__] == [
                c.__name__ for c in type(theirs).__mro__
            ]
            assert (str(mine), repr(mine.defects)) == (str(theirs), repr(theirs.defects))
        assert memo.get_params() == plain.get_params()
        assert memo.get_filename() == plain.get_filename() == "ä.xml"
        assert mime.decoded_subject(memo) == mime.decoded_subject(plain)


def test_a_mail_built_with_the_memoising_policy_is_the_default_policys() -> None:
    from email import policy
    from email.message import EmailMessage

    def build(chosen: policy.EmailPolicy) -> bytes:
        msg = EmailMessage(policy=chosen.clone(max_line_length=998))
        msg["From"] = "Footprints <fp@example.org>"
        msg["To"] = "a@example.org, b@example.org"
        msg["Subject"] = "Jörg's ticket ISSUE=1 PROJ=71"
        msg["Message-ID"] = "<1@example.org>"
        msg.set_content("Grüße\n")
        return msg.as_bytes()

    assert build(mime.POLICY) == build(mime.POLICY) == build(policy.default)


def test_parse_headers_reads_the_same_headers_without_the_body() -> None:
    full = mime.parse_message(_TRICKY)
    head = mime.parse_headers(_TRICKY)
    assert head.items() == full.items()
    assert mime.message_id(head, _TRICKY) == mime.message_id(full, _TRICKY) == "<x@y>"
    with pytest.raises(MalformedMessage):
        mime.parse_headers(_TRICKY, max_bytes=10)
