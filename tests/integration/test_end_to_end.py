"""End to end over real servers: GGUS mail -> Dovecot -> ticketbridge -> Footprints (SMTP).

A GGUS notification is delivered into a real Dovecot mailbox (LMTP); the running exchange
sees it through IMAP IDLE (or POP3 in a cron-style pass), stores it, and mails the
Footprints emulator's real SMTP interface, which creates the ticket; a later update for
the same GGUS ticket lands on that same Footprints ticket. Both databases.
"""

from __future__ import annotations

import threading
import time

import imapclient
import pytest

from tests.support.exchange import diary, mail, ticket
from ticketbridge.config import parse_config
from ticketbridge.model import Visibility
from ticketbridge.runtime.app import App
from ticketbridge.sandbox.footprints import FootprintsSandbox

CONFIG = """\
database: "{database}"
helpdesks:
  ggus: {{kind: ggus-mail}}
  goc:
    kind: footprints-mail
    incoming_address: fp-incoming@goc.example.org
    sender: osg-tx@goc.example.org
    smtp_port: {smtp}
    soap_url: "{soap}"
    user: goctx
    password: demo
receivers:
  ggus-notifications:
    helpdesk: ggus
    mailbox:
      kind: {kind}
      host: 127.0.0.1
      port: {port}
      tls: none
      user: {user}
      password: {password}
      poll_interval: 30
exchanges:
  ggus-goc: {{source: ggus, target: goc}}
"""


def wait_until(predicate, timeout=30.0, what="condition"):
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def fp():
    with FootprintsSandbox() as sandbox:
        yield sandbox


def settings_for(kind, port, account, fp, database):
    return parse_config(CONFIG.format(database=database, smtp=fp.smtp_port, soap=fp.soap_url,
                                      kind=kind, port=port, user=account.user,
                                      password=account.password))


def test_imap_idle_new_then_update_lands_on_the_same_footprints_ticket(
    dovecot, mail_account, fp, store_url
):
    app = App(settings_for("imap", dovecot.imap_port, mail_account, fp, store_url))
    runner = threading.Thread(target=app.run, daemon=True)
    runner.start()
    try:
        mail_account.deliver(mail(ticket(comments=[diary("Pilots fail since 08:00")]), 1))
        (issue,) = wait_until(fp.tickets, what="the Footprints ticket to be created")
        assert issue.field("Originating Ticket Number") == "40637"
        assert issue.status == "Engineering" and issue.priority == 4

        secret = diary("call the site admin at home", "internal diary", Visibility.INTERNAL)
        mail_account.deliver(mail(ticket(status="in progress", priority="very urgent",
                                         minutes=10, comments=[diary("CRL renewed"), secret]), 2))
        wait_until(lambda: fp.ticket(issue.mrid).priority == 2, what="the update")
        updated = fp.ticket(issue.mrid)
        assert len(fp.tickets()) == 1  # the same ticket, no second one
        public = [d.data for d in updated.descriptions if not d.internal]
        internal = [d.data for d in updated.descriptions if d.internal]
        assert any("CRL renewed" in text for text in public)
        assert any("call the site admin" in text for text in internal)
        assert not any("call the site admin" in text for text in public)

        # Both mails were acknowledged (\Seen) only after being stored.
        with imapclient.IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
            imap.login(mail_account.user, mail_account.password)
            imap.select_folder("INBOX")
            assert len(imap.search(["SEEN"])) == 2
        assert [e.state for e in app.store.list_inbox()] == ["applied", "applied"]
    finally:
        app.stop()
        runner.join(timeout=30)
        app.close()
    assert not runner.is_alive()


def test_pop3_cron_pass_applies_and_a_redelivery_is_a_no_op(dovecot, mail_account, fp, store_url):
    settings = settings_for("pop3", dovecot.pop3_port, mail_account, fp, store_url)
    raw = mail(ticket(), 1)
    mail_account.deliver(raw)
    app = App(settings)
    try:
        assert app.run_once() == (1, 1)
        assert len(fp.tickets()) == 1
        mail_account.deliver(raw)  # the very same mail again
        received, ran = app.run_once()
        assert (received, ran) == (1, 0)  # read, recognised as a duplicate, nothing run
        assert len(fp.tickets()) == 1
    finally:
        app.close()
