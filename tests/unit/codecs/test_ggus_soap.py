"""The GGUS Remedy SOAP codec: envelopes both ways, drift, faults, qualifications, quirks."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from ticketbridge.codecs import ggus_soap as soap
from ticketbridge.errors import InvalidValue, MalformedMessage, UnsafeXML
from ticketbridge.model import Visibility

ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
URN = "{urn:GGUS}"


def test_request_is_doc_literal_with_authentication_header() -> None:
    call = soap.op_create("osg_tx", "s3cret", {
        "GHD_Short_Description": "CE down <at> MWT2 & co", "GHD_Origin_ID": "12345",
        "GHD_Last_Modifier": "John (via Footprints)", "GHD_Last_Login": "osg_tx"})
    assert (call.service, call.action) == ("GGUS", "urn:GGUS/OpCreate")
    root = etree.fromstring(call.body)
    auth = root.find(f"{ENV}Header/{URN}AuthenticationInfo")
    assert auth is not None
    assert auth.findtext(f"{URN}userName") == "osg_tx"
    assert auth.findtext(f"{URN}password") == "s3cret"
    body = root.find(f"{ENV}Body/{URN}OpCreate")
    assert body is not None
    assert body.findtext(f"{URN}GHD_Short_Description") == "CE down <at> MWT2 & co"


def test_server_reads_back_what_the_client_built() -> None:
    call = soap.ticket_modify("u", "p", 1000, {"GHD_Public_Diary": "line 1\nline 2",
                                               "GHD_Last_Login": "u"})
    request = soap.parse_request(call.body)
    assert request.operation == "TicketModify" and request.namespace == soap.NAMESPACE
    assert request.credentials == soap.Credentials("u", "p")
    assert request.names() == ("GHD_Request_ID", "GHD_Public_Diary", "GHD_Last_Login")
    assert request.get("GHD_Public_Diary") == "line 1\nline 2"
    assert request.get("GHD_Status", "none") == "none"


def test_field_name_drift_is_kept_per_operation() -> None:
    assert "GHD_EMail" in soap.OPERATIONS["OpCreate"].inputs
    assert "GHD_Submitter_Mail" in soap.OPERATIONS["TicketCreate"].inputs
    assert "GHD_EMail" not in soap.OPERATIONS["TicketCreate"].inputs
    assert soap.OPERATIONS["TicketCreate"].outputs == ("GHD_RequestID",)
    assert soap.OPERATIONS["TicketGetList"].outputs[0] == "GHD_Request-ID"
    for values in ({"GHD_Request_ID": "91234"}, {"GHD_RequestID": "91234"},
                   {"GHD_Request-ID": "0091234"}):
        assert soap.request_id_of(values) == "91234"
    with pytest.raises(MalformedMessage):
        soap.request_id_of({"GHD_RequestID": "12a"})
    with pytest.raises(MalformedMessage):
        soap.request_id_of({})


def test_response_with_rows_and_a_zero_byte_attachment_without_data_element() -> None:
    data = soap.build_response("GetAttachIDs", rows=[
        [("GAT_Attachment_ID", "1"), ("GAT_Attachment_Name", "log.txt\n")],
        [("GAT_Attachment_ID", "2"), ("GAT_Attachment_Name", "b")]])
    response = soap.parse_response(data)
    assert response.operation == "GetAttachIDs"
    assert [dict(r) for r in response.rows] == [
        {"GAT_Attachment_ID": "1", "GAT_Attachment_Name": "log.txt\n"},
        {"GAT_Attachment_ID": "2", "GAT_Attachment_Name": "b"}]
    empty = soap.build_response("GetOneAttachment", [
        ("GAT_Attachment_Name", "empty.txt"), ("GAT_Attachment_Data", None),
        ("GAT_Attachment_Orig_Size", "0"), ("GAT_Request_ID", "7")])
    assert b"GAT_Attachment_Data" not in empty
    attachment = soap.parse_attachment(soap.parse_response(empty))
    assert (attachment.name, attachment.data, attachment.orig_size) == ("empty.txt", b"", 0)


def test_double_base64_is_recognised_by_the_original_size() -> None:
    payload = b"\x00\x01binary log\n" * 10
    once = base64.b64encode(payload).decode()
    twice = base64.b64encode(base64.b64encode(payload)).decode()
    assert soap.decode_attachment_data(once, len(payload)) == (payload, False)
    assert soap.decode_attachment_data(twice, len(payload)) == (payload, True)
    # Without an original size nothing is guessed.
    assert soap.decode_attachment_data(twice, None) == (base64.b64encode(payload), False)
    with pytest.raises(MalformedMessage, match="not base64"):
        soap.decode_attachment_data("***", 3)


def test_fault_carries_the_remedy_error_number() -> None:
    data = soap.build_fault("ERROR (302): Entry does not exist in database")
    with pytest.raises(soap.SoapFault) as caught:
        soap.parse_response(data)
    assert caught.value.code == "soapenv:Server.userException"
    assert caught.value.error_number == 302
    assert soap.is_no_entry_fault(caught.value)
    assert not soap.is_auth_fault(caught.value)
    auth = soap.SoapFault("soapenv:Server.userException", "ERROR (623): Authentication failed")
    assert soap.is_auth_fault(auth) and auth.error_number == 623


def test_hostile_envelopes_are_refused() -> None:
    xxe = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>
<u:TicketGet xmlns:u="urn:GGUS"><u:GHD_Request_ID>&x;</u:GHD_Request_ID></u:TicketGet>
</e:Body></e:Envelope>"""
    with pytest.raises(UnsafeXML):
        soap.parse_request(xxe)
    with pytest.raises(MalformedMessage, match="not a SOAP"):
        soap.parse_request(b"<Envelope/>")
    nested = (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
              b'<u:TicketGet xmlns:u="urn:GGUS"><u:GHD_Request_ID><x/></u:GHD_Request_ID>'
              b"</u:TicketGet></e:Body></e:Envelope>")
    with pytest.raises(MalformedMessage, match="must hold text"):
        soap.parse_request(nested)


def test_control_characters_are_replaced_before_sending() -> None:
    call = soap.ticket_modify("u", "p", 1, {"GHD_Public_Diary": "bell\x07here"})
    assert soap.parse_request(call.body).get("GHD_Public_Diary") == "bell?here"


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("", ()),
        ("'GHD_Affected Site'=\"BNL_ATLAS_1\" AND 'GHD_Meta Status'=\"Open\"",
         (soap.Term("GHD_Affected Site", "=", "BNL_ATLAS_1"),
          soap.Term("GHD_Meta Status", "=", "Open"))),
        ("'GHD_Modified Date' > \"2013-01-01 00:00:00\"",
         (soap.Term("GHD_Modified Date", ">", "2013-01-01 00:00:00"),)),
        ("'GHD_Short Description' != \"say \"\"hi\"\"\" and 'GHD_Status'<=\"x\"",
         (soap.Term("GHD_Short Description", "!=", 'say "hi"'),
          soap.Term("GHD_Status", "<=", "x"))),
    ],
)
def test_qualification_subset(text: str, terms: tuple[soap.Term, ...]) -> None:
    assert soap.parse_qualification(text) == terms
    if terms:
        assert soap.parse_qualification(soap.build_qualification(terms)) == terms


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("'A'=\"1\" OR 'B'=\"2\"", "only AND"),
        ("('A'=\"1\")", "unsupported qualification"),
        ("'A' LIKE \"%x\"", "unsupported qualification"),
        ("'A'=1", "unsupported qualification"),
    ],
)
def test_qualification_outside_the_subset_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        soap.parse_qualification(text)


def test_ticket_from_get_and_comments_from_history() -> None:
    ticket = soap.ticket_from_get({
        "GHD_Request_ID": "40637", "GHD_Short_Description": "SRM timeouts",
        "GHD_Status": "In Progress", "GHD_Priority": "urgent", "GHD_EMail": "j@x.org",
        "GHD_Public_Diary": "latest", "GHD_Internal_Diary": "",
        "GHD_Date_Of_Change": "2013-05-02T10:11:12+02:00", "GHD_Last_Modifier": "Sup"})
    assert ticket.ref.id == "40637" and ticket.status == "in progress"
    assert ticket.submitter.email == "j@x.org"
    assert ticket.modified is not None and ticket.modified.hour == 8
    assert [(c.kind, c.body) for c in ticket.comments] == [("public diary", "latest")]
    comments = soap.comments_from_history([
        {"GHD_Creation_Date": "2013-05-01T00:00:00+00:00", "GHD_Status": "assigned"},
        {"GHD_Creation_Date": "2013-05-02T00:00:00+00:00", "GHD_Internal_Diary": "secret",
         "GHD_Last_Modifier": "A"},
    ])
    assert [(c.body, c.visibility) for c in comments] == [("secret", Visibility.INTERNAL)]


def test_datetimes() -> None:
    moment = soap.parse_datetime("2013-05-02 10:11:12")
    assert soap.format_datetime(moment) == "2013-05-02T10:11:12+00:00"
    assert soap.parse_datetime("2013-05-02T10:11:12Z") == moment
    with pytest.raises(InvalidValue):
        soap.parse_datetime("yesterday")
