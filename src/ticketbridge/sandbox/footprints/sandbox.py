"""``FootprintsSandbox``: the emulator as one object to start, use and stop; ``serve()``.

::

    with FootprintsSandbox() as fp:             # SMTP and SOAP on free 127.0.0.1 ports
        smtplib.SMTP("127.0.0.1", fp.smtp_port).send_message(mail)
        fp.find("40637")                       # issues whose Originating Ticket Number is 40637
        fp.outbox()                            # notifications and rejection replies

docs/sandbox/footprints.md describes what it does and where it differs from Footprints.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ticketbridge.codecs.mrwebservices import ENDPOINT_PATH
from ticketbridge.sandbox.doors import TwoDoors, relay_text, serve_until_signalled
from ticketbridge.sandbox.footprints.engine import (
    MAX_ATTACHMENT_BYTES,
    Clock,
    Footprints,
    _utcnow,
)
from ticketbridge.sandbox.footprints.servers import SmtpDoor, SoapDoor
from ticketbridge.sandbox.footprints.store import Issue, IssueStore, OutboxMail

__all__ = ["DEFAULT_AGENTS", "SANDBOX_PASSWORD", "FootprintsSandbox", "serve"]

#: The emulator's MRWebServices password unless one is given (a training instance, not a secret).
SANDBOX_PASSWORD = "demo"  # noqa: S105

#: The agent address book: Footprints agents (TX agents of GOC-TX) that have a mail address.
DEFAULT_AGENTS: Mapping[str, str] = {
    "TX_FP71_GGUS2": "tx+fp71_ggus2@goc.example.org",
}


class FootprintsSandbox(TwoDoors):
    """A running Footprints emulator: email interface over SMTP, MRWebServices over HTTP."""

    def __init__(
        self,
        *,
        db_path: str | Path = ":memory:",
        project: int = 71,
        smtp_port: int = 0,
        http_port: int = 0,
        incoming_address: str = "fp-incoming@goc.example.org",
        notify: Sequence[str] = ("tx+fp71_ggus2@goc.example.org",),
        smarthost: tuple[str, int] | None = None,
        user: str = "goctx",
        password: str = SANDBOX_PASSWORD,
        agents: Mapping[str, str] | None = None,
        dedupe_message_ids: bool = True,
        clock: Clock = _utcnow,
        max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
    ) -> None:
        self.project = project
        self.user = user
        self.password = password
        self.incoming_address = incoming_address
        self._db_path = db_path
        self._ports = (smtp_port, http_port)
        self.store = IssueStore(db_path)
        self._database = self.store
        self.engine = Footprints(
            self.store,
            project=project,
            incoming_address=incoming_address,
            notify=notify,
            agents=DEFAULT_AGENTS if agents is None else agents,
            smarthost=smarthost,
            dedupe_message_ids=dedupe_message_ids,
            clock=clock,
            max_attachment_bytes=max_attachment_bytes,
        )

    label = "Footprints"

    def _doors(self, smtp_port: int, http_port: int) -> tuple[SoapDoor, SmtpDoor]:
        soap = SoapDoor(self.engine, user=self.user, password=self.password, port=http_port)
        return soap, SmtpDoor(self.engine, port=smtp_port)

    # -- endpoints -----------------------------------------------------------------------

    @property
    def soap_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}{ENDPOINT_PATH}"

    # -- reading, for tests and the demo -------------------------------------------------

    def tickets(self) -> list[Issue]:
        """Every issue, by number."""
        return self.store.issues()

    def ticket(self, mrid: int | str) -> Issue:
        """One issue. Raises KeyError if it does not exist."""
        issue = self.store.issue(int(mrid))
        if issue is None:
            raise KeyError(f"no issue {mrid} in project {self.project}")
        return issue

    def find(self, originating_ticket_number: str) -> list[Issue]:
        """Issues whose Originating Ticket Number is this value (two or more: a duplicate)."""
        return [
            i
            for i in self.store.issues_by_origin(originating_ticket_number)
            if i.project_fields.get("Originating Ticket Number") == originating_ticket_number
        ]

    def outbox(self) -> list[OutboxMail]:
        """Every notification and rejection reply, sent or kept, oldest first."""
        return self.store.outbox()


def serve(
    *,
    db_path: str | Path = "footprints.sqlite3",
    project: int = 71,
    smtp_port: int = 2525,
    http_port: int = 8088,
    smarthost: tuple[str, int] | None = None,
    incoming_address: str = "fp-incoming@goc.example.org",
    notify: Sequence[str] = ("tx+fp71_ggus2@goc.example.org",),
    user: str = "goctx",
    password: str = SANDBOX_PASSWORD,
    out: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Run the emulator in the foreground until SIGINT or SIGTERM (or ``stop`` is set)."""
    sandbox = FootprintsSandbox(
        db_path=db_path,
        project=project,
        smtp_port=smtp_port,
        http_port=http_port,
        incoming_address=incoming_address,
        notify=notify,
        smarthost=smarthost,
        user=user,
        password=password,
    )
    serve_until_signalled(
        sandbox,
        lambda: [
            f"Footprints emulator, project {project} (database {db_path})",
            f"  email interface: smtp://127.0.0.1:{sandbox.smtp_port}  "
            f"(mail to {incoming_address})",
            f"  MRWebServices:   {sandbox.soap_url}  (user {user})",
            f"  notifications:   {', '.join(notify) or 'none'} via {relay_text(smarthost)}",
        ],
        out=out,
        stop=stop,
    )
