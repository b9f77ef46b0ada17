"""The footprints-mail connector against a running Footprints emulator, over loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from tests.support.footprints import TX_ADDRESS, MailSink
from ticketbridge.connectors.base import TargetConnector
from ticketbridge.connectors.footprints import FootprintsConnector, FootprintsSettings
from ticketbridge.errors import RemoteAuthFailed, RemoteRejected, RemoteUnavailable
from ticketbridge.model import (
    AddAttachment,
    Attachment,
    Comment,
    CreateTicket,
    UpdateTicket,
    Visibility,
)
from ticketbridge.sandbox.footprints import FootprintsSandbox

WHEN = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def _create_op(key: str = "40637") -> CreateTicket:
    return CreateTicket(
        helpdesk="goc",
        correlation_key=key,
        title="CE down at MWT2",
        description="The CE refuses all jobs.",
        fields={"status": "Engineering", "priority": "2", "Ticket Type": "Problem/Request",
                "First Name": "Jane", "Last Name": "Doe", "Office Phone": "+1 555 0100",
                "assignees": 'TX_FP71_GGUS2 "OSG GOC Support Team"'},
        comments=(
            Comment("d1", "[Public Diary]\nchecked the gatekeeper", "Jane Doe", WHEN),
            Comment("d2", "[Internal Diary]\nsite admin is on leave", "TPM",
                    WHEN, Visibility.INTERNAL),
        ),
    )


def _settings(base: FootprintsSettings, **changes: object) -> FootprintsSettings:
    return FootprintsSettings.model_validate({**base.model_dump(), **changes})


def test_connector_satisfies_the_protocol(fp_connector: FootprintsConnector) -> None:
    assert isinstance(fp_connector, TargetConnector)


def test_create_then_find_by_correlation_then_fetch(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    assert fp_connector.find_by_correlation("40637") is None
    receipt = fp_connector.apply(_create_op())
    assert receipt.ticket_id is None
    assert receipt.idempotency_key.startswith("<tb.create.")

    found = fp_connector.find_by_correlation("40637")
    assert found is not None
    ticket = fp_connector.fetch(found)
    assert ticket.ref.helpdesk == "goc" and ticket.ref.id == found
    assert ticket.title == "CE down at MWT2"
    assert (ticket.status, ticket.priority) == ("Engineering", "2")
    assert ticket.fields["Originating Ticket Number"] == "40637"
    assert ticket.fields["Ticket Type"] == "Problem/Request"
    assert ticket.submitter.name == "Jane Doe"
    assert ticket.submitter.phone == "+1 555 0100"
    assert ticket.modified is not None and ticket.created is not None
    assert ticket.description.endswith("The CE refuses all jobs.")
    assert "checked the gatekeeper\n -- by Jane Doe at 2024-03-01 12:00:00 UTC" in (
        ticket.description)
    visibilities = [c.visibility for c in ticket.comments]
    assert visibilities == [Visibility.PUBLIC, Visibility.INTERNAL]
    assert all(c.created is not None and c.author for c in ticket.comments)
    # The Footprints issue the connector sees is the one the emulator holds.
    assert fp_sandbox.ticket(found).project_fields["Originating Ticket Number"] == "40637"


def test_internal_comment_is_never_public(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox, fp_sink: MailSink
) -> None:
    fp_connector.apply(_create_op())
    ticket = fp_connector.fetch(fp_connector.find_by_correlation("40637") or "")
    assert "on leave" not in ticket.description
    public = [c.body for c in ticket.comments if c.visibility is Visibility.PUBLIC]
    internal = [c.body for c in ticket.comments if c.visibility is Visibility.INTERNAL]
    assert not any("on leave" in body for body in public)
    assert internal == ["[Internal Diary]\nsite admin is on leave\n -- by TPM at "
                        "2024-03-01 12:00:00 UTC"]
    assert not any("on leave" in m.get_content() for m in fp_sink.messages())


def test_update_lands_on_the_same_ticket(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox, fp_sink: MailSink
) -> None:
    fp_connector.apply(_create_op())
    ticket_id = fp_connector.find_by_correlation("40637")
    assert ticket_id is not None
    receipt = fp_connector.apply(UpdateTicket(
        "goc", ticket_id, fields={"status": "Closed", "priority": "4"},
        comments=(Comment("d3", "[Solution]\nfixed", "Jane Doe", WHEN),)))
    assert receipt.ticket_id == ticket_id
    assert receipt.idempotency_key.startswith("<tb.update.")
    assert len(fp_sandbox.tickets()) == 1
    ticket = fp_connector.fetch(ticket_id)
    assert (ticket.status, ticket.priority) == ("Closed", "4")
    assert ticket.comments[-1].body.startswith("[Solution]\nfixed")
    assert fp_sink.messages(to=TX_ADDRESS)[-1]["Subject"] == (
        f"CE down at MWT2 ISSUE={ticket_id} PROJ=71")


def test_title_change_renames_the_ticket(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox, fp_sink: MailSink
) -> None:
    fp_connector.apply(_create_op())
    ticket_id = fp_connector.find_by_correlation("40637") or ""
    fp_connector.apply(UpdateTicket("goc", ticket_id, fields={"title": "CE back, SE down"},
                                    comments=(Comment("x", "see above"),)))
    assert fp_connector.fetch(ticket_id).title == "CE back, SE down"
    assert fp_sink.messages(to=TX_ADDRESS)[-1]["Subject"] == (
        f"CE back, SE down ISSUE={ticket_id} PROJ=71")


def test_a_resent_operation_carries_the_same_message_id_and_applies_once(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    first = fp_connector.apply(_create_op())
    second = fp_connector.apply(_create_op())
    assert first.idempotency_key == second.idempotency_key
    assert len(fp_sandbox.find("40637")) == 1
    other = fp_connector.apply(_create_op("40638"))
    assert other.idempotency_key != first.idempotency_key


def test_fetch_of_a_missing_ticket_is_rejected(fp_connector: FootprintsConnector) -> None:
    with pytest.raises(RemoteRejected, match="issue 99 does not exist"):
        fp_connector.fetch("99")
    with pytest.raises(RemoteRejected, match="not a Footprints issue number"):
        fp_connector.fetch("abc")
    with pytest.raises(RemoteRejected):
        fp_connector.apply(UpdateTicket("goc", "99", fields={"status": "Closed"}))


# --- attachments -----------------------------------------------------------------------


def _created(connector: FootprintsConnector) -> str:
    connector.apply(_create_op())
    ticket_id = connector.find_by_correlation("40637")
    assert ticket_id is not None
    return ticket_id


def test_add_attachment_then_fetch_returns_identical_bytes_name_and_type(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    ticket_id = _created(fp_connector)
    before = fp_connector.fetch(ticket_id)
    data = bytes(range(256)) * 3 + b"\r\n\x00end"
    op = AddAttachment("goc", ticket_id, Attachment(
        "g1", "gatekeeper.log\n", data, "text/plain", "John Smith", WHEN))
    receipt = fp_connector.apply(op)
    assert receipt.ticket_id == ticket_id
    assert receipt.idempotency_key.startswith("<tb.attachment.")
    assert "'gatekeeper.log'" in receipt.detail and f"{len(data)} bytes" in receipt.detail

    ticket = fp_connector.fetch(ticket_id)
    (got,) = ticket.attachments
    (stored,) = fp_sandbox.ticket(ticket_id).attachments
    assert (got.name, got.data, got.content_type) == ("gatekeeper.log", data, "text/plain")
    assert got.key == str(stored.id)
    assert got.author == "ggus@ggus.example.org"  # the sender of the mail
    assert got.created is not None
    # The attachment mail has no text: no description entry was added.
    assert ticket.comments == before.comments


def test_zero_byte_and_binary_attachments_arrive_exactly(
    fp_connector: FootprintsConnector,
) -> None:
    ticket_id = _created(fp_connector)
    files = [("empty.txt", b"", "text/plain"),
             ("core.bin", bytes(range(255, -1, -1)), "application/octet-stream"),
             ("Ergebnis März.pdf", b"%PDF-1.4\n\xe2\xe3", "application/pdf")]
    for n, (name, data, kind) in enumerate(files):
        fp_connector.apply(AddAttachment("goc", ticket_id, Attachment(f"k{n}", name, data, kind)))
    got = [(a.name, a.data, a.content_type) for a in fp_connector.fetch(ticket_id).attachments]
    assert got == files


def test_a_resent_attachment_has_the_same_message_id_and_is_stored_once(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    ticket_id = _created(fp_connector)
    op = AddAttachment("goc", ticket_id, Attachment("a1", "log.txt", b"one"))
    first = fp_connector.apply(op)
    again = fp_connector.apply(op)
    other = fp_connector.apply(AddAttachment("goc", ticket_id,
                                             Attachment("a1", "log.txt", b"two")))
    assert first.idempotency_key == again.idempotency_key != other.idempotency_key
    assert [a.data for a in fp_sandbox.ticket(ticket_id).attachments] == [b"one", b"two"]


def test_an_attachment_for_a_missing_issue_is_rejected_before_mailing(
    fp_connector: FootprintsConnector, fp_sink: MailSink, fp_sandbox: FootprintsSandbox
) -> None:
    op = AddAttachment("goc", "99", Attachment("a", "log.txt", b"x"))
    with pytest.raises(RemoteRejected, match="issue 99 does not exist"):
        fp_connector.apply(op)
    assert fp_sandbox.outbox() == []  # nothing was mailed, so nothing was rejected either


def test_fetch_attachments_can_be_turned_off(
    fp_connector: FootprintsConnector, fp_settings: FootprintsSettings
) -> None:
    ticket_id = _created(fp_connector)
    fp_connector.apply(AddAttachment("goc", ticket_id, Attachment("a", "log.txt", b"x")))
    assert len(fp_connector.fetch(ticket_id).attachments) == 1
    lean = FootprintsConnector("goc", _settings(fp_settings, fetch_attachments=False))
    try:
        assert lean.fetch(ticket_id).attachments == ()
    finally:
        lean.close()


def test_a_file_at_the_emulators_size_limit_is_fetched_whole(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    # 10 MB: its base64 text is larger than an ordinary SOAP answer may be (4 MiB) and
    # than one XML text node may hold by default (10 MB).
    ticket_id = _created(fp_connector)
    data = bytes(range(256)) * (fp_sandbox.engine.max_attachment_bytes // 256)
    assert len(data) == fp_sandbox.engine.max_attachment_bytes
    fp_connector.apply(AddAttachment("goc", ticket_id, Attachment("big", "big.bin", data)))
    (got,) = fp_connector.fetch(ticket_id).attachments
    assert got.data == data


# --- failures --------------------------------------------------------------------------


def test_stopped_sandbox_is_unavailable(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    fp_sandbox.stop()
    with pytest.raises(RemoteUnavailable):
        fp_connector.apply(_create_op())
    with pytest.raises(RemoteUnavailable):
        fp_connector.find_by_correlation("40637")
    with pytest.raises(RemoteUnavailable):
        fp_connector.fetch("1")


def test_wrong_password_is_auth_failure(fp_settings: FootprintsSettings) -> None:
    connector = FootprintsConnector("goc", _settings(fp_settings, password="wrong"))
    with pytest.raises(RemoteAuthFailed, match="Invalid user ID or password"):
        connector.find_by_correlation("40637")
    with pytest.raises(RemoteAuthFailed):
        connector.fetch("1")


def test_mail_refused_by_the_server_is_rejected(fp_settings: FootprintsSettings) -> None:
    connector = FootprintsConnector(
        "goc", _settings(fp_settings, incoming_address="nobody@goc.example.org"))
    with pytest.raises(RemoteRejected, match="550"):
        connector.apply(_create_op())


@pytest.fixture
def refusing_server() -> Iterator[Callable[[str, str], FootprintsSettings]]:
    """An SMTP server that answers MAIL or DATA with a chosen reply (failure injection)."""
    sinks: list[MailSink] = []

    def start(stage: str, answer: str) -> FootprintsSettings:
        sink = MailSink(reply=lambda s: answer if s == stage else None).start()
        sinks.append(sink)
        return FootprintsSettings(
            kind="footprints-mail", incoming_address="fp@x.org", sender="tb@x.org",
            smtp_port=sink.port, soap_url="http://127.0.0.1:9/MRcgi/MRWebServices.pl",
            user="u", password=SecretStr("p"), timeout=5)

    yield start
    for sink in sinks:
        sink.stop()


@pytest.mark.parametrize(
    ("stage", "answer", "error"),
    [
        ("DATA", "451 4.3.0 try again later", RemoteUnavailable),
        ("DATA", "554 5.6.0 message refused", RemoteRejected),
        ("MAIL", "535 5.7.8 authentication credentials invalid", RemoteAuthFailed),
        ("MAIL", "421 4.7.0 too busy", RemoteUnavailable),
    ],
)
def test_smtp_replies_are_translated(
    refusing_server: Callable[[str, str], FootprintsSettings], stage: str, answer: str,
    error: type[Exception],
) -> None:
    connector = FootprintsConnector("goc", refusing_server(stage, answer))
    with pytest.raises(error, match=answer.split()[0]):
        connector.apply(_create_op())


def test_a_server_that_does_not_answer_times_out_as_unavailable(
    fp_settings: FootprintsSettings,
) -> None:
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        connector = FootprintsConnector("goc", _settings(
            fp_settings, smtp_port=port, soap_url=f"http://127.0.0.1:{port}/MRcgi/x.pl",
            timeout=0.3))
        with pytest.raises(RemoteUnavailable):
            connector.apply(_create_op())
        with pytest.raises(RemoteUnavailable):
            connector.find_by_correlation("1")


def test_settings_refuse_non_http_soap_urls(fp_settings: FootprintsSettings) -> None:
    data = fp_settings.model_dump()
    data["password"] = "p"
    data["soap_url"] = "file:///etc/passwd"
    with pytest.raises(ValueError, match="http"):
        FootprintsSettings.model_validate(data)


# --- kept connections ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fixed_port_sandbox(fp_sink: MailSink) -> Iterator[FootprintsSandbox]:
    """A sandbox that comes back on the same ports after stop() and start()."""
    sandbox = FootprintsSandbox(
        smarthost=fp_sink.address, smtp_port=_free_port(), http_port=_free_port()).start()
    yield sandbox
    sandbox.close()


def _connector_for(sandbox: FootprintsSandbox, base: FootprintsSettings) -> FootprintsConnector:
    return FootprintsConnector("goc", _settings(
        base, smtp_port=sandbox.smtp_port, soap_url=sandbox.soap_url))


def test_connections_are_kept_between_operations(
    fp_connector: FootprintsConnector, fp_sandbox: FootprintsSandbox
) -> None:
    fp_connector.apply(_create_op())
    ticket_id = fp_connector.find_by_correlation("40637") or ""
    kept = fp_connector._connections()
    smtp, http = kept.smtp.smtp, kept.http
    assert smtp is not None and http is not None
    fp_connector.apply(UpdateTicket("goc", ticket_id, fields={"status": "Closed"}))
    fp_connector.fetch(ticket_id)
    assert (kept.smtp.smtp, kept.http) == (smtp, http)
    assert http.sock is not None  # still open: the emulator speaks HTTP/1.1 keep-alive
    fp_connector.close()
    assert (kept.smtp.smtp, kept.http) == (None, None)
    assert fp_connector.fetch(ticket_id).status == "Closed"  # reopens after close()


def test_each_thread_has_its_own_connections(fp_connector: FootprintsConnector) -> None:
    import threading

    fp_connector.apply(_create_op())
    seen: list[object] = []

    def work() -> None:
        fp_connector.apply(_create_op("40638"))
        fp_connector.find_by_correlation("40638")
        seen.append(fp_connector._connections())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen and seen[0] is not fp_connector._connections()


def test_a_restarted_server_is_reconnected_transparently(
    fixed_port_sandbox: FootprintsSandbox, fp_settings: FootprintsSettings
) -> None:
    connector = _connector_for(fixed_port_sandbox, fp_settings)
    try:
        connector.apply(_create_op())
        ticket_id = connector.find_by_correlation("40637") or ""
        assert ticket_id
        fixed_port_sandbox.stop()  # drops the kept SMTP session and HTTP connection
        fixed_port_sandbox.start()
        receipt = connector.apply(UpdateTicket(
            "goc", ticket_id, fields={"status": "Closed"},
            comments=(Comment("d9", "after the restart"),)))
        assert receipt.ticket_id == ticket_id
        assert connector.fetch(ticket_id).status == "Closed"
        assert connector.find_by_correlation("40637") == ticket_id
        assert len(fixed_port_sandbox.tickets()) == 1
    finally:
        connector.close()


def test_a_stopped_server_after_use_is_unavailable(
    fixed_port_sandbox: FootprintsSandbox, fp_settings: FootprintsSettings
) -> None:
    connector = _connector_for(fixed_port_sandbox, fp_settings)
    try:
        connector.apply(_create_op())
        ticket_id = connector.find_by_correlation("40637") or ""
        fixed_port_sandbox.stop()
        with pytest.raises(RemoteUnavailable):
            connector.apply(_create_op("40638"))
        with pytest.raises(RemoteUnavailable):
            connector.fetch(ticket_id)
        fixed_port_sandbox.start()
        assert connector.fetch(ticket_id).ref.id == ticket_id
    finally:
        connector.close()


class _Script:
    """SMTP replies by stage and call number: ``{("MAIL", 2): "421 ..."}``."""

    def __init__(self, replies: dict[tuple[str, int], str]) -> None:
        self.replies = replies
        self.calls: dict[str, int] = {}

    def __call__(self, stage: str) -> str | None:
        self.calls[stage] = self.calls.get(stage, 0) + 1
        return self.replies.get((stage, self.calls[stage]))


def _sink_settings(sink: MailSink) -> FootprintsSettings:
    return FootprintsSettings(
        kind="footprints-mail", incoming_address="fp@x.org", sender="tb@x.org",
        smtp_port=sink.port, soap_url="http://127.0.0.1:9/MRcgi/MRWebServices.pl",
        user="u", password=SecretStr("p"), timeout=5)


def test_a_kept_session_closed_before_data_is_retried_once_on_a_new_one() -> None:
    # The second mail's MAIL is answered 421 (closing: an idle timeout, say): nothing of
    # the message was sent, so the connector opens a new session and sends it there.
    script = _Script({("MAIL", 2): "421 4.4.2 idle too long, closing"})
    sink = MailSink(reply=script).start()
    connector = FootprintsConnector("goc", _sink_settings(sink))
    try:
        connector.apply(_create_op("1"))
        connector.apply(_create_op("2"))
        assert script.calls == {"MAIL": 3, "DATA": 2}
        assert len(sink.messages()) == 2
    finally:
        connector.close()
        sink.stop()


def test_a_failure_after_data_is_reported_not_resent() -> None:
    # The second mail's DATA is answered 421: the message may have arrived, and real
    # Footprints does not recognise a resent Message-ID, so it is not sent again.
    script = _Script({("DATA", 2): "421 4.3.0 shutting down"})
    sink = MailSink(reply=script).start()
    connector = FootprintsConnector("goc", _sink_settings(sink))
    try:
        connector.apply(_create_op("1"))
        with pytest.raises(RemoteUnavailable, match="421"):
            connector.apply(_create_op("2"))
        assert script.calls == {"MAIL": 2, "DATA": 2}
        connector.apply(_create_op("3"))  # a new session for the next operation
        assert script.calls == {"MAIL": 3, "DATA": 3}
    finally:
        connector.close()
        sink.stop()


def test_a_failure_on_a_new_session_is_not_retried() -> None:
    script = _Script({("MAIL", 1): "421 4.7.0 too busy"})
    sink = MailSink(reply=script).start()
    connector = FootprintsConnector("goc", _sink_settings(sink))
    try:
        with pytest.raises(RemoteUnavailable, match="421"):
            connector.apply(_create_op("1"))
        assert script.calls == {"MAIL": 1}
    finally:
        connector.close()
        sink.stop()
