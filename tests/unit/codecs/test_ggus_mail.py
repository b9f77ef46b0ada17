"""The GGUS gen-1 mail codec: subjects, finding the XML, quirks, validation, the exact
mapping into Ticket, encode/decode round trips, and the mail corpus."""

from __future__ import annotations

import base64
import quopri
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.ggus import make_corpus
from tests.fixtures.ggus.corpus import HERE as CORPUS_DIR
from tests.fixtures.ggus.corpus import load_corpus
from ticketbridge.codecs import ggus_mail, mime
from ticketbridge.codecs.ggus_mail import (
    GGUS_PRIORITIES,
    GGUS_STATUSES,
    MAIL_XML_ELEMENTS,
    decode,
    encode,
    ggus_id_from_subject,
    normalise_value,
    trigger_key,
)
from ticketbridge.errors import BadInput, InvalidValue, MalformedMessage, UnsafeXML
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility, text_digest

MAIL_DATE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

BASE: dict[str, str] = {
    "GHD_Request-ID": "40637",
    "GHD_Loginname": "/DC=ch/DC=example/OU=Users/CN=Maria Rossi 555",
    "GHD_Name": "Maria Rossi",
    "GHD_E-Mail": "maria.rossi@example.org",
    "GHD_Phone": "+49 721 000",
    "GHD_Experiment": "cms",
    "GHD_Responsible_Unit": "OSG",
    "GHD_Status": "in progress",
    "GHD_Priority": "less urgent",
    "GHD_Short_Description": "CE at UCSD rejects CMS pilots",
    "GHD_Description": "Line one.\nLine two.",
    "GHD_Experiment_Specific_Problem": "No",
    "GHD_Type_Of_Problem": "Workload Management",
    "GHD_Date_Time_Of_Problem": "2026-03-02 08:00:00",
    "GHD_Last_Modifier": "TPM Shifter",
    "GHD_Affected_Site": "UCSDT2",
}


def xml_of(elements: list[tuple[str, str]], *, prolog: bool = True, raw: bool = False) -> str:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if prolog else ""
    body = "".join(f"  <{n}>{v if raw else escape(v)}</{n}>\n" for n, v in elements)
    return f"{head}<Ticket>\n{body}</Ticket>\n"


def elements(**changes: str | None) -> list[tuple[str, str]]:
    """BASE with changes (``GHD_`` implied; None removes the element)."""
    values: dict[str, str | None] = dict(BASE)
    for key, value in changes.items():
        values["GHD_" + key.replace("__", "-")] = value
    return [(n, v) for n, v in values.items() if v is not None]


def mail(
    body: str | bytes,
    *,
    subject: str = "GGUS-Ticket-ID: #40637 UPDATE CE at UCSD rejects CMS pilots",
    content_type: str = 'text/plain; charset="utf-8"',
    cte: str = "quoted-printable",
    headers: str = "",
) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    encoded = {
        "quoted-printable": quopri.encodestring(data),
        "base64": base64.encodebytes(data),
        "8bit": data,
        "7bit": data,
    }[cte]
    head = (
        "From: helpdesk@ggus.example.org\nTo: osg-tx@goc.example.org\n"
        f"Subject: {subject}\nDate: Mon, 02 Mar 2026 10:00:00 +0000\n"
        "Message-ID: <t1@ggus.example.org>\nMIME-Version: 1.0\n"
        f"{headers}Content-Type: {content_type}\nContent-Transfer-Encoding: {cte}\n\n"
    )
    return head.encode("ascii") + encoded


def decoded(**changes: str | None) -> ggus_mail.GgusMail:
    return decode(mail(xml_of(elements(**changes))))


# --- subjects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (" NOTIFICATION of GGUS-Ticket-ID: #40637    Test Ticket", "40637"),
        ("GGUS-Ticket-ID: #40637 SUBMITTED CE failure", "40637"),
        ("GGUS-Ticket-ID: #40637 UPDATE for TPM", "40637"),
        ('GGUS-Ticket-ID: #40701 TEAM ticket for site "BNL_ATLAS_1" "SRM down"', "40701"),
        ('GGUS-Ticket-ID: #40701 Ticket for site "BNL" "atlas" "SRM #2 down"', "40701"),
        ("GGUS-Ticket-ID: #40701 TEAM TICKET SUBMITTED - SRM down", "40701"),
        ("Re: [#12] GGUS-Ticket-ID: #40637 x", "40637"),
        ("ggus-ticket-id:#40637", "40637"),
        ("GGUS-Ticket-ID: # 40637", "40637"),
        ("GGUS-Ticket-ID: #00040637 new numbering", "40637"),
        ("Ticket #41002 updated", "41002"),
        ("  41002  ", "41002"),
        ("No id here", None),
        ("GGUS-Ticket-ID: #abc", None),
        ("", None),
    ],
)
def test_ggus_id_from_subject(subject: str, expected: str | None) -> None:
    assert ggus_id_from_subject(subject) == expected


def test_trigger_key_reads_an_encoded_folded_subject_from_the_header_block_only() -> None:
    raw = (
        b"Subject: =?UTF-8?B?R0dVUy1UaWNrZXQtSUQ6ICM0MDcxMiBTw7xk?=\n =?UTF-8?Q?_x?=\n\n"
        b"Subject: GGUS-Ticket-ID: #99999 in the body\n"
    )
    assert trigger_key(raw) == "40712"


@given(st.binary(max_size=2000))
def test_trigger_key_never_raises(raw: bytes) -> None:
    result = trigger_key(raw)
    assert result is None or result.isdigit()


# --- exact mapping of a shared fixture ----------------------------------------------------


def test_decode_maps_the_shared_update_fixture_exactly() -> None:
    raw = (CORPUS_DIR / "ggus-40637-update.eml").read_bytes()
    result = decode(raw)
    date = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    diary = "Pilots are rejected with 'gridmap lookup failed'. Checking the VOMS mapping."
    fields = {
        "GHD_Request-ID": "40637",
        "GHD_Loginname": "/DC=ch/DC=example/OU=Users/CN=Maria Rossi 555",
        "GHD_Name": "Maria Rossi",
        "GHD_E-Mail": "maria.rossi@example.org",
        "GHD_Phone": "+49 721 000",
        "GHD_Experiment": "cms",
        "GHD_Responsible_Unit": "OSG",
        "GHD_Status": "in progress",
        "GHD_Priority": "less urgent",
        "GHD_Short_Description": "CE at UCSD rejects CMS pilots",
        "GHD_Description": "Since 08:00 UTC all FTS transfers to the SE fail with SRM timeout.",
        "GHD_Experiment_Specific_Problem": "No",
        "GHD_Type_Of_Problem": "Workload Management",
        "GHD_Date_Time_Of_Problem": "2026-03-02 08:00:00",
        "GHD_Public_Diary": diary,
        "GHD_Last_Modifier": "TPM Shifter",
        "GHD_Affected_Site": "UCSDT2",
    }
    assert result.ticket == Ticket(
        ref=TicketRef("ggus", "40637"),
        title="CE at UCSD rejects CMS pilots",
        description="Since 08:00 UTC all FTS transfers to the SE fail with SRM timeout.",
        status="in progress",
        priority="less urgent",
        submitter=Contact(
            name="Maria Rossi",
            email="maria.rossi@example.org",
            phone="+49 721 000",
            login="/DC=ch/DC=example/OU=Users/CN=Maria Rossi 555",
        ),
        fields=fields,
        comments=(
            Comment(
                key=text_digest("public diary", diary),
                body=diary,
                author="TPM Shifter",
                created=date,
                visibility=Visibility.PUBLIC,
                kind="public diary",
            ),
        ),
        modified=date,
        created=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    )
    assert result.message_id == "<179585678485.27763.8421860713992118606@ggus.example.org>"
    assert result.subject == "GGUS-Ticket-ID: #40637 UPDATE CE at UCSD rejects CMS pilots"
    assert result.date == date
    assert result.warnings == ()


def test_helpdesk_name_goes_into_the_ref() -> None:
    assert decode(mail(xml_of(elements())), helpdesk="ggus-train").ticket.ref == TicketRef(
        "ggus-train", "40637"
    )


@pytest.mark.parametrize(
    ("element", "kind", "visibility"),
    [
        ("GHD_Public_Diary", "public diary", Visibility.PUBLIC),
        ("GHD_Diary_Of_Steps", "diary of steps", Visibility.PUBLIC),
        ("GHD_Internal_Diary", "internal diary", Visibility.INTERNAL),
        ("GHD_Detailed_Solution", "solution", Visibility.PUBLIC),
        ("GHD_Short_Solution", "short solution", Visibility.PUBLIC),
    ],
)
def test_each_diary_element_becomes_one_comment(
    element: str, kind: str, visibility: Visibility
) -> None:
    body = "First line.\n  indented second line."
    result = decode(mail(xml_of([*elements(), (element, body)])))
    assert result.ticket.comments == (
        Comment(
            key=text_digest(kind, body),
            body=body,
            author="TPM Shifter",
            created=MAIL_DATE,
            visibility=visibility,
            kind=kind,
        ),
    )


def test_empty_diaries_make_no_comments() -> None:
    extra = [(n, "") for n in ("GHD_Public_Diary", "GHD_Internal_Diary", "GHD_Diary_Of_Steps")]
    result = decode(mail(xml_of([*elements(), *extra])))
    assert result.ticket.comments == ()
    assert "GHD_Public_Diary" not in result.ticket.fields


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], MAIL_DATE),
        ([("GHD_Date_Of_Change", "2026-03-02 11:15:00")], datetime(2026, 3, 2, 11, 15, tzinfo=UTC)),
        (
            [("GHD_Modified_Date", "2026-03-02T12:15:00+01:00")],
            datetime(2026, 3, 2, 11, 15, tzinfo=UTC),
        ),
        ([("GHD_Date_Of_Change", "soon")], MAIL_DATE),
    ],
    ids=["mail date", "date of change", "modified date with offset", "unparseable"],
)
def test_modified_comes_from_the_xml_or_else_the_mail_date(
    extra: list[tuple[str, str]], expected: datetime
) -> None:
    assert decode(mail(xml_of([*elements(), *extra]))).ticket.modified == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2010-01-11 18:43", datetime(2010, 1, 11, 18, 43, tzinfo=UTC)),
        ("2010-01-11 18:43:07", datetime(2010, 1, 11, 18, 43, 7, tzinfo=UTC)),
        ("2010-01-11T18:43:07", datetime(2010, 1, 11, 18, 43, 7, tzinfo=UTC)),
        ("2010-01-11T18:43:07Z", datetime(2010, 1, 11, 18, 43, 7, tzinfo=UTC)),
        ("2010-01-11 18:43:07 UTC", datetime(2010, 1, 11, 18, 43, 7, tzinfo=UTC)),
        ("2010-01-11T19:43:07+01:00", datetime(2010, 1, 11, 18, 43, 7, tzinfo=UTC)),
        ("2010-01-11 18:43:07.250000", datetime(2010, 1, 11, 18, 43, 7, 250000, tzinfo=UTC)),
        ("2010-01-11\n18:43", datetime(2010, 1, 11, 18, 43, tzinfo=UTC)),
    ],
)
def test_date_precision_variants(value: str, expected: datetime) -> None:
    result = decoded(Date_Time_Of_Problem=value)
    assert result.ticket.created == expected
    assert result.warnings == ()


def test_an_unparseable_problem_date_is_dropped_with_a_warning() -> None:
    result = decoded(Date_Time_Of_Problem="last Tuesday")
    assert result.ticket.created is None
    assert result.ticket.fields["GHD_Date_Time_Of_Problem"] == "last Tuesday"
    assert result.warnings == (
        "GHD_Date_Time_Of_Problem 'last Tuesday' is not a timestamp; ignored",
    )


# --- quirks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        # DN: GGUS replaced a space with the break in its own sample (CN=Guenter<LF>Grein).
        (
            "GHD_Loginname",
            "/O=GermanGrid/OU=FZK/CN=Guenter\nGrein",
            "/O=GermanGrid/OU=FZK/CN=Guenter Grein",
        ),
        ("GHD_Loginname", "/DC=org/DC=exam\nple/CN=Jane Doe", "/DC=org/DC=example/CN=Jane Doe"),
        ("GHD_Loginname", "/DC=org/DC=example/\nCN=Jane Doe", "/DC=org/DC=example/CN=Jane Doe"),
        (
            "GHD_Loginname",
            "/DC=org/DC=example/CN=Jane Doe 12\n34",
            "/DC=org/DC=example/CN=Jane Doe 1234",
        ),
        ("GHD_Loginname", "/DC=org/CN=Jane\n  Doe", "/DC=org/CN=Jane Doe"),
        ("GHD_Loginname", "/DC=org/CN=host\n.example.org", "/DC=org/CN=host.example.org"),
        (
            "GHD_Loginname",
            "CN=Jane\nDoe,OU=People,DC=exa\nmple",
            "CN=Jane Doe,OU=People,DC=example",
        ),
        # E-mail addresses contain no whitespace: a bare break is inside the address.
        ("GHD_E-Mail", "jane.doe@exam\nple.org", "jane.doe@example.org"),
        ("GHD_EMail", "jane.doe@\nexample.org", "jane.doe@example.org"),
        ("GHD_CarbonCopy", "a@example.org;\nb@exa\nmple.org", "a@example.org;b@example.org"),
        ("GHD_CarbonCopy", "a@example.org; \nb@example.org", "a@example.org; b@example.org"),
        ("GHD_Request-ID", "406\n37", "40637"),
        # Free text: the break stood for a space.
        ("GHD_Short_Description", "CE at UCSD\nrejects pilots", "CE at UCSD rejects pilots"),
        ("GHD_Short_Description", "CE at UCSD \n\n  rejects", "CE at UCSD rejects"),
        ("GHD_Name", "Maria\nRossi", "Maria Rossi"),
        ("GHD_Affected_Site", "  UCSDT2 \n", "UCSDT2"),
        # Multi-line fields keep their breaks, lose only surrounding blank lines.
        ("GHD_Description", "\n\nline one\n  line two\n\n", "line one\n  line two"),
        ("GHD_Public_Diary", "a\r\nb\rc", "a\nb\nc"),
        # Clean-up applies everywhere.
        ("GHD_Name", "Jose\u0301 \x07Garci\u0301a", "José García"),
    ],
)
def test_normalise_value(name: str, raw: str, expected: str) -> None:
    assert normalise_value(name, raw) == expected
    assert normalise_value(name, expected) == expected


@pytest.mark.parametrize(
    ("field", "attribute", "raw", "expected"),
    [
        (
            "Loginname",
            "login",
            "/DC=org/DC=exam\nple/CN=Maria\nRossi 555",
            "/DC=org/DC=example/CN=Maria Rossi 555",
        ),
        ("E__Mail", "email", "maria.rossi@exam\nple.org", "maria.rossi@example.org"),
        ("Name", "name", "Maria\nRossi", "Maria Rossi"),
        ("Phone", "phone", "+49 721\n000", "+49 721 000"),
    ],
)
def test_hard_line_breaks_in_contact_values(
    field: str, attribute: str, raw: str, expected: str
) -> None:
    ticket = decoded(**{field: raw}).ticket
    assert getattr(ticket.submitter, attribute) == expected


def test_hard_line_breaks_in_title_and_id_are_collapsed_and_the_description_keeps_them() -> None:
    ticket = decoded(
        Short_Description="CE at UCSD\nrejects CMS pilots",
        Description="line one\nline two",
        **{"Request__ID": "406\n37"},
    ).ticket
    assert ticket.title == "CE at UCSD rejects CMS pilots"
    assert ticket.description == "line one\nline two"
    assert ticket.ref.id == "40637"


def test_duplicated_elements_first_wins_with_a_warning() -> None:
    result = decode(
        mail(xml_of([*elements(), ("GHD_Experiment", "atlas"), ("GHD_Affected_Site", "X")]))
    )
    assert result.ticket.fields["GHD_Experiment"] == "cms"
    assert result.ticket.fields["GHD_Affected_Site"] == "UCSDT2"
    assert result.warnings == (
        "duplicate element GHD_Experiment ignored",
        "duplicate element GHD_Affected_Site ignored",
    )


def test_an_empty_first_occurrence_is_absent_so_the_next_one_counts() -> None:
    result = decode(mail(xml_of([("GHD_Experiment", ""), *elements(Experiment="atlas")])))
    assert result.ticket.fields["GHD_Experiment"] == "atlas"
    assert result.warnings == ()


def test_empty_elements_are_treated_as_absent() -> None:
    ticket = decoded(Phone="", Short_Description="", Affected_Site="   ").ticket
    assert ticket.submitter.phone == ""
    assert ticket.title == ""
    assert "GHD_Phone" not in ticket.fields
    assert "GHD_Affected_Site" not in ticket.fields
    assert "GHD_Short_Description" not in ticket.fields


@pytest.mark.parametrize(
    ("spelling", "canonical", "value"),
    [
        ("GHD_EMail", "GHD_E-Mail", "maria.rossi@example.org"),
        ("GHD_E_Mail", "GHD_E-Mail", "maria.rossi@example.org"),
        ("GHD_Submitter_Mail", "GHD_E-Mail", "maria.rossi@example.org"),
        ("GHD_Affected_VO", "GHD_Experiment", "cms"),
        ("GHD_VO", "GHD_Experiment", "cms"),
        ("GHD_Request_ID", "GHD_Request-ID", "40637"),
        ("GHD_RequestID", "GHD_Request-ID", "40637"),
        ("GHD_VO_Specific", "GHD_Experiment_Specific_Problem", "No"),
    ],
)
def test_element_name_drift_keeps_both_names(spelling: str, canonical: str, value: str) -> None:
    rows = [(spelling if n == canonical else n, v) for n, v in elements()]
    result = decode(mail(xml_of(rows)))
    assert result.ticket.fields[spelling] == value
    assert result.ticket.fields[canonical] == value
    assert result.warnings == ()
    if canonical == "GHD_E-Mail":
        assert result.ticket.submitter.email == value


def test_two_spellings_with_different_values_keep_the_canonical_with_a_warning() -> None:
    result = decode(mail(xml_of([*elements(), ("GHD_Affected_VO", "atlas")])))
    assert result.ticket.fields["GHD_Experiment"] == "cms"
    assert result.ticket.fields["GHD_Affected_VO"] == "atlas"
    assert result.warnings == (
        "element GHD_Affected_VO conflicts with GHD_Experiment and is ignored",
    )


def test_control_characters_are_stripped_with_a_warning() -> None:
    xml = xml_of(
        elements(Description="bell\x07 escape\x1b[0m vt\x0b", Name="Maria&#1; Rossi"), raw=True
    )
    result = decode(mail(xml))
    assert result.ticket.description == "bell escape[0m vt"
    assert result.ticket.submitter.name == "Maria Rossi"
    assert result.warnings == ("4 control characters removed",)


def test_nonchar_and_lone_surrogate_are_stripped() -> None:
    body = xml_of(elements(Description="a\ufffeb\uffffc")).encode("utf-8")
    result = decode(mail(body, content_type='text/plain; charset="utf-8"', cte="base64"))
    assert result.ticket.description == "abc"
    assert result.warnings == ("2 control characters removed",)


def test_text_is_nfc_normalised_and_crlf_becomes_lf() -> None:
    xml = xml_of(elements(Description="Caf\u0065\u0301\nnext")).replace("\n", "\r\n")
    result = decode(mail(xml, cte="base64"))
    assert result.ticket.description == "Café\nnext"


# --- where the XML is ---------------------------------------------------------------------

XML = xml_of(elements())


def multipart(subtype: str, *parts: str, boundary: str = "b1") -> tuple[str, str]:
    body = "".join(f"--{boundary}\n{p}\n" for p in parts) + f"--{boundary}--\n"
    return body, f'multipart/{subtype}; boundary="{boundary}"'


def b64_part(content_type: str, text: str, *extra: str, charset: str = "utf-8") -> str:
    data = base64.encodebytes(text.encode(charset)).decode("ascii")
    head = "\n".join([f"Content-Type: {content_type}", "Content-Transfer-Encoding: base64", *extra])
    return f"{head}\n\n{data}"


HTML_ESCAPED = (
    "<html><body><p>Ticket updated</p><pre>"
    + XML.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")
    + "</pre></body></html>"
)


def _layouts() -> dict[str, tuple[str, str]]:
    alternative = multipart(
        "alternative",
        b64_part('text/plain; charset="utf-8"', "Ticket updated:\n" + XML + "\n-- GGUS"),
        b64_part('text/html; charset="utf-8"', HTML_ESCAPED),
        boundary="alt",
    )
    nested = multipart(
        "mixed",
        f"Content-Type: {alternative[1]}\n\n{alternative[0]}",
        b64_part("image/png", "not really a png"),
        boundary="outer",
    )
    return {
        "text before and after": ("Dear OSG,\n\n" + XML + "\nRegards, GGUS\n", "text/plain"),
        "no prolog": (XML.split("\n", 1)[1], "text/plain"),
        "escaped in text/html": (HTML_ESCAPED, "text/html"),
        "literal in text/html": ("<html><body><pre>" + XML + "</pre></body></html>", "text/html"),
        "multipart/alternative": alternative,
        "nested multiparts": nested,
        "application/xml attachment": multipart(
            "mixed",
            "Content-Type: text/plain\n\nThe ticket is attached.",
            b64_part("application/xml", XML, "Content-Disposition: attachment; filename=t.xml"),
        ),
        "text/xml part": multipart("mixed", b64_part("text/xml", XML)),
        "octet-stream named .xml": multipart(
            "mixed", b64_part('application/octet-stream; name="ticket.xml"', XML)
        ),
        "octet-stream without name": multipart("mixed", b64_part("application/octet-stream", XML)),
        "prose mentions <Ticket> before the attachment": multipart(
            "mixed",
            "Content-Type: text/plain\n\nThe <Ticket> XML is attached.",
            b64_part("application/xml", XML),
        ),
        "unknown charset in another part": multipart(
            "mixed",
            'Content-Type: text/plain; charset="x-klingon"\n\nnuqneH',
            b64_part("application/xml", XML),
        ),
    }


@pytest.mark.parametrize(("layout"), list(_layouts()))
def test_the_xml_is_found_wherever_ggus_put_it(layout: str) -> None:
    body, content_type = _layouts()[layout]
    result = decode(mail(body, content_type=content_type, cte="8bit"))
    assert result.ticket.ref.id == "40637"
    assert result.ticket.status == "in progress"
    assert result.ticket.description == "Line one.\nLine two."
    if layout == "unknown charset in another part":
        assert result.warnings == (
            "another part was skipped: unknown charset 'x-klingon' in a text/plain part",
        )


@pytest.mark.parametrize(
    ("charset", "declaration"),
    [
        ("iso-8859-1", "ISO-8859-1"),
        ("windows-1252", "windows-1252"),
        ("utf-16", "UTF-16"),
        ("utf-8", "UTF-8"),
    ],
)
def test_the_xml_declaration_does_not_fight_the_mime_charset(
    charset: str, declaration: str
) -> None:
    xml = xml_of(elements(Name="Zoé Lefèvre")).replace("UTF-8", declaration)
    body = xml.encode(charset)
    result = decode(mail(body, content_type=f'text/plain; charset="{charset}"', cte="base64"))
    assert result.ticket.submitter.name == "Zoé Lefèvre"


def test_no_ticket_anywhere_is_spam() -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode(mail("Win a free cluster!", content_type="text/plain"))
    assert str(caught.value) == "no GGUS <Ticket> XML found in the message"


def test_a_broken_multipart_names_its_mime_defects() -> None:
    raw = mail(
        "--x\nContent-Type: text/plain\n\n" + XML + "--x--\n",
        content_type="multipart/mixed",
        cte="8bit",
    )
    with pytest.raises(MalformedMessage) as caught:
        decode(raw)
    assert "no GGUS <Ticket> XML found" in str(caught.value)
    assert "NoBoundaryInMultipartDefect" in str(caught.value)


def test_an_unknown_charset_alone_is_reported_by_name() -> None:
    with pytest.raises(MalformedMessage, match="unknown charset 'x-klingon'"):
        decode(mail(XML, content_type='text/plain; charset="x-klingon"', cte="8bit"))


def test_truncated_xml_is_malformed_with_line_and_column() -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode(mail(XML[: XML.index("<GHD_Description>") + 25]))
    assert "malformed XML at line" in str(caught.value)
    assert "column" in str(caught.value)


def test_an_oversize_mail_is_refused_naming_the_sizes() -> None:
    raw = mail(XML)
    with pytest.raises(MalformedMessage) as caught:
        decode(raw, max_bytes=1000)
    assert str(caught.value) == f"message of {len(raw)} bytes exceeds limit 1000"


@pytest.mark.parametrize(
    ("prolog", "words"),
    [
        ('<!DOCTYPE Ticket [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "external entity"),
        (
            '<!DOCTYPE Ticket [<!ENTITY x SYSTEM "http://attacker.example.org/">]>',
            "external entity",
        ),
        ("<!DOCTYPE Ticket>", "DOCTYPE declaration is not allowed"),
    ],
    ids=["xxe file", "xxe network", "doctype"],
)
def test_hostile_xml_in_a_mail_is_unsafe_even_with_good_xml_later(prolog: str, words: str) -> None:
    hostile = XML.replace("<Ticket>", prolog + "\n<Ticket>", 1).replace("Line one.", "&amp;x;")
    body, content_type = multipart(
        "mixed", b64_part("text/plain", hostile), b64_part("application/xml", XML)
    )
    with pytest.raises(UnsafeXML) as caught:
        decode(mail(body, content_type=content_type, cte="8bit"))
    assert words in str(caught.value)


def test_an_undeclared_entity_reference_is_unsafe() -> None:
    with pytest.raises(UnsafeXML, match="entity reference"):
        decode(mail(xml_of(elements(Description="&nbsp;"), raw=True)))


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "subject", "words"),
    [
        ({"Request__ID": None}, "no id in this subject", ("GHD_Request-ID", "missing")),
        ({"Request__ID": ""}, "no id in this subject", ("GHD_Request-ID", "missing")),
        ({"Request__ID": "40x37"}, None, ("GHD_Request-ID", "'40x37'", "not a numeric")),
        ({"Request__ID": "-1"}, None, ("GHD_Request-ID", "'-1'")),
        ({"Request__ID": "40638"}, None, ("GHD_Request-ID", "'40638'", "'40637'", "differs")),
        ({"Status": "pending"}, None, ("GHD_Status", "'pending'", "not a GGUS value")),
        ({"Status": None}, None, ("GHD_Status", "missing")),
        ({"Priority": "critical"}, None, ("GHD_Priority", "'critical'")),
        ({"Priority": ""}, None, ("GHD_Priority", "missing")),
        (
            {"Experiment_Specific_Problem": "maybe"},
            None,
            ("GHD_Experiment_Specific_Problem", "'maybe'", "Yes or No"),
        ),
    ],
    ids=[
        "id missing",
        "id empty",
        "id not numeric",
        "id negative",
        "id differs",
        "status",
        "status missing",
        "priority",
        "priority empty",
        "yes/no",
    ],
)
def test_invalid_values_name_field_and_value(
    changes: dict[str, str | None], subject: str | None, words: tuple[str, ...]
) -> None:
    raw = mail(xml_of(elements(**changes)), subject=subject or "GGUS-Ticket-ID: #40637 UPDATE x")
    with pytest.raises(InvalidValue) as caught:
        decode(raw)
    for word in words:
        assert word in str(caught.value)


def test_a_missing_request_id_falls_back_to_the_subject_with_a_warning() -> None:
    result = decoded(**{"Request__ID": None})
    assert result.ticket.ref.id == "40637"
    assert result.ticket.fields["GHD_Request-ID"] == "40637"
    assert result.warnings == ("GHD_Request-ID missing; ticket id 40637 taken from the subject",)


def test_a_request_id_without_a_subject_id_is_fine() -> None:
    result = decode(mail(XML, subject="Ticket notification"))
    assert result.ticket.ref.id == "40637"


def test_leading_zeros_name_the_same_ticket() -> None:
    raw = mail(xml_of(elements(**{"Request__ID": "0040637"})), subject="GGUS-Ticket-ID: #40637")
    assert decode(raw).ticket.ref.id == "40637"


@pytest.mark.parametrize("status", GGUS_STATUSES)
def test_every_status_is_accepted_case_insensitively_and_stored_lowercased(status: str) -> None:
    ticket = decoded(Status=f"  {status.title()} ").ticket
    assert ticket.status == status
    assert ticket.fields["GHD_Status"] == status


@pytest.mark.parametrize("priority", GGUS_PRIORITIES)
def test_every_priority_including_normal_is_accepted(priority: str) -> None:
    ticket = decoded(Priority=priority.upper()).ticket
    assert ticket.priority == priority
    assert ticket.fields["GHD_Priority"] == priority


def test_yes_no_is_stored_capitalised() -> None:
    assert (
        decoded(Experiment_Specific_Problem="yes").ticket.fields["GHD_Experiment_Specific_Problem"]
        == "Yes"
    )


def test_every_decode_error_is_bad_input() -> None:
    for error in (InvalidValue, MalformedMessage, UnsafeXML):
        assert issubclass(error, BadInput)


# --- encode --------------------------------------------------------------------------------


def sample_ticket(**overrides: Any) -> Ticket:
    values: dict[str, Any] = {
        "ref": TicketRef("ggus", "40637"),
        "title": "CE at UCSD rejects CMS pilots",
        "description": "Transfers fail <badly> & often.\nSecond line.",
        "status": "in progress",
        "priority": "urgent",
        "submitter": Contact(
            "Maria Rossi",
            "maria.rossi@example.org",
            "+49 721 000",
            "/DC=ch/DC=example/CN=Maria Rossi 555",
        ),
        "fields": {"GHD_Responsible_Unit": "OSG", "GHD_Origin_SG": "TX_FP71_GGUS2"},
        "comments": (),
        "modified": datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        "created": datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return Ticket(**values)


def encoded(ticket: Ticket) -> bytes:
    return encode(
        ticket,
        to="osg-tx@goc.example.org",
        sender="helpdesk@ggus.example.org",
        date=MAIL_DATE,
        message_id="<enc.1@ggus.example.org>",
    )


def test_encode_writes_a_gen1_notification() -> None:
    raw = encoded(sample_ticket())
    msg = mime.parse_message(raw)
    assert mime.decoded_subject(msg) == "GGUS-Ticket-ID: #40637 CE at UCSD rejects CMS pilots"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content_charset() == "utf-8"
    assert mime.message_id(msg, raw) == "<enc.1@ggus.example.org>"
    assert mime.message_date(msg) == MAIL_DATE
    [part] = list(mime.iter_texts(msg))
    for name in MAIL_XML_ELEMENTS:
        assert f"<{name}>" in part.text, name
    assert "<GHD_Phone>+49 721 000</GHD_Phone>" in part.text
    assert "<GHD_Origin_ID></GHD_Origin_ID>" in part.text
    assert "<GHD_Origin_SG>TX_FP71_GGUS2</GHD_Origin_SG>" in part.text
    assert "&lt;badly&gt; &amp; often." in part.text
    assert raw.count(b"\r\n") > 10 and raw.count(b"\n") == raw.count(b"\r\n")


def test_encode_keeps_a_title_with_line_breaks_out_of_the_headers() -> None:
    raw = encoded(sample_ticket(title="first\nBcc: victim@example.org"))
    msg = mime.parse_message(raw)
    assert msg["Bcc"] is None
    assert mime.decoded_subject(msg).endswith("first Bcc: victim@example.org")


def test_encode_never_writes_an_internal_comment_into_a_public_element() -> None:
    secret = Comment(
        key="k", body="internal only", visibility=Visibility.INTERNAL, kind="public diary"
    )
    result = decode(encoded(sample_ticket(comments=(secret,))))
    assert result.ticket.fields["GHD_Internal_Diary"] == "internal only"
    assert "GHD_Public_Diary" not in result.ticket.fields
    assert [c.visibility for c in result.ticket.comments] == [Visibility.INTERNAL]


def test_encode_then_decode_keeps_a_decoded_ticket() -> None:
    original = decode((CORPUS_DIR / "ggus-40637-solved.eml").read_bytes())
    again = decode(
        encode(
            original.ticket,
            to="x@example.org",
            sender="y@example.org",
            date=original.date or MAIL_DATE,
            message_id=original.message_id,
        )
    )
    # encode writes the version stamp explicitly, so it comes back as a field.
    stamped = {**original.ticket.fields, "GHD_Date_Of_Change": "2026-03-02 13:00:00"}
    assert again.ticket == replace(original.ticket, fields=stamped)


# --- hypothesis round trips ---------------------------------------------------------------

# Text that exercises unicode, XML metacharacters and line breaks; the codec's normal form
# is applied so that the generated ticket is one decode could have produced.
raw_text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from("<>&\"'\n\r\t ]]>"),
    ),
    max_size=60,
)
stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
whole_seconds = stamps.map(lambda d: d.replace(microsecond=0))


def text_for(name: str) -> st.SearchStrategy[str]:
    return raw_text.map(lambda value: normalise_value(name, value))


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f" if value.microsecond else "%Y-%m-%d %H:%M:%S")


@st.composite
def tickets(draw: st.DrawFn) -> tuple[Ticket, datetime]:
    """A ticket in decoded normal form, and the mail date to encode it with."""
    date = draw(whole_seconds)
    ticket_id = str(draw(st.integers(min_value=1, max_value=10**9)))
    text = {
        name: draw(text_for(name))
        for name in (
            "GHD_Loginname",
            "GHD_Name",
            "GHD_E-Mail",
            "GHD_Phone",
            "GHD_Experiment",
            "GHD_Responsible_Unit",
            "GHD_Short_Description",
            "GHD_Description",
            "GHD_Type_Of_Problem",
            "GHD_Origin_ID",
            "GHD_Last_Modifier",
            "GHD_Affected_Site",
            "GHD_Origin_SG",
        )
    }
    status = draw(st.sampled_from(GGUS_STATUSES))
    priority = draw(st.sampled_from(GGUS_PRIORITIES))
    yes_no = draw(st.sampled_from(["", "Yes", "No"]))
    created = draw(st.none() | whole_seconds)
    modified = draw(stamps)
    comments = []
    diaries: dict[str, str] = {}
    for name, kind, visibility in ggus_mail.COMMENT_ELEMENTS:
        body = draw(text_for(name))
        if body:
            diaries[name] = body
            comments.append(
                Comment(
                    key=text_digest(kind, body),
                    body=body,
                    author=text["GHD_Last_Modifier"],
                    created=date,
                    visibility=visibility,
                    kind=kind,
                )
            )
    fields = {
        **text,
        **diaries,
        "GHD_Request-ID": ticket_id,
        "GHD_Status": status,
        "GHD_Priority": priority,
        "GHD_Experiment_Specific_Problem": yes_no,
        "GHD_Date_Time_Of_Problem": _stamp(created) if created else "",
        "GHD_Date_Of_Change": _stamp(modified),
    }
    ticket = Ticket(
        ref=TicketRef("ggus", ticket_id),
        title=text["GHD_Short_Description"],
        description=text["GHD_Description"],
        status=status,
        priority=priority,
        submitter=Contact(
            text["GHD_Name"], text["GHD_E-Mail"], text["GHD_Phone"], text["GHD_Loginname"]
        ),
        fields={k: v for k, v in fields.items() if v},
        comments=tuple(comments),
        modified=modified,
        created=created,
    )
    return ticket, date


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tickets())
def test_decode_of_encode_is_the_identity(case: tuple[Ticket, datetime]) -> None:
    ticket, date = case
    raw = encode(
        ticket,
        to="osg-tx@goc.example.org",
        sender="helpdesk@ggus.example.org",
        date=date,
        message_id="<rt@ggus.example.org>",
    )
    result = decode(raw)
    assert result.ticket == ticket
    assert result.warnings == ()
    assert result.date == date
    assert trigger_key(raw) == ticket.ref.id


@given(
    st.sampled_from(
        [
            "GHD_Loginname",
            "GHD_E-Mail",
            "GHD_Name",
            "GHD_Request-ID",
            "GHD_Description",
            "GHD_Public_Diary",
        ]
    ),
    raw_text,
)
def test_normalise_value_is_idempotent(name: str, value: str) -> None:
    once = normalise_value(name, value)
    assert normalise_value(name, once) == once


@settings(max_examples=100, deadline=None)
@given(raw_text, raw_text)
def test_decode_stores_the_normal_form_of_any_value(title: str, description: str) -> None:
    ticket = sample_ticket(title=title, description=description)
    result = decode(encoded(ticket))
    assert result.ticket.title == normalise_value("GHD_Short_Description", title)
    assert result.ticket.description == normalise_value("GHD_Description", description)


# --- the corpus -----------------------------------------------------------------------------

CORPUS = load_corpus()


def test_the_corpus_is_large_and_covers_every_outcome() -> None:
    assert len(CORPUS) >= 34
    outcomes = {entry["expect"] for entry, _ in CORPUS}
    assert outcomes == {"applied", "quarantined", "ignored", "duplicate"}
    for entry, raw in CORPUS:
        assert set(entry) >= {"file", "expect", "ticket", "reason", "note"}
        assert raw, entry["file"]


def test_the_committed_corpus_is_what_make_corpus_writes() -> None:
    for name, data in make_corpus.generated_files().items():
        assert (CORPUS_DIR / name).read_bytes() == data, f"{name}: run make_corpus.py"
    for entry, _ in CORPUS:
        if entry.get("generate"):
            assert not (CORPUS_DIR / entry["file"]).exists()


def test_every_corpus_mail_is_dated_march_2026_and_keyed_by_its_subject() -> None:
    for entry, raw in CORPUS:
        assert trigger_key(raw) == entry["ticket"], entry["file"]
        date = mime.message_date(mime.parse_message(raw, max_bytes=len(raw)))
        assert date is not None and (date.year, date.month) == (2026, 3), entry["file"]


@pytest.mark.parametrize(("entry", "raw"), CORPUS, ids=[e["file"] for e, _ in CORPUS])
def test_each_corpus_mail_gets_its_expected_outcome_from_the_codecs(
    entry: dict[str, Any], raw: bytes
) -> None:
    """The codec half of the pipeline: ignore, quarantine, or a snapshot of the ticket."""
    expect = entry["expect"]
    reason = entry["reason"]
    if expect == "quarantined":
        with pytest.raises(BadInput) as caught:
            decode(raw)
        assert reason in str(caught.value)
        return
    msg = mime.parse_message(raw)
    ignore = mime.auto_reply_reason(msg)
    if expect == "ignored":
        assert ignore is not None and reason in ignore
        return
    assert ignore is None
    result = decode(raw)
    assert result.ticket.ref == TicketRef("ggus", entry["ticket"])


def test_duplicates_repeat_an_earlier_message_exactly() -> None:
    seen: dict[str, bytes] = {}
    for entry, raw in CORPUS:
        if entry["expect"] not in ("applied", "duplicate"):
            continue
        message_id = decode(raw).message_id
        if entry["expect"] == "duplicate":
            assert seen[message_id] == raw, entry["file"]
        else:
            assert message_id not in seen, entry["file"]
            seen[message_id] = raw


def test_the_stale_snapshot_is_older_than_one_already_delivered() -> None:
    newest: dict[str, ggus_mail.GgusMail] = {}
    stale = []
    for entry, raw in CORPUS:
        if entry["expect"] != "applied":
            continue
        result = decode(raw)
        ticket = result.ticket
        previous = newest.get(ticket.ref.id)
        assert ticket.modified is not None
        if previous and previous.ticket.modified and ticket.modified < previous.ticket.modified:
            stale.append(entry)
            assert "stale snapshot" in entry["note"]
            assert (previous.ticket.status, ticket.status) == ("solved", "in progress")
        else:
            newest[ticket.ref.id] = result
    assert [e["file"] for e in stale] == ["33-40810-stale-snapshot.eml"]


def _decoded_corpus(name: str) -> ggus_mail.GgusMail:
    return decode(dict((e["file"], r) for e, r in CORPUS)[name])


def test_corpus_wrapped_values_follow_the_line_break_rule() -> None:
    ticket = _decoded_corpus("17-40923-new-wrapped.eml").ticket
    assert ticket.submitter.login == "/DC=org/DC=example/O=GermanGrid/OU=KIT/CN=Karl Brenner 4711"
    assert ticket.submitter.email == "karl.brenner@example.org"
    assert ticket.title == "SAM tests fail on the BDII of AGLT2"
    assert ticket.created == datetime(2026, 3, 5, 18, 43, tzinfo=UTC)


def test_corpus_quirks_mail_keeps_found_and_canonical_names() -> None:
    result = _decoded_corpus("19-40923-update-quirks.eml")
    fields = result.ticket.fields
    assert fields["GHD_Request_ID"] == fields["GHD_Request-ID"] == "40923"
    assert fields["GHD_EMail"] == fields["GHD_E-Mail"] == "karl.brenner@example.org"
    assert fields["GHD_Affected_VO"] == fields["GHD_Experiment"] == "ops"
    assert fields["GHD_Affected_Site"] == "AGLT2"
    assert "GHD_Phone" not in fields and "GHD_Experiment_Specific_Problem" not in fields
    assert result.ticket.status == "in progress"
    assert result.warnings == (
        "duplicate element GHD_Affected_VO ignored",
        "duplicate element GHD_Affected_Site ignored",
    )


def test_corpus_ticket_originated_at_home_carries_its_home_id() -> None:
    ticket = _decoded_corpus("21-41002-new-originated-at-home.eml").ticket
    assert ticket.fields["GHD_Origin_ID"] == "7932"
    assert "ISSUE=7932 PROJ=71" in ticket.title
    assert ticket.submitter.name == "Open Science Grid FootPrints"


def test_corpus_control_characters_are_reported() -> None:
    result = _decoded_corpus("24-40712-update-control-chars.eml")
    assert result.warnings == ("3 control characters removed",)
    assert "\x1b" not in result.ticket.fields["GHD_Public_Diary"]


def test_corpus_charsets_decode_to_the_same_text() -> None:
    latin1 = _decoded_corpus("03-40712-new-latin1-qp.eml").ticket
    assert latin1.submitter.name == "Jürgen Müller"
    assert "Größere Dateien" in latin1.description
    cp1252 = _decoded_corpus("07-40755-new-cp1252-base64.eml").ticket
    utf16 = _decoded_corpus("16-40755-update-utf16.eml").ticket
    assert (
        cp1252.title
        == utf16.title
        == ("CE “osg-ce.example.org” holds all CMS jobs – “Error from slot”")
    )
    assert "5 € of CPU" in cp1252.description
    subject_q = _decoded_corpus("22-40755-solved-q-subject.eml").subject
    assert subject_q == "GGUS-Ticket-ID: #40755 SOLVED CE hält alle CMS-Jobs"


def test_corpus_date_of_change_wins_over_the_mail_date() -> None:
    result = _decoded_corpus("38-41002-update.eml")
    assert result.date == datetime(2026, 3, 12, 8, 0, 5, tzinfo=UTC)
    assert result.ticket.modified == datetime(2026, 3, 12, 8, 0, tzinfo=UTC)


def test_the_corpus_directory_holds_only_listed_mails() -> None:
    listed = {entry["file"] for entry, _ in CORPUS}
    on_disk = {p.name for p in Path(CORPUS_DIR).glob("*.eml")}
    assert on_disk <= listed
