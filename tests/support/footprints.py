"""Test fixtures: a running Footprints emulator, a mail sink, a connector pointed at both.

* ``fp_sink``      a real SMTP server on 127.0.0.1 that keeps every mail it receives; the
                   emulator uses it as its smarthost, so notifications and rejection replies
                   land here before the submitting ``sendmail`` returns.
* ``fp_sandbox``   a started :class:`FootprintsSandbox` (in-memory database, free ports).
* ``fp_settings``  :class:`FootprintsSettings` for that sandbox; ``fp_connector`` uses them.
* ``send_to_fp``   submit a mail to the sandbox's email interface over SMTP.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from ticketbridge.connectors.footprints import FootprintsConnector, FootprintsSettings
from ticketbridge.sandbox.footprints import FootprintsSandbox

GGUS_SENDER = "ggus@ggus.example.org"
TX_ADDRESS = "tx+fp71_ggus2@goc.example.org"


class _PortZeroController(Controller):
    """aiosmtpd's Controller on a free port (it cannot probe port 0 by itself)."""

    def _trigger_server(self) -> None:
        server = self.server
        if self.port == 0 and isinstance(server, asyncio.Server):
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class MailSink:
    """An SMTP server on 127.0.0.1 that keeps what it receives, parsed."""

    def __init__(self, reply: Callable[[str], str | None] | None = None) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[list[str], EmailMessage]] = []
        self._reply = reply
        self._controller = _PortZeroController(self, hostname="127.0.0.1", port=0)

    # aiosmtpd hooks ------------------------------------------------------------------
    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        answer = self._reply("MAIL") if self._reply else None
        if answer:
            return answer
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = self._reply("DATA") if self._reply else None
        if answer:
            return answer
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            self._messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    # use -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        """Every mail received (for envelope recipient ``to``), oldest first."""
        with self._lock:
            return [m for rcpts, m in self._messages if to is None or to in rcpts]

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def fp_sink() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def fp_sandbox(fp_sink: MailSink) -> Iterator[FootprintsSandbox]:
    sandbox = FootprintsSandbox(smarthost=fp_sink.address).start()
    yield sandbox
    sandbox.close()


@pytest.fixture
def fp_settings(fp_sandbox: FootprintsSandbox) -> FootprintsSettings:
    return FootprintsSettings(
        kind="footprints-mail",
        project=fp_sandbox.project,
        incoming_address=fp_sandbox.incoming_address,
        sender=GGUS_SENDER,
        smtp_host="127.0.0.1",
        smtp_port=fp_sandbox.smtp_port,
        soap_url=fp_sandbox.soap_url,
        user=fp_sandbox.user,
        password=SecretStr(fp_sandbox.password),
        timeout=10,
    )


@pytest.fixture
def fp_connector(fp_settings: FootprintsSettings) -> Iterator[FootprintsConnector]:
    connector = FootprintsConnector("goc", fp_settings)
    yield connector
    connector.close()


def mail(subject: str, body: str, *, sender: str = GGUS_SENDER,
         to: str = "fp-incoming@goc.example.org", message_id: str | None = None,
         cc: str | None = None) -> EmailMessage:
    """A plain-text mail as a person or a script would send it to Footprints."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg


@pytest.fixture
def send_to_fp(fp_sandbox: FootprintsSandbox) -> Callable[[EmailMessage], None]:
    """Submit a mail to the sandbox over SMTP; it is processed when this returns."""

    def send(msg: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", fp_sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(msg, to_addrs=[fp_sandbox.incoming_address])

    return send
