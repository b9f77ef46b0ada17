"""``ticketbridge demo``: the exchange on both emulators, end to end, in both directions.

Part 1, GGUS -> Footprints: it starts the Footprints emulator on free loopback ports,
writes a configuration that reads a Maildir in a temporary (or given) directory, delivers
a scripted series of GGUS mails one by one (new tickets, updates, an internal diary, a
solution, an auto-reply, a duplicate, spam and an XXE attempt), runs the exchange after
each, and prints what became of every mail and what Footprints holds at the end.

Part 2, Footprints -> GGUS and back, with the GGUS emulator (SOAP) and a mail relay that
files both emulators' notifications into the exchange's Maildirs: an agent opens a
Footprints ticket, ``send --new`` pushes it to GGUS (TPM), TPM routes it to OSG, a GGUS
supporter replies, the agent resolves it; after each step it prints what the exchange
wrote on each side (exactly one write per change the other side must see, none for our
own writes coming back), then both tickets and the ``show`` timeline.
"""

from __future__ import annotations

import mailbox
import smtplib
import tempfile
import threading
from collections.abc import Callable
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
from ticketbridge.sandbox.ggus import DEFAULT_UNITS, GgusSandbox
from ticketbridge.sandbox.relay import MaildirRelay
from ticketbridge.service import send

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
    """Run the demo; returns the exit status (0 when every step ended as expected).

    Part 1 feeds GGUS mails to the exchange; part 2 runs the two-way exchange with a
    ``ggus-soap`` helpdesk (:func:`run_two_way`). Both use one Footprints emulator, whose
    notifications reach the exchange through a :class:`MaildirRelay`.
    """
    with tempfile.TemporaryDirectory(prefix="ticketbridge-demo-") as tmp:
        root = Path(directory or tmp)
        root.mkdir(parents=True, exist_ok=True)
        (root / "mail").mkdir(exist_ok=True)
        maildir = mailbox.Maildir(root / "mail" / "ggus", create=True)
        relay = MaildirRelay(
            {
                DEFAULT_UNITS["TPM"]: root / TWO_WAY_GGUS_BOX,
                DEFAULT_UNITS["OSG"]: root / TWO_WAY_GGUS_BOX,
                REVERSE_AGENT: root / TWO_WAY_HOME_BOX,
            },
            default=root / "mail" / "other",
        ).start()
        fp = FootprintsSandbox(db_path=root / "footprints.sqlite3", smarthost=relay.address)
        ggus = GgusSandbox(db_path=root / "ggus.sqlite3", smarthost=relay.address)
        apps: list[App] = []
        try:
            fp.start()
            ggus.start()
            (root / "ticketbridge.yaml").write_text(
                CONFIG.format(smtp_port=fp.smtp_port, soap_url=fp.soap_url), encoding="utf-8"
            )
            settings = load_config(root / "ticketbridge.yaml")
            app = App(settings)
            apps.append(app)
            console.print(f"[bold]ticketbridge demo[/] in {root}")
            console.print(
                f"Footprints emulator: SMTP 127.0.0.1:{fp.smtp_port}, SOAP {fp.soap_url}\n"
                f"GGUS emulator: SMTP 127.0.0.1:{ggus.smtp_port}, HTTP {ggus.base_url}\n"
                f"mail relay (the emulators' notifications): 127.0.0.1:{relay.port}\n",
                markup=False,
            )
            console.print("[bold]Part 1: GGUS -> Footprints[/] (ggus-mail: the XML mails)\n")
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

            second = two_way_app(root, ggus, fp)
            apps.append(second)
            result = run_two_way(console, second, ggus, fp)
            status = 0 if result.ok else 1
            if directory:
                console.print(
                    "\nEverything is kept in the directory; look around with e.g.\n"
                    f"  ticketbridge links -c {root / 'ticketbridge.yaml'}\n"
                    f"  ticketbridge show goc:{result.mrid} -c {root / 'two-way.yaml'}"
                )
            if keep_running:
                _keep_running(console, root, apps, ggus, fp, relay)
        finally:
            for each in apps:
                each.close()
            ggus.close()
            fp.close()
            relay.stop()
    return status


def _keep_running(
    console: Console,
    root: Path,
    apps: list[App],
    ggus: GgusSandbox,
    fp: FootprintsSandbox,
    relay: MaildirRelay,
) -> None:
    console.print("\n[bold]Still running[/] (Ctrl-C to stop):")
    console.print(
        f"  GGUS emulator:       mail submission smtp://127.0.0.1:{ggus.smtp_port} "
        f"(to {ggus.helpdesk_address})\n"
        f"                       SOAP {ggus.soap_url('GGUS')}\n"
        f"                       REST {ggus.rest_url} (token {ggus.rest_token})\n"
        f"                       TPM routing: POST {ggus.base_url}/sandbox/route\n"
        f"  Footprints emulator: email interface smtp://127.0.0.1:{fp.smtp_port} "
        f"(to {fp.incoming_address})\n"
        f"                       MRWebServices {fp.soap_url}\n"
        f"  mail relay:          smtp://127.0.0.1:{relay.port} (notifications into "
        f"{root / 'mail'})\n"
        f"  exchange (GGUS mails): drop them into {root / 'mail/ggus/new'} "
        f"(config {root / 'ticketbridge.yaml'})\n"
        f"  exchange (two-way):  config {root / 'two-way.yaml'}; "
        f"ticketbridge send goc:ID --to ggus --new -c {root / 'two-way.yaml'}",
        markup=False,
    )
    threads = [threading.Thread(target=each.run, daemon=True) for each in apps]
    for thread in threads:
        thread.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    for each in apps:
        each.stop()
    for thread in threads:
        thread.join(timeout=10)


# --- part 2: home -> GGUS and back ---------------------------------------------------------

TWO_WAY_CONFIG = """\
# Written by `ticketbridge demo`: the two-way exchange between the GGUS emulator (SOAP)
# and the Footprints emulator; both mail their notifications into the Maildirs below.
database: sqlite:///two-way.sqlite3
helpdesks:
  ggus:
    kind: ggus-soap
    url: "{ggus_url}"
    ars_server: {ars_server}
    user: {ggus_user}
    password: {ggus_password}
  goc:
    kind: footprints-mail
    project: 71
    incoming_address: {fp_incoming}
    sender: osg-tx@goc.example.org
    smtp_host: 127.0.0.1
    smtp_port: {fp_smtp}
    soap_url: "{fp_soap}"
    user: {fp_user}
    password: {fp_password}
receivers:
  ggus-notifications:
    helpdesk: ggus
    mailbox: {{kind: maildir, path: {ggus_box}, poll_interval: 0.2}}
  goc-notifications:
    helpdesk: goc
    mailbox: {{kind: maildir, path: {home_box}, poll_interval: 0.2}}
exchanges:
  ggus-goc:
    source: ggus
    target: goc
worker:
  threads: 1
  base_delay: 0.5
  idle_poll: 0.2
"""

#: Where the relay files GGUS' notifications (TPM's and OSG's lists) and Footprints' ones
#: (to the reverse TX agent), relative to the demo directory.
TWO_WAY_GGUS_BOX = "mail/two-way/ggus"
TWO_WAY_HOME_BOX = "mail/two-way/goc"
REVERSE_AGENT = "tx+fp71_ggus2@goc.example.org"
AGENT = "Pat Agent <pat.agent@goc.example.org>"
TITLE = "CE down at MWT2"


@dataclass(frozen=True)
class TwoWayStep:
    """One step of part 2: who changed what, and what the exchange wrote because of it.

    ``ggus_writes``/``home_writes`` count the GGUS history rows and Footprints description
    entries written by the exchange (the step's own user change is not counted).
    """

    label: str
    ggus_writes: int
    home_writes: int
    expected: tuple[int, int]
    triggers: tuple[str, ...]
    ggus_state: str
    home_state: str

    @property
    def ok(self) -> bool:
        return (self.ggus_writes, self.home_writes) == self.expected


@dataclass(frozen=True)
class TwoWayResult:
    """What part 2 did, and how both tickets ended."""

    ggus_id: int
    mrid: int
    steps: tuple[TwoWayStep, ...]
    ggus_status: str
    ggus_unit: str
    ggus_solution: str
    home_status: str
    home_entries: int
    reply_copies: int

    @property
    def ok(self) -> bool:
        return (
            all(s.ok for s in self.steps)
            and self.ggus_status == "solved"
            and bool(self.ggus_solution)
            and self.home_status == "Resolved"
            and self.reply_copies == 1
        )


def two_way_app(root: Path, ggus: GgusSandbox, fp: FootprintsSandbox) -> App:
    """Write ``ROOT/two-way.yaml`` for these emulators and build the exchange from it.

    Its Maildirs are ``ROOT/mail/two-way/{ggus,goc}``, where a :class:`MaildirRelay` is to
    file the emulators' notifications.
    """
    path = root / "two-way.yaml"
    path.write_text(
        TWO_WAY_CONFIG.format(
            ggus_url=ggus.base_url,
            ars_server=ggus.ars_server,
            ggus_user=ggus.soap_user,
            ggus_password=ggus.soap_password,
            fp_incoming=fp.incoming_address,
            fp_smtp=fp.smtp_port,
            fp_soap=fp.soap_url,
            fp_user=fp.user,
            fp_password=fp.password,
            ggus_box=TWO_WAY_GGUS_BOX,
            home_box=TWO_WAY_HOME_BOX,
        ),
        encoding="utf-8",
    )
    return App(load_config(path))


def agent_mail(fp: FootprintsSandbox, subject: str, body: str) -> None:
    """A Footprints agent working on a ticket through the email interface."""
    msg = EmailMessage()
    msg["From"] = AGENT
    msg["To"] = fp.incoming_address
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", fp.smtp_port, timeout=30) as smtp:
        smtp.send_message(msg)


def _settle(app: App) -> None:
    """Run passes until nothing new arrives and nothing is left to run."""
    for _ in range(20):
        received, ran = app.run_once()
        if not received and not ran:
            return


def run_two_way(
    console: Console, app: App, ggus: GgusSandbox, fp: FootprintsSandbox
) -> TwoWayResult:
    """Part 2 of the demo: a Footprints ticket pushed to GGUS, worked on both sides."""
    console.print(
        "\n[bold]Part 2: Footprints -> GGUS and back[/] (ggus-soap; GGUS emulator: "
        f"SOAP {ggus.soap_url('GGUS')})\n"
    )
    ids: dict[str, int] = {}
    steps: list[TwoWayStep] = []

    def counts() -> tuple[int, int]:
        rows = len(ggus.history(ids["ggus"])) if "ggus" in ids else 0
        entries = len(fp.ticket(ids["goc"]).descriptions) if "goc" in ids else 0
        return rows, entries

    def states() -> tuple[str, str]:
        g = ggus.ticket(ids["ggus"]) if "ggus" in ids else None
        h = fp.ticket(ids["goc"]) if "goc" in ids else None
        return (
            f"{g.status}, {g.responsible_unit}" if g else "-",
            f"{h.status}" if h else "-",
        )

    def step(
        label: str,
        action: Callable[[], object],
        *,
        user: tuple[int, int],
        expected: tuple[int, int],
    ) -> None:
        seen = {e.id for e in app.store.list_inbox(limit=10_000)}
        before = counts()
        action()
        _settle(app)
        after = counts()
        fresh = [e for e in app.store.list_inbox(limit=10_000) if e.id not in seen]
        fresh.sort(key=lambda e: e.id)
        triggers = tuple(_trigger(e.source, e.state, e.reason) for e in fresh)
        ggus_state, home_state = states()
        steps.append(
            TwoWayStep(
                label,
                after[0] - before[0] - user[0],
                after[1] - before[1] - user[1],
                expected,
                triggers,
                ggus_state,
                home_state,
            )
        )

    def open_home() -> None:
        known = {t.mrid for t in fp.tickets()}
        agent_mail(fp, TITLE, "The gatekeeper does not answer.\npriority=2\n")
        (ticket,) = [t for t in fp.tickets() if t.mrid not in known]
        ids["goc"] = ticket.mrid

    def push() -> None:
        known = {t.request_id for t in ggus.tickets()}
        data = send(
            app.store,
            app.settings,
            TicketRef("goc", str(ids["goc"])),
            to="ggus",
            new=True,
            update=None,
            unit=None,
            now=datetime.now(UTC),
        )
        _settle(app)
        entry = app.store.inbox_entry(data["inbox_id"])
        created = [t for t in ggus.tickets() if t.request_id not in known]
        if entry.state != "applied" or len(created) != 1:
            raise RuntimeError(f"send --new did not create one GGUS ticket: {entry.reason}")
        ids["ggus"] = created[0].request_id

    before = len(app.store.list_inbox(limit=10_000))
    _settle(app)
    earlier = len(app.store.list_inbox(limit=10_000)) - before
    console.print(
        f"First, {earlier} Footprints notifications of part 1's tickets: skipped, none is "
        "linked to a GGUS ticket of this exchange.\n",
        markup=False,
    )
    reply = "Please restart the gatekeeper; the CRLs are stale."
    solution = "Restarted the gatekeeper; pilots run again."
    step("an agent opens a Footprints ticket", open_home, user=(0, 1), expected=(0, 0))
    step("send --new pushes it to GGUS (TPM)", push, user=(0, 0), expected=(1, 0))
    step(
        "TPM routes it to OSG",
        lambda: ggus.route(ids["ggus"], "OSG"),
        user=(1, 0),
        expected=(0, 0),
    )
    step(
        "a GGUS supporter replies",
        lambda: ggus.add_diary(ids["ggus"], reply, author="G. Supporter"),
        user=(1, 0),
        expected=(0, 1),
    )
    step(
        "the agent resolves it in Footprints",
        lambda: agent_mail(
            fp, f"Re: {TITLE} ISSUE={ids['goc']} PROJ=71", f"{solution}\nstatus=Resolved\n"
        ),
        user=(0, 1),
        expected=(1, 0),
    )

    table = Table(title="two-way, step by step", title_justify="left")
    for column in (
        "#",
        "step",
        "triggers handled",
        "writes to GGUS",
        "writes to Footprints",
        "GGUS",
        "Footprints",
    ):
        table.add_column(column)
    for n, s in enumerate(steps, start=1):
        mark = "" if s.ok else f" (expected {s.expected[0]}/{s.expected[1]})"
        table.add_row(
            str(n),
            s.label + mark,
            "\n".join(s.triggers) or "-",
            str(s.ggus_writes),
            str(s.home_writes),
            s.ggus_state,
            s.home_state,
        )
    console.print(table)

    g = ggus.ticket(ids["ggus"])
    home = fp.ticket(ids["goc"])
    echoes = sum(1 for s in steps[1:] for t in s.triggers if "notification: skipped" in t)
    console.print(
        "4 user changes (the agent twice, TPM, the supporter) and 1 operator push; the "
        f"exchange wrote {sum(s.ggus_writes + s.home_writes for s in steps)}: the push, the "
        "reply into Footprints, the resolution into GGUS. Our own writes came back as "
        f"{echoes} notifications and caused no write.",
        markup=False,
    )
    _print_ggus_ticket(console, ggus, g.request_id)
    _print_home_ticket(console, fp, home.mrid)
    _print_timeline_of(console, app, "goc", str(home.mrid))
    result = TwoWayResult(
        ggus_id=g.request_id,
        mrid=home.mrid,
        steps=tuple(steps),
        ggus_status=g.status,
        ggus_unit=g.responsible_unit,
        ggus_solution=g.detailed_solution,
        home_status=home.status,
        home_entries=len(home.descriptions),
        reply_copies=sum(reply in d.data for d in home.descriptions),
    )
    verdict = "every step as expected" if result.ok else "NOT as expected"
    console.print(f"\nTwo-way: {verdict}.", markup=False)
    return result


_SOURCES = {
    "ggus-notifications": "GGUS notification",
    "goc-notifications": "Footprints notification",
    "operator": "send",
}


def _trigger(source: str, state: str, reason: str | None) -> str:
    text = f"{_SOURCES.get(source, source)}: {state}"
    if state != "applied" and reason:
        text += f" ({_short(reason.removeprefix('skip: '), 40)})"
    return text


def _print_ggus_ticket(console: Console, ggus: GgusSandbox, ggus_id: int) -> None:
    t = ggus.ticket(ggus_id)
    table = Table(
        title=f"GGUS ticket {ggus_id}: {t.short_description!r}, {t.status}, "
        f"{t.priority}, unit {t.responsible_unit}, Origin_ID {t.origin_id}",
        title_justify="left",
    )
    for column in ("history", "channel", "action", "by", "status", "text"):
        table.add_column(column)
    for n, h in enumerate(ggus.history(ggus_id), start=1):
        text = h.detailed_solution or h.public_diary or h.internal_diary or h.description
        kind = "solution: " if h.detailed_solution else ""
        table.add_row(str(n), h.channel, h.action, h.last_modifier, h.status, kind + _short(text))
    console.print(table)


def _print_home_ticket(console: Console, fp: FootprintsSandbox, mrid: int) -> None:
    t = fp.ticket(mrid)
    table = Table(
        title=f"Footprints ISSUE={mrid}: {t.title!r}, {t.status}, priority {t.priority}",
        title_justify="left",
    )
    for column in ("entry", "by", "internal", "text"):
        table.add_column(column)
    for n, d in enumerate(reversed(t.descriptions), start=1):
        table.add_row(str(n), d.author, "yes" if d.internal else "", _short(d.data))
    console.print(table)


def _short(text: str, limit: int = 70) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _print_timeline_of(console: Console, app: App, helpdesk: str, ticket_id: str) -> None:
    table = Table(
        title=f"timeline of {helpdesk}:{ticket_id} (ticketbridge show)", title_justify="left"
    )
    for column in ("ticket", "kind", "summary"):
        table.add_column(column)
    for event in app.store.timeline(helpdesk, ticket_id):
        table.add_row(f"{event.helpdesk}:{event.ticket_id}", event.kind, event.summary)
    console.print(table)


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
