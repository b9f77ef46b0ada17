"""``ticketbridge demo``: the GGUS -> Footprints exchange on sample mails, end to end.

It starts the Footprints emulator on free loopback ports, writes a configuration that
reads a Maildir in a temporary (or given) directory, delivers a scripted series of GGUS
mails one by one (new tickets, updates, an internal diary, a solution, an auto-reply, a
duplicate, spam and an XXE attempt), runs the exchange after each, and prints what became
of every mail and what Footprints holds at the end.
"""

from __future__ import annotations

import mailbox
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ticketbridge.codecs import ggus_mail
from ticketbridge.config import load_config
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility, text_digest
from ticketbridge.runtime.app import App
from ticketbridge.sandbox.footprints import FootprintsSandbox

CONFIG = """\
# Written by `ticketbridge demo`: GGUS mails from a Maildir into the Footprints emulator.
database: sqlite:///ticketbridge.sqlite3
helpdesks:
  ggus:
    kind: ggus-mail
    ticket_url: "https://ggus.example.org/index.php?mode=ticket_info&ticket_id={{id}}"
  goc:
    kind: footprints-mail
    project: 71
    incoming_address: fp-incoming@goc.example.org
    sender: osg-tx@goc.example.org
    smtp_host: 127.0.0.1
    smtp_port: {smtp_port}
    soap_url: "{soap_url}"
    user: goctx
    password: demo
receivers:
  ggus-mail:
    helpdesk: ggus
    mailbox:
      kind: maildir
      path: mail/ggus
      poll_interval: 1.0
exchanges:
  ggus-goc:
    source: ggus
    target: goc
worker:
  base_delay: 0.5
"""

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Step:
    """One mail of the demo and what it shows."""

    label: str
    raw: bytes


def _ticket(
    ggus_id: str,
    *,
    status: str,
    priority: str,
    title: str,
    minutes: int,
    comments: tuple[Comment, ...] = (),
    origin: str = "",
) -> Ticket:
    when = START + timedelta(minutes=minutes)
    fields = {
        "GHD_Request-ID": ggus_id,
        "GHD_Responsible_Unit": "OSG",
        "GHD_Experiment": "cms",
        "GHD_Affected_Site": "UCSDT2",
        "GHD_Type_Of_Problem": "Workload Management",
        "GHD_Date_Time_Of_Problem": "2026-03-02 08:00:00",
        "GHD_Last_Modifier": "Maria Rossi",
    }
    if origin:
        fields["GHD_Origin_ID"] = origin
    return Ticket(
        ref=TicketRef("ggus", ggus_id),
        title=title,
        description="Since 08:00 UTC all pilots are rejected with 'authentication failed'.",
        status=status,
        priority=priority,
        submitter=Contact(
            "Maria Rossi",
            "maria.rossi@example.org",
            "+49 721 000",
            "/DC=org/DC=example/CN=Maria Rossi",
        ),
        fields=fields,
        comments=comments,
        modified=when,
    )


def _comment(kind: str, body: str, visibility: Visibility = Visibility.PUBLIC) -> Comment:
    return Comment(
        key=text_digest(kind, body),
        body=body,
        author="Maria Rossi",
        visibility=visibility,
        kind=kind,
    )


def _mail(ticket: Ticket, n: int) -> bytes:
    assert ticket.modified is not None
    return ggus_mail.encode(
        ticket,
        to="osg-tx@goc.example.org",
        sender="helpdesk@ggus.example.org",
        date=ticket.modified,
        message_id=f"<demo-{n}@ggus.example.org>",
    )


def _plain(subject: str, body: str, n: int, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "someone@example.net")
    msg["To"] = "osg-tx@goc.example.org"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(START + timedelta(minutes=n))
    msg["Message-ID"] = f"<demo-{n}@example.net>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def scenario() -> list[Step]:
    """The demo's mails, in delivery order."""
    title = "CE at UCSD rejects CMS pilots"
    new = _ticket("40637", status="assigned", priority="less urgent", title=title, minutes=0)
    team = _ticket(
        "40701",
        status="assigned",
        priority="very urgent",
        minutes=2,
        title="SRM at BNL_ATLAS_1 not responding",
    )
    diary = _comment("public diary", "The gatekeeper's CRL was expired; renewed it.")
    update = _ticket(
        "40637", status="in progress", priority="urgent", title=title, minutes=20, comments=(diary,)
    )
    internal = _comment(
        "internal diary", "Site admin phone: +1 858 000 (do not publish)", Visibility.INTERNAL
    )
    secret = _ticket(
        "40637",
        status="in progress",
        priority="urgent",
        title=title,
        minutes=30,
        comments=(internal,),
    )
    solution = _comment("solution", "CRLs are fetched again; pilots run since 10:12 UTC.")
    solved = _ticket(
        "40637", status="solved", priority="urgent", title=title, minutes=45, comments=(solution,)
    )
    stale = _ticket("40637", status="in progress", priority="urgent", title=title, minutes=25)
    xxe = (
        b"From: attacker@example.net\nSubject: GGUS-Ticket-ID: #40999 hi\n"
        b"Message-ID: <demo-xxe@example.net>\nContent-Type: text/plain\n\n"
        b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Ticket><GHD_Request-ID>40999</GHD_Request-ID><GHD_Description>&x;</GHD_Description>"
        b"</Ticket>\n"
    )
    return [
        Step("new ticket 40637", _mail(new, 1)),
        Step("TEAM ticket 40701", _mail(team, 2)),
        Step(
            "auto-reply",
            _plain(
                "Automatic reply: GGUS-Ticket-ID: #40637",
                "I am away.",
                3,
                Auto_Submitted="auto-replied",
            ),
        ),
        Step("40637: public diary, in progress, urgent", _mail(update, 4)),
        Step("spam without XML", _plain("Cheap watches", "Buy now!", 5)),
        Step("40637 again (same Message-ID)", _mail(update, 4)),
        Step("40637: internal diary", _mail(secret, 6)),
        Step("40637: stale snapshot (older)", _mail(stale, 7)),
        Step("XXE attempt", xxe),
        Step("40637: solved with solution", _mail(solved, 8)),
    ]


def run_demo(console: Console, *, keep_running: bool = False, directory: str | None = None) -> int:
    """Run the demo; returns the exit status (0 when every mail ended as expected)."""
    with tempfile.TemporaryDirectory(prefix="ticketbridge-demo-") as tmp:
        root = Path(directory or tmp)
        root.mkdir(parents=True, exist_ok=True)
        (root / "mail").mkdir(exist_ok=True)
        maildir = mailbox.Maildir(root / "mail" / "ggus", create=True)
        with FootprintsSandbox(db_path=root / "footprints.sqlite3") as fp:
            (root / "ticketbridge.yaml").write_text(
                CONFIG.format(smtp_port=fp.smtp_port, soap_url=fp.soap_url), encoding="utf-8"
            )
            settings = load_config(root / "ticketbridge.yaml")
            app = App(settings)
            try:
                console.print(f"[bold]ticketbridge demo[/] in {root}")
                console.print(
                    f"Footprints emulator: SMTP 127.0.0.1:{fp.smtp_port}, SOAP {fp.soap_url}\n"
                )
                table = Table(title="GGUS mails, one by one", title_justify="left")
                for column in ("#", "mail", "outcome", "why"):
                    table.add_column(column)
                for n, step in enumerate(scenario(), start=1):
                    seen = {e.id for e in app.store.list_inbox(limit=1000)}
                    maildir.add(step.raw)
                    app.run_once()
                    fresh = [e for e in app.store.list_inbox(limit=1000) if e.id not in seen]
                    if not fresh:
                        state, reason = "duplicate", "already in the inbox: nothing done"
                    else:
                        state, reason = fresh[0].state, fresh[0].reason or ""
                    table.add_row(str(n), step.label, state, reason)
                console.print(table)
                _print_footprints(console, fp)
                _print_timeline(console, app, "40637")
                if directory:
                    console.print(
                        "\nEverything is kept in the directory; look around with e.g.\n"
                        f"  ticketbridge links -c {root / 'ticketbridge.yaml'}"
                    )
                if keep_running:
                    console.print(
                        f"\nStill running. Drop GGUS mails into {root / 'mail/ggus/new'}"
                        "; Ctrl-C to stop."
                    )
                    thread = threading.Thread(target=app.run, daemon=True)
                    thread.start()
                    try:
                        threading.Event().wait()
                    except KeyboardInterrupt:
                        pass
            finally:
                app.close()
    return 0


def _print_footprints(console: Console, fp: FootprintsSandbox) -> None:
    table = Table(title="Footprints tickets (project 71)", title_justify="left")
    for column in ("ISSUE", "title", "status", "priority", "Originating Ticket Number", "entries"):
        table.add_column(column)
    for ticket in fp.tickets():
        entries = len(ticket.descriptions)
        table.add_row(
            str(ticket.mrid),
            ticket.title,
            ticket.status,
            str(ticket.priority),
            ticket.project_fields.get("Originating Ticket Number", ""),
            str(entries),
        )
    console.print(table)


def _print_timeline(console: Console, app: App, ggus_id: str) -> None:
    table = Table(title=f"timeline of ggus:{ggus_id} (ticketbridge show)", title_justify="left")
    for column in ("kind", "summary"):
        table.add_column(column)
    for event in app.store.timeline("ggus", ggus_id):
        table.add_row(event.kind, event.summary)
    console.print(table)
