"""MRWebServices envelopes: rpc/encoded values both ways, faults, hostile XML, issue details."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from ticketbridge.codecs import mrwebservices as mrws
from ticketbridge.errors import MalformedMessage, UnsafeXML


def test_call_round_trips_nested_values_and_escapes_markup() -> None:
    args: dict[str, mrws.SoapValue] = {
        "projectID": 71,
        "title": "a < b & c > d",
        "assignees": ["TX_FP71_GGUS2", "OSG__bGOC__bSupport__bTeam"],
        "projfields": {"Originating__bTicket__bNumber": "40637"},
        "abfields": {},
        "empty": [],
        "nothing": None,
        "flag": True,
    }
    method, body = mrws.create_issue("goctx", "pw", args, goc=True)
    assert method == "MRWebServices__createIssue_goc"
    assert b"a &lt; b &amp; c &gt; d" in body
    call = mrws.parse_call(body)
    assert call.method == method
    assert call.namespace == "MRWebServices"
    assert [name for name, _ in call.params] == ["user", "password", "extrainfo", "args"]
    assert call.param(0, "user") == "goctx"
    assert call.param(3, "args") == {**args, "abfields": {}}


def test_arguments_are_found_by_position_when_names_differ() -> None:
    body = mrws.build_call(
        "MRWebServices__search",
        [("c-gensym3", "u"), ("c-gensym5", "p"), ("c-gensym7", ""), ("c-gensym9", "q")],
    )
    call = mrws.parse_call(body)
    assert call.param(0, "user") == "u"
    assert call.param(3, "query") == "q"
    assert call.param(7, "missing") is None


def test_base64_typed_strings_are_decoded_as_utf8() -> None:
    encoded = base64.b64encode("Grüße <b>".encode()).decode()
    password = base64.b64encode(b"pw").decode()
    body = f"""<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soap:Body><m:MRWebServices__editIssue xmlns:m="MRWebServices">
  <user>goctx</user><password xsi:type="soapenc:base64">{password}</password>
  <args><title xsi:type="soapenc:base64">{encoded}</title>
        <mrID xsi:type="xsd:int" xmlns:xsd="http://www.w3.org/2001/XMLSchema"> 12 </mrID></args>
 </m:MRWebServices__editIssue></soap:Body></soap:Envelope>""".encode()
    call = mrws.parse_call(body)
    assert call.param(1, "password") == "pw"
    assert call.param(3, "args") == {"title": "Grüße <b>", "mrID": 12}


def test_bad_base64_and_bad_integers_are_malformed() -> None:
    template = (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><e:Body>'
        '<m:x xmlns:m="MRWebServices"><v xsi:type="xsd:{t}">{v}</v></m:x></e:Body></e:Envelope>'
    )
    with pytest.raises(MalformedMessage, match="base64"):
        mrws.parse_call(template.format(t="base64Binary", v="!!!").encode())
    with pytest.raises(MalformedMessage, match="integer"):
        mrws.parse_call(template.format(t="int", v="twelve").encode())


def test_response_and_fault() -> None:
    assert mrws.parse_response(mrws.build_response("MRWebServices__createIssue", "12")) == "12"
    rows: list[mrws.SoapValue] = [{"mrID": 3}, {"mrID": 5}]
    assert mrws.parse_response(mrws.build_response("MRWebServices__search", rows)) == rows
    with pytest.raises(mrws.SoapFault) as caught:
        mrws.parse_response(mrws.build_fault("SOAP-ENV:Client", "Invalid user ID or password"))
    assert caught.value.code == "SOAP-ENV:Client"
    assert mrws.is_auth_fault(caught.value)
    assert not mrws.is_auth_fault(mrws.SoapFault("SOAP-ENV:Client", "status=Bogus: not valid"))


def test_characters_xml_cannot_carry_become_question_marks() -> None:
    body = mrws.build_response("m", "bell\x07 and \x00nul")
    assert mrws.parse_response(body) == "bell? and ?nul"


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<x>&xxe;</x>",
            UnsafeXML,
        ),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>', UnsafeXML),
        (b"<x>" * 100 + b"</x>" * 100, UnsafeXML),
        (b"<unclosed>", MalformedMessage),
        (b"<notsoap/>", MalformedMessage),
        (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>', MalformedMessage),
    ],
)
def test_hostile_or_broken_documents_are_refused(document: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        mrws.parse_call(document)
    with pytest.raises(error):
        mrws.parse_response(document)


def test_oversize_documents_are_refused_before_parsing() -> None:
    big = mrws.build_response("m", "x" * (mrws.MAX_DOCUMENT_BYTES + 10))
    with pytest.raises(UnsafeXML, match="exceeds"):
        mrws.parse_response(big)


def test_search_query_quotes_values_and_checks_column_names() -> None:
    query = mrws.build_search_query(71, {"Originating__bTicket__bNumber": "O'Brien"}, ["mrTITLE"])
    assert query == (
        "SELECT mrID, mrTITLE FROM MASTER71 WHERE Originating__bTicket__bNumber = 'O''Brien'"
    )
    with pytest.raises(ValueError, match="column"):
        mrws.build_search_query(71, {"x; DROP TABLE": "1"})
    with pytest.raises(ValueError, match="condition"):
        mrws.build_search_query(71, {})


def test_stamps_format_and_parse() -> None:
    when = datetime(2013, 5, 2, 10, 11, 12, tzinfo=UTC)
    stamp = mrws.format_stamp(when, "Jane Doe")
    assert stamp == "Entered on 05/02/2013 at 10:11:12 UTC by Jane Doe"
    assert mrws.parse_stamp(stamp) == (when, "Jane Doe")
    assert mrws.parse_stamp("something else") == (None, "")


def test_issue_details_are_typed_and_descriptions_unescaped() -> None:
    value: mrws.SoapValue = {
        "mrID": 12,
        "projectID": 71,
        "title": "CE down",
        "status": "Engineering",
        "priority": 3,
        "submitter": "ggus",
        "assignees": "TX_FP71_GGUS2 CC:a@b.org",
        "Originating__bTicket__bNumber": "40637",
        "allDescriptions": [
            {
                "data": "a &lt;b&gt; &amp; c",
                "stamp": "Entered on 05/02/2013 at 10:11:12 UTC by x",
                "internal": 1,
            },
            {"data": "first", "stamp": "Entered on 05/01/2013 at 09:00:00 UTC by y"},
        ],
        "lastdate": "2013-05-02",
        "lasttime": "10:11:12",
        "createdate": "2013-05-01",
        "createtime": "09:00:00",
    }
    details = mrws.IssueDetails.from_soap(value)
    assert details.mrid == 12 and details.priority == 3
    assert details.assignees == ("TX_FP71_GGUS2", "CC:a@b.org")
    assert details.fields == {"Originating__bTicket__bNumber": "40637"}
    assert details.descriptions[0] == mrws.DescriptionEntry(
        "a <b> & c", "Entered on 05/02/2013 at 10:11:12 UTC by x", internal=True
    )
    assert details.descriptions[1].internal is False
    assert details.modified == datetime(2013, 5, 2, 10, 11, 12, tzinfo=UTC)
    assert details.created == datetime(2013, 5, 1, 9, 0, 0, tzinfo=UTC)
    with pytest.raises(MalformedMessage):
        mrws.IssueDetails.from_soap(["not", "a", "struct"])


# --- attachments (an emulator extension) ------------------------------------------------


def test_bytes_travel_as_soap_enc_base64_and_come_back_as_bytes_when_asked() -> None:
    data = bytes(range(256)) + b"]]>&<"
    document = mrws.build_response("MRWebServices__getAttachment", data)
    assert b'xsi:type="SOAP-ENC:base64"' in document
    assert base64.b64encode(data) in document
    assert mrws.parse_response(document, binary=True) == data
    # Read as text (what Footprints' base64 strings are), the same value is UTF-8 text.
    assert isinstance(mrws.parse_response(document), str)
    assert mrws.parse_response(mrws.build_response("m", b""), binary=True) == b""


def test_get_attachment_call_names_its_arguments() -> None:
    method, body = mrws.get_attachment("goctx", "pw", 71, 12, 5)
    assert method == "MRWebServices__getAttachment"
    call = mrws.parse_call(body)
    assert call.method == method and call.namespace == mrws.NAMESPACE
    assert [name for name, _ in call.params] == [
        "user", "password", "extrainfo", "projectID", "mrID", "attachmentID"]
    assert (call.param(3, "projectID"), call.param(4, "mrID"),
            call.param(5, "attachmentID")) == (71, 12, 5)
    assert mrws.get_attachment("u", "p", 71, 1, 1, goc=True)[0] == (
        "MRWebServices__getAttachment_goc")


def test_an_attachment_answer_may_exceed_the_ordinary_limits_only_when_read_as_binary() -> None:
    size = 10 * 1024 * 1024  # its base64 text is over 4 MiB and over libxml2's 10 MB node
    document = mrws.build_response("MRWebServices__getAttachment", bytes(size))
    limit = mrws.attachment_response_limit(size)
    assert len(document) <= limit
    with pytest.raises(UnsafeXML):
        mrws.parse_response(document)
    with pytest.raises(UnsafeXML):
        mrws.parse_response(document, max_bytes=limit)  # text node too long
    with pytest.raises(UnsafeXML):
        mrws.parse_response(document, max_bytes=limit // 2, binary=True)
    assert mrws.parse_response(document, max_bytes=limit, binary=True) == bytes(size)


def test_attachment_response_limit_allows_line_broken_base64() -> None:
    for size in (0, 1, 2, 3, 57, 1000, 2 * 1024 * 1024):
        wrapped = base64.encodebytes(bytes(size))  # a line break every 76 characters
        assert len(wrapped.replace(b"\n", b"\r\n")) + 1024 < mrws.attachment_response_limit(
            size)


def test_issue_details_list_attachments() -> None:
    value: mrws.SoapValue = {
        "mrID": 12, "projectID": 71, "title": "t", "priority": 4,
        "attachments": [
            {"id": 3, "name": "log.txt", "size": 14, "contentType": "text/plain",
             "created": "2024-03-01 12:00:00", "author": "jane@ggus.example.org"},
            {"id": "4", "name": "empty", "size": 0, "contentType": "", "created": ""},
        ],
    }
    details = mrws.IssueDetails.from_soap(value)
    assert details.attachments == (
        mrws.AttachmentInfo(3, "log.txt", 14, "text/plain",
                            datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC), "jane@ggus.example.org"),
        mrws.AttachmentInfo(4, "empty", 0, "", None),
    )
    assert "attachments" not in details.fields
    assert mrws.IssueDetails.from_soap({"mrID": 1}).attachments == ()
    bad_values: list[mrws.SoapValue] = ["x", ["x"], [{"id": "not a number"}]]
    for bad in bad_values:
        with pytest.raises(MalformedMessage):
            mrws.IssueDetails.from_soap({"mrID": 1, "attachments": bad})
