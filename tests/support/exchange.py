"""Helpers to build a whole GGUS -> Footprints exchange in a test (not a pytest plugin).

``Rig`` wires a Maildir receiver, a store (any URL), the worker and the Footprints
connector to a running ``FootprintsSandbox``; ``ticket``/``diary``/``mail`` build GGUS
notification mails with the project's own codec.
"""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ticketbridge.codecs import ggus_mail
from ticketbridge.config import parse_config
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility, text_digest
from ticketbridge.runtime.app import App
from ticketbridge.sandbox.footprints import FootprintsSandbox

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

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
    timeout: 5
receivers:
  ggus:
    helpdesk: ggus
    mailbox: {{kind: maildir, path: "{maildir}"}}
exchanges:
  ggus-goc: {{source: ggus, target: goc}}
worker: {{base_delay: 0.01, max_attempts: 3, pending_grace_seconds: {grace}}}
"""


def ticket(
    gid="40637",
    *,
    status="assigned",
    priority="less urgent",
    minutes=0,
    comments=(),
    title="CE rejects pilots",
    **fields,
):
    return Ticket(
        ref=TicketRef("ggus", gid),
        title=title,
        description="Pilots fail.",
        status=status,
        priority=priority,
        submitter=Contact("Maria Rossi", "maria@example.org"),
        fields={"GHD_Request-ID": gid, "GHD_Responsible_Unit": "OSG", **fields},
        comments=tuple(comments),
        modified=T0 + timedelta(minutes=minutes),
    )


def diary(text, kind="public diary", visibility=Visibility.PUBLIC):
    return Comment(text_digest(kind, text), text, kind=kind, visibility=visibility)


def mail(t: Ticket, n: int) -> bytes:
    return ggus_mail.encode(
        t,
        to="osg-tx@goc.example.org",
        sender="helpdesk@ggus.example.org",
        date=t.modified,
        message_id=f"<m{n}-{t.ref.id}@ggus.example.org>",
    )


class Rig:
    """One exchange: a Maildir, a store, the emulator, and an App built from a config."""

    def __init__(self, root: Path, database: str, fp: FootprintsSandbox, grace: float = 600):
        self.root, self.fp = root, fp
        root.mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(root / "maildir", create=True)
        self.settings = parse_config(
            CONFIG.format(
                database=database,
                smtp=fp.smtp_port,
                soap=fp.soap_url,
                maildir=root / "maildir",
                grace=grace,
            )
        )
        self.app = App(self.settings)

    def deliver(self, raw: bytes) -> None:
        self.maildir.add(raw)
        self.app.run_once()

    def states(self) -> list[str]:
        return [e.state for e in reversed(self.app.store.list_inbox())]

    def close(self) -> None:
        self.app.close()
