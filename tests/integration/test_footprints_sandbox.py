"""The Footprints emulator over its real doors: SMTP on one loopback port, SOAP on another."""

from __future__ import annotations

import http.client
import smtplib
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.footprints import GGUS_SENDER, TX_ADDRESS, MailSink, mail
from ticketbridge.codecs import mrwebservices as mrws
from ticketbridge.sandbox.footprints import FootprintsSandbox, serve

Send = Callable[[EmailMessage], None]


def _soap(sandbox: FootprintsSandbox, method: str, body: bytes) -> mrws.SoapValue:
    request = urllib.request.Request(
        sandbox.soap_url, data=body, method="POST",
        headers={"Content-Type": "text/xml", "SOAPAction": mrws.soap_action(method)})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return mrws.parse_response(response.read())
    except urllib.error.HTTPError as exc:
        assert exc.code == 500
        return mrws.parse_response(exc.read())


CREATE_BODY = """The CE at MWT2 refuses all jobs.

status=Engineering
priority=High
Originating Ticket Number=40637
ticket type=Problem/Request
assignees=TX_FP71_GGUS2 "OSG GOC Support Team"
ENG Next Action Item=TX Incoming
Office Phone=+1 555 0100
Internal Description=agent-only
second line
END Internal Description
problem type=software
"""


def _create(send: Send, sandbox: FootprintsSandbox, **kw: str) -> int:
    send(mail("CE down at MWT2", CREATE_BODY, message_id="<c1@ggus.example.org>",
              sender="Jane Doe <jane@ggus.example.org>", cc="site-admin@mwt2.example.org", **kw))
    (issue,) = sandbox.find("40637")
    return issue.mrid


# --- email interface -------------------------------------------------------------------


def test_mail_creates_an_issue(fp_sandbox: FootprintsSandbox, send_to_fp: Send) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    issue = fp_sandbox.ticket(mrid)
    assert issue.title == "CE down at MWT2"
    assert (issue.status, issue.priority, issue.ticket_type) == ("Engineering", 2,
                                                                 "Problem/Request")
    assert issue.submitter == "jane@ggus.example.org"
    assert issue.contact == {"Email address": "jane@ggus.example.org", "First Name": "Jane",
                             "Last Name": "Doe", "Office Phone": "+1 555 0100"}
    assert issue.assignees == ("CC:site-admin@mwt2.example.org", "TX_FP71_GGUS2",
                               "OSG__bGOC__bSupport__bTeam")
    assert issue.project_fields == {"Originating Ticket Number": "40637",
                                    "ENG Next Action Item": "TX Incoming"}
    public, internal = issue.descriptions[1], issue.descriptions[0]
    # The unknown "problem type" line stays in the description, as Footprints did.
    assert public.data == "The CE at MWT2 refuses all jobs.\n\nproblem type=software"
    assert not public.internal
    assert internal.internal and internal.data == "agent-only\nsecond line"
    assert public.stamp.startswith("Entered on ") and public.stamp.endswith(
        " UTC by jane@ggus.example.org")


def test_notifications_reach_the_tx_address_with_subject_and_fields(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send, fp_sink: MailSink
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    (note,) = fp_sink.messages(to=TX_ADDRESS)
    assert note["Subject"] == f"CE down at MWT2 ISSUE={mrid} PROJ=71"
    body = note.get_content()
    assert "Originating Ticket Number: 40637" in body
    assert "Status: Engineering" in body
    assert "The CE at MWT2 refuses all jobs." in body
    assert "agent-only" not in body  # internal entries are never mailed
    (kept,) = fp_sandbox.outbox()
    assert kept.kind == "notification" and kept.delivered and kept.mrid == mrid


def test_reply_with_issue_in_subject_updates_that_issue(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send, fp_sink: MailSink
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    send_to_fp(mail(f"Re: CE down at MWT2 ISSUE={mrid} PROJ=71",
                    "Restarted the gatekeeper.\nstatus=customer\npriority=1\n"
                    'assignees=-TX_FP71_GGUS2 +jdoe "Team Two"\nReady to Close?=yes\n'))
    issue = fp_sandbox.ticket(mrid)
    assert len(fp_sandbox.tickets()) == 1
    assert (issue.status, issue.priority) == ("Customer", 1)
    assert issue.assignees == ("CC:site-admin@mwt2.example.org", "OSG__bGOC__bSupport__bTeam",
                               "jdoe", "Team__bTwo")
    assert issue.project_fields["Ready to Close?"] == "Yes"
    assert issue.descriptions[0].data == "Restarted the gatekeeper."  # newest first
    assert len(issue.descriptions) == 3
    assert issue.modified >= issue.created
    # TX_FP71_GGUS2 was removed, but the configured notification address still hears of it.
    assert [m["Subject"] for m in fp_sink.messages(to=TX_ADDRESS)][-1] == (
        f"CE down at MWT2 ISSUE={mrid} PROJ=71")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("status=Bogus", "status=Bogus: not a valid status"),
        ("priority=7", "priority=7: not a valid priority"),
        ("priority=urgent", "priority=urgent: not a valid priority"),
        ("Ticket Type=Complaint", "Ticket Type=Complaint: not a valid ticket type"),
        ("ENG Next Action Date/Time (UTC)=tomorrow", "must be YYYY-MM-DD HH:MM:SS"),
        ("project=72", "there is no project 72"),
    ],
)
def test_invalid_values_are_rejected_with_a_reply_naming_why(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send, fp_sink: MailSink, line: str, reason: str
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    before = fp_sandbox.ticket(mrid)
    send_to_fp(mail(f"Re: x ISSUE={mrid} PROJ=71", f"new text\nstatus=Closed\n{line}\n",
                    sender="Op <operator@example.org>", message_id="<bad@example.org>"))
    assert fp_sandbox.ticket(mrid) == before  # nothing changed, not even the text
    (reply,) = fp_sink.messages(to="operator@example.org")
    assert reply["In-Reply-To"] == "<bad@example.org>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reason in reply.get_content()
    assert fp_sandbox.outbox()[-1].kind == "rejection"


def test_update_of_unknown_issue_is_rejected(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send, fp_sink: MailSink
) -> None:
    send_to_fp(mail("Re: ghost ISSUE=999 PROJ=71", "hello\n"))
    assert fp_sandbox.tickets() == []
    (reply,) = fp_sink.messages(to=GGUS_SENDER)
    assert "ISSUE=999: there is no issue 999 in project 71" in reply.get_content()


def test_mail_for_another_address_is_refused_at_rcpt(fp_sandbox: FootprintsSandbox) -> None:
    with smtplib.SMTP("127.0.0.1", fp_sandbox.smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            smtp.send_message(mail("x", "y"), to_addrs=["someone@else.example.org"])
    ((code, _),) = caught.value.recipients.values()
    assert code == 550


def test_a_resent_mail_is_applied_once(fp_sandbox: FootprintsSandbox, send_to_fp: Send) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    update = mail(f"Re: x ISSUE={mrid} PROJ=71", "one more line\n", message_id="<u1@x.org>")
    send_to_fp(update)
    send_to_fp(update)
    assert [e.data for e in fp_sandbox.ticket(mrid).descriptions].count("one more line") == 1


def test_without_dedupe_a_resent_mail_is_applied_twice_as_footprints_did() -> None:
    with FootprintsSandbox(dedupe_message_ids=False) as sandbox:
        msg = mail("Twice", "body\nOriginating Ticket Number=1\n", message_id="<same@x.org>")
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
                smtp.send_message(msg, to_addrs=[sandbox.incoming_address])
        assert len(sandbox.find("1")) == 2


def test_without_smarthost_mails_are_kept_in_the_outbox() -> None:
    with FootprintsSandbox() as sandbox:
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail("Kept", "x\nstatus=Nope\n"), to_addrs=[sandbox.incoming_address])
            smtp.send_message(mail("Made", "x\n"), to_addrs=[sandbox.incoming_address])
        kinds = [(m.kind, m.delivered, m.recipients) for m in sandbox.outbox()]
        assert kinds == [("rejection", False, (GGUS_SENDER,)),
                         ("notification", False, (TX_ADDRESS,))]


def test_an_unreachable_smarthost_is_recorded_not_fatal() -> None:
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FootprintsSandbox(smarthost=("127.0.0.1", port)) as sandbox:
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail("Made", "x\n"), to_addrs=[sandbox.incoming_address])
        (issue,) = sandbox.tickets()
        (note,) = sandbox.outbox()
        assert issue.title == "Made"
        assert not note.delivered and note.error


def test_issues_survive_a_restart_with_a_database_file(tmp_path: Path) -> None:
    db = tmp_path / "fp.sqlite3"
    with FootprintsSandbox(db_path=db) as sandbox:
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail("Kept", "x\nOriginating Ticket Number=77\n"),
                              to_addrs=[sandbox.incoming_address])
    with FootprintsSandbox(db_path=db) as again:
        (issue,) = again.find("77")
        assert issue.title == "Kept"


# --- MRWebServices ---------------------------------------------------------------------


def _create_args(**extra: mrws.SoapValue) -> dict[str, mrws.SoapValue]:
    args: dict[str, mrws.SoapValue] = {
        "projectID": 71, "title": "Cert request", "priorityNumber": 3, "status": "Engineering",
        "description": "Please renew <host> & co", "submitter": "OSG-GOC",
        "assignees": ["TX_FP71_GGUS2"], "permanentCCs": ["cc@example.org"],
        "abfields": {"First__bName": "Ann", "Last__bName": "Lee"},
        "projfields": {"Ticket__bType": "Host Certificate Request",
                       "Originating__bTicket__bNumber": "G-1"},
    }
    args.update(extra)
    return args


def test_soap_create_edit_details_and_search(
    fp_sandbox: FootprintsSandbox, fp_sink: MailSink
) -> None:
    user, pw = fp_sandbox.user, fp_sandbox.password
    created = _soap(fp_sandbox, *mrws.create_issue(user, pw, _create_args(), goc=True))
    assert isinstance(created, str) and created.isdigit()
    mrid = int(created)
    edited = _soap(fp_sandbox, *mrws.edit_issue(user, pw, {
        "projectID": 71, "mrID": mrid, "status": "Resolved", "description": "Done.",
        "mail": {"assignees": 0, "contact": 0, "permanentCCs": 0}}))
    assert edited == str(mrid)
    details = mrws.IssueDetails.from_soap(
        _soap(fp_sandbox, *mrws.get_issue_details(user, pw, 71, mrid)))
    assert (details.title, details.status, details.priority) == ("Cert request", "Resolved", 3)
    assert details.submitter == "OSG-GOC"
    assert details.assignees == ("TX_FP71_GGUS2", "CC:cc@example.org")
    assert details.fields["Ticket__bType"] == "Host Certificate Request"
    assert details.fields["Originating__bTicket__bNumber"] == "G-1"
    assert details.fields["First__bName"] == "Ann"
    assert [d.data for d in details.descriptions] == ["Done.", "Please renew <host> & co"]
    assert details.modified is not None and details.lastdate and details.lasttime
    # The create notified; the edit had its notifications suppressed by the mail hash.
    assert len(fp_sink.messages(to=TX_ADDRESS)) == 1

    query = mrws.build_search_query(71, {"Originating__bTicket__bNumber": "g-1"}, ["mrSTATUS"])
    assert _soap(fp_sandbox, *mrws.search(user, pw, query)) == [
        {"mrID": mrid, "mrSTATUS": "Resolved"}]
    none = mrws.build_search_query(71, {"Originating__bTicket__bNumber": "nope"})
    assert _soap(fp_sandbox, *mrws.search(user, pw, none)) == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"status": "Bogus"}, "status=Bogus: not a valid status"),
        ({"priorityNumber": 9}, "not a valid priority"),
        ({"projectID": 5}, "project 5 does not exist"),
        ({"title": ""}, "title is required"),
        ({"projfields": {"Ticket__bType": "Nope"}}, "not a valid ticket type"),
        ({"projfields": {"Favourite__bColour": "red"}}, "unknown project field"),
        ({"mail": {}}, "Can't coerce array into hash"),
    ],
)
def test_soap_create_with_invalid_values_faults(
    fp_sandbox: FootprintsSandbox, args: dict[str, mrws.SoapValue], reason: str
) -> None:
    method, body = mrws.create_issue(fp_sandbox.user, fp_sandbox.password, _create_args(**args))
    with pytest.raises(mrws.SoapFault, match=reason):
        _soap(fp_sandbox, method, body)
    assert fp_sandbox.tickets() == []


def test_soap_unknown_issue_faults(fp_sandbox: FootprintsSandbox) -> None:
    user, pw = fp_sandbox.user, fp_sandbox.password
    with pytest.raises(mrws.SoapFault, match="issue 42 does not exist"):
        _soap(fp_sandbox, *mrws.get_issue_details(user, pw, 71, 42))
    with pytest.raises(mrws.SoapFault, match="issue 42 does not exist"):
        _soap(fp_sandbox, *mrws.edit_issue(user, pw, {"projectID": 71, "mrID": 42}))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("DELETE FROM MASTER71", "unsupported query"),
        ("SELECT mrID FROM MASTER71 WHERE mrSTATUS LIKE 'E%'", "unsupported condition"),
        ("SELECT mrID FROM MASTER71 WHERE mrSTATUS = 'x' OR 1 = 1", "only AND"),
        ("SELECT mrID FROM MASTER71 WHERE secret = 'x'", "Unknown column 'secret'"),
        ("SELECT mrID FROM users WHERE mrID = '1'", "only MASTER<project>"),
        ("SELECT mrID FROM MASTER72 WHERE mrID = '1'", "MASTER72' doesn't exist"),
    ],
)
def test_soap_search_outside_the_subset_faults_naming_the_problem(
    fp_sandbox: FootprintsSandbox, query: str, reason: str
) -> None:
    with pytest.raises(mrws.SoapFault, match=reason):
        _soap(fp_sandbox, *mrws.search(fp_sandbox.user, fp_sandbox.password, query))


def test_soap_wrong_password_faults_as_auth(fp_sandbox: FootprintsSandbox) -> None:
    with pytest.raises(mrws.SoapFault) as caught:
        _soap(fp_sandbox, *mrws.get_issue_details(fp_sandbox.user, "wrong", 71, 1))
    assert mrws.is_auth_fault(caught.value)


def test_soap_unknown_method_faults(fp_sandbox: FootprintsSandbox) -> None:
    body = mrws.build_call("MRWebServices__deleteIssue", [("user", "goctx")])
    with pytest.raises(mrws.SoapFault, match="no method 'MRWebServices__deleteIssue'"):
        _soap(fp_sandbox, "MRWebServices__deleteIssue", body)


def test_hostile_soap_bodies_are_refused_without_reading_files(
    fp_sandbox: FootprintsSandbox, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = f"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>
<m:MRWebServices__search xmlns:m="MRWebServices"><user>goctx</user>
<password>&x;</password></m:MRWebServices__search></e:Body></e:Envelope>""".encode()
    request = urllib.request.Request(fp_sandbox.soap_url, data=xxe, method="POST",
                                     headers={"Content-Type": "text/xml"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    answer = caught.value.read()
    assert b"TOP-SECRET" not in answer
    with pytest.raises(mrws.SoapFault, match="request refused: XML refused"):
        mrws.parse_response(answer)


def test_http_edges(fp_sandbox: FootprintsSandbox) -> None:
    with pytest.raises(urllib.error.HTTPError) as get:
        urllib.request.urlopen(fp_sandbox.soap_url, timeout=10)
    assert get.value.code == 405
    wrong = fp_sandbox.soap_url.replace("MRWebServices.pl", "other.pl")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(urllib.request.Request(wrong, data=b"<x/>"), timeout=10)
    assert missing.value.code == 404
    # An announced oversize body is refused before a byte of it is read.
    connection = http.client.HTTPConnection("127.0.0.1", fp_sandbox.http_port, timeout=10)
    try:
        connection.putrequest("POST", mrws.ENDPOINT_PATH)
        connection.putheader("Content-Length", str(mrws.MAX_DOCUMENT_BYTES + 1))
        connection.endheaders()
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_serve_prints_its_endpoints_and_stops_on_request(tmp_path: Path) -> None:
    lines: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            ready.set()

    runner = threading.Thread(target=serve, kwargs={
        "db_path": tmp_path / "fp.sqlite3", "smtp_port": 0, "http_port": 0, "out": out,
        "stop": stop})
    runner.start()
    try:
        assert ready.wait(10), lines
        smtp_line = next(line for line in lines if "smtp://127.0.0.1:" in line)
        port = int(smtp_line.split("smtp://127.0.0.1:")[1].split()[0])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            assert smtp.noop()[0] == 250
        assert any("/MRcgi/MRWebServices.pl" in line for line in lines)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert lines[-1] == "Footprints emulator stopped."


# --- speed: keep-alive, one transaction per submission, indexed search ----------------


def _post(connection: http.client.HTTPConnection, body: bytes, method: str) -> bytes:
    connection.request("POST", mrws.ENDPOINT_PATH, body=body, headers={
        "Content-Type": "text/xml", "SOAPAction": mrws.soap_action(method)})
    response = connection.getresponse()
    assert response.version == 11 and not response.will_close
    return response.read()


def test_soap_keeps_the_connection_alive(fp_sandbox: FootprintsSandbox) -> None:
    user, pw = fp_sandbox.user, fp_sandbox.password
    connection = http.client.HTTPConnection("127.0.0.1", fp_sandbox.http_port, timeout=10)
    try:
        created = mrws.parse_response(
            _post(connection, *reversed(mrws.create_issue(user, pw, _create_args()))))
        sock = connection.sock
        query = mrws.build_search_query(71, {"Originating__bTicket__bNumber": "G-1"})
        found = mrws.parse_response(_post(connection, *reversed(mrws.search(user, pw, query))))
        # A fault (HTTP 500) keeps the connection too.
        with pytest.raises(mrws.SoapFault):
            mrws.parse_response(
                _post(connection, *reversed(mrws.get_issue_details(user, pw, 71, 999))))
        assert connection.sock is sock  # the same TCP connection throughout
        assert found == [{"mrID": int(str(created))}]
    finally:
        connection.close()


def test_a_refused_request_body_closes_the_kept_connection(
    fp_sandbox: FootprintsSandbox,
) -> None:
    # Answered without reading the body: the body must not be read as the next request.
    connection = http.client.HTTPConnection("127.0.0.1", fp_sandbox.http_port, timeout=10)
    try:
        connection.request("POST", "/MRcgi/other.pl", body=b"GET / HTTP/1.1\r\n\r\n")
        response = connection.getresponse()
        assert (response.status, response.will_close) == (404, True)
    finally:
        connection.close()


def test_stopping_closes_kept_connections(fp_sandbox: FootprintsSandbox) -> None:
    user, pw = fp_sandbox.user, fp_sandbox.password
    connection = http.client.HTTPConnection("127.0.0.1", fp_sandbox.http_port, timeout=10)
    try:
        query = mrws.build_search_query(71, {"Originating__bTicket__bNumber": "x"})
        assert mrws.parse_response(
            _post(connection, *reversed(mrws.search(user, pw, query)))) == []
        fp_sandbox.stop()
        with pytest.raises((http.client.HTTPException, OSError)):
            _post(connection, *reversed(mrws.search(user, pw, query)))
    finally:
        connection.close()


def test_search_by_originating_number_uses_the_index(send_to_fp: Send,
                                                     fp_sandbox: FootprintsSandbox) -> None:
    for n in range(30):
        send_to_fp(mail(f"ticket {n}", f"body\n\nOriginating Ticket Number=G-{n}\n"))
    user, pw = fp_sandbox.user, fp_sandbox.password
    statements: list[str] = []
    fp_sandbox.store._conn.set_trace_callback(statements.append)
    try:
        query = mrws.build_search_query(
            71, {"Originating__bTicket__bNumber": "g-7"}, ["mrTITLE"])
        assert _soap(fp_sandbox, *mrws.search(user, pw, query)) == [
            {"mrID": 8, "mrTITLE": "ticket 7"}]
    finally:
        fp_sandbox.store._conn.set_trace_callback(None)
    issue_reads = [s for s in statements if s.startswith("SELECT * FROM issues")]
    assert issue_reads == ["SELECT * FROM issues WHERE origin = 'g-7' ORDER BY mrid"]
    plan = fp_sandbox.store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM issues WHERE origin = ? ORDER BY mrid", ("g-7",)
    ).fetchall()
    assert "issues_origin" in " ".join(str(row[3]) for row in plan)
    # Other conditions still filter, and an empty number still means "no number".
    both = mrws.build_search_query(
        71, {"Originating__bTicket__bNumber": "G-7", "mrSTATUS": "Closed"})
    assert _soap(fp_sandbox, *mrws.search(user, pw, both)) == []
    assert fp_sandbox.find("G-7")[0].mrid == 8 and fp_sandbox.find("g-7") == []


def test_one_transaction_per_mail(fp_sandbox: FootprintsSandbox, send_to_fp: Send) -> None:
    statements: list[str] = []
    fp_sandbox.store._conn.set_trace_callback(statements.append)
    try:
        send_to_fp(mail("one", "body\n\nOriginating Ticket Number=G-1\n",
                        message_id="<one@x>"))
    finally:
        fp_sandbox.store._conn.set_trace_callback(None)
    writes = [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "INSERT", "UPDATE")]
    assert writes[0] == "BEGIN IMMEDIATE"
    assert [s.split()[0] for s in writes].count("BEGIN") == 1
    commit = writes.index("COMMIT")
    # The issue, its description and the processed Message-ID: all in that transaction.
    assert [s.split("(")[0].strip() for s in writes[1:commit]] == [
        "INSERT INTO issues", "INSERT INTO descriptions",
        "INSERT OR REPLACE INTO processed_messages"]
    # The notification went to the smarthost after the commit; its outbox row with it.
    assert any(s.startswith("INSERT INTO outbox") for s in writes[commit:])


def test_a_database_of_an_older_emulator_is_upgraded(tmp_path: Path) -> None:
    import json
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE issues (mrid INTEGER PRIMARY KEY AUTOINCREMENT, project INTEGER NOT NULL,
            title TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
            ticket_type TEXT NOT NULL, submitter TEXT NOT NULL, contact TEXT NOT NULL,
            assignees TEXT NOT NULL, projfields TEXT NOT NULL, created TEXT NOT NULL,
            modified TEXT NOT NULL);
    """)
    old.execute(
        "INSERT INTO issues (project, title, status, priority, ticket_type, submitter,"
        " contact, assignees, projfields, created, modified) VALUES"
        " (71, 'old', 'Engineering', 4, 'Problem/Request', 'x', '{}', '', ?, ?, ?)",
        (json.dumps({"Originating Ticket Number": "G-OLD"}), "2024-01-01T00:00:00+00:00",
         "2024-01-01T00:00:00+00:00"))
    old.commit()
    old.close()
    with FootprintsSandbox(db_path=path) as sandbox:
        assert [i.title for i in sandbox.find("G-OLD")] == ["old"]
        assert sandbox.store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- attachments -----------------------------------------------------------------------


def _with_files(msg: EmailMessage, *files: tuple[str, bytes, str]) -> EmailMessage:
    for name, data, kind in files:
        maintype, _, subtype = kind.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def _raw_mail(subject: str, parts: str) -> bytes:
    """A multipart mail written by hand, as another mailer would produce it."""
    return (
        f"From: Jane Doe <jane@ggus.example.org>\r\nTo: fp-incoming@goc.example.org\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        "--XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the files.\r\n"
        f"{parts}--XX--\r\n"
    ).encode("ascii")


def _send_raw(sandbox: FootprintsSandbox, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
        smtp.sendmail("jane@ggus.example.org", [sandbox.incoming_address], raw)


def test_a_create_mail_with_attachments_stores_them(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send
) -> None:
    send_to_fp(_with_files(
        mail("CE down", "The CE refuses jobs.\nOriginating Ticket Number=A-1\n",
             sender="Jane Doe <jane@ggus.example.org>"),
        ("gatekeeper.log", b"line 1\nline 2\n", "text/plain"),
        ("core.bin", bytes(range(256)), "application/octet-stream")))
    (issue,) = fp_sandbox.find("A-1")
    log, core = issue.attachments
    assert (log.name, log.content_type, log.data, log.size) == (
        "gatekeeper.log", "text/plain", b"line 1\nline 2\n", 14)
    assert (core.name, core.content_type, core.data, core.size) == (
        "core.bin", "application/octet-stream", bytes(range(256)), 256)
    assert log.author == core.author == "jane@ggus.example.org"
    assert log.created == issue.created and core.id == log.id + 1
    # The files are not part of the text.
    assert [e.data for e in issue.descriptions] == ["The CE refuses jobs."]


def test_an_update_mail_with_only_an_attachment_adds_it_and_no_text(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    before = fp_sandbox.ticket(mrid)
    send_to_fp(_with_files(mail(f"ISSUE={mrid} PROJ=71", ""),
                           ("empty.txt", b"", "text/plain")))
    after = fp_sandbox.ticket(mrid)
    (empty,) = after.attachments
    assert (empty.name, empty.data, empty.size) == ("empty.txt", b"", 0)
    assert after.descriptions == before.descriptions
    assert after.title == before.title  # a subject without a title renames nothing
    assert after.modified >= before.modified


def test_attachment_names_lose_trailing_newlines_and_path_separators(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    # RFC 2231 can carry any character, a newline included (as GGUS names have them).
    _send_raw(fp_sandbox, _raw_mail(
        f"Re: x ISSUE={mrid} PROJ=71",
        "--XX\r\nContent-Type: text/plain\r\n"
        "Content-Disposition: attachment; filename*=utf-8''report.txt%0A%0A\r\n\r\nr\r\n"
        "--XX\r\nContent-Type: text/plain\r\n"
        "Content-Disposition: attachment; filename=\"..\\\\..\\\\etc/passwd \"\r\n\r\np\r\n"))
    names = [a.name for a in fp_sandbox.ticket(mrid).attachments]
    assert names == ["report.txt", ".._.._etc_passwd"]


def test_transfer_encodings_are_decoded_and_base64_content_is_kept_as_is(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    # Line-wrapped base64, quoted-printable, and a file whose *content* is base64 text
    # (GGUS' double encoding, spec (d) 8): that one is a file like any other.
    _send_raw(fp_sandbox, _raw_mail(
        f"Re: x ISSUE={mrid} PROJ=71",
        "--XX\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=a.bin\r\n\r\n"
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\r\nISIjJCUmJygpKissLS4v\r\n"
        "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "Content-Disposition: attachment; filename=q.txt\r\n\r\n"
        "caf=C3=A9 =3D ok=\r\n!\r\n"
        "--XX\r\nContent-Type: text/plain\r\n"
        "Content-Disposition: attachment; filename=b64.txt\r\n\r\naGVsbG8=\r\n"))
    files = {a.name: a.data for a in fp_sandbox.ticket(mrid).attachments}
    assert files == {"a.bin": bytes(range(48)), "q.txt": "café = ok!".encode(),
                     "b64.txt": b"aGVsbG8="}  # not b"hello": 7bit text, stored as sent


def test_an_oversize_attachment_is_rejected_with_a_reply_saying_why(
    fp_sink: MailSink,
) -> None:
    with FootprintsSandbox(smarthost=fp_sink.address, max_attachment_bytes=1000) as sandbox:
        sender = "Op <operator@example.org>"
        with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(_with_files(
                mail("Too big", "text\nOriginating Ticket Number=B-1\n", sender=sender,
                     message_id="<big@example.org>"),
                ("ok.txt", b"x" * 1000, "text/plain"),
                ("big.bin", b"x" * 1001, "application/octet-stream")),
                to_addrs=[sandbox.incoming_address])
        assert sandbox.tickets() == []  # the whole mail was refused, the small file too
        (reply,) = fp_sink.messages(to="operator@example.org")
        assert reply["In-Reply-To"] == "<big@example.org>"
        assert "attachment 'big.bin' is 1001 bytes; the limit is 1000 bytes" in (
            reply.get_content())


def test_the_default_limit_is_10_mb_and_the_smtp_door_lets_the_mail_through(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send, fp_sink: MailSink
) -> None:
    limit = 10 * 1024 * 1024
    assert fp_sandbox.engine.max_attachment_bytes == limit
    mrid = _create(send_to_fp, fp_sandbox)
    send_to_fp(_with_files(mail(f"Re: x ISSUE={mrid} PROJ=71", "", message_id="<b@x.org>"),
                           ("huge.bin", bytes(limit + 1), "application/octet-stream")))
    assert fp_sandbox.ticket(mrid).attachments == ()
    (reply,) = [m for m in fp_sink.messages(to=GGUS_SENDER) if m["In-Reply-To"] == "<b@x.org>"]
    assert f"is {limit + 1} bytes; the limit is {limit} bytes" in reply.get_content()


def test_get_issue_details_lists_attachments_and_get_attachment_returns_the_bytes(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send
) -> None:
    mrid = _create(send_to_fp, fp_sandbox)
    data = bytes(range(256)) + b"\x00\r\n]]>&<"
    send_to_fp(_with_files(mail(f"Re: x ISSUE={mrid} PROJ=71", "logs attached"),
                           ("dump.bin", data, "application/octet-stream"),
                           ("empty.txt", b"", "text/plain")))
    user, pw = fp_sandbox.user, fp_sandbox.password
    raw = _soap(fp_sandbox, *mrws.get_issue_details(user, pw, 71, mrid))
    assert isinstance(raw, dict)
    listed = raw["attachments"]
    assert isinstance(listed, list) and len(listed) == 2
    details = mrws.IssueDetails.from_soap(raw)
    dump, empty = details.attachments
    stored = fp_sandbox.ticket(mrid).attachments
    assert (dump.id, dump.name, dump.size, dump.content_type) == (
        stored[0].id, "dump.bin", len(data), "application/octet-stream")
    assert (empty.name, empty.size, empty.content_type) == ("empty.txt", 0, "text/plain")
    assert dump.created == stored[0].created and dump.author == GGUS_SENDER

    for info, expected in ((dump, data), (empty, b"")):
        method, body = mrws.get_attachment(user, pw, 71, mrid, info.id)
        assert b'xsi:type="SOAP-ENC:base64"' in _raw_soap(fp_sandbox, method, body)
        request = urllib.request.Request(
            fp_sandbox.soap_url, data=body, method="POST",
            headers={"Content-Type": "text/xml", "SOAPAction": mrws.soap_action(method)})
        with urllib.request.urlopen(request, timeout=10) as response:
            got = mrws.parse_response(response.read(), binary=True)
        assert got == expected
    # The _goc variant answers the same.
    method, body = mrws.get_attachment(user, pw, 71, mrid, dump.id, goc=True)
    assert mrws.parse_response(_raw_soap(fp_sandbox, method, body), binary=True) == data


def _raw_soap(sandbox: FootprintsSandbox, method: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        sandbox.soap_url, data=body, method="POST",
        headers={"Content-Type": "text/xml", "SOAPAction": mrws.soap_action(method)})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())


def test_get_attachment_of_a_missing_file_faults(
    fp_sandbox: FootprintsSandbox, send_to_fp: Send
) -> None:
    first = _create(send_to_fp, fp_sandbox)
    send_to_fp(_with_files(mail("Other", "x\nOriginating Ticket Number=O-2\n"),
                           ("a.txt", b"a", "text/plain")))
    (other,) = fp_sandbox.find("O-2")
    (owned,) = other.attachments
    user, pw = fp_sandbox.user, fp_sandbox.password
    cases = [((71, first, owned.id), f"attachment {owned.id} does not exist on issue {first}"),
             ((71, 999, 1), "issue 999 does not exist"),
             ((72, other.mrid, owned.id), "project 72 does not exist")]
    for (project, mrid, attachment_id), reason in cases:
        with pytest.raises(mrws.SoapFault, match=reason):
            _soap(fp_sandbox, *mrws.get_attachment(user, pw, project, mrid, attachment_id))


def test_attachments_survive_a_restart_with_a_database_file(tmp_path: Path) -> None:
    db = tmp_path / "fp.sqlite3"
    with FootprintsSandbox(db_path=db) as sandbox:
        _send_raw(sandbox, _with_files(mail("Kept", "x\nOriginating Ticket Number=77\n"),
                                       ("k.bin", b"\x00kept", "application/octet-stream"))
                  .as_bytes())
    with FootprintsSandbox(db_path=db) as again:
        (issue,) = again.find("77")
        assert [(a.name, a.data) for a in issue.attachments] == [("k.bin", b"\x00kept")]
