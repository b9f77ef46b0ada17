"""The connector contract: one set of tests every target connector passes.

Each test runs against every connector in :data:`CONNECTORS`, over its real protocol, with
an emulator as the peer on 127.0.0.1: footprints-mail (FootprintsSandbox: SMTP +
MRWebServices), ggus-soap, ggus-rest and ggus-mail (GgusSandbox: SOAP, REST, SMTP).

What a connector cannot do is declared in :data:`CAPABILITIES`, and the test then asserts
the documented answer to it (RemoteRejected, or None from ``find_by_correlation``): an
unsupported capability is an explicit assertion, never a skip.

A connector that cannot read (ggus-mail) is checked through a *reader*: a ggus-soap
connector on the same emulator, which sees what the mails did to the GGUS tickets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from tests.support.footprints import GGUS_SENDER
from ticketbridge.connectors.base import TargetConnector
from ticketbridge.connectors.footprints import FootprintsConnector, FootprintsSettings
from ticketbridge.connectors.ggus import (
    GgusMailConnector,
    GgusMailSettings,
    GgusRestConnector,
    GgusRestSettings,
    GgusSoapConnector,
    GgusSoapSettings,
)
from ticketbridge.errors import RemoteAuthFailed, RemoteRejected, RemoteUnavailable
from ticketbridge.model import (
    AddAttachment,
    Attachment,
    Comment,
    CreateTicket,
    Operation,
    Receipt,
    Ticket,
    UpdateTicket,
    Visibility,
)
from ticketbridge.sandbox.footprints import FootprintsSandbox
from ticketbridge.sandbox.ggus import GgusSandbox

WHEN = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do; each False is asserted as documented, never skipped."""

    fetch: bool  # False: fetch raises RemoteRejected
    find_by_correlation: bool  # False: find_by_correlation answers None, even after a create
    attachments: bool  # False: AddAttachment raises RemoteRejected
    internal_comments: bool  # False: an internal comment raises RemoteRejected, nothing sent
    field_updates: bool  # False: an update with fields raises RemoteRejected
    create_returns_id: bool  # False: a create's receipt has ticket_id None


CAPABILITIES: Mapping[str, Capabilities] = {
    "footprints-mail": Capabilities(fetch=True, find_by_correlation=True, attachments=True,
                                    internal_comments=True, field_updates=True,
                                    create_returns_id=False),
    "ggus-soap": Capabilities(fetch=True, find_by_correlation=True, attachments=True,
                              internal_comments=True, field_updates=True,
                              create_returns_id=True),
    "ggus-rest": Capabilities(fetch=True, find_by_correlation=True, attachments=True,
                              internal_comments=True, field_updates=True,
                              create_returns_id=True),
    "ggus-mail": Capabilities(fetch=False, find_by_correlation=False, attachments=False,
                              internal_comments=False, field_updates=False,
                              create_returns_id=False),
}
CONNECTORS = tuple(CAPABILITIES)


@dataclass
class Harness:
    """One connector, its peer, and what the contract needs to know about its vocabulary."""

    kind: str
    helpdesk: str
    connector: TargetConnector
    reader: TargetConnector  # reads back what ``connector`` wrote
    create_fields: Mapping[str, str]  # native values of a create
    created: tuple[str, str]  # (status, priority) the created ticket shows
    update_fields: Mapping[str, str]  # native values of an update (title, status, priority)
    invalid: Callable[[str], Operation]  # an operation the remote refuses, for ticket id
    locate: Callable[[CreateTicket, Receipt], str]  # the created ticket's id
    stop: Callable[[], None]  # stop the peer
    wrong_credentials: Callable[[], TargetConnector]
    opened: list[TargetConnector] = field(default_factory=list)

    @property
    def caps(self) -> Capabilities:
        return CAPABILITIES[self.kind]

    def create_op(self, key: str, title: str = "CE down at MWT2") -> CreateTicket:
        return CreateTicket(helpdesk=self.helpdesk, correlation_key=key, title=title,
                            description="The CE refuses all jobs since 10:00 UTC.",
                            fields=self.create_fields)

    def created_ticket(self, key: str, title: str = "CE down at MWT2") -> str:
        op = self.create_op(key, title)
        return self.locate(op, self.connector.apply(op))

    def extra(self, connector: TargetConnector) -> TargetConnector:
        self.opened.append(connector)
        return connector


# --- harnesses --------------------------------------------------------------------------


def _footprints(sandbox: FootprintsSandbox) -> Harness:
    settings = FootprintsSettings(
        kind="footprints-mail", project=sandbox.project,
        incoming_address=sandbox.incoming_address, sender=GGUS_SENDER,
        smtp_port=sandbox.smtp_port, soap_url=sandbox.soap_url, user=sandbox.user,
        password=SecretStr(sandbox.password), timeout=10)
    connector = FootprintsConnector("goc", settings)

    def locate(op: CreateTicket, receipt: Receipt) -> str:
        found = connector.find_by_correlation(op.correlation_key)
        assert found is not None
        return found

    def wrong() -> TargetConnector:
        return FootprintsConnector("goc", settings.model_copy(
            update={"password": SecretStr("wrong")}))

    return Harness(
        kind="footprints-mail", helpdesk="goc", connector=connector, reader=connector,
        create_fields={"status": "Engineering", "priority": "2",
                       "Ticket Type": "Problem/Request"},
        created=("Engineering", "2"),
        update_fields={"title": "CE back, SE down", "status": "Closed", "priority": "4"},
        # The email interface refuses bad values by a reply mail after accepting the mail;
        # what is refused at once is an update of an issue that does not exist.
        invalid=lambda ticket_id: UpdateTicket("goc", "999999", fields={"status": "Closed"}),
        locate=locate, stop=sandbox.stop, wrong_credentials=wrong)


def _soap_settings(sandbox: GgusSandbox, **changes: object) -> GgusSoapSettings:
    return GgusSoapSettings.model_validate({
        "kind": "ggus-soap", "url": sandbox.base_url, "ars_server": sandbox.ars_server,
        "user": sandbox.soap_user, "password": sandbox.soap_password,
        "connect_timeout": 5, "read_timeout": 10, **changes})


def _ggus_create_fields() -> dict[str, str]:
    # As exchange/footprints_ggus.py produces them for a create.
    return {"status": "new", "priority": "urgent", "GHD_Affected_VO": "none",
            "GHD_Last_Modifier": "Jane Doe (via Footprints)", "GHD_Name": "Jane Doe"}


_GGUS_UPDATE = {"title": "CE back, SE down", "status": "in progress",
                "priority": "very urgent"}


def _returned_id(op: CreateTicket, receipt: Receipt) -> str:
    assert receipt.ticket_id is not None
    return receipt.ticket_id


def _ggus_soap(sandbox: GgusSandbox) -> Harness:
    connector = GgusSoapConnector("ggus", _soap_settings(sandbox))
    return Harness(
        kind="ggus-soap", helpdesk="ggus", connector=connector, reader=connector,
        create_fields=_ggus_create_fields(), created=("new", "urgent"),
        update_fields=_GGUS_UPDATE,
        invalid=lambda ticket_id: UpdateTicket("ggus", ticket_id, fields={"priority": "bogus"}),
        locate=_returned_id, stop=sandbox.stop,
        wrong_credentials=lambda: GgusSoapConnector(
            "ggus", _soap_settings(sandbox, password="wrong")))


def _rest_settings(sandbox: GgusSandbox, **changes: object) -> GgusRestSettings:
    return GgusRestSettings.model_validate({
        "kind": "ggus-rest", "url": sandbox.base_url, "token": sandbox.rest_token,
        "connect_timeout": 5, "read_timeout": 10, **changes})


def _ggus_rest(sandbox: GgusSandbox) -> Harness:
    connector = GgusRestConnector("ggus", _rest_settings(sandbox))
    return Harness(
        kind="ggus-rest", helpdesk="ggus", connector=connector, reader=connector,
        create_fields=_ggus_create_fields(), created=("new", "urgent"),
        update_fields=_GGUS_UPDATE,
        invalid=lambda ticket_id: UpdateTicket("ggus", ticket_id, fields={"priority": "bogus"}),
        locate=_returned_id, stop=sandbox.stop,
        wrong_credentials=lambda: GgusRestConnector(
            "ggus", _rest_settings(sandbox, token="wrong-token")))


def _mail_settings(sandbox: GgusSandbox, **changes: object) -> GgusMailSettings:
    return GgusMailSettings.model_validate({
        "kind": "ggus-mail", "helpdesk_address": sandbox.helpdesk_address,
        "sender": "tx+fp71_ggus2@goc.example.org", "smtp_port": sandbox.smtp_port,
        "timeout": 10, **changes})


def _ggus_mail(sandbox: GgusSandbox) -> Harness:
    connector = GgusMailConnector("ggus", _mail_settings(sandbox))
    reader = GgusSoapConnector("ggus", _soap_settings(sandbox))

    def locate(op: CreateTicket, receipt: Receipt) -> str:
        # Mail gives no id; GGUS' notification would. The emulator's store tells it here.
        ids = [t.request_id for t in sandbox.tickets() if t.short_description == op.title]
        assert len(ids) == 1, ids
        return str(ids[0])

    return Harness(
        kind="ggus-mail", helpdesk="ggus", connector=connector, reader=reader,
        create_fields=_ggus_create_fields(), created=("new", "less urgent"),
        update_fields=_GGUS_UPDATE,
        invalid=lambda ticket_id: UpdateTicket(
            "ggus", "not-a-number", comments=(Comment("c", "text"),)),
        locate=locate, stop=sandbox.stop,
        # The emulator's submission server offers no AUTH: credentials it cannot check
        # are refused as an authentication problem, before any mail is sent.
        wrong_credentials=lambda: GgusMailConnector("ggus", _mail_settings(
            sandbox, smtp_user="someone", smtp_password="wrong")))


@pytest.fixture(params=CONNECTORS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    kind = request.param
    if kind == "footprints-mail":
        built = _footprints(request.getfixturevalue("fp_sandbox"))
    else:
        sandbox = request.getfixturevalue("ggus_sandbox")
        built = {"ggus-soap": _ggus_soap, "ggus-rest": _ggus_rest,
                 "ggus-mail": _ggus_mail}[kind](sandbox)
    yield built
    for connector in {id(c): c for c in (built.connector, built.reader, *built.opened)
                      }.values():
        connector.close()


# --- helpers ----------------------------------------------------------------------------


def _texts(ticket: Ticket, visibility: Visibility) -> list[str]:
    return [c.body for c in ticket.comments if c.visibility is visibility]


def _everything_public(ticket: Ticket) -> str:
    """Every text of a snapshot that is not an internal comment."""
    return "\n".join([ticket.title, ticket.description, *ticket.fields.values(),
                      *_texts(ticket, Visibility.PUBLIC)])


# --- the contract -----------------------------------------------------------------------


def test_satisfies_the_protocol(harness: Harness) -> None:
    assert isinstance(harness.connector, TargetConnector)
    assert harness.connector.name == harness.helpdesk


def test_create_then_fetch_back(harness: Harness) -> None:
    op = harness.create_op("40637")
    receipt = harness.connector.apply(op)
    assert (receipt.ticket_id is not None) is harness.caps.create_returns_id
    ticket_id = harness.locate(op, receipt)

    ticket = harness.reader.fetch(ticket_id)
    assert ticket.ref.id == ticket_id
    assert ticket.title == op.title
    assert op.description in ticket.description
    assert (ticket.status, ticket.priority) == harness.created
    assert ticket.modified is not None
    if not harness.caps.fetch:
        with pytest.raises(RemoteRejected, match="cannot fetch"):
            harness.connector.fetch(ticket_id)


def test_update_fields(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    op = UpdateTicket(harness.helpdesk, ticket_id, fields=harness.update_fields)
    if not harness.caps.field_updates:
        with pytest.raises(RemoteRejected, match="field"):
            harness.connector.apply(op)
        unchanged = harness.reader.fetch(ticket_id)
        assert (unchanged.title, unchanged.status) == ("CE down at MWT2", harness.created[0])
        return
    receipt = harness.connector.apply(op)
    assert receipt.ticket_id == ticket_id
    ticket = harness.reader.fetch(ticket_id)
    expected = harness.update_fields
    assert (ticket.title, ticket.status, ticket.priority) == (
        expected["title"], expected["status"], expected["priority"])


def test_public_comment_appears_public(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    text = "Restarted the gatekeeper; jobs run again."
    harness.connector.apply(UpdateTicket(
        harness.helpdesk, ticket_id,
        comments=(Comment("c1", text, "John Smith", WHEN, Visibility.PUBLIC),)))
    ticket = harness.reader.fetch(ticket_id)
    assert any(text in body for body in _texts(ticket, Visibility.PUBLIC))
    assert not any(text in body for body in _texts(ticket, Visibility.INTERNAL))


def test_internal_comment_appears_internal_never_public(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    secret = "The site admin is on sick leave until Monday."
    op = UpdateTicket(harness.helpdesk, ticket_id, comments=(
        Comment("c1", "Public progress note.", "John Smith", WHEN, Visibility.PUBLIC),
        Comment("c2", secret, "John Smith", WHEN, Visibility.INTERNAL)))
    if harness.caps.internal_comments:
        harness.connector.apply(op)
        ticket = harness.reader.fetch(ticket_id)
        assert any(secret in body for body in _texts(ticket, Visibility.INTERNAL))
    else:
        with pytest.raises(RemoteRejected, match="internal"):
            harness.connector.apply(op)
        ticket = harness.reader.fetch(ticket_id)
        # Refused as a whole: not even the public part of the operation was sent.
        assert not any("Public progress note." in b for b in _texts(ticket, Visibility.PUBLIC))
    assert secret not in _everything_public(ticket)


def test_add_attachment(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    data = b"2024-03-01 12:00:00 gatekeeper restarted\n"
    op = AddAttachment(harness.helpdesk, ticket_id,
                       Attachment("a1", "gatekeeper.log", data, "text/plain", "John Smith"))
    if not harness.caps.attachments:
        with pytest.raises(RemoteRejected, match="attachments"):
            harness.connector.apply(op)
        if harness.caps.fetch:
            assert harness.reader.fetch(ticket_id).attachments == ()
        return
    receipt = harness.connector.apply(op)
    assert receipt.ticket_id == ticket_id
    attachments = harness.reader.fetch(ticket_id).attachments
    assert [(a.name, a.data) for a in attachments] == [("gatekeeper.log", data)]


def test_idempotent_create_by_correlation_key(harness: Harness) -> None:
    assert harness.connector.find_by_correlation("40637") is None
    ticket_id = harness.created_ticket("40637")
    harness.created_ticket("40638", title="Another ticket")
    found = harness.connector.find_by_correlation("40637")
    if harness.caps.find_by_correlation:
        assert found == ticket_id
        assert harness.connector.find_by_correlation("40638") not in (None, ticket_id)
    else:
        # Documented: mail has no search, so a lost link cannot be found again this way.
        assert found is None
    assert harness.connector.find_by_correlation("99999") is None


def test_stopped_server_is_unavailable(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    harness.stop()
    with pytest.raises(RemoteUnavailable):
        harness.connector.apply(harness.create_op("40638"))
    if harness.caps.fetch:
        with pytest.raises(RemoteUnavailable):
            harness.connector.fetch(ticket_id)
    if harness.caps.find_by_correlation:
        with pytest.raises(RemoteUnavailable):
            harness.connector.find_by_correlation("40637")


def test_wrong_credentials_are_an_auth_failure(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    connector = harness.extra(harness.wrong_credentials())
    with pytest.raises(RemoteAuthFailed):
        connector.apply(UpdateTicket(harness.helpdesk, ticket_id,
                                     comments=(Comment("c", "text"),)))
    if harness.caps.fetch:
        with pytest.raises(RemoteAuthFailed):
            connector.fetch(ticket_id)


def test_invalid_value_is_rejected(harness: Harness) -> None:
    ticket_id = harness.created_ticket("40637")
    with pytest.raises(RemoteRejected):
        harness.connector.apply(harness.invalid(ticket_id))
    # A refused operation changes nothing, and the connector keeps working.
    ticket = harness.reader.fetch(ticket_id)
    assert (ticket.status, ticket.priority) == harness.created


def test_fetch_of_a_missing_ticket_is_rejected(harness: Harness) -> None:
    with pytest.raises(RemoteRejected):
        harness.connector.fetch("999999")
