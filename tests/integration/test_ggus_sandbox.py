"""The GGUS emulator over its real doors: SMTP, SOAP and REST on 127.0.0.1 ports."""

from __future__ import annotations

import base64
import smtplib
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.footprints import MailSink
from tests.support.ggus import (
    OSG_ADDRESS,
    SUBMITTER,
    TPM_ADDRESS,
    ggus_mail_message,
    rest,
    soap,
    soap_raw,
)
from ticketbridge.codecs import ggus_mail
from ticketbridge.codecs import ggus_soap as gs
from ticketbridge.codecs.xmlsafe import safe_parse
from ticketbridge.model import Visibility
from ticketbridge.sandbox.ggus import Actor, GgusFault, GgusSandbox, serve

Send = Callable[[EmailMessage], None]
USER, PASSWORD = "osg_tx", "demo"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
XSD = "{http://www.w3.org/2001/XMLSchema}"


class Clock:
    """A clock the test moves: one-second steps unless told otherwise."""

    def __init__(self) -> None:
        self.now = datetime(2013, 5, 2, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 60) -> None:
        self.now += timedelta(seconds=seconds)


def _mail_create(send: Send, sandbox: GgusSandbox, subject: str = "CE down at MWT2") -> int:
    send(ggus_mail_message(subject, "Jobs fail since 10:00 UTC.\n\n-- \nJane"))
    return sandbox.tickets()[-1].request_id


def _op_create(sandbox: GgusSandbox, **extra: str) -> int:
    fields = {
        "GHD_Short_Description": "SRM timeouts", "GHD_Description": "first FP entry",
        "GHD_Name": "John Smith", "GHD_Loginname": "/DC=org/DC=example/CN=John Smith",
        "GHD_Priority": "urgent", "GHD_Status": "new", "GHD_Responsible_Unit": "TPM",
        "GHD_Affected_VO": "none", "GHD_Origin_ID": "12345", "GHD_Origin_SG": "TX_FP71_GGUS2",
        "GHD_Last_Modifier": "John Smith (via Footprints)", "GHD_Last_Login": USER,
        "GHD_Type_Of_Problem": "Storage Systems", **extra}
    answer = soap(sandbox, gs.op_create(USER, PASSWORD, fields))
    assert list(answer.values) == ["GHD_Request_ID"]
    return int(answer.values["GHD_Request_ID"])


def _modify(sandbox: GgusSandbox, request_id: int, **fields: str) -> gs.SoapResponse:
    values = {"GHD_Last_Modifier": "Sup (via Footprints)", "GHD_Last_Login": USER, **fields}
    return soap(sandbox, gs.ticket_modify(USER, PASSWORD, request_id, values))


def _get(sandbox: GgusSandbox, request_id: int) -> dict[str, str]:
    return dict(soap(sandbox, gs.ticket_get(USER, PASSWORD, request_id)).values)


# --- mail submission --------------------------------------------------------------------


def test_mail_creates_a_tpm_ticket_and_notifies_tpm(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send, ggus_sink: MailSink
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    assert request_id == 1000
    ticket = ggus_sandbox.ticket(request_id)
    assert (ticket.short_description, ticket.responsible_unit, ticket.status) == (
        "CE down at MWT2", "TPM", "new")
    assert ticket.description == "Jobs fail since 10:00 UTC.\n\n-- \nJane"
    assert (ticket.name, ticket.email, ticket.ticket_type, ticket.priority) == (
        "Jane Doe", SUBMITTER, "USER", "less urgent")
    (note,) = ggus_sink.messages(to=TPM_ADDRESS)
    assert note["Subject"] == f"GGUS-Ticket-ID: #{request_id} CE down at MWT2"
    decoded = ggus_mail.decode(note.as_bytes()).ticket
    assert decoded.ref.id == str(request_id) and decoded.status == "new"
    assert ggus_sink.messages(to=OSG_ADDRESS) == []


def test_reply_with_ticket_id_in_subject_appends_the_whole_body_and_nothing_else(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send, ggus_sink: MailSink
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    before = ggus_sandbox.ticket(request_id)
    body = "It works again.\nstatus=solved\npriority=top priority"
    send_to_ggus(ggus_mail_message(f"Re: GGUS-Ticket-ID: #{request_id} CE down", body,
                                   sender="Site Admin <admin@mwt2.example.org>"))
    after = ggus_sandbox.ticket(request_id)
    assert len(ggus_sandbox.tickets()) == 1
    # No field changes by mail (A4): "status=solved" is just text of the diary entry.
    assert (after.status, after.priority, after.short_description) == (
        before.status, before.priority, before.short_description)
    last = ggus_sandbox.history(request_id)[-1]
    assert last.public_diary == body and last.channel == "mail"
    assert last.last_login == "admin@mwt2.example.org"
    note = ggus_sink.messages(to=TPM_ADDRESS)[-1]
    decoded = ggus_mail.decode(note.as_bytes()).ticket
    assert [(c.kind, c.body) for c in decoded.comments] == [("public diary", body)]


def test_submitter_reply_moves_waiting_for_reply_to_in_progress(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    ggus_sandbox.set_status(request_id, "waiting for reply")
    send_to_ggus(ggus_mail_message(f"GGUS-Ticket-ID: #{request_id}", "a colleague writes",
                                   sender="other@example.org"))
    assert ggus_sandbox.ticket(request_id).status == "waiting for reply"
    send_to_ggus(ggus_mail_message(f"Re: GGUS-Ticket-ID: #{request_id}", "here is the log",
                                   sender=f"Jane <{SUBMITTER.upper()}>"))
    assert ggus_sandbox.ticket(request_id).status == "in progress"


@pytest.mark.parametrize(
    "headers",
    [{"Auto-Submitted": "auto-replied"}, {"Precedence": "bulk"}],
)
def test_auto_replies_are_not_appended(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send, ggus_sink: MailSink,
    headers: dict[str, str]
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    rows = len(ggus_sandbox.history(request_id))
    send_to_ggus(ggus_mail_message(f"Out of office: GGUS-Ticket-ID: #{request_id}",
                                   "I am away.", headers=headers))
    send_to_ggus(ggus_mail_message("Automatic reply: new?", "away", headers=headers))
    assert len(ggus_sandbox.history(request_id)) == rows
    assert len(ggus_sandbox.tickets()) == 1
    assert len(ggus_sink.messages()) == 1  # only the create's notification


def test_mail_to_a_final_ticket_is_rejected_with_a_reply(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send, ggus_sink: MailSink
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    ggus_sandbox.set_status(request_id, "solved", solution="Restarted.")
    ggus_sandbox.set_status(request_id, "verified")
    rows = len(ggus_sandbox.history(request_id))
    send_to_ggus(ggus_mail_message(f"Re: GGUS-Ticket-ID: #{request_id}", "again?"))
    assert len(ggus_sandbox.history(request_id)) == rows
    (reply,) = ggus_sink.messages(to=SUBMITTER)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert "verified and closed tickets cannot be updated" in reply.get_content()
    assert ggus_sandbox.outbox()[-1].kind == "rejection"


def test_mail_for_another_address_is_refused_at_rcpt(ggus_sandbox: GgusSandbox) -> None:
    with smtplib.SMTP("127.0.0.1", ggus_sandbox.smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.send_message(ggus_mail_message("x", "y"), to_addrs=["nobody@example.org"])


# --- routing and notifications ----------------------------------------------------------


def test_tpm_routes_to_osg_and_osg_gets_the_xml_notification(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send, ggus_sink: MailSink
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    ticket = ggus_sandbox.route(request_id, "OSG")
    assert (ticket.responsible_unit, ticket.status) == ("OSG", "assigned")
    assert ggus_sandbox.history(request_id)[-1].action == "routed"
    (note,) = ggus_sink.messages(to=OSG_ADDRESS)
    mail = ggus_mail.decode(note.as_bytes())
    assert mail.subject == f"GGUS-Ticket-ID: #{request_id} CE down at MWT2"
    decoded = mail.ticket
    assert (decoded.ref.id, decoded.status, decoded.priority) == (
        str(request_id), "assigned", "less urgent")
    assert decoded.title == "CE down at MWT2"
    assert decoded.description.startswith("Jobs fail since 10:00 UTC.")
    assert decoded.submitter.email == SUBMITTER and decoded.submitter.name == "Jane Doe"
    assert decoded.fields["GHD_Responsible_Unit"] == "OSG"
    assert decoded.comments == ()  # routing adds no diary text


def test_notification_xml_holds_only_the_latest_diary_and_origin_fields(
    ggus_sandbox: GgusSandbox, ggus_sink: MailSink
) -> None:
    request_id = _op_create(ggus_sandbox, GHD_Responsible_Unit="OSG")
    _modify(ggus_sandbox, request_id, GHD_Public_Diary="first update")
    _modify(ggus_sandbox, request_id, GHD_Public_Diary="second update",
            GHD_Internal_Diary="supporters only")
    notes = ggus_sink.messages(to=OSG_ADDRESS)
    assert len(notes) == 3  # create + two modifies, although the SU's own account made them
    decoded = ggus_mail.decode(notes[-1].as_bytes()).ticket
    assert {(c.body, c.visibility) for c in decoded.comments} == {
        ("second update", Visibility.PUBLIC), ("supporters only", Visibility.INTERNAL)}
    assert decoded.fields["GHD_Origin_ID"] == "12345"
    assert decoded.fields["GHD_Origin_SG"] == "TX_FP71_GGUS2"
    # ...and who made each change is recorded.
    assert {h.last_login for h in ggus_sandbox.history(request_id)} == {USER}


def test_route_over_the_admin_endpoint_is_guarded_by_the_token(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send, ggus_sink: MailSink
) -> None:
    request_id = _mail_create(send_to_ggus, ggus_sandbox)
    status, _ = rest(ggus_sandbox, "POST", "/sandbox/route",
                     {"ticket": request_id, "unit": "OSG"}, token="wrong")
    assert status == 401
    status, answer = rest(ggus_sandbox, "POST", "/sandbox/route",
                          {"ticket": request_id, "unit": "NOPE"})
    assert status == 422 and "not a support unit" in answer["error"]
    status, answer = rest(ggus_sandbox, "POST", "/sandbox/route",
                          {"ticket": request_id, "unit": "OSG"})
    assert status == 200 and (answer["group"], answer["state"]) == ("OSG", "assigned")
    assert len(ggus_sink.messages(to=OSG_ADDRESS)) == 1


def test_without_smarthost_notifications_stay_in_the_outbox() -> None:
    with GgusSandbox(first_id=40637) as sandbox:
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(ggus_mail_message("Kept", "x"),
                              to_addrs=[sandbox.helpdesk_address])
        sandbox.route(40637, "NGI_CZ")
        kept = [(m.kind, m.unit, m.recipients, m.delivered) for m in sandbox.outbox()]
        assert kept == [("notification", "TPM", (TPM_ADDRESS,), False),
                        ("notification", "NGI_CZ", ("ngi_cz@su.ggus.example.org",), False)]
        decoded = ggus_mail.decode(sandbox.outbox()[-1].raw).ticket
        assert decoded.ref.id == "40637"


# --- SOAP: tickets ----------------------------------------------------------------------


def test_op_create_ticket_get_and_modify(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    got = _get(ggus_sandbox, request_id)
    assert (got["GHD_Status"], got["GHD_Responsible_Unit"], got["GHD_Priority"]) == (
        "new", "TPM", "urgent")
    assert got["GHD_Origin_SG"] == "TX_FP71_GGUS2" and got["GHD_Ticket_Type"] == "USER"
    assert got["GHD_Request_ID"] == str(request_id) and got["GHD_Public_Diary"] == ""
    # Remedy's SOAP dates have one-second resolution.
    assert gs.parse_datetime(got["GHD_Date_Of_Change"]) == ggus_sandbox.ticket(
        request_id).modified.replace(microsecond=0)
    _modify(ggus_sandbox, request_id, GHD_Public_Diary="one", GHD_Status="in progress")
    _modify(ggus_sandbox, request_id, GHD_Public_Diary="two", GHD_Priority="very urgent")
    got = _get(ggus_sandbox, request_id)
    assert (got["GHD_Status"], got["GHD_Priority"]) == ("in progress", "very urgent")
    assert got["GHD_Public_Diary"] == "two"  # only the latest entry
    assert got["GHD_Last_Modifier"] == "Sup (via Footprints)"
    snapshot = gs.ticket_from_get(got)
    assert snapshot.ref.id == str(request_id) and snapshot.status == "in progress"


def test_ticket_create_speaks_its_own_field_names(ggus_sandbox: GgusSandbox) -> None:
    answer = soap(ggus_sandbox, gs.ticket_create(USER, PASSWORD, {
        "GHD_Short_Description": "Generic client", "GHD_Submitter_Mail": "c@example.org",
        "GHD_Last_Modifier": "C", "GHD_Last_Login": USER, "GHD_Responsible_Unit": "DMSU"}))
    assert list(answer.values) == ["GHD_RequestID"]
    ticket = ggus_sandbox.ticket(answer.values["GHD_RequestID"])
    assert ticket.email == "c@example.org"
    assert ticket.status == "assigned"  # created straight at an SU
    # The other operation's spelling is not part of TicketCreate.
    with pytest.raises(gs.SoapFault) as caught:
        soap(ggus_sandbox, gs.ticket_create(USER, PASSWORD, {
            "GHD_Short_Description": "x", "GHD_EMail": "c@example.org",
            "GHD_Last_Modifier": "C", "GHD_Last_Login": USER}))
    assert caught.value.error_number == 8962 and "GHD_EMail" in caught.value.message


def test_a_modify_that_changes_nothing_records_and_notifies_nothing(
    ggus_sandbox: GgusSandbox, ggus_sink: MailSink
) -> None:
    request_id = _op_create(ggus_sandbox)
    _modify(ggus_sandbox, request_id, GHD_Status="new", GHD_Priority="urgent",
            GHD_Last_Modifier="Someone else")
    assert len(ggus_sandbox.history(request_id)) == 1
    assert len(ggus_sink.messages()) == 1


def test_ticket_modify_sets_origin_id_as_goctx_did_after_create(
    ggus_sandbox: GgusSandbox
) -> None:
    request_id = _op_create(ggus_sandbox, GHD_Origin_ID="")
    _modify(ggus_sandbox, request_id, GHD_Origin_ID="777")
    assert ggus_sandbox.ticket(request_id).origin_id == "777"


@pytest.mark.parametrize(
    ("fields", "number", "text"),
    [
        ({"GHD_Short_Description": ""}, 326, "GHD_Short_Description"),
        ({"GHD_Last_Login": ""}, 326, "GHD_Last_Login"),
        ({"GHD_Status": "in progress"}, 10000, "submit it as 'new'"),
        ({"GHD_Priority": "whenever"}, 306, "GHD_Priority: 'whenever' is not one of"),
        ({"GHD_Responsible_Unit": "Mars"}, 306, "GHD_Responsible_Unit"),
        ({"GHD_Description": "x" * 4001}, 306, "GHD_Description: 4001 characters"),
        ({"GHD_Short_Description": "y" * 256}, 306, "the limit is 255"),
        ({"GHD_Internal_Diary": "z" * 4001}, 306, "GHD_Internal_Diary: 4001 characters"),
        ({"GHD_Colour": "red"}, 8962, "GHD_Colour"),
    ],
)
def test_op_create_refusals_name_the_problem(
    ggus_sandbox: GgusSandbox, fields: dict[str, str], number: int, text: str
) -> None:
    with pytest.raises(gs.SoapFault) as caught:
        _op_create(ggus_sandbox, **fields)
    assert caught.value.error_number == number and text in caught.value.message
    assert ggus_sandbox.tickets() == []


def test_normal_priority_is_accepted_on_soap_like_the_wsdl_enum(
    ggus_sandbox: GgusSandbox
) -> None:
    request_id = _op_create(ggus_sandbox, GHD_Priority="normal")
    assert ggus_sandbox.ticket(request_id).priority == "normal"


def test_status_rules(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    with pytest.raises(gs.SoapFault, match="requires a solution"):
        _modify(ggus_sandbox, request_id, GHD_Status="solved")
    with pytest.raises(gs.SoapFault, match="can only follow 'solved' or 'unsolved'"):
        _modify(ggus_sandbox, request_id, GHD_Status="reopened")
    _modify(ggus_sandbox, request_id, GHD_Status="assigned")
    with pytest.raises(gs.SoapFault, match="Status 'new' is set by GGUS"):
        _modify(ggus_sandbox, request_id, GHD_Status="new")
    with pytest.raises(gs.SoapFault, match="GHD_Public_Diary: 4001 characters"):
        _modify(ggus_sandbox, request_id, GHD_Public_Diary="d" * 4001)
    assert ggus_sandbox.ticket(request_id).status == "assigned"
    _modify(ggus_sandbox, request_id, GHD_Status="solved",
            GHD_Detailed_Solution="Restarted the SRM.")
    assert ggus_sandbox.ticket(request_id).meta_status == "Closed"
    _modify(ggus_sandbox, request_id, GHD_Status="reopened", GHD_Public_Diary="Still broken")
    assert ggus_sandbox.ticket(request_id).meta_status == "Open"
    _modify(ggus_sandbox, request_id, GHD_Status="solved",
            GHD_Detailed_Solution="Really fixed.")
    _modify(ggus_sandbox, request_id, GHD_Status="verified")
    for fields in ({"GHD_Public_Diary": "more"}, {"GHD_Status": "reopened"}):
        with pytest.raises(gs.SoapFault) as caught:
            _modify(ggus_sandbox, request_id, **fields)
        assert caught.value.error_number == 10000
        assert "verified and closed tickets cannot be updated or reopened" in \
            caught.value.message
    with pytest.raises(GgusFault, match="verified"):
        ggus_sandbox.add_diary(request_id, "from a supporter")


def test_reassigning_an_su_sets_assigned_unless_the_change_sets_a_status(
    ggus_sandbox: GgusSandbox
) -> None:
    request_id = _op_create(ggus_sandbox, GHD_Responsible_Unit="OSG")
    _modify(ggus_sandbox, request_id, GHD_Status="in progress")
    _modify(ggus_sandbox, request_id, GHD_Responsible_Unit="NGI_UK")
    assert ggus_sandbox.ticket(request_id).status == "assigned"
    _modify(ggus_sandbox, request_id, GHD_Responsible_Unit="OSG", GHD_Status="on hold")
    assert ggus_sandbox.ticket(request_id).status == "on hold"
    _modify(ggus_sandbox, request_id, GHD_Responsible_Unit="NGI_CZ")
    assert ggus_sandbox.ticket(request_id).status == "on hold"  # a finer state is kept


def test_ticket_type_never_changes(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    with pytest.raises(GgusFault, match="never changes"):
        ggus_sandbox.engine.modify(request_id, {"ticket_type": "ALARM"},
                                   Actor("Sup", "sup", "supporter"))
    assert ggus_sandbox.ticket(request_id).ticket_type == "USER"


def test_unknown_ticket_is_error_302(ggus_sandbox: GgusSandbox) -> None:
    for call in (gs.ticket_get(USER, PASSWORD, 4242),
                 gs.ticket_modify(USER, PASSWORD, 4242, {"GHD_Last_Modifier": "x",
                                                         "GHD_Last_Login": USER}),
                 gs.op_get_ticket_hist(USER, PASSWORD, 4242)):
        with pytest.raises(gs.SoapFault) as caught:
            soap(ggus_sandbox, call)
        assert gs.is_no_entry_fault(caught.value)


def test_ticket_get_list_qualification_paging_and_drift(
    ggus_sandbox: GgusSandbox
) -> None:
    clock = Clock()
    ggus_sandbox.engine.clock = clock
    first = _op_create(ggus_sandbox, GHD_Affected_Site="BNL_ATLAS_1")
    clock.tick()
    second = _op_create(ggus_sandbox, GHD_Affected_Site="BNL_ATLAS_1")
    clock.tick()
    third = _op_create(ggus_sandbox, GHD_Affected_Site="MWT2")
    clock.tick()
    _modify(ggus_sandbox, first, GHD_Status="solved", GHD_Detailed_Solution="ok")

    def ids(qualification: str, **kw: int) -> list[str]:
        answer = soap(ggus_sandbox, gs.ticket_get_list(USER, PASSWORD, qualification, **kw))
        assert all("GHD_Request-ID" in row for row in answer.rows)
        return [row["GHD_Request-ID"] for row in answer.rows]

    site = "'GHD_Affected Site'=\"BNL_ATLAS_1\""
    assert ids(site) == [str(first), str(second)]
    assert ids(site + " AND 'GHD_Meta Status'=\"Open\"") == [str(second)]
    after = gs.build_qualification([("GHD_Modified Date", ">", "2013-05-02 10:01:30")])
    assert ids(after) == [str(first), str(third)]  # rows by Request_ID
    assert ids("", start_record=1, max_limit=1) == [str(second)]
    with pytest.raises(gs.SoapFault) as caught:
        ids("'GHD_Affected Site'=\"NOWHERE\"")
    assert gs.is_no_entry_fault(caught.value)
    with pytest.raises(gs.SoapFault) as caught:
        ids(site + " OR 'GHD_Status'=\"new\"")
    assert caught.value.error_number == 1587 and "only AND" in caught.value.message
    with pytest.raises(gs.SoapFault, match="unknown field 'GHD_Favourite'"):
        ids("'GHD_Favourite'=\"x\"")


def test_op_get_ticket_hist_lists_every_change_with_paging(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    ggus_sandbox.route(request_id, "OSG")
    _modify(ggus_sandbox, request_id, GHD_Public_Diary="one")
    _modify(ggus_sandbox, request_id, GHD_Internal_Diary="two")
    _modify(ggus_sandbox, request_id, GHD_Status="solved", GHD_Detailed_Solution="three")
    rows = soap(ggus_sandbox, gs.op_get_ticket_hist(USER, PASSWORD, request_id)).rows
    assert [r["GHD_Status"] for r in rows] == ["new", "assigned", "assigned", "assigned",
                                               "solved"]
    assert rows[0]["GHD_Description"] == "first FP entry"
    assert rows[1]["GHD_Responsible_Unit"] == "OSG" and rows[1]["GHD_Last_Modifier"] == "TPM"
    assert [c.body for c in gs.comments_from_history(rows)] == ["one", "two", "three"]
    page = soap(ggus_sandbox, gs.op_get_ticket_hist(USER, PASSWORD, request_id,
                                                    start_record=2, max_limit=2)).rows
    assert [r["GHD_Public_Diary"] for r in page] == ["one", ""]


# --- SOAP: attachments ------------------------------------------------------------------


def _add(sandbox: GgusSandbox, request_id: int, name: str, data: bytes) -> str:
    answer = soap(sandbox, gs.add_attachment(USER, PASSWORD, request_id, name, data,
                                             last_modifier="Sup", last_login=USER))
    return answer.values["GAT_Attachment_ID"]


def _fetch(sandbox: GgusSandbox, attachment_id: str | int) -> gs.SoapResponse:
    return soap(sandbox, gs.get_one_attachment(USER, PASSWORD, attachment_id))


def test_attachments_round_trip_and_reproduce_the_quirks(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    with pytest.raises(gs.SoapFault) as caught:
        soap(ggus_sandbox, gs.get_attach_ids(USER, PASSWORD, request_id))
    assert caught.value.message.startswith("ERROR (302): Entry does not exist in database")

    plain = _add(ggus_sandbox, request_id, "gridftp.log", b"line\n" * 100)
    empty = _add(ggus_sandbox, request_id, "empty.txt", b"")
    newline = ggus_sandbox.add_attachment(request_id, "report.txt\n", b"r")
    legacy = ggus_sandbox.add_attachment(request_id, "old.bin", b"\x00\xffdata", legacy=True)

    rows = soap(ggus_sandbox, gs.get_attach_ids(USER, PASSWORD, request_id)).rows
    assert [r["GAT_Attachment_Name"] for r in rows] == [
        "gridftp.log", "empty.txt", "report.txt\n", "old.bin"]
    assert rows[0]["GAT_Origin_SG"] == "TX_FP71_GGUS2"

    got = gs.parse_attachment(_fetch(ggus_sandbox, plain))
    assert (got.data, got.encoded_twice, got.request_id) == (b"line\n" * 100, False,
                                                            str(request_id))
    zero = _fetch(ggus_sandbox, empty)
    assert "GAT_Attachment_Data" not in zero.values  # GOCTX-28: no data element at all
    assert zero.values["GAT_Attachment_Orig_Size"] == "0"
    assert _fetch(ggus_sandbox, newline).values["GAT_Attachment_Name"] == "report.txt\n"
    double = _fetch(ggus_sandbox, legacy)
    raw = double.values["GAT_Attachment_Data"]
    assert base64.b64decode(base64.b64decode(raw)) == b"\x00\xffdata"  # GOCTX-29
    decoded = gs.parse_attachment(double)
    assert decoded.data == b"\x00\xffdata" and decoded.encoded_twice


def test_attachment_limits(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    with pytest.raises(gs.SoapFault) as caught:
        _add(ggus_sandbox, request_id, "big.tar", b"\0" * (2 * 1024 * 1024 + 1))
    assert caught.value.error_number == 10000 and "2 MB" in caught.value.message
    assert _add(ggus_sandbox, request_id, "max.tar", b"\0" * (2 * 1024 * 1024))
    lying: dict[str, gs.FieldValue] = {
        "GAT_Request_ID": str(request_id), "GAT_Attachment_Name": "a",
        "GAT_Attachment_Data": b"ab", "GAT_Attachment_Orig_Size": 5,
        "GAT_Last_Modifier": "x", "GAT_Last_Login": USER}
    body = gs.build_request("AddAttachment", lying, user=USER, password=PASSWORD)
    with pytest.raises(gs.SoapFault, match="GAT_Attachment_Orig_Size"):
        soap(ggus_sandbox, gs.Call("GGUS_ATTACH", gs.soap_action("AddAttachment"), body))
    assert len(ggus_sandbox.attachments(request_id)) == 1


def test_sandbox_wide_double_base64_flag() -> None:
    with GgusSandbox(double_base64_attachments=True) as sandbox:
        request_id = _op_create(sandbox)
        attachment = _add(sandbox, request_id, "a.txt", b"hello")
        assert gs.parse_attachment(_fetch(sandbox, attachment)).encoded_twice


def test_mail_attachments_take_the_legacy_path(
    ggus_sandbox: GgusSandbox, send_to_ggus: Send
) -> None:
    msg = ggus_mail_message("With a log", "see attached")
    msg.add_attachment(b"\x01\x02log", maintype="application", subtype="octet-stream",
                       filename="job.log")
    send_to_ggus(msg)
    (ticket,) = ggus_sandbox.tickets()
    assert ticket.description == "see attached"
    (stored,) = ggus_sandbox.attachments(ticket.request_id)
    got = gs.parse_attachment(_fetch(ggus_sandbox, stored.id))
    assert (got.name, got.data, got.encoded_twice) == ("job.log", b"\x01\x02log", True)


# --- SOAP: transport, auth, WSDL, hostile input ------------------------------------------


def test_wrong_credentials_fault_like_remedy(ggus_sandbox: GgusSandbox) -> None:
    with pytest.raises(gs.SoapFault) as caught:
        soap(ggus_sandbox, gs.ticket_get(USER, "wrong", 1))
    assert caught.value.message.startswith("ERROR (623): Authentication failed")
    assert gs.is_auth_fault(caught.value)
    no_header = gs.build_response("TicketGet", [("GHD_Request_ID", "1")]).replace(
        b"TicketGetResponse", b"TicketGet")
    status, data = soap_raw(ggus_sandbox, "GGUS", no_header)
    assert status == 500
    with pytest.raises(gs.SoapFault, match="ERROR \\(623\\)"):
        gs.parse_response(data)


def test_operation_must_match_its_service_and_soap_action(ggus_sandbox: GgusSandbox) -> None:
    call = gs.ticket_get(USER, PASSWORD, 1)
    status, data = soap_raw(ggus_sandbox, "GGUS_ATTACH", call.body, call.action)
    assert status == 500
    with pytest.raises(gs.SoapFault, match=r"No such operation .*TicketGet on web service "
                                           r"GGUS_ATTACH"):
        gs.parse_response(data)
    _, data = soap_raw(ggus_sandbox, "GGUS", call.body, "urn:GGUS/TicketModify")
    with pytest.raises(gs.SoapFault, match="does not match"):
        gs.parse_response(data)
    wrong_server = ggus_sandbox.soap_url().replace("train-ars", "prod-ars")
    request = urllib.request.Request(wrong_server, data=call.body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with pytest.raises(gs.SoapFault, match="ERROR \\(90\\)"):
        gs.parse_response(caught.value.read())


def test_wsdls_are_served_parse_safely_and_match_the_operations(
    ggus_sandbox: GgusSandbox
) -> None:
    for service in gs.SERVICES:
        with urllib.request.urlopen(ggus_sandbox.wsdl_url(service), timeout=10) as response:
            root = safe_parse(response.read(), max_bytes=1_000_000)
        assert root.get("targetNamespace") == "urn:GGUS"
        ops = {o.get("name") for o in root.iter(f"{WSDL}operation")}
        expected = {o.name for o in gs.OPERATIONS.values() if o.service == service}
        assert ops == expected
        address = next(root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"))
        assert address.get("location") == ggus_sandbox.soap_url(service)
        schema = next(root.iter(f"{XSD}schema"))
        types = {t.get("name"): t for t in schema.findall(f"{XSD}complexType")}
        for name in expected:
            element = schema.find(f"{XSD}element[@name='{name}']")
            assert element is not None
            mapping = types[element.get("type", "").removeprefix("s0:")]
            inputs = [e.get("name") for e in mapping.iter(f"{XSD}element")]
            assert tuple(inputs) == gs.OPERATIONS[name].inputs
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(ggus_sandbox.wsdl_url().replace("GGUS", "Grid_HelpDesk"),
                               timeout=10)
    assert missing.value.code == 404


def test_hostile_soap_is_refused_without_reading_files(
    ggus_sandbox: GgusSandbox, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = f"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:u="urn:GGUS">
<e:Header><u:AuthenticationInfo><u:userName>osg_tx</u:userName>
<u:password>demo</u:password></u:AuthenticationInfo></e:Header>
<e:Body><u:TicketGet><u:GHD_Request_ID>&x;</u:GHD_Request_ID></u:TicketGet></e:Body>
</e:Envelope>""".encode()
    status, data = soap_raw(ggus_sandbox, "GGUS", xxe)
    assert status == 500 and b"TOP-SECRET" not in data
    with pytest.raises(gs.SoapFault, match="XML refused"):
        gs.parse_response(data)


# --- REST -------------------------------------------------------------------------------


def test_rest_token_and_basic_auth(ggus_sandbox: GgusSandbox) -> None:
    assert rest(ggus_sandbox, "GET", "/tickets", token=None)[0] == 401
    assert rest(ggus_sandbox, "GET", "/tickets", token="nope")[0] == 401
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert rest(ggus_sandbox, "GET", "/tickets", token=None,
                headers={"Authorization": basic}) == (200, [])
    bad = "Basic " + base64.b64encode(f"{USER}:x".encode()).decode()
    assert rest(ggus_sandbox, "GET", "/tickets", token=None,
                headers={"Authorization": bad})[0] == 401
    assert rest(ggus_sandbox, "POST", "/tickets", {"title": "x"}, token=None)[0] == 401
    assert ggus_sandbox.tickets() == []


def test_rest_crud_is_the_same_ticket_as_soap(
    ggus_sandbox: GgusSandbox, ggus_sink: MailSink
) -> None:
    status, created = rest(ggus_sandbox, "POST", "/tickets", {
        "title": "SRM timeouts at BNL_ATLAS_1", "group": "OSG",
        "customer": "guess:jane.doe@example.org", "state": "new", "priority": "less urgent",
        "ticket_area": "Storage Systems", "affected_vo": "atlas", "origin_id": "FP-9",
        "article": {"subject": "SRM", "body": "Transfers fail since 10:00 UTC",
                    "type": "note", "internal": False}})
    assert status == 201
    request_id = created["id"]
    assert (created["number"], created["group"], created["state"]) == (
        str(request_id), "OSG", "assigned")
    assert created["created_at"].endswith("Z") and created["article_count"] == 1
    got = _get(ggus_sandbox, request_id)
    assert (got["GHD_Short_Description"], got["GHD_Type_Of_Problem"],
            got["GHD_Affected_VO"], got["GHD_Description"]) == (
        "SRM timeouts at BNL_ATLAS_1", "Storage Systems", "atlas",
        "Transfers fail since 10:00 UTC")

    status, updated = rest(ggus_sandbox, "PUT", f"/tickets/{request_id}", {
        "state": "in progress", "priority": "urgent",
        "article": {"body": "Looking into it", "internal": False}})
    assert status == 200 and (updated["state"], updated["priority"]) == (
        "in progress", "urgent")
    assert _get(ggus_sandbox, request_id)["GHD_Public_Diary"] == "Looking into it"
    assert rest(ggus_sandbox, "GET", f"/tickets/{request_id}")[1] == updated

    status, error = rest(ggus_sandbox, "PUT", f"/tickets/{request_id}", {"state": "solved"})
    assert status == 422 and "requires a solution" in error["error"]
    status, solved = rest(ggus_sandbox, "PUT", f"/tickets/{request_id}", {
        "state": "solved", "article": {"body": "Pool node rebooted."}})
    assert status == 200 and solved["state"] == "solved"
    assert ggus_sandbox.ticket(request_id).detailed_solution == "Pool node rebooted."
    assert len(ggus_sink.messages(to=OSG_ADDRESS)) == 3

    assert rest(ggus_sandbox, "GET", "/tickets/999999")[0] == 404
    status, error = rest(ggus_sandbox, "POST", "/tickets", {"group": "OSG"})
    assert status == 422 and "title is required" in error["error"]


def test_rest_articles_public_internal_and_attachments(ggus_sandbox: GgusSandbox) -> None:
    request_id = _op_create(ggus_sandbox)
    status, public = rest(ggus_sandbox, "POST", "/ticket_articles", {
        "ticket_id": request_id, "body": "for everyone", "internal": False,
        "attachments": [{"filename": "ls.txt", "data": base64.b64encode(b"a b c").decode(),
                         "mime-type": "text/plain"}]})
    assert status == 201 and public["internal"] is False and public["body"] == "for everyone"
    status, internal = rest(ggus_sandbox, "POST", "/ticket_articles", {
        "ticket_id": request_id, "body": "supporters only", "internal": True})
    assert status == 201 and internal["internal"] is True
    history = ggus_sandbox.history(request_id)
    assert (history[-2].public_diary, history[-1].internal_diary) == (
        "for everyone", "supporters only")

    status, articles = rest(ggus_sandbox, "GET", f"/ticket_articles/by_ticket/{request_id}")
    assert status == 200
    assert [(a["body"], a["internal"]) for a in articles] == [
        ("first FP entry", False), ("for everyone", False), ("supporters only", True)]
    (attachment,) = articles[1]["attachments"]
    assert attachment["filename"] == "ls.txt"
    status, data = rest(ggus_sandbox, "GET", f"/ticket_attachment/{request_id}/"
                        f"{articles[1]['id']}/{attachment['id']}")
    assert (status, data) == (200, b"a b c")
    assert rest(ggus_sandbox, "GET", f"/ticket_attachment/{request_id}/"
                f"{articles[0]['id']}/{attachment['id']}")[0] == 404
    # The same attachment through SOAP (sent once-encoded: it did not take the legacy path).
    (row,) = soap(ggus_sandbox, gs.get_attach_ids(USER, PASSWORD, request_id)).rows
    assert gs.parse_attachment(_fetch(ggus_sandbox, row["GAT_Attachment_ID"])).data == \
        b"a b c"


def test_rest_search_by_updated_at_with_paging(ggus_sandbox: GgusSandbox) -> None:
    clock = Clock()
    ggus_sandbox.engine.clock = clock
    ids = []
    for n in range(5):
        ids.append(_op_create(ggus_sandbox, GHD_Responsible_Unit="NGI_CZ" if n % 2 else "OSG"))
        clock.tick()
    _modify(ggus_sandbox, ids[0], GHD_Public_Diary="touched last")
    mark = "2013-05-02T10:00:30Z"

    def search(query: str, **params: str) -> list[int]:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        status, found = rest(ggus_sandbox, "GET", "/tickets/search?query="
                             + urllib.parse.quote(query) + extra + "&expand=true")
        assert status == 200
        return [t["id"] for t in found]

    assert search(f"updated_at:>{mark}", sort_by="updated_at", order_by="asc") == [
        ids[1], ids[2], ids[3], ids[4], ids[0]]
    assert search(f"updated_at:>{mark}", sort_by="updated_at", order_by="asc",
                  limit="2", page="2") == [ids[3], ids[4]]
    assert search(f'updated_at:>{mark} AND group.name:"NGI_CZ"') == [ids[1], ids[3]]
    assert search(f"number:{ids[2]}") == [ids[2]]
    status, plain = rest(ggus_sandbox, "GET", "/tickets/search?query=*&limit=2")
    assert plain["tickets_count"] == 5 and len(plain["tickets"]) == 2
    assert set(plain["assets"]["Ticket"]) == {str(i) for i in plain["tickets"]}
    status, error = rest(ggus_sandbox, "GET", "/tickets/search?query="
                         + urllib.parse.quote('title:"x"'))
    assert status == 422 and "unsupported search field" in error["error"]


def test_rest_enumerations(ggus_sandbox: GgusSandbox) -> None:
    states = rest(ggus_sandbox, "GET", "/ticket_states")[1]
    assert [s["name"] for s in states][:3] == ["new", "assigned", "in progress"]
    assert {s["name"]: s["state_type"] for s in states}["verified"] == "closed"
    priorities = rest(ggus_sandbox, "GET", "/ticket_priorities")[1]
    assert [p["name"] for p in priorities] == ["less urgent", "urgent", "very urgent",
                                               "top priority"]
    groups = rest(ggus_sandbox, "GET", "/groups")[1]
    assert {g["name"]: g["email_address"] for g in groups}["OSG"] == OSG_ADDRESS


# --- lifecycle --------------------------------------------------------------------------


def test_tickets_survive_a_restart_with_a_database_file(tmp_path: Path) -> None:
    db = tmp_path / "ggus.sqlite3"
    with GgusSandbox(db_path=db) as sandbox:
        first = _op_create(sandbox)
    with GgusSandbox(db_path=db) as again:
        assert again.ticket(first).origin_id == "12345"
        assert _op_create(again) == first + 1


def test_serve_prints_its_endpoints_and_stops_on_request(tmp_path: Path) -> None:
    lines: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            ready.set()

    runner = threading.Thread(target=serve, kwargs={
        "db_path": tmp_path / "ggus.sqlite3", "smtp_port": 0, "http_port": 0, "out": out,
        "stop": stop})
    runner.start()
    try:
        assert ready.wait(10), lines
        smtp_line = next(line for line in lines if "smtp://127.0.0.1:" in line)
        port = int(smtp_line.split("smtp://127.0.0.1:")[1].split()[0])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            assert smtp.noop()[0] == 250
        soap_line = next(line for line in lines if "webService=GGUS_HISTORY" in line)
        assert "/arsys/services/ARService?server=train-ars" in soap_line
        assert any("/api/v1" in line for line in lines)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert lines[-1] == "GGUS emulator stopped."


def test_tpm_routes_a_ticket_from_the_command_line(capsys) -> None:
    from ticketbridge.cli import main
    from ticketbridge.sandbox.ggus import GgusSandbox

    with GgusSandbox() as sandbox:
        msg = EmailMessage()
        msg["From"], msg["To"] = "jane@example.org", "helpdesk@ggus.example.org"
        msg["Subject"] = "Jobs fail at UCSD"
        msg.set_content("All of them.")
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port) as smtp:
            smtp.send_message(msg)
        (ticket,) = sandbox.tickets()
        assert ticket.responsible_unit == "TPM"
        code = main(["sandbox", "route", str(ticket.request_id), "OSG",
                     "--url", sandbox.base_url, "--token", "demo-token"])
        assert code == 0, capsys.readouterr()
        routed = sandbox.ticket(ticket.request_id)
        assert (routed.responsible_unit, routed.status) == ("OSG", "assigned")
        assert any("osg@su.ggus.example.org" in m.recipients for m in sandbox.outbox())
        assert main(["sandbox", "route", str(ticket.request_id), "NO_SUCH_UNIT",
                     "--url", sandbox.base_url, "--token", "demo-token"]) == 1
        assert main(["sandbox", "route", str(ticket.request_id), "OSG",
                     "--url", sandbox.base_url, "--token", "wrong"]) == 1
