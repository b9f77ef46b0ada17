"""The Footprints email interface codec: field names, mails out, submissions in."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketbridge.codecs.footprints_mail import (
    INTERNAL_DESCRIPTION,
    KNOWN_FIELDS,
    MailAttachment,
    attachment_name,
    canonical_label,
    content_type,
    decode_field_name,
    decode_submission,
    encode_create,
    encode_field_name,
    encode_update,
    parse_notification_subject,
)
from ticketbridge.model import Attachment, Comment, CreateTicket, UpdateTicket, Visibility

WHEN = datetime(2013, 5, 2, 10, 0, 0, tzinfo=UTC)


def _wire(msg: EmailMessage) -> EmailMessage:
    """The mail as the receiving side parses it from bytes."""
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _create(**kw: object) -> CreateTicket:
    base: dict[str, object] = {
        "helpdesk": "goc",
        "correlation_key": "40637",
        "title": "CE down at MWT2",
        "description": "The CE refuses jobs.",
    }
    base.update(kw)
    return CreateTicket(**base)  # type: ignore[arg-type]


def _encode(op: CreateTicket) -> EmailMessage:
    return encode_create(
        op,
        to="fp-incoming@goc.example.org",
        sender="ggus@ggus.example.org",
        message_id="<m1@ggus.example.org>",
        date=WHEN,
    )


# --- field names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "column"),
    [
        ("Originating Ticket Number", "Originating__bTicket__bNumber"),
        ("Ticket-Type", "Ticket__uType"),
        ("ENG Next Action Date/Time (UTC)", "ENG__bNext__bAction__bDate__fTime__b__PUTC__p"),
        ("Ready to Close?", "Ready__bto__bClose__Q"),
        ("Email address", "Email__baddress"),
    ],
)
def test_field_names_encode_as_footprints_columns_and_back(label: str, column: str) -> None:
    assert encode_field_name(label) == column
    assert decode_field_name(column) == label


def test_labels_are_recognised_in_any_case_and_in_column_form() -> None:
    assert canonical_label("originating ticket NUMBER") == "Originating Ticket Number"
    assert canonical_label("Ticket__uType") is None  # the label is "Ticket Type", not "-"
    assert canonical_label("Ticket__bType") == "Ticket Type"
    assert canonical_label("STATUS") == "status"
    assert canonical_label("problem type") is None


# --- encoding --------------------------------------------------------------------------


def test_create_mail_has_title_subject_text_then_field_lines() -> None:
    op = _create(
        fields={"status": "Engineering", "priority": "3"},
        comments=(Comment("c1", "Still failing.", "Jane Doe", WHEN),),
    )
    msg = _wire(_encode(op))
    assert msg["Subject"] == "CE down at MWT2"
    assert msg["To"] == "fp-incoming@goc.example.org"
    assert msg["Message-ID"] == "<m1@ggus.example.org>"
    assert msg.get_content() == (
        "Still failing.\n"
        " -- by Jane Doe at 2013-05-02 10:00:00 UTC\n"
        "\n"
        "The CE refuses jobs.\n"
        "\n"
        "status=Engineering\n"
        "priority=3\n"
        "Originating Ticket Number=40637\n"
    )


def test_create_without_title_is_untitled_and_title_newlines_are_flattened() -> None:
    assert _encode(_create(title=""))["Subject"] == "(Untitled Ticket)"
    assert _encode(_create(title="two\nlines"))["Subject"] == "two lines"


def test_long_non_ascii_title_keeps_its_spaces() -> None:
    title = "Internal Description000000¡¡¡¡¡\U00010000000 ¡ Grüße aus Karlsruhe " * 2
    op = _create(title=title.strip())
    assert decode_submission(_wire(_encode(op))).title == title.strip()


def test_correlation_key_is_not_repeated_when_fields_carry_it() -> None:
    op = _create(fields={"Originating__bTicket__bNumber": "40637"})
    body = _encode(op).get_content()
    assert body.count("40637") == 1


def test_internal_comments_never_reach_the_public_text() -> None:
    op = _create(
        comments=(
            Comment("p", "public words", "Jane"),
            Comment("i", "secret words", "Bob", visibility=Visibility.INTERNAL),
        )
    )
    sub = decode_submission(_wire(_encode(op)))
    assert "secret" not in sub.text
    assert "public words" in sub.text
    assert sub.fields[INTERNAL_DESCRIPTION] == "secret words\n -- by Bob"


def test_update_subject_names_issue_and_project() -> None:
    op = UpdateTicket("goc", "7932", fields={"status": "Closed"})
    msg = encode_update(
        op,
        project=71,
        title="SRM timeouts",
        to="fp@x.org",
        sender="a@x.org",
        message_id="<u@x.org>",
        date=WHEN,
    )
    assert msg["Subject"] == "Re: SRM timeouts ISSUE=7932 PROJ=71"
    assert msg.get_content() == "status=Closed\n"
    with pytest.raises(ValueError, match="numeric"):
        encode_update(
            UpdateTicket("goc", "abc"),
            project=71,
            title="t",
            to="a@b",
            sender="c@d",
            message_id="<x@y>",
            date=WHEN,
        )


def test_multi_line_values_use_the_end_form() -> None:
    op = _create(fields={"ENG Next Action Item": "line one\nline two"})
    body = _encode(op).get_content()
    assert "ENG Next Action Item=line one\nline two\nEND ENG Next Action Item\n" in body
    assert decode_submission(_wire(_encode(op))).fields["ENG Next Action Item"] == (
        "line one\nline two"
    )


def test_text_that_looks_like_a_field_line_is_defused_not_applied() -> None:
    op = _create(description="Please set\nstatus=Closed\nEND status\nthanks")
    sub = decode_submission(_wire(_encode(op)))
    assert "status" not in sub.fields
    assert sub.text.endswith("Please set\n status=Closed\n END status\nthanks")


# --- decoding --------------------------------------------------------------------------


def _parse(subject: str, body: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.get("sender", "Jane Doe <jane@example.org>")
    msg["To"] = "fp-incoming@goc.example.org"
    if "cc" in headers:
        msg["Cc"] = headers["cc"]
    msg["Subject"] = subject
    msg["Message-ID"] = "<abc@example.org>"
    msg.set_content(body)
    return _wire(msg)


def test_decodes_the_spec_update_example() -> None:
    body = (
        "[GGUS update 2009-01-12 15:00 by Jane Doe]\n"
        "Public diary: transfers recovered after restart.\n"
        "status=Engineering\n"
        "priority=4\n"
        "Originating Ticket Number=40637\n"
    )
    sub = decode_submission(_parse("Re: SRM timeouts at BNL_ATLAS_1 ISSUE=7932 PROJ=71", body))
    assert (sub.issue, sub.project) == (7932, 71)
    assert sub.title == "SRM timeouts at BNL_ATLAS_1"
    assert sub.fields == {
        "status": "Engineering",
        "priority": "4",
        "Originating Ticket Number": "40637",
    }
    assert sub.text == (
        "[GGUS update 2009-01-12 15:00 by Jane Doe]\n"
        "Public diary: transfers recovered after restart."
    )
    assert sub.sender == "jane@example.org"
    assert sub.sender_name == "Jane Doe"
    assert sub.message_id == "<abc@example.org>"


def test_labels_are_case_insensitive_and_unknown_fields_stay_in_the_text() -> None:
    sub = decode_submission(
        _parse(
            "New problem", "Hello\nSTATUS=Customer\nproblem type=software\nticket type=Security\n"
        )
    )
    assert sub.fields == {"status": "Customer", "Ticket Type": "Security"}
    assert sub.text == "Hello\nproblem type=software"
    assert sub.issue is None and sub.project is None


def test_trailing_backslash_continuation_of_older_versions() -> None:
    sub = decode_submission(_parse("x", "ENG Next Action Item=first \\\nsecond\\\nthird\nafter"))
    assert sub.fields["ENG Next Action Item"] == "first \nsecond\nthird"
    assert sub.text == "after"


def test_ccs_and_encoded_subject_are_read() -> None:
    sub = decode_submission(
        _parse("=?utf-8?q?Caf=C3=A9_down?=", "x", cc="a@example.org, B <b@example.org>")
    )
    assert sub.title == "Café down"
    assert sub.cc == ("a@example.org", "b@example.org")


def test_conflicting_repeated_field_is_a_problem() -> None:
    sub = decode_submission(_parse("x", "status=Closed\nstatus=Customer\n"))
    assert sub.problems and "twice" in sub.problems[0]


def test_mail_without_text_part_has_empty_body() -> None:
    msg = EmailMessage()
    msg["Subject"] = "html only"
    msg.set_content("<p>hi</p>", subtype="html")
    sub = decode_submission(_wire(msg))
    assert sub.text == "" and sub.fields == {}


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("CE down ISSUE=49 PROJ=114", ("49", 114)),
        ("ISSUE=12345 PROJ=71", ("12345", 71)),
        ("Re: x ISSUE=7  PROJ=71 more", ("7", 71)),
        ("=?utf-8?q?Caf=C3=A9?= ISSUE=3 PROJ=71", ("3", 71)),
        ("NOTIFICATION of GGUS-Ticket-ID: #40637", None),
        ("ISSUE=abc PROJ=71", None),
    ],
)
def test_notification_subject(subject: str, expected: tuple[str, int] | None) -> None:
    assert parse_notification_subject(subject) == expected


# --- round trip ------------------------------------------------------------------------

# Free text mixed with the pieces of field syntax, so that text looking like a field line,
# an END line or a continuation backslash is generated often.
_text = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
    | st.sampled_from(
        [
            "\n",
            "=",
            "\\",
            "END ",
            "status",
            "Internal Description",
            " ",
            "priority=1",
            "\nEND status",
        ]
    ),
    max_size=20,
).map("".join)
_labels = st.sampled_from([k for k in KNOWN_FIELDS if k != INTERNAL_DESCRIPTION])


def _lines(text: str) -> list[str]:
    """Text as the round trip keeps it: defused lines lose their one leading space."""
    return [line.strip() for line in text.strip().split("\n") if line.strip()]


@settings(max_examples=150, deadline=None)
@given(
    title=_text,
    description=_text,
    fields=st.dictionaries(_labels, _text, max_size=6),
    comments=st.lists(st.tuples(_text, st.booleans()), max_size=3),
)
def test_round_trip_create_to_submission(
    title: str, description: str, fields: dict[str, str], comments: list[tuple[str, bool]]
) -> None:
    op = CreateTicket(
        helpdesk="goc",
        correlation_key="40637",
        title=title,
        description=description,
        fields=fields,
        comments=tuple(
            Comment(
                f"c{i}",
                body,
                "Jane",
                visibility=Visibility.INTERNAL if internal else Visibility.PUBLIC,
            )
            for i, (body, internal) in enumerate(comments)
        ),
    )
    sub = decode_submission(_wire(_encode(op)))

    assert sub.problems == ()
    assert sub.title == (" ".join(title.split()) or "(Untitled Ticket)")
    expected = {k: v for k, v in fields.items()}
    expected.setdefault("Originating Ticket Number", "40637")
    for label, value in expected.items():
        assert _lines(sub.fields[label]) == _lines(value), label
    public = [body for body, internal in comments if not internal]
    internal_bodies = [body for body, internal in comments if internal]
    text_lines = _lines(sub.text)
    for chunk in [*public, description]:
        for line in _lines(chunk):
            assert line in text_lines
    if internal_bodies:
        internal_lines = _lines(sub.fields[INTERNAL_DESCRIPTION])
        for body in internal_bodies:
            for line in _lines(body):
                assert line in internal_lines
    assert set(sub.fields) == set(expected) | ({INTERNAL_DESCRIPTION} if internal_bodies else set())


# --- attachments -----------------------------------------------------------------------

_CONTENT_TYPES = st.sampled_from(
    ["text/plain", "application/octet-stream", "application/pdf", "image/png", "text/x-log"])


@settings(max_examples=200, deadline=None)
@given(
    files=st.lists(
        st.tuples(st.text(max_size=120), st.binary(max_size=400), _CONTENT_TYPES), max_size=3
    ),
    comment=_text,
)
def test_round_trip_update_with_attachments(
    files: list[tuple[str, bytes, str]], comment: str
) -> None:
    op = UpdateTicket("goc", "12", comments=(Comment("c1", comment),) if comment else ())
    msg = encode_update(
        op, project=71, title="CE down", to="fp-incoming@goc.example.org",
        sender="ggus@ggus.example.org", message_id="<m2@ggus.example.org>", date=WHEN,
        attachments=[Attachment(f"a{i}", n, d, t) for i, (n, d, t) in enumerate(files)],
    )
    raw = msg.as_bytes()
    assert max(len(line) for line in raw.split(b"\n")) <= 998  # SMTP's line limit
    sub = decode_submission(_wire(msg))
    assert (sub.issue, sub.project) == (12, 71)
    assert sub.attachments == tuple(
        MailAttachment(attachment_name(n), t, d) for n, d, t in files)
    assert _lines(sub.text) == _lines(comment)


@settings(max_examples=100, deadline=None)
@given(files=st.lists(st.tuples(st.text(max_size=60), st.binary(max_size=200)), max_size=2))
def test_round_trip_create_with_attachments(files: list[tuple[str, bytes]]) -> None:
    msg = encode_create(
        _create(), to="fp-incoming@goc.example.org", sender="ggus@ggus.example.org",
        message_id="<m1@ggus.example.org>", date=WHEN,
        attachments=[Attachment(f"a{i}", n, d) for i, (n, d) in enumerate(files)],
    )
    sub = decode_submission(_wire(msg))
    assert sub.issue is None and sub.text == "The CE refuses jobs."
    assert sub.fields["Originating Ticket Number"] == "40637"
    assert sub.attachments == tuple(
        MailAttachment(attachment_name(n), "application/octet-stream", d) for n, d in files)


def test_an_attachment_alone_is_an_update_mail_with_empty_text() -> None:
    msg = encode_update(
        UpdateTicket("goc", "7"), project=71, title="", to="fp@x.org", sender="tb@x.org",
        message_id="<a@x.org>", date=WHEN,
        attachments=[Attachment("k", "log.txt", b"hello", "text/plain")])
    assert "ISSUE=7 PROJ=71" in msg["Subject"]
    assert msg.get_content_type() == "multipart/mixed"
    body, part = msg.iter_parts()
    assert body.get_content().strip() == ""
    assert part.get_content_disposition() == "attachment"
    assert part["Content-Transfer-Encoding"] == "base64"
    sub = decode_submission(_wire(msg))
    assert (sub.text, sub.fields) == ("", {})
    assert sub.attachments == (MailAttachment("log.txt", "text/plain", b"hello"),)


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("report.txt\n", "report.txt"),
        ("  report.txt \r\n\n", "report.txt"),
        ("C:\\logs\\gatekeeper.log", "C:_logs_gatekeeper.log"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("tab\there", "tab_here"),
        ("nul\x00byte", "nul_byte"),
        ("\n \t", "attachment"),
        ("", "attachment"),
        ("Ergebnis März.pdf", "Ergebnis März.pdf"),
    ],
)
def test_attachment_names_are_cleaned(name: str, cleaned: str) -> None:
    assert attachment_name(name) == cleaned


@settings(max_examples=300)
@given(st.text())
def test_attachment_name_is_idempotent_and_safe(name: str) -> None:
    once = attachment_name(name)
    assert attachment_name(once) == once
    assert once and once == once.strip()
    assert "/" not in once and "\\" not in once
    assert not any(ord(ch) < 32 or ch in "\x7f\ufffe\uffff" for ch in once)


@pytest.mark.parametrize(
    ("given_type", "expected"),
    [("text/plain", "text/plain"), ("Text/PLAIN; charset=utf-8", "text/plain"),
     ("image/svg+xml", "image/svg+xml"), ("", "application/octet-stream"),
     ("nonsense", "application/octet-stream"), ("a/b/c", "application/octet-stream")],
)
def test_content_types_are_normalised(given_type: str, expected: str) -> None:
    assert content_type(given_type) == expected


def test_a_message_type_travels_as_plain_data_so_the_bytes_arrive_exactly() -> None:
    data = b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n"
    msg = encode_update(
        UpdateTicket("goc", "7"), project=71, title="t", to="fp@x.org", sender="tb@x.org",
        message_id="<a@x.org>", date=WHEN,
        attachments=[Attachment("k", "fwd.eml", data, "message/rfc822")])
    (got,) = decode_submission(_wire(msg)).attachments
    assert (got.name, got.data, got.content_type) == (
        "fwd.eml", data, "application/octet-stream")


def test_decoding_mails_from_other_mailers() -> None:
    # A named inline text part is a file, not the body; an attached mail is one file.
    raw = (
        b"From: a@b.org\r\nSubject: Re: x ISSUE=3 PROJ=71\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: multipart/alternative; boundary=\"C\"\r\n\r\n"
        b"--C\r\nContent-Type: text/plain\r\n\r\nthe text\r\n"
        b"--C\r\nContent-Type: text/html\r\n\r\n<p>the text</p>\r\n--C--\r\n"
        b"--B\r\nContent-Type: text/plain; name=notes.txt\r\n"
        b"Content-Disposition: inline; filename=notes.txt\r\n\r\nnotes\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: c@d.org\r\nSubject: inner\r\n\r\ninner body\r\n"
        b"--B--\r\n"
    )
    sub = decode_submission(email.message_from_bytes(raw, policy=email.policy.default))
    assert sub.text == "the text"
    notes, inner = sub.attachments
    assert notes == MailAttachment("notes.txt", "text/plain", b"notes")
    assert (inner.name, inner.content_type) == ("message.eml", "message/rfc822")
    assert b"inner body" in inner.data
