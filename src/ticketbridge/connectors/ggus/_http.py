"""Kept HTTP/1.1 connections (stdlib ``http.client``) for the ggus-soap and ggus-rest
connectors, and the HTTP half of their error translation.

* One connection **per thread** to one origin, kept open between requests (keep-alive) and
  closed by :meth:`HttpTransport.close`. An answer that says it closes (HTTP/1.0,
  ``Connection: close``) or whose body was not read to the end drops the connection; the
  next request opens a new one.
* **Separate timeouts**: ``connect_timeout`` for the TCP (and TLS) connect,
  ``read_timeout`` for every later socket operation (spec (d) 13: 10 s and 60 s).
* **Reconnect**: before a kept connection is reused it is checked without blocking; one the
  server has closed meanwhile (a restart, an idle timeout: the socket reads as EOF) is
  replaced by a new one *before* anything is sent, so no request is lost or doubled.
  If a request on a kept connection still fails without any answer, it is repeated once
  on a new connection only when it is ``idempotent`` (a read); a write is reported as
  :class:`~ticketbridge.errors.RemoteUnavailable`, because the remote may have applied
  it (the worker resolves that: a create by its correlation key). Timeouts are never
  repeated here.
* **Proxies**: ``http_proxy``/``https_proxy``/``no_proxy`` from the environment are
  honoured, as urllib does (absolute URIs through an HTTP proxy, CONNECT for https).
"""

from __future__ import annotations

import contextlib
import http.client
import select
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

from ticketbridge.errors import RemoteAuthFailed, RemoteRejected, RemoteUnavailable

__all__ = ["HttpAnswer", "HttpStatusError", "HttpTransport", "retry_after", "translate_http"]


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One HTTP answer: status, reason, headers and the body (at most ``max_bytes`` + 1)."""

    status: int
    reason: str
    headers: Message
    body: bytes


class HttpStatusError(Exception):
    """An HTTP answer the caller could not use (by its status), kept for translation."""

    def __init__(self, answer: HttpAnswer, text: str = "") -> None:
        self.answer = answer
        self.text = text or answer.reason
        super().__init__(f"HTTP {answer.status} {self.text}".rstrip())


def retry_after(headers: Message, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` says a kept connection had been closed by the other end."""
    if isinstance(exc, TimeoutError):
        return False
    return isinstance(
        exc, http.client.RemoteDisconnected | http.client.BadStatusLine | ConnectionError)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when the kept connection's socket is closed or has unexpected data waiting."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # EOF, a reset, or bytes nobody asked for: not reusable


class _Target:
    """Where requests go: the origin of ``base_url``, or a proxy from the environment."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL")
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path.rstrip("/")
        self.proxy: tuple[str, int] | None = None
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(self.host):
            proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            self.proxy = (proxy_parts.hostname or "localhost", proxy_parts.port or 80)

    def request_uri(self, path: str) -> str:
        """What goes on the request line for ``path`` (relative to the base URL)."""
        full = self.base_path + path
        if self.proxy is not None and not self.https:
            return self.origin + full  # an absolute URI through a plain HTTP proxy
        return full

    def connect(self, connect_timeout: float, read_timeout: float
                ) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.https:
            context = ssl.create_default_context()
            if self.proxy is None:
                conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=connect_timeout, context=context)
            else:
                conn = http.client.HTTPSConnection(
                    *self.proxy, timeout=connect_timeout, context=context)
                conn.set_tunnel(self.host, self.port)
        else:
            host, port = self.proxy or (self.host, self.port)
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        return conn


class HttpTransport:
    """Per-thread kept HTTP connections to the origin of ``base_url``; thread-safe."""

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float,
                 max_bytes: int) -> None:
        self.target = _Target(base_url)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_bytes = max_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[_Slot] = []

    def _slot(self) -> _Slot:
        mine: _Slot | None = getattr(self._local, "slot", None)
        if mine is None:
            mine = _Slot()
            self._local.slot = mine
            with self._lock:
                self._all.append(mine)
        return mine

    @property
    def kept(self) -> http.client.HTTPConnection | None:
        """This thread's kept connection, if one is open (for tests and diagnostics)."""
        return self._slot().conn

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, idempotent: bool) -> HttpAnswer:
        """Send one request over this thread's kept connection and read the answer.

        Raises ``http.client.HTTPException`` or ``OSError`` (for :func:`translate_http`).
        """
        slot = self._slot()
        conn = slot.conn
        if conn is not None and _dropped(conn):
            slot.drop()  # closed by the server while idle: nothing was sent on it
            conn = None
        reused = conn is not None
        uri = self.target.request_uri(path)
        for _attempt in range(2):
            if conn is None:
                conn = self.target.connect(self.connect_timeout, self.read_timeout)
                slot.conn = conn
            try:
                conn.request(method, uri, body=body, headers=headers or {})
                response = conn.getresponse()
                payload = response.read(self.max_bytes + 1)
            except (http.client.HTTPException, OSError) as exc:
                slot.drop()
                if not (reused and idempotent and _stale(exc)):
                    raise
                conn, reused = None, False  # the kept connection had gone: once more, fresh
                continue
            if response.will_close or len(payload) > self.max_bytes or not response.isclosed():
                slot.drop()  # not reusable: closing, or a body left unread
            return HttpAnswer(response.status, response.reason, response.msg, payload)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every thread's kept connection (a later request opens a new one)."""
        with self._lock:
            everything, self._all = self._all, []
        for slot in everything:
            slot.drop()
        self._local = threading.local()


class _Slot:
    def __init__(self) -> None:
        self.conn: http.client.HTTPConnection | None = None

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


@contextlib.contextmanager
def translate_http(helpdesk: str, what: str) -> Iterator[None]:
    """Network and HTTP-status failures into ticketbridge's error tree.

    Refused, reset, unreachable, timed out, a garbled answer, HTTP 429 and 5xx:
    RemoteUnavailable (with the ``Retry-After`` of a 429/503); HTTP 401/403:
    RemoteAuthFailed; any other HTTP status: RemoteRejected with the remote's text.
    """
    try:
        yield
    except HttpStatusError as exc:
        status = exc.answer.status
        message = f"{what}: HTTP {status} {exc.text}".rstrip()
        if status in (401, 403):
            raise RemoteAuthFailed(helpdesk, message) from exc
        if status == 429 or status >= 500:
            raise RemoteUnavailable(helpdesk, message,
                                    retry_after=retry_after(exc.answer.headers)) from exc
        raise RemoteRejected(helpdesk, message) from exc
    except http.client.HTTPException as exc:
        raise RemoteUnavailable(helpdesk, f"{what}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # refused, reset, unreachable, timed out (TimeoutError)
        raise RemoteUnavailable(helpdesk, f"{what}: {exc or type(exc).__name__}") from exc
