"""The generation-1 exchange both ways, over real SMTP, LMTP and IMAP (Dovecot).

GGUS is reached only by mail: its XML notifications arrive in one IMAP mailbox, Footprints'
notifications in another (both delivered by a real SMTP relay into Dovecot over LMTP);
ticketbridge writes GGUS by mail submission (``GGUS-Ticket-ID: #id`` in the subject) and
Footprints through its email interface. A GGUS ticket routed to OSG reaches Footprints;
a Footprints agent's reply reaches GGUS as a public diary entry; and the GGUS notification
of that very entry, which carries our text back, causes no write.
"""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage

from tests.support.mailservers import LmtpRelay
from ticketbridge.config import parse_config
from ticketbridge.runtime.app import App
from ticketbridge.sandbox.footprints import FootprintsSandbox
from ticketbridge.sandbox.ggus import GgusSandbox

CONFIG = """\
database: "{database}"
helpdesks:
  ggus:
    kind: ggus-mail
    helpdesk_address: helpdesk@ggus.example.org
    sender: osg-tx@goc.example.org
    smtp_port: {ggus_smtp}
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


def test_gen1_mail_exchange_both_ways_over_imap(new_mail_account, store_url):
    ggus_box, goc_box = new_mail_account(), new_mail_account()
    relay = LmtpRelay(ggus_box, goc_box)
    relay.controller.start()
    relay_at = ("127.0.0.1", relay.controller.port)
    with GgusSandbox(smarthost=relay_at) as ggus, FootprintsSandbox(smarthost=relay_at) as fp:
        settings = parse_config(CONFIG.format(
            database=store_url, ggus_smtp=ggus.smtp_port, fp_smtp=fp.smtp_port,
            fp_soap=fp.soap_url, imap=ggus_box.server.imap_port,
            ggus_user=ggus_box.user, ggus_password=ggus_box.password,
            goc_user=goc_box.user, goc_password=goc_box.password))
        app = App(settings)
        try:
            msg = EmailMessage()
            msg["From"], msg["To"] = "jane.doe@example.org", "helpdesk@ggus.example.org"
            msg["Subject"] = "CE at UCSD rejects CMS pilots"
            msg.set_content("Since 08:00 UTC all pilots fail.")
            with smtplib.SMTP("127.0.0.1", ggus.smtp_port) as smtp:
                smtp.send_message(msg)
            (ticket,) = ggus.tickets()
            ggus.route(ticket.request_id, "OSG")  # TPM routes it; OSG gets the XML mail
            app.run_once()
            app.run_once()  # Footprints' notification of our create: nothing to send
            (home,) = fp.tickets()
            assert home.field("Originating Ticket Number") == str(ticket.request_id)
            ggus_rows = len(ggus.history(ticket.request_id))

            msg = EmailMessage()
            msg["From"], msg["To"] = "agent@goc.example.org", fp.incoming_address
            msg["Subject"] = f"Re: CE at UCSD ISSUE={home.mrid} PROJ=71"
            msg.set_content("The CRL on the gatekeeper had expired; renewed.\n")
            with smtplib.SMTP("127.0.0.1", fp.smtp_port) as smtp:
                smtp.send_message(msg)
            home_entries = len(fp.ticket(home.mrid).descriptions)
            for _ in range(3):  # the reply, and GGUS' notification of our own mail
                app.run_once()
            diaries = [h.public_diary for h in ggus.history(ticket.request_id)]
            assert sum("CRL on the gatekeeper had expired" in d for d in diaries) == 1
            assert len(ggus.history(ticket.request_id)) == ggus_rows + 1
            assert len(fp.ticket(home.mrid).descriptions) == home_entries  # no echo home
        finally:
            app.close()
            relay.controller.stop()


def test_push_by_mail_links_back_through_the_issue_tag(new_mail_account, store_url):
    """GGUS mail has no GHD_Origin_ID: the pushed title carries ISSUE=n PROJ=p, and GGUS'
    notification of the new ticket (to TPM) links to the home ticket, never a second one."""
    from ticketbridge.model import TicketRef
    from ticketbridge.service import send

    ggus_box, goc_box = new_mail_account(), new_mail_account()
    relay = LmtpRelay(ggus_box, goc_box)
    relay.controller.start()
    relay_at = ("127.0.0.1", relay.controller.port)
    with GgusSandbox(smarthost=relay_at) as ggus, FootprintsSandbox(smarthost=relay_at) as fp:
        settings = parse_config(CONFIG.format(
            database=store_url, ggus_smtp=ggus.smtp_port, fp_smtp=fp.smtp_port,
            fp_soap=fp.soap_url, imap=ggus_box.server.imap_port,
            ggus_user=ggus_box.user, ggus_password=ggus_box.password,
            goc_user=goc_box.user, goc_password=goc_box.password))
        app = App(settings)
        try:
            msg = EmailMessage()
            msg["From"], msg["To"] = "agent@goc.example.org", fp.incoming_address
            msg["Subject"] = "Gatekeeper down at FNAL"
            msg.set_content("It does not answer.\n")
            with smtplib.SMTP("127.0.0.1", fp.smtp_port) as smtp:
                smtp.send_message(msg)
            (home,) = fp.tickets()
            send(app.store, settings, TicketRef("goc", str(home.mrid)), to="ggus", new=True,
                 update=None, unit=None, now=datetime.now(UTC))
            for _ in range(3):
                app.run_once()
            (pushed,) = ggus.tickets()
            assert f"ISSUE={home.mrid} PROJ=71" in pushed.short_description
            assert len(fp.tickets()) == 1  # the notification linked back, no second ticket
            link = app.store.find_link_by_b("goc", str(home.mrid))
            assert link is not None and link.a_id == str(pushed.request_id)
            assert fp.ticket(home.mrid).title == "Gatekeeper down at FNAL"  # not renamed

            ggus.route(pushed.request_id, "OSG")  # TPM routes it
            ggus.add_diary(pushed.request_id, "Please check the host certificate.",
                           author="G. Supporter")
            for _ in range(3):
                app.run_once()
            home_texts = [d.data for d in fp.ticket(home.mrid).descriptions]
            assert sum("check the host certificate" in t for t in home_texts) == 1

            msg = EmailMessage()
            msg["From"], msg["To"] = "agent@goc.example.org", fp.incoming_address
            msg["Subject"] = f"Re: Gatekeeper down at FNAL ISSUE={home.mrid} PROJ=71"
            msg.set_content("Renewed the host certificate.\nstatus=Resolved\n")
            with smtplib.SMTP("127.0.0.1", fp.smtp_port) as smtp:
                smtp.send_message(msg)
            for _ in range(3):
                app.run_once()
            diaries = [h.public_diary for h in ggus.history(pushed.request_id)]
            assert sum("Renewed the host certificate." in d for d in diaries) == 1
            # GGUS takes no fields by mail (spec A4): the resolution arrives as text, and
            # the decision says that the status stays home.
            assert ggus.ticket(pushed.request_id).status != "solved"
            reasons = [e.reason or "" for e in app.store.list_inbox(limit=50)]
            assert any("fields and internal entries stay home" in r for r in reasons)
        finally:
            app.close()
            relay.controller.stop()
