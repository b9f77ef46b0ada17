"""``GgusSandbox``: the GGUS emulator as one object to start, use and stop; ``serve()``.

::

    with GgusSandbox(smarthost=("127.0.0.1", 2526)) as ggus:   # free 127.0.0.1 ports
        smtplib.SMTP("127.0.0.1", ggus.smtp_port).send_message(mail)   # a new TPM ticket
        ggus.route(1000, "OSG")           # TPM assigns it: XML notification to OSG's list
        ggus.soap_url("GGUS"), ggus.rest_url
        ggus.history(1000), ggus.outbox()

docs/sandbox/ggus.md describes what it does and where it differs from GGUS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from ticketbridge.codecs import ggus_soap
from ticketbridge.sandbox.doors import TwoDoors, relay_text, serve_until_signalled
from ticketbridge.sandbox.ggus.engine import Actor, Clock, Ggus, NewAttachment, _utcnow
from ticketbridge.sandbox.ggus.servers import HttpDoor, SmtpDoor
from ticketbridge.sandbox.ggus.store import (
    Article,
    GgusTicket,
    HistoryEntry,
    OutboxMail,
    StoredAttachment,
    TicketStore,
)

__all__ = ["SANDBOX_PASSWORD", "SANDBOX_TOKEN", "GgusSandbox", "serve"]

#: The emulator's credentials unless others are given (a training instance, not secrets).
SANDBOX_PASSWORD = "demo"  # noqa: S105
SANDBOX_TOKEN = "demo-token"  # noqa: S105


class GgusSandbox(TwoDoors):
    """A running GGUS emulator: mail submission over SMTP; SOAP, WSDLs and REST over HTTP."""

    def __init__(
        self,
        *,
        db_path: str | Path = ":memory:",
        smtp_port: int = 0,
        http_port: int = 0,
        helpdesk_address: str = "helpdesk@ggus.example.org",
        units: Mapping[str, str] | None = None,
        smarthost: tuple[str, int] | None = None,
        soap_user: str = "osg_tx",
        soap_password: str = SANDBOX_PASSWORD,
        rest_token: str = SANDBOX_TOKEN,
        first_id: int = 1000,
        ars_server: str = "train-ars",
        double_base64_attachments: bool = False,
        clock: Clock = _utcnow,
    ) -> None:
        self.helpdesk_address = helpdesk_address
        self.soap_user = soap_user
        self.soap_password = soap_password
        self.rest_token = rest_token
        self.ars_server = ars_server
        self._ports = (smtp_port, http_port)
        self.store = TicketStore(db_path)
        self._database = self.store
        self.engine = Ggus(
            self.store,
            helpdesk_address=helpdesk_address,
            units=units,
            smarthost=smarthost,
            first_id=first_id,
            double_base64_attachments=double_base64_attachments,
            clock=clock,
        )

    label = "GGUS"

    def _doors(self, smtp_port: int, http_port: int) -> tuple[HttpDoor, SmtpDoor]:
        http = HttpDoor(
            self.engine,
            ars_server=self.ars_server,
            soap_user=self.soap_user,
            soap_password=self.soap_password,
            rest_token=self.rest_token,
            port=http_port,
        )
        return http, SmtpDoor(self.engine, port=smtp_port)

    # -- endpoints -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def soap_url(self, service: str = "GGUS") -> str:
        """The endpoint of ``service`` (GGUS, GGUS_HISTORY or GGUS_ATTACH)."""
        if service not in ggus_soap.SERVICES:
            raise ValueError(f"no web service {service!r}; known: {ggus_soap.SERVICES}")
        return self.base_url + ggus_soap.endpoint_path(self.ars_server, service)

    def wsdl_url(self, service: str = "GGUS") -> str:
        if service not in ggus_soap.SERVICES:
            raise ValueError(f"no web service {service!r}; known: {ggus_soap.SERVICES}")
        return self.base_url + ggus_soap.wsdl_path(self.ars_server, service)

    @property
    def rest_url(self) -> str:
        """The REST API base, ``http://127.0.0.1:<port>/api/v1``."""
        return self.base_url + "/api/v1"

    # -- TPM and the supporter side (tests, demo) ------------------------------------------

    def route(self, ticket_id: int | str, unit: str) -> GgusTicket:
        """TPM assigns ``ticket_id`` to support unit ``unit`` (status ``assigned``) and
        GGUS notifies that unit's mailing list. Raises GgusFault."""
        self.engine.route(int(ticket_id), unit)
        return self.ticket(ticket_id)

    def tickets(self) -> list[GgusTicket]:
        """Every ticket, by Request_ID."""
        return self.store.tickets()

    def ticket(self, ticket_id: int | str) -> GgusTicket:
        """One ticket. Raises KeyError if it does not exist."""
        found = self.store.ticket(int(ticket_id))
        if found is None:
            raise KeyError(f"no GGUS ticket {ticket_id}")
        return found

    def history(self, ticket_id: int | str) -> list[HistoryEntry]:
        """Every change of the ticket, oldest first."""
        return self.store.history(self.ticket(ticket_id).request_id)

    def articles(self, ticket_id: int | str) -> list[Article]:
        """Every text entry (the REST view's articles), oldest first."""
        return self.store.articles(self.ticket(ticket_id).request_id)

    def attachments(self, ticket_id: int | str) -> list[StoredAttachment]:
        return self.store.attachments(self.ticket(ticket_id).request_id)

    def outbox(self) -> list[OutboxMail]:
        """Every notification and rejection reply, sent or kept, oldest first."""
        return self.store.outbox()

    def add_diary(
        self,
        ticket_id: int | str,
        text: str,
        *,
        internal: bool = False,
        author: str = "GGUS supporter",
    ) -> GgusTicket:
        """A supporter writes a public (or internal) diary entry. Raises GgusFault."""
        field = "internal_diary" if internal else "public_diary"
        self.engine.modify(
            int(ticket_id), {field: text}, Actor(author, author, "supporter"), action="diary"
        )
        return self.ticket(ticket_id)

    def set_status(
        self,
        ticket_id: int | str,
        status: str,
        *,
        solution: str | None = None,
        author: str = "GGUS supporter",
    ) -> GgusTicket:
        """A supporter sets the status (``solved`` needs ``solution``). Raises GgusFault."""
        fields = {"status": status}
        if solution is not None:
            fields["detailed_solution"] = solution
        self.engine.modify(int(ticket_id), fields, Actor(author, author, "supporter"))
        return self.ticket(ticket_id)

    def add_attachment(
        self,
        ticket_id: int | str,
        name: str,
        data: bytes,
        *,
        legacy: bool = False,
        author: str = "GGUS supporter",
        content_type: str = "application/octet-stream",
    ) -> int:
        """Attach a file. ``legacy``: as through GGUS's legacy path, so SOAP
        GetOneAttachment serves it base64-encoded twice. Raises GgusFault."""
        return self.engine.add_attachment(
            int(ticket_id),
            NewAttachment(name, data, content_type, double=legacy),
            Actor(author, author, "supporter"),
        )


def serve(
    *,
    db_path: str | Path = "ggus.sqlite3",
    smtp_port: int = 2526,
    http_port: int = 8089,
    smarthost: tuple[str, int] | None = None,
    helpdesk_address: str = "helpdesk@ggus.example.org",
    units: Mapping[str, str] | None = None,
    soap_user: str = "osg_tx",
    soap_password: str = SANDBOX_PASSWORD,
    rest_token: str = SANDBOX_TOKEN,
    first_id: int = 1000,
    ars_server: str = "train-ars",
    double_base64_attachments: bool = False,
    out: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Run the emulator in the foreground until SIGINT or SIGTERM (or ``stop`` is set)."""
    sandbox = GgusSandbox(
        db_path=db_path,
        smtp_port=smtp_port,
        http_port=http_port,
        helpdesk_address=helpdesk_address,
        units=units,
        smarthost=smarthost,
        soap_user=soap_user,
        soap_password=soap_password,
        rest_token=rest_token,
        first_id=first_id,
        ars_server=ars_server,
        double_base64_attachments=double_base64_attachments,
    )
    serve_until_signalled(
        sandbox,
        lambda: [
            f"GGUS emulator, AR server {ars_server} (database {db_path})",
            f"  mail submission: smtp://127.0.0.1:{sandbox.smtp_port}  "
            f"(mail to {helpdesk_address})",
            *(
                f"  SOAP {service + ':':<13} {sandbox.soap_url(service)}"
                for service in ggus_soap.SERVICES
            ),
            f"  WSDLs:           {sandbox.base_url}{ggus_soap.WSDL_PATH}/{ars_server}/"
            f"<service>  (user {soap_user})",
            f"  REST v1:         {sandbox.rest_url}  (Authorization: Token token=...)",
            f"  TPM routing:     POST {sandbox.base_url}/sandbox/route "
            '{"ticket": ID, "unit": "OSG"}',
            f"  notifications:   to each support unit's address via {relay_text(smarthost)}",
        ],
        out=out,
        stop=stop,
    )
