"""Test fixtures: a running GGUS emulator with a mail sink as its smarthost, and helpers.

* ``ggus_sink``      a real SMTP server on 127.0.0.1 keeping every mail it receives; the
                     emulator uses it as its smarthost, so its XML notifications land here
                     before the call that caused them returns.
* ``ggus_sandbox``   a started :class:`GgusSandbox` (in-memory database, free ports).
* ``send_to_ggus``   submit a mail to the sandbox's helpdesk address over SMTP.

Helpers: :func:`ggus_mail_message` builds a plain mail, :func:`soap` posts a prepared
:class:`~ticketbridge.codecs.ggus_soap.Call` and reads the answer (raising ``SoapFault``),
:func:`rest` calls the REST API and returns (status, decoded JSON or bytes).
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from tests.support.footprints import MailSink
from ticketbridge.codecs import ggus_soap
from ticketbridge.sandbox.ggus import GgusSandbox

SUBMITTER = "jane.doe@example.org"
OSG_ADDRESS = "osg@su.ggus.example.org"
TPM_ADDRESS = "tpm@su.ggus.example.org"


@pytest.fixture
def ggus_sink() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def ggus_sandbox(ggus_sink: MailSink) -> Iterator[GgusSandbox]:
    sandbox = GgusSandbox(smarthost=ggus_sink.address).start()
    yield sandbox
    sandbox.close()


def ggus_mail_message(subject: str, body: str, *, sender: str = f"Jane Doe <{SUBMITTER}>",
                      to: str = "helpdesk@ggus.example.org",
                      headers: dict[str, str] | None = None) -> EmailMessage:
    """A plain-text mail as a user (or a mail client replying) sends it to GGUS."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg


@pytest.fixture
def send_to_ggus(ggus_sandbox: GgusSandbox) -> Callable[[EmailMessage], None]:
    """Submit a mail to the sandbox over SMTP; it is processed when this returns."""

    def send(msg: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", ggus_sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(msg, to_addrs=[ggus_sandbox.helpdesk_address])

    return send


def soap_raw(sandbox: GgusSandbox, service: str, body: bytes,
             action: str | None = None) -> tuple[int, bytes]:
    """POST a SOAP body to ``service``; (HTTP status, response bytes)."""
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if action is not None:
        headers["SOAPAction"] = f'"{action}"'
    request = urllib.request.Request(sandbox.soap_url(service), data=body, method="POST",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def soap(sandbox: GgusSandbox, call: ggus_soap.Call) -> ggus_soap.SoapResponse:
    """Send a prepared call; the parsed answer. Raises SoapFault for a fault."""
    status, data = soap_raw(sandbox, call.service, call.body, call.action)
    response = ggus_soap.parse_response(data)  # raises SoapFault on a fault
    assert status == 200
    return response


def rest(sandbox: GgusSandbox, verb: str, path: str, body: Any = None, *,
         token: str | None = "demo-token", headers: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    """Call ``/api/v1<path>`` (or an absolute path starting with ``/sandbox``)."""
    url = (sandbox.base_url + path) if path.startswith("/sandbox") else sandbox.rest_url + path
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"}
    if token is not None:
        sent["Authorization"] = f"Token token={token}"
    sent.update(headers or {})
    request = urllib.request.Request(url, data=data, method=verb, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, kind = response.status, response.read(), response.headers.get(
                "Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if kind.startswith("application/json") else raw
