"""Home -> GGUS and back, with both emulators over their real protocols, on both databases.

The seed's second flow and GOC-TX's two-way exchange: an operator pushes a Footprints
ticket to GGUS (TPM), TPM routes it to a support unit, a GGUS supporter replies, the
reply reaches the Footprints ticket, and the Footprints resolution reaches GGUS as
``solved`` with its solution. Both emulators mail their notifications through a real
SMTP relay into Dovecot (LMTP), and the exchange reads them over IMAP; every user change
must cause exactly one write on the other side, and our own writes coming back none.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from tests.support.mailservers import LmtpRelay
from ticketbridge.config import parse_config
from ticketbridge.errors import NotFound
from ticketbridge.model import TicketRef
from ticketbridge.runtime.app import App
from ticketbridge.sandbox.footprints import FootprintsSandbox
from ticketbridge.sandbox.ggus import GgusSandbox
from ticketbridge.service import send

GGUS_HELPDESK = {
    "ggus-soap": """
  ggus:
    kind: ggus-soap
    url: "{ggus_url}"
    ars_server: train-ars
    user: osg_tx
    password: demo""",
    "ggus-rest": """
  ggus:
    kind: ggus-rest
    url: "{ggus_url}"
    token: demo-token""",
}

CONFIG = """\
database: "{database}"
helpdesks:{ggus}
  goc:
    kind: footprints-mail
    incoming_address: fp-incoming@goc.example.org
    sender: osg-tx@goc.example.org
    smtp_port: {fp_smtp}
    soap_url: "{fp_soap}"
    user: goctx
    password: demo
receivers:
  ggus-notifications:
    helpdesk: ggus
    mailbox: {{kind: imap, host: 127.0.0.1, port: {imap}, tls: none,
              user: {ggus_user}, password: {ggus_password}}}
  goc-notifications:
    helpdesk: goc
    mailbox: {{kind: imap, host: 127.0.0.1, port: {imap}, tls: none,
              user: {goc_user}, password: {goc_password}}}
exchanges:
  ggus-goc: {{source: ggus, target: goc}}
worker: {{threads: 1}}
"""


@pytest.fixture
def world(store_url, new_mail_account, request):
    kind = request.param
    ggus_box, goc_box = new_mail_account(), new_mail_account()
    relay = LmtpRelay(ggus_box, goc_box)
    relay.controller.start()
    ggus = GgusSandbox(smarthost=relay.address).start()
    fp = FootprintsSandbox(smarthost=relay.address).start()
    settings = parse_config(CONFIG.format(
        database=store_url, fp_smtp=fp.smtp_port, fp_soap=fp.soap_url,
        imap=ggus_box.server.imap_port, ggus_user=ggus_box.user,
        ggus_password=ggus_box.password, goc_user=goc_box.user,
        goc_password=goc_box.password,
        ggus=GGUS_HELPDESK[kind].format(ggus_url=ggus.base_url)))
    app = App(settings)
    app.relay = relay
    try:
        yield app, ggus, fp, settings
    finally:
        app.close()
        fp.stop()
        ggus.stop()
        relay.controller.stop()


def fp_mail(fp, subject: str, body: str) -> None:
    """An agent working in Footprints (its email interface)."""
    msg = EmailMessage()
    msg["From"] = "agent@goc.example.org"
    msg["To"] = fp.incoming_address
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", fp.smtp_port) as smtp:
        smtp.send_message(msg)


def counts(ggus, fp, ggus_id, mrid):
    return len(ggus.history(ggus_id)), len(fp.ticket(mrid).descriptions)


@pytest.mark.parametrize("world", ["ggus-soap", "ggus-rest"], indirect=True)
def test_push_route_reply_resolve(world):
    app, ggus, fp, settings = world
    fp_mail(fp, "CE down at MWT2", "The gatekeeper does not answer.\npriority=2\n")
    (home,) = fp.tickets()
    ref = TicketRef("goc", str(home.mrid))
    app.run_once()  # Footprints' own notification: not linked, so nothing is sent
    assert ggus.tickets() == []

    data = send(app.store, settings, ref, to="ggus", new=True, update=None, unit=None,
                now=_now())
    app.run_once()
    entry = app.store.inbox_entry(data["inbox_id"])
    assert entry.state == "applied", entry.reason
    (pushed,) = ggus.tickets()
    assert pushed.responsible_unit == "TPM" and pushed.status == "new"
    assert pushed.priority == "very urgent"
    assert pushed.origin_id == str(home.mrid)
    link = app.store.find_link_by_b("goc", str(home.mrid))
    assert link.a_id == str(pushed.request_id)

    with pytest.raises(NotFound, match="already linked"):
        send(app.store, settings, ref, to="ggus", new=True, update=None, unit=None, now=_now())

    app.run_once()  # GGUS' notification of our own create: an echo, no write back
    before = counts(ggus, fp, pushed.request_id, home.mrid)

    ggus.route(pushed.request_id, "OSG")  # TPM routes it
    app.run_once()
    assert counts(ggus, fp, pushed.request_id, home.mrid)[1] == before[1]  # nothing for home

    ggus.add_diary(pushed.request_id, "Please restart the gatekeeper.", author="G. Supporter")
    app.run_once()
    app.run_once()  # and Footprints' notification of that write: must not echo
    after_reply = counts(ggus, fp, pushed.request_id, home.mrid)
    texts = [d.data for d in fp.ticket(home.mrid).descriptions]
    assert sum("Please restart the gatekeeper." in t for t in texts) == 1
    assert after_reply[1] == before[1] + 1  # exactly one write at home
    assert after_reply[0] == before[0] + 2  # the route and the reply; nothing echoed

    fp_mail(fp, f"Re: CE down at MWT2 ISSUE={home.mrid} PROJ=71",
            "Restarted the gatekeeper; pilots run again.\nstatus=Resolved\n")
    app.run_once()
    app.run_once()  # GGUS' notification of the solution: no write back home
    solved = ggus.ticket(pushed.request_id)
    assert solved.status == "solved"
    assert "Restarted the gatekeeper" in solved.detailed_solution
    final = counts(ggus, fp, pushed.request_id, home.mrid)
    assert final[1] == after_reply[1] + 1  # only the agent's own entry at home
    assert fp.ticket(home.mrid).status == "Resolved"  # not overwritten by "Closed"


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.mark.parametrize("world", ["ggus-rest"], indirect=True)
def test_rest_polling_finds_a_change_whose_mail_was_lost(world):
    app, ggus, fp, settings = world
    fp_mail(fp, "SE full at UCSD", "No space left on device.\n")
    (home,) = fp.tickets()
    send(app.store, settings, TicketRef("goc", str(home.mrid)), to="ggus", new=True,
         update=None, unit=None, now=_now())
    app.run_once()
    (pushed,) = ggus.tickets()
    app.run_once()
    app.relay.lose_ggus_mail = True  # GGUS' notification mail never arrives
    ggus.add_diary(pushed.request_id, "Cleaned up the scratch area.", author="G. Supporter")
    app.run_once()  # the poll finds the change by its updated_at
    texts = [d.data for d in fp.ticket(home.mrid).descriptions]
    assert sum("Cleaned up the scratch area." in t for t in texts) == 1
    polled = [e for e in app.store.list_inbox(limit=100) if e.source == "poll:ggus"]
    assert polled and all(e.state in ("applied", "skipped") for e in polled)
    before = len(polled)
    app.run_once()  # the overlap window sees the same changes: stored once, nothing new
    again = [e for e in app.store.list_inbox(limit=100) if e.source == "poll:ggus"]
    assert len(again) == before
    assert sum("Cleaned up" in d.data for d in fp.ticket(home.mrid).descriptions) == 1


def ggus_user_mail(ggus, subject: str, body: str) -> None:
    """A GGUS user opening a ticket by mail (mail submission to the helpdesk address)."""
    msg = EmailMessage()
    msg["From"] = "jane.doe@example.org"
    msg["To"] = "helpdesk@ggus.example.org"
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", ggus.smtp_port) as smtp:
        smtp.send_message(msg)


@pytest.mark.parametrize("world", ["ggus-soap", "ggus-rest"], indirect=True)
def test_ggus_ticket_reaches_home_with_back_reference_and_edits_on_both_sides(world):
    app, ggus, fp, _ = world
    ggus_user_mail(ggus, "SRM timeouts at UCSD", "All transfers time out since 08:00.")
    (ticket,) = ggus.tickets()
    ggus.route(ticket.request_id, "OSG")  # TPM routes it: OSG is notified
    app.run_once()
    app.run_once()  # Footprints' notification of the create, GGUS' of the back-reference
    (home,) = fp.tickets()
    assert home.field("Originating Ticket Number") == str(ticket.request_id)
    assert ggus.ticket(ticket.request_id).origin_id == str(home.mrid)  # written back
    before = counts(ggus, fp, ticket.request_id, home.mrid)

    # Both sides change before the next exchange.
    ggus.add_diary(ticket.request_id, "Which SE endpoint do you use?", author="G. Supporter")
    fp_mail(fp, f"Re: SRM timeouts at UCSD ISSUE={home.mrid} PROJ=71",
            "We restarted the SRM door.\n")
    for _ in range(3):  # the triggers, and the notifications of our own writes
        app.run_once()
    after = counts(ggus, fp, ticket.request_id, home.mrid)
    # GGUS: the supporter's entry + our one copy of the agent's; home: the agent's + ours.
    assert after == (before[0] + 2, before[1] + 2)
    home_texts = [d.data for d in fp.ticket(home.mrid).descriptions]
    assert sum("Which SE endpoint" in t for t in home_texts) == 1
    ggus_texts = [h.public_diary for h in ggus.history(ticket.request_id)]
    assert sum("We restarted the SRM door." in t for t in ggus_texts) == 1


def fp_attach(fp, mrid: int, name: str, data: bytes) -> None:
    """An agent attaching a file in Footprints (a reply to its notification, no text)."""
    msg = EmailMessage()
    msg["From"] = "agent@goc.example.org"
    msg["To"] = fp.incoming_address
    msg["Subject"] = f"Re: ISSUE={mrid} PROJ=71"
    msg.set_content("")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    with smtplib.SMTP("127.0.0.1", fp.smtp_port) as smtp:
        smtp.send_message(msg)


@pytest.mark.parametrize("world", ["ggus-soap", "ggus-rest"], indirect=True)
def test_attachments_travel_both_ways_once_and_never_echo(world):
    app, ggus, fp, _ = world
    ggus_user_mail(ggus, "SRM timeouts at UCSD", "All transfers time out since 08:00.")
    (ticket,) = ggus.tickets()
    ggus.route(ticket.request_id, "OSG")
    app.run_once()
    app.run_once()
    (home,) = fp.tickets()

    from_ggus = b"2024-03-01 08:00:01 srm timeout\n" + bytes(range(256))
    ggus.add_attachment(ticket.request_id, "srm.log\n", from_ggus, author="G. Supporter")
    from_home = b"\x00\x01core" * 100
    fp_attach(fp, home.mrid, "core.bin", from_home)
    for _ in range(4):  # the triggers, and the notifications of our own writes
        app.run_once()

    home_files = [(a.name, a.data) for a in fp.ticket(home.mrid).attachments]
    ggus_files = [(a.name.strip(), a.data) for a in ggus.attachments(ticket.request_id)]
    assert sorted(home_files) == [("core.bin", from_home), ("srm.log", from_ggus)]
    assert sorted(ggus_files) == [("core.bin", from_home), ("srm.log", from_ggus)]
