"""The emulator's two doors: an SMTP listener (email interface) and an HTTP server (SOAP).

Both bind to 127.0.0.1. Port 0 picks a free port; the chosen port is exposed after start.
Real Footprints processes incoming mail asynchronously (a mail fetcher polls the mailbox);
the emulator processes each mail *before* answering the SMTP ``250``, so that a test or a
demo sees the result as soon as its ``sendmail`` returns.

The HTTP server speaks HTTP/1.1 with keep-alive (every answer has a Content-Length), as
the Apache in front of MRWebServices did; an idle connection is closed after
:data:`KEEP_ALIVE_SECONDS`, and :meth:`SoapDoor.stop` closes every open one, so a stopped
emulator answers nothing, on new connections or kept ones.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ticketbridge.codecs import mrwebservices as soap
from ticketbridge.errors import BadInput
from ticketbridge.sandbox.doors import PortZeroController
from ticketbridge.sandbox.footprints.engine import Footprints, FootprintsFault

__all__ = ["SmtpDoor", "SoapDoor"]

log = logging.getLogger(__name__)

MAX_MAIL_BYTES = 10 * 1024 * 1024
#: How long the SOAP server keeps an idle HTTP connection open.
KEEP_ALIVE_SECONDS = 60.0
_METHODS = ("createIssue", "editIssue", "getIssueDetails", "search", "getAttachment")


# --- SMTP -------------------------------------------------------------------------------


class _MailHandler:
    def __init__(self, engine: Footprints) -> None:
        self.engine = engine

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.strip().lower() != self.engine.incoming_address.lower():
            return f"550 5.1.1 <{address}>: no such mailbox (this is Footprints' incoming " \
                   f"address {self.engine.incoming_address})"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        try:
            # Processing may mail a notification through a smarthost: keep the loop free.
            outcome = await loop.run_in_executor(
                None, self.engine.submit_mail, raw, envelope.mail_from or "")
        except Exception:
            log.exception("the Footprints emulator failed to process a mail")
            return "451 4.3.0 Footprints could not process the mail; try again later"
        log.info("mail from %s: %s %s", envelope.mail_from, outcome.outcome, outcome.mrid or "")
        return "250 2.0.0 OK"


class SmtpDoor:
    """The email interface: an SMTP server accepting mail for the incoming address."""

    def __init__(self, engine: Footprints, port: int = 0) -> None:
        self._controller = PortZeroController(
            _MailHandler(engine), hostname="127.0.0.1", port=port,
            # Room for a file over the attachment limit, so its sender gets the reply.
            data_size_limit=max(MAX_MAIL_BYTES, 2 * engine.max_attachment_bytes + 2**20),
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


# --- SOAP over HTTP ---------------------------------------------------------------------


class _SoapServer(ThreadingHTTPServer):
    daemon_threads = True
    engine: Footprints
    user: str
    password: str

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        request, address = super().get_request()
        with self._open_lock:
            self._open.add(request)
        return request, address

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End every kept-alive connection (their handler threads then finish)."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client


class _SoapHandler(BaseHTTPRequestHandler):
    server: _SoapServer
    server_version = "MRWebServices/emulator"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive; every answer below sets Content-Length
    timeout = KEEP_ALIVE_SECONDS  # an idle kept connection is closed after this
    # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm holds
    # the body until the client's delayed ACK of the headers, 40 ms on Linux, once the
    # connection is no longer closed after each answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("soap %s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        # An answer given without reading the request body closes the connection: the
        # unread body must not be taken for the next request.
        if self.path.split("?")[0] != soap.ENDPOINT_PATH:
            self._plain(HTTPStatus.NOT_FOUND, f"no such endpoint; use {soap.ENDPOINT_PATH}",
                        close=True)
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            self._plain(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required", close=True)
            return
        length = int(length_header)
        if length > soap.MAX_DOCUMENT_BYTES:
            self._plain(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"request body larger than {soap.MAX_DOCUMENT_BYTES} bytes", close=True)
            return
        body = self.rfile.read(length)
        status, payload = self._dispatch(body)
        self.send_response(status)
        self.send_header("Content-Type", 'text/xml; charset="utf-8"')
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _plain(self, status: HTTPStatus, text: str, *, close: bool = False) -> None:
        data = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")  # also sets self.close_connection
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, body: bytes) -> tuple[int, bytes]:
        try:
            call = soap.parse_call(body)
        except BadInput as exc:
            return 500, soap.build_fault("SOAP-ENV:Client", f"request refused: {exc}")
        base = call.method.removeprefix("MRWebServices__").removesuffix("_goc")
        if call.namespace != soap.NAMESPACE or not call.method.startswith("MRWebServices__") \
                or base not in _METHODS:
            return 500, soap.build_fault(
                "SOAP-ENV:Client",
                f"Failed to access class ({call.namespace or '(no namespace)'}): no method "
                f"{call.method!r}; known: "
                + ", ".join(f"MRWebServices__{m}[_goc]" for m in _METHODS))
        server = self.server
        user = call.param(0, "user")
        password = call.param(1, "password")
        if not (isinstance(user, str) and isinstance(password, str)
                and hmac.compare_digest(user.encode(), server.user.encode())
                and hmac.compare_digest(password.encode(), server.password.encode())):
            return 500, soap.build_fault("SOAP-ENV:Client", "Invalid user ID or password")
        try:
            result = self._call(base, call, user)
        except FootprintsFault as exc:
            return 500, soap.build_fault("SOAP-ENV:Client", exc.message)
        except Exception as exc:
            log.exception("the Footprints emulator failed on %s", call.method)
            return 500, soap.build_fault("SOAP-ENV:Server", f"internal error: {exc}")
        return 200, soap.build_response(call.method, result)

    def _call(self, base: str, call: soap.SoapCall, user: str) -> soap.SoapValue:
        engine = self.server.engine
        if base in ("createIssue", "editIssue"):
            args = call.param(3, "args")
            if not isinstance(args, dict):
                raise FootprintsFault("args must be a struct (SOAPStruct)")
            if base == "createIssue":
                return str(engine.create_issue(args, user=user))
            return str(engine.edit_issue(args, user=user))
        if base == "getIssueDetails":
            project = _number(call.param(3, "projectnumber"), "projectnumber")
            mrid = _number(call.param(4, "mrid"), "mrid")
            return engine.issue_details(project, mrid)
        if base == "getAttachment":  # an emulator extension (docs/sandbox/footprints.md)
            return engine.attachment_data(
                _number(call.param(3, "projectID"), "projectID"),
                _number(call.param(4, "mrID"), "mrID"),
                _number(call.param(5, "attachmentID"), "attachmentID"))
        query = call.param(3, "query")
        if not isinstance(query, str):
            raise FootprintsFault("query must be a string")
        return list(engine.search(query))


def _number(value: soap.SoapValue, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FootprintsFault(f"{name} must be a number")
    text = str(value).strip()
    if not text.isdigit():
        raise FootprintsFault(f"{name} must be a number, got {text!r}")
    return int(text)


class SoapDoor:
    """MRWebServices over HTTP at ``http://127.0.0.1:<port>/MRcgi/MRWebServices.pl``."""

    def __init__(self, engine: Footprints, *, user: str, password: str, port: int = 0) -> None:
        self._server = _SoapServer(("127.0.0.1", port), _SoapHandler)
        self._server.engine = engine
        self._server.user = user
        self._server.password = password
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="footprints-soap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop never run
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server.close_open_connections()
