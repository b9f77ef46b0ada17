"""Transport specifics of the ggus-soap, ggus-rest and ggus-mail connectors, on loopback.

The behaviour every connector shares is in tests/contract/. Here: kept connections and
reconnecting (through a keep-alive HTTP/1.1 front in front of the GGUS emulator, which
itself closes every connection), the attachment quirks, what OpCreate and TicketModify
carry, snapshots in the mail-XML vocabulary, REST paging and the overlap window of
``changed_since``, Retry-After, and the mail connector's messages and SMTP replies.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tests.support.footprints import MailSink
from tests.support.ggus import ggus_mail_message
from ticketbridge.codecs import ggus_mail
from ticketbridge.connectors.ggus import (
    GgusMailConnector,
    GgusMailSettings,
    GgusRestConnector,
    GgusRestSettings,
    GgusSoapConnector,
    GgusSoapSettings,
)
from ticketbridge.errors import ConfigError, RemoteAuthFailed, RemoteRejected, RemoteUnavailable
from ticketbridge.exchange.ggus_footprints import OTHER_INFO, GgusToFootprints
from ticketbridge.model import (
    AddAttachment,
    Attachment,
    Comment,
    CreateTicket,
    UpdateTicket,
    Visibility,
)
from ticketbridge.sandbox.ggus import GgusSandbox

T0 = datetime(2025, 1, 6, 9, 0, 0, tzinfo=UTC)


def _create(key: str = "40637", title: str = "CE down at MWT2", **fields: str) -> CreateTicket:
    return CreateTicket(
        helpdesk="ggus", correlation_key=key, title=title,
        description="The CE refuses all jobs.",
        fields={"status": "new", "priority": "urgent", **fields})


def _soap(sandbox: GgusSandbox, url: str | None = None, **changes: Any) -> GgusSoapConnector:
    return GgusSoapConnector("ggus", GgusSoapSettings.model_validate({
        "kind": "ggus-soap", "url": url or sandbox.base_url, "ars_server": sandbox.ars_server,
        "user": sandbox.soap_user, "password": sandbox.soap_password,
        "connect_timeout": 5, "read_timeout": 10, **changes}))


def _rest(sandbox: GgusSandbox, url: str | None = None, **changes: Any) -> GgusRestConnector:
    return GgusRestConnector("ggus", GgusRestSettings.model_validate({
        "kind": "ggus-rest", "url": url or sandbox.base_url, "token": sandbox.rest_token,
        "connect_timeout": 5, "read_timeout": 10, **changes}))


@pytest.fixture
def soap_connector(ggus_sandbox: GgusSandbox) -> Iterator[GgusSoapConnector]:
    connector = _soap(ggus_sandbox)
    yield connector
    connector.close()


@pytest.fixture
def rest_connector(ggus_sandbox: GgusSandbox) -> Iterator[GgusRestConnector]:
    connector = _rest(ggus_sandbox)
    yield connector
    connector.close()


# --- a keep-alive front for the emulator ------------------------------------------------


class KeepAliveFront:
    """An HTTP/1.1 keep-alive server on a fixed 127.0.0.1 port that passes each request on
    to ``upstream`` and its answer back. ``stop()`` closes every open connection, as a
    restarting server does; ``drop_next`` makes it close the connection on the next
    request without answering (a connection that dies mid-request)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.requests = 0
        self.connections = 0
        self.drop_next = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> KeepAliveFront:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with front._lock:
                    front.requests += 1
                    drop, front.drop_next = front.drop_next, False
                if drop:
                    self.close_connection = True
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", front.upstream_port,
                                                      timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "host")}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "content-length", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, address = super().get_request()
                with front._lock:
                    front._open.add(sock)
                    front.connections += 1
                return sock, address

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def front(ggus_sandbox: GgusSandbox) -> Iterator[KeepAliveFront]:
    running = KeepAliveFront(ggus_sandbox.http_port).start()
    yield running
    running.stop()


def test_soap_keeps_one_connection_between_calls(
    ggus_sandbox: GgusSandbox, front: KeepAliveFront
) -> None:
    connector = _soap(ggus_sandbox, url=front.url)
    try:
        ticket_id = connector.apply(_create()).ticket_id or ""
        kept = connector.http.kept
        assert kept is not None and kept.sock is not None
        connector.apply(UpdateTicket("ggus", ticket_id, fields={"status": "in progress"}))
        connector.fetch(ticket_id)
        assert connector.http.kept is kept and kept.sock is not None
        assert front.connections == 1 and front.requests >= 5
        connector.close()
        assert connector.http.kept is None
    finally:
        connector.close()


def test_the_emulator_itself_closes_each_connection_and_that_is_followed(
    soap_connector: GgusSoapConnector,
) -> None:
    soap_connector.apply(_create())
    assert soap_connector.http.kept is None  # HTTP/1.0 answers: nothing is kept


@pytest.mark.parametrize("kind", ["soap", "rest"])
def test_a_restarted_server_is_reconnected_before_anything_is_sent(
    ggus_sandbox: GgusSandbox, front: KeepAliveFront, kind: str
) -> None:
    connector = (_soap if kind == "soap" else _rest)(ggus_sandbox, url=front.url)
    try:
        ticket_id = connector.apply(_create()).ticket_id or ""
        front.stop()  # closes the kept connection, as a restart does
        front.start()
        # A write on the dead kept connection would be doubtful; it is noticed first.
        receipt = connector.apply(UpdateTicket("ggus", ticket_id, comments=(
            Comment("c1", "after the restart"),)))
        assert receipt.ticket_id == ticket_id
        diaries = [h for h in ggus_sandbox.history(ticket_id)
                   if h.public_diary == "after the restart"]
        assert len(diaries) == 1
        assert connector.fetch(ticket_id).ref.id == ticket_id
        assert front.connections == 2
    finally:
        connector.close()


@pytest.mark.parametrize("kind", ["soap", "rest"])
def test_a_read_on_a_connection_dying_mid_request_is_repeated_once(
    ggus_sandbox: GgusSandbox, front: KeepAliveFront, kind: str
) -> None:
    connector = (_soap if kind == "soap" else _rest)(ggus_sandbox, url=front.url)
    try:
        ticket_id = connector.apply(_create()).ticket_id or ""
        before = front.requests
        front.drop_next = True
        assert connector.fetch(ticket_id).title == "CE down at MWT2"
        assert front.requests > before + 1  # the dropped one, then again on a new connection
    finally:
        connector.close()


@pytest.mark.parametrize("kind", ["soap", "rest"])
def test_a_write_on_a_connection_dying_mid_request_is_reported_not_repeated(
    ggus_sandbox: GgusSandbox, front: KeepAliveFront, kind: str
) -> None:
    connector = (_soap if kind == "soap" else _rest)(ggus_sandbox, url=front.url)
    try:
        ticket_id = connector.apply(_create()).ticket_id or ""
        before = front.requests
        front.drop_next = True
        with pytest.raises(RemoteUnavailable):
            connector.apply(UpdateTicket("ggus", ticket_id, comments=(Comment("c", "once"),)))
        assert front.requests == before + 1
        assert not [h for h in ggus_sandbox.history(ticket_id) if h.public_diary == "once"]
        connector.apply(UpdateTicket("ggus", ticket_id, comments=(Comment("c", "once"),)))
        assert len([h for h in ggus_sandbox.history(ticket_id) if h.public_diary == "once"]) == 1
    finally:
        connector.close()


def test_a_server_that_does_not_answer_times_out_as_unavailable(
    ggus_sandbox: GgusSandbox,
) -> None:
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for connector in (_soap(ggus_sandbox, url=url, read_timeout=0.3),
                          _rest(ggus_sandbox, url=url, read_timeout=0.3)):
            with pytest.raises(RemoteUnavailable, match="timed out"):
                connector.fetch("1000")
            connector.close()


# --- SOAP: what goes over the wire ------------------------------------------------------


def test_op_create_carries_origin_unit_and_who(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    receipt = soap_connector.apply(_create(GHD_Last_Modifier="Jane Doe (via Footprints)"))
    assert receipt.version  # read back after the write: GHD_Date_Of_Change
    ticket = ggus_sandbox.ticket(receipt.ticket_id or "")
    assert (ticket.origin_id, ticket.origin_sg) == ("40637", "TX_FP71_GGUS2")
    assert (ticket.responsible_unit, ticket.status) == ("TPM", "new")
    assert (ticket.last_login, ticket.last_modifier) == ("osg_tx", "Jane Doe (via Footprints)")

    other = soap_connector.apply(_create("40638", GHD_Responsible_Unit="OSG"))
    routed = ggus_sandbox.ticket(other.ticket_id or "")
    assert (routed.responsible_unit, routed.last_modifier) == ("OSG", "ticketbridge")


def test_ticket_modify_joins_comments_per_visibility(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    ticket_id = soap_connector.apply(_create()).ticket_id or ""
    soap_connector.apply(UpdateTicket("ggus", ticket_id, fields={"status": "in progress"},
                                      comments=(
        Comment("a", "first public"), Comment("b", "secret", visibility=Visibility.INTERNAL),
        Comment("c", "second public"), Comment("d", "marked internal", kind="internal diary"))))
    last = ggus_sandbox.history(ticket_id)[-1]
    assert last.public_diary == "first public\n\nsecond public"
    assert last.internal_diary == "secret\n\nmarked internal"
    assert last.status == "in progress"


def test_solution_and_title_go_to_their_elements(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    ticket_id = soap_connector.apply(_create()).ticket_id or ""
    soap_connector.apply(UpdateTicket("ggus", ticket_id, fields={
        "title": "CE fixed", "status": "solved", "GHD_Detailed_Solution": "Restarted."}))
    ticket = soap_connector.fetch(ticket_id)
    assert (ticket.title, ticket.status) == ("CE fixed", "solved")
    assert ticket.fields["GHD_Detailed_Solution"] == "Restarted."
    assert [c.kind for c in ticket.comments][-1] == "solution"


def test_a_field_the_operation_cannot_carry_is_refused_before_sending(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    ticket_id = soap_connector.apply(_create()).ticket_id or ""
    rows = len(ggus_sandbox.history(ticket_id))
    with pytest.raises(RemoteRejected, match="TicketModify cannot carry GHD_Phone"):
        soap_connector.apply(UpdateTicket("ggus", ticket_id, fields={"GHD_Phone": "1"}))
    assert len(ggus_sandbox.history(ticket_id)) == rows


def test_fetched_ticket_speaks_the_notification_mail_vocabulary(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox, send_to_ggus: Any
) -> None:
    send_to_ggus(ggus_mail_message("SRM timeouts at BNL", "Transfers fail since 10:00."))
    ticket_id = str(ggus_sandbox.tickets()[-1].request_id)
    ggus_sandbox.route(ticket_id, "OSG")
    ggus_sandbox.add_diary(ticket_id, "Looking into it.", author="Guenter Grein")
    ggus_sandbox.add_diary(ticket_id, "Supporters only.", internal=True, author="TPM")

    fetched = soap_connector.fetch(ticket_id)
    mailed = ggus_mail.decode(ggus_sandbox.outbox()[-1].raw).ticket
    for name in ("GHD_Request-ID", "GHD_E-Mail", "GHD_Experiment", "GHD_Status",
                 "GHD_Priority", "GHD_Short_Description", "GHD_Responsible_Unit",
                 "GHD_Name", "GHD_Loginname", "GHD_Type_Of_Problem"):
        assert fetched.fields.get(name) == mailed.fields.get(name), name
    assert "GHD_Internal_Diary" not in fetched.fields  # diaries are comments, with visibility
    assert (fetched.title, fetched.status, fetched.submitter.email) == (
        mailed.title, mailed.status, mailed.submitter.email)
    assert [(c.body, c.visibility, c.author) for c in fetched.comments] == [
        ("Looking into it.", Visibility.PUBLIC, "Guenter Grein"),
        ("Supporters only.", Visibility.INTERNAL, "TPM")]
    assert all(c.created is not None for c in fetched.comments)
    # Keyed as the mail codec keys them: one entry, one key, whichever way it was seen.
    assert fetched.comments[-1].key == mailed.comments[-1].key
    # Remedy's SOAP dates have one-second resolution.
    assert fetched.modified == ggus_sandbox.ticket(ticket_id).modified.replace(microsecond=0)

    create = GgusToFootprints().create(fetched, "goc")
    assert create.correlation_key == ticket_id
    info = create.description.split("[Other GGUS Ticket Info]")[1]
    for label, element in OTHER_INFO:
        value = ticket_id if element == "GHD_Request-ID" else mailed.field(element)
        if value:
            assert f"{label}: {value}" in info
    assert not any("Supporters only." in c.body for c in create.comments
                   if c.visibility is Visibility.PUBLIC)


# --- SOAP: attachment quirks ------------------------------------------------------------


def test_no_attachments_is_an_empty_list_not_an_error(
    soap_connector: GgusSoapConnector,
) -> None:
    ticket_id = soap_connector.apply(_create()).ticket_id or ""
    assert soap_connector.fetch(ticket_id).attachments == ()  # GetAttachIDs: ERROR (302)


def test_attachment_quirks_are_undone(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    ticket_id = soap_connector.apply(_create()).ticket_id or ""
    ggus_sandbox.add_attachment(ticket_id, "legacy.txt", b"sent base64 twice\n", legacy=True)
    ggus_sandbox.add_attachment(ticket_id, "empty.log", b"")
    ggus_sandbox.add_attachment(ticket_id, "trailing.xml\n", b"<a/>")
    ggus_sandbox.add_attachment(ticket_id, "bytes.bin", bytes(range(256)), legacy=True)
    found = soap_connector.fetch(ticket_id).attachments
    assert [(a.name, a.data) for a in found] == [
        ("legacy.txt", b"sent base64 twice\n"),  # base64 twice on the wire
        ("empty.log", b""),  # no data element at all
        ("trailing.xml", b"<a/>"),  # stored as "trailing.xml\n"
        ("bytes.bin", bytes(range(256))),
    ]
    assert (found[0].content_type, found[3].content_type) == (
        "text/plain", "application/octet-stream")
    assert found[2].content_type.endswith("/xml")  # guessed from the cleaned name
    assert all(a.author == "GGUS supporter" and a.created is not None for a in found)
    assert len({a.key for a in found}) == 4


def test_every_attachment_double_encoded_by_the_server_is_read(
    ggus_sink: MailSink,
) -> None:
    with GgusSandbox(smarthost=ggus_sink.address, double_base64_attachments=True) as sandbox:
        connector = _soap(sandbox)
        try:
            ticket_id = connector.apply(_create()).ticket_id or ""
            data = b"QUJD"  # itself valid base64: decoded only once, by the size
            connector.apply(AddAttachment("ggus", ticket_id, Attachment("k", "b64.txt", data)))
            assert [a.data for a in connector.fetch(ticket_id).attachments] == [data]
        finally:
            connector.close()


def test_add_attachment_over_soap(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    ticket_id = soap_connector.apply(_create()).ticket_id or ""
    receipt = soap_connector.apply(AddAttachment("ggus", ticket_id, Attachment(
        "k", "notes.txt\n", b"hello", author="John Smith (via Footprints)")))
    stored = ggus_sandbox.attachments(ticket_id)
    assert receipt.detail == f"attachment:{stored[0].id}"
    assert (stored[0].name, stored[0].data, stored[0].last_modifier, stored[0].origin_sg) == (
        "notes.txt", b"hello", "John Smith (via Footprints)", "TX_FP71_GGUS2")
    too_big = Attachment("k2", "big.bin", b"x" * (2 * 1024 * 1024 + 1))
    with pytest.raises(RemoteRejected, match="2 MB"):
        soap_connector.apply(AddAttachment("ggus", ticket_id, too_big))


def test_find_by_correlation_needs_our_origin_sg(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    other = _soap(ggus_sandbox, origin_sg="TX_OTHER")
    try:
        other.apply(_create("555"))
        assert soap_connector.find_by_correlation("555") is None
        mine = soap_connector.apply(_create("555")).ticket_id
        assert soap_connector.find_by_correlation("555") == mine
        assert other.find_by_correlation("555") != mine
    finally:
        other.close()


def test_soap_faults_are_translated(
    soap_connector: GgusSoapConnector, ggus_sandbox: GgusSandbox
) -> None:
    with pytest.raises(RemoteRejected, match=r"ERROR \(302\)"):
        soap_connector.fetch("4711")
    with pytest.raises(RemoteRejected, match="not a GGUS ticket id"):
        soap_connector.fetch("12a")
    with pytest.raises(RemoteRejected, match=r"ERROR \(10000\).*in progress"):
        soap_connector.apply(_create(status="in progress"))
    with pytest.raises(RemoteAuthFailed, match=r"ERROR \(623\)"):
        _soap(ggus_sandbox, user="nobody").fetch("1000")
    with pytest.raises(RemoteUnavailable, match=r"ERROR \(90\)"):
        _soap(ggus_sandbox, ars_server="prod-ars").fetch("1000")


# --- canned HTTP answers (Retry-After, odd statuses) -----------------------------------


class Canned:
    """An HTTP server answering every request with one fixed status, headers and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        canned = (status, headers, body)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                code, extra, payload = canned
                self.send_response(code)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


@pytest.fixture
def canned() -> Iterator[Callable[[int, dict[str, str], bytes], str]]:
    servers: list[Canned] = []

    def start(status: int, headers: dict[str, str], body: bytes = b"") -> str:
        servers.append(Canned(status, headers, body))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, b'{"error": "slow down"}', RemoteUnavailable, 7.0),
        (503, {"Retry-After": "Wed, 01 Jan 2020 00:00:00 GMT"}, b"", RemoteUnavailable, 0.0),
        (502, {}, b"bad gateway", RemoteUnavailable, None),
        (401, {}, b'{"error": "authentication failed"}', RemoteAuthFailed, None),
        (403, {}, b"forbidden", RemoteAuthFailed, None),
        (404, {}, b'{"error": "Couldn\'t find Ticket"}', RemoteRejected, None),
        (422, {}, b'{"error": "x", "error_human": "state bogus is not valid"}', RemoteRejected,
         None),
    ],
)
def test_rest_statuses_are_translated(
    canned: Callable[..., str], ggus_sandbox: GgusSandbox, status: int,
    headers: dict[str, str], body: bytes, error: type[Exception], retry_after: float | None,
) -> None:
    connector = _rest(ggus_sandbox, url=canned(status, headers, body))
    with pytest.raises(error) as caught:
        connector.fetch("1000")
    assert f"HTTP {status}" in str(caught.value)
    if status == 422:
        assert "state bogus is not valid" in str(caught.value)
    if isinstance(caught.value, RemoteUnavailable):
        assert caught.value.retry_after == retry_after
    connector.close()


def test_soap_http_errors_without_an_envelope_are_translated(
    canned: Callable[..., str], ggus_sandbox: GgusSandbox
) -> None:
    unavailable = _soap(ggus_sandbox, url=canned(503, {"Retry-After": "30"}, b"down"))
    with pytest.raises(RemoteUnavailable) as caught:
        unavailable.fetch("1000")
    assert caught.value.retry_after == 30.0
    with pytest.raises(RemoteAuthFailed):
        _soap(ggus_sandbox, url=canned(401, {}, b"no")).fetch("1000")
    with pytest.raises(RemoteUnavailable, match="unreadable answer"):
        _soap(ggus_sandbox, url=canned(200, {}, b"<html>proxy page</html>")).fetch("1000")


# --- REST -------------------------------------------------------------------------------


def test_rest_create_embeds_the_description_and_adds_comments(
    rest_connector: GgusRestConnector, ggus_sandbox: GgusSandbox
) -> None:
    op = CreateTicket("ggus", "40637", "CE down", "It is down.",
                      fields={"status": "new", "priority": "urgent", "GHD_Name": "Jane Doe",
                              "GHD_Affected_VO": "atlas"},
                      comments=(Comment("i", "internal note", visibility=Visibility.INTERNAL),))
    receipt = rest_connector.apply(op)
    assert receipt.detail.endswith("not carried by the REST API: GHD_Name")
    ticket = ggus_sandbox.ticket(receipt.ticket_id or "")
    assert (ticket.origin_id, ticket.origin_sg, ticket.affected_vo, ticket.description) == (
        "40637", "TX_FP71_GGUS2", "atlas", "It is down.")
    articles = ggus_sandbox.articles(ticket.request_id)
    assert [(a.body, a.internal) for a in articles] == [
        ("It is down.", False), ("internal note", True)]
    assert receipt.version == rest_connector.fetch(receipt.ticket_id or "").fields[
        "GHD_Date_Of_Change"]


def test_rest_solution_travels_with_state_solved(
    rest_connector: GgusRestConnector, ggus_sandbox: GgusSandbox
) -> None:
    ticket_id = rest_connector.apply(_create()).ticket_id or ""
    with pytest.raises(RemoteRejected, match="state solved only"):
        rest_connector.apply(UpdateTicket("ggus", ticket_id, fields={
            "status": "in progress", "GHD_Detailed_Solution": "done"}))
    rest_connector.apply(UpdateTicket("ggus", ticket_id, fields={
        "status": "solved", "GHD_Detailed_Solution": "Restarted the CE."},
        comments=(Comment("p", "a public note before the solution"),)))
    ticket = ggus_sandbox.ticket(ticket_id)
    assert (ticket.status, ticket.detailed_solution) == ("solved", "Restarted the CE.")
    public = [h.public_diary for h in ggus_sandbox.history(ticket_id) if h.public_diary]
    assert public == ["a public note before the solution"]


def test_rest_refuses_a_field_it_has_no_attribute_for(
    rest_connector: GgusRestConnector,
) -> None:
    ticket_id = rest_connector.apply(_create()).ticket_id or ""
    with pytest.raises(RemoteRejected, match="no attribute for GHD_Involve"):
        rest_connector.apply(UpdateTicket("ggus", ticket_id, fields={"GHD_Involve": "x@y"}))


def test_rest_snapshot_carries_mail_xml_names(rest_connector: GgusRestConnector) -> None:
    ticket_id = rest_connector.apply(_create(GHD_Affected_VO="cms")).ticket_id or ""
    ticket = rest_connector.fetch(ticket_id)
    assert ticket.ref.id == ticket_id
    assert (ticket.fields["GHD_Request-ID"], ticket.fields["GHD_Experiment"],
            ticket.fields["GHD_Responsible_Unit"], ticket.fields["GHD_Origin_ID"]) == (
        ticket_id, "cms", "TPM", "40637")


class Clock:
    """The emulator's clock, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clocked(ggus_sink: MailSink) -> Iterator[tuple[GgusSandbox, Clock]]:
    clock = Clock(T0)
    with GgusSandbox(smarthost=ggus_sink.address, clock=clock) as sandbox:
        yield sandbox, clock


def _tickets_at(sandbox: GgusSandbox, clock: Clock, *offsets: int) -> list[str]:
    connector = _rest(sandbox)
    ids = []
    for n, offset in enumerate(offsets):
        clock.now = T0 + timedelta(seconds=offset)
        ids.append(connector.apply(_create(str(n), title=f"ticket {n}")).ticket_id or "")
    connector.close()
    return ids


def test_changed_since_pages_in_update_order(clocked: tuple[GgusSandbox, Clock]) -> None:
    sandbox, clock = clocked
    ids = _tickets_at(sandbox, clock, 1, 2, 3, 4, 5)
    connector = _rest(sandbox, page_size=2)
    found, watermark = connector.changed_since(T0)
    assert found == ids
    assert watermark == T0 + timedelta(seconds=5)
    # Later: only what changed after the watermark, oldest change first.
    clock.now = T0 + timedelta(seconds=9)
    connector.apply(UpdateTicket("ggus", ids[0], comments=(Comment("c", "later"),)))
    assert connector.changed_since(watermark) == ([ids[0]], T0 + timedelta(seconds=9))
    assert connector.changed_since(T0 + timedelta(seconds=9)) == ([], T0 + timedelta(seconds=9))
    connector.close()


def test_changed_since_reads_a_full_page_of_ties(clocked: tuple[GgusSandbox, Clock]) -> None:
    sandbox, clock = clocked
    ids = _tickets_at(sandbox, clock, 1, 1, 1, 1, 1, 2)
    connector = _rest(sandbox, page_size=2)
    found, watermark = connector.changed_since(T0)
    assert found == ids
    assert watermark == T0 + timedelta(seconds=2)
    connector.close()


def test_changed_since_overlap_catches_a_late_change(clocked: tuple[GgusSandbox, Clock]) -> None:
    sandbox, clock = clocked
    ids = _tickets_at(sandbox, clock, 1, 2, 3)
    connector = _rest(sandbox)
    _, watermark = connector.changed_since(T0)
    assert watermark == T0 + timedelta(seconds=3)
    # A change stamped before the watermark (a slow transaction, clock skew).
    clock.now = T0 + timedelta(seconds=2, milliseconds=500)
    connector.apply(UpdateTicket("ggus", ids[0], comments=(Comment("c", "late"),)))
    assert connector.changed_since(watermark) == ([], watermark)
    found, again = connector.changed_since(watermark, overlap=timedelta(seconds=5))
    assert ids[0] in found and again == watermark  # the watermark never goes back
    connector.close()


def test_changed_since_reads_a_naive_watermark_as_utc(
    clocked: tuple[GgusSandbox, Clock],
) -> None:
    sandbox, clock = clocked
    ids = _tickets_at(sandbox, clock, 1, 3)
    connector = _rest(sandbox)
    naive = (T0 + timedelta(seconds=2)).replace(tzinfo=None)
    assert connector.changed_since(naive) == ([ids[1]], T0 + timedelta(seconds=3))
    other_zone = (T0 + timedelta(seconds=2)).astimezone(
        datetime.now(UTC).astimezone().tzinfo)
    assert connector.changed_since(other_zone)[0] == [ids[1]]
    connector.close()


# --- mail -------------------------------------------------------------------------------


def _mail(sandbox: GgusSandbox | None = None, port: int | None = None,
          **changes: Any) -> GgusMailConnector:
    return GgusMailConnector("ggus", GgusMailSettings.model_validate({
        "kind": "ggus-mail", "helpdesk_address": "helpdesk@ggus.example.org",
        "sender": "OSG GOC <goc@goc.example.org>",
        "smtp_port": port or (sandbox.smtp_port if sandbox else 25), "timeout": 10,
        **changes}))


def test_mail_create_and_update_reach_ggus(ggus_sandbox: GgusSandbox) -> None:
    connector = _mail(ggus_sandbox)
    try:
        receipt = connector.apply(_create(GHD_Last_Modifier="Jane"))
        assert receipt.ticket_id is None
        assert receipt.idempotency_key.startswith("<tb.ggus.create.")
        assert "not carried by mail: GHD_Priority, GHD_Status" in receipt.detail
        ticket = ggus_sandbox.tickets()[0]
        assert (ticket.short_description, ticket.description, ticket.email) == (
            "CE down at MWT2", "The CE refuses all jobs.", "goc@goc.example.org")
        ticket_id = str(ticket.request_id)
        update = connector.apply(UpdateTicket("ggus", ticket_id, fields={
            "GHD_Last_Modifier": "Jane"}, comments=(Comment("a", "one"), Comment("b", "two"))))
        assert update.ticket_id == ticket_id
        assert ggus_sandbox.history(ticket_id)[-1].public_diary == "one\n\ntwo"
        kept = connector.kept
        assert kept is not None
        connector.apply(UpdateTicket("ggus", ticket_id, comments=(Comment("c", "three"),)))
        assert connector.kept is kept  # one SMTP session for all of them
        nothing = connector.apply(UpdateTicket("ggus", ticket_id))
        assert nothing.detail == "no public text: nothing mailed"
    finally:
        connector.close()


def test_mail_message_id_follows_the_operation() -> None:
    from ticketbridge.connectors.ggus.mail import message_id_for

    first = message_id_for(_create(), domain="goc.example.org")
    assert first == message_id_for(_create(), domain="goc.example.org")
    assert first != message_id_for(_create("40638"), domain="goc.example.org")
    assert first.startswith("<tb.ggus.create.") and first.endswith("@goc.example.org>")


def test_mail_subject_of_an_update_names_the_ticket() -> None:
    sink = MailSink().start()
    connector = _mail(port=sink.port)
    try:
        connector.apply(UpdateTicket("ggus", "40637", comments=(Comment("a", "hello"),)))
        msg: EmailMessage = sink.messages()[0]
        assert msg["Subject"] == "GGUS-Ticket-ID: #40637"
        assert ggus_mail.ggus_id_from_subject(str(msg["Subject"])) == "40637"
        assert msg.get_content().strip() == "hello"
        assert msg["Message-ID"].startswith("<tb.ggus.update.")
    finally:
        connector.close()
        sink.stop()


def test_mail_refuses_what_mail_cannot_carry(ggus_sandbox: GgusSandbox) -> None:
    connector = _mail(ggus_sandbox)
    try:
        with pytest.raises(RemoteRejected, match="internal comment"):
            connector.apply(CreateTicket("ggus", "1", "t", "d", comments=(
                Comment("i", "x", visibility=Visibility.INTERNAL),)))
        with pytest.raises(RemoteRejected, match="cannot set GHD_Status"):
            connector.apply(UpdateTicket("ggus", "1000", fields={"status": "solved"}))
        with pytest.raises(RemoteRejected, match="attachments"):
            connector.apply(AddAttachment("ggus", "1000", Attachment("a", "x", b"x")))
        assert ggus_sandbox.tickets() == []
        assert connector.kept is None  # nothing was even connected
    finally:
        connector.close()


@pytest.mark.parametrize(
    ("stage", "answer", "error"),
    [
        ("MAIL", "535 5.7.8 authentication credentials invalid", RemoteAuthFailed),
        ("MAIL", "421 4.7.0 too busy", RemoteUnavailable),
        ("DATA", "451 4.3.0 try again later", RemoteUnavailable),
        ("DATA", "554 5.6.0 message refused", RemoteRejected),
    ],
)
def test_mail_smtp_replies_are_translated(stage: str, answer: str,
                                          error: type[Exception]) -> None:
    sink = MailSink(reply=lambda s: answer if s == stage else None).start()
    connector = _mail(port=sink.port)
    try:
        with pytest.raises(error, match=answer.split()[0]):
            connector.apply(_create())
    finally:
        connector.close()
        sink.stop()


def test_mail_to_an_address_ggus_does_not_have_is_rejected(ggus_sandbox: GgusSandbox) -> None:
    connector = _mail(ggus_sandbox, helpdesk_address="nobody@ggus.example.org")
    with pytest.raises(RemoteRejected, match="550"):
        connector.apply(_create())
    connector.close()


def test_mail_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="helpdesk_address and sender"):
        GgusMailConnector("ggus", GgusMailSettings(kind="ggus-mail"))
    with pytest.raises(ConfigError, match="go together"):
        _mail(smtp_user="u")
    with pytest.raises(ValidationError):
        GgusMailSettings.model_validate({"kind": "ggus-mail", "smtp_hots": "x"})
    with pytest.raises(ValidationError, match="http"):
        GgusSoapSettings(kind="ggus-soap", url="file:///etc", user="u",
                         password=SecretStr("p"))
    settings = GgusRestSettings(kind="ggus-rest", url="https://h/",
                                token=SecretStr("s3cr3t-token"))
    assert "s3cr3t" not in repr(settings) and settings.url == "https://h"
