"""POP3 receiver: one short session per poll; messages recognised by UIDL.

State (in the StateStore, per receiver)::

    {"seen": ["000000016b0a9ddc", ...]}   # UIDLs of acknowledged messages

Each poll: connect (optionally STLS or implicit TLS), log in, ``UIDL``; the seen list is
pruned to the UIDLs still on the server (so it does not grow forever); each message not
seen is fetched with ``RETR`` and handed to the sink. After the sink returned, its UIDL
is added to the state and the state saved -- that is the acknowledgement -- and, with
``delete_after``, the message is marked with ``DELE``. ``QUIT`` commits the deletions.

A message the sink refused is not recorded and not deleted; the poll goes on with the
next one, and the refused one is fetched again on the next poll.

If a session breaks before ``QUIT``, the server keeps the messages marked for deletion.
They are in the seen list, so they are not handed over again; with ``delete_after`` the
next session deletes them.

Servers without ``UIDL`` (RFC 1939 makes it optional): a message is recognised by the
SHA-256 of its headers (``TOP n 0``), which include Received and Message-ID lines and so
differ between messages; ids of that kind start with ``top:``. A server without TOP
either costs a full ``RETR`` per message and poll (``retr:`` ids).

Errors: a refused ``USER``/``PASS`` raises RemoteAuthFailed, unless the server marks the
refusal as temporary (RFC 3206 ``[IN-USE]``, ``[SYS/TEMP]``): RemoteUnavailable. A
connection that fails or breaks raises RemoteUnavailable. Both leave everything not yet
acknowledged to the next poll.
"""

from __future__ import annotations

import hashlib
import logging
import poplib
import ssl
import threading
from typing import Any

from ticketbridge.errors import RemoteAuthFailed, RemoteUnavailable
from ticketbridge.runtime.receivers.base import Availability, Sink, StateStore, hand_over
from ticketbridge.runtime.receivers.settings import Pop3Settings

__all__ = ["Pop3Receiver"]

log = logging.getLogger(__name__)

# poplib refuses lines over 2048 bytes and then leaves the session unusable: one mail
# with a long line (they exist, whatever RFC 5322 says) would block the whole mailbox.
_MAX_LINE = 1 << 20


class _LongLines:
    """poplib's line reader, with a limit fit for real mail."""

    file: Any

    def _getline(self) -> tuple[bytes, int]:
        line: bytes = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets


class _POP3(_LongLines, poplib.POP3):
    pass


class _POP3SSL(_LongLines, poplib.POP3_SSL):
    pass


def _tls_context(settings: Pop3Settings) -> ssl.SSLContext:
    cafile = str(settings.ca_file) if settings.ca_file else None
    return ssl.create_default_context(cafile=cafile)


class Pop3Receiver:
    """Reads one POP3 mailbox. See the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        settings: Pop3Settings,
        *,
        state: StateStore,
        stop: threading.Event,
    ) -> None:
        self.name = name
        self.settings = settings
        self._state = state
        self._stop = stop
        self._availability = Availability(name, log)

    def poll(self, sink: Sink) -> int:
        """Hand each message not seen before to ``sink``; record (and DELE) each accepted one.

        Raises RemoteUnavailable or RemoteAuthFailed (see the module docstring).
        """
        conn = self._connect()
        try:
            accepted = self._session(conn, sink)
            conn.quit()
        except (OSError, poplib.error_proto) as exc:
            self._availability.down(exc)
            _close_quietly(conn)
            raise RemoteUnavailable(self.name, f"POP3 session broke: {exc}") from exc
        self._availability.up()
        return accepted

    def wait(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or until the stop event is set."""
        self._stop.wait(timeout)

    def close(self) -> None:
        """Nothing to release: each poll opens and closes its own session."""

    def _connect(self) -> poplib.POP3:
        s = self.settings
        conn: poplib.POP3
        try:
            if s.tls == "ssl":
                conn = _POP3SSL(s.host, s.port or 995, timeout=s.timeout, context=_tls_context(s))
            else:
                conn = _POP3(s.host, s.port or 110, timeout=s.timeout)
        except (OSError, poplib.error_proto) as exc:
            self._availability.down(exc)
            raise RemoteUnavailable(
                self.name, f"cannot connect to {s.host}:{s.port}: {exc}"
            ) from exc
        try:
            if s.tls == "starttls":
                try:
                    conn.stls(_tls_context(s))
                except poplib.error_proto as exc:
                    raise RemoteAuthFailed(
                        self.name,
                        f"{s.host} refused STLS ({exc}); not sending the password in clear",
                    ) from exc
            try:
                conn.user(s.user)
                conn.pass_(s.password.get_secret_value())
            except poplib.error_proto as exc:
                text = str(exc)
                if "[IN-USE]" in text or "[SYS/TEMP]" in text:
                    raise RemoteUnavailable(self.name, f"login deferred: {text}") from exc
                raise RemoteAuthFailed(
                    self.name, f"POP3 login as {s.user!r} refused: {text}"
                ) from exc
        except RemoteUnavailable as exc:
            self._availability.down(exc)
            _close_quietly(conn)
            raise
        except RemoteAuthFailed:
            _close_quietly(conn)
            raise
        except (OSError, poplib.error_proto) as exc:
            self._availability.down(exc)
            _close_quietly(conn)
            raise RemoteUnavailable(self.name, f"POP3 session broke: {exc}") from exc
        return conn

    def _session(self, conn: poplib.POP3, sink: Sink) -> int:
        listing = self._listing(conn)
        previous = list(self._state.receiver_state(self.name).get("seen", []))
        on_server = {uid for _, uid in listing}
        seen = [uid for uid in previous if uid in on_server]
        if seen != previous:
            self._save(seen)
        seen_set = set(seen)
        accepted = 0
        for num, uid in listing:
            if self._stop.is_set():
                break
            if uid in seen_set:
                if self.settings.delete_after:
                    conn.dele(num)  # acknowledged before, but that session never QUIT
                continue
            raw = self._retrieve(conn, num)
            if not hand_over(self.name, sink, raw, uid):
                continue
            accepted += 1
            seen.append(uid)
            seen_set.add(uid)
            self._save(seen)
            if self.settings.delete_after:
                conn.dele(num)
        return accepted

    def _save(self, seen: list[str]) -> None:
        self._state.save_receiver_state(self.name, {"seen": seen})

    def _listing(self, conn: poplib.POP3) -> list[tuple[int, str]]:
        try:
            _, lines, _ = conn.uidl()
        except poplib.error_proto:
            return self._digest_listing(conn)
        listing: list[tuple[int, str]] = []
        for line in lines:
            num, _, uid = line.decode("ascii", "replace").partition(" ")
            listing.append((int(num), uid.strip()))
        return listing

    def _digest_listing(self, conn: poplib.POP3) -> list[tuple[int, str]]:
        _, lines, _ = conn.list()
        listing: list[tuple[int, str]] = []
        for line in lines:
            num = int(line.split()[0])
            try:
                _, head, _ = conn.top(num, 0)
                kind = "top"
            except poplib.error_proto:
                _, head, _ = conn.retr(num)
                kind = "retr"
            digest = hashlib.sha256(b"\r\n".join(head)).hexdigest()
            listing.append((num, f"{kind}:{digest}"))
        return listing

    @staticmethod
    def _retrieve(conn: poplib.POP3, num: int) -> bytes:
        _, lines, _ = conn.retr(num)
        return b"\r\n".join(lines) + b"\r\n"


def _close_quietly(conn: poplib.POP3) -> None:
    try:
        conn.close()
    except OSError:
        pass
