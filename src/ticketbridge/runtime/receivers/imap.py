"""IMAP receiver: one connection per watched folder, IDLE push, UID bookkeeping.

State (in the StateStore, per receiver)::

    {"uidvalidity": 1795857884,   # the folder's UIDVALIDITY the UIDs below belong to
     "last_uid": 42,              # every UID up to here was offered to the sink
     "retry": [40]}               # UIDs the sink refused: offered again on each poll

**What a poll reads.** Each poll re-selects the folder (one round trip, and it shows a
changed UIDVALIDITY at once), then fetches ``BODY.PEEK[]`` (which does not set
``\\Seen``) of every UID above ``last_uid`` and of every UID in ``retry`` still in the
folder, oldest first, one message at a time. The UID position, not the ``\\Seen`` flag,
decides what is new: a person who reads the mailbox with a mail client does not hide a
message from the receiver.

Without a position -- the first poll ever, or after the folder's UIDVALIDITY changed
(the server renumbered it, so stored UIDs mean nothing) -- the receiver scans for
messages that do not carry its acknowledgement: every message without ``\\Seen`` (or,
with ``move_to``, every message left in the folder), except those marked ``\\Deleted``.
Messages acknowledged before the change are ``\\Seen`` or moved away and are not offered
again; anything offered twice is dropped by the inbox's Message-ID dedupe.

**Acknowledgement**, only after the sink returned: ``\\Seen`` is set on the message, or,
with ``move_to``, the message is moved there -- ``UID MOVE`` when the server has MOVE,
otherwise ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` (UIDPLUS), otherwise a plain
``EXPUNGE`` (which also expunges other messages someone marked ``\\Deleted``). Then the
state is saved. A refused message is not acknowledged; its UID goes to ``retry`` and the
poll goes on with the next message. The source id handed to the sink is
``"<uidvalidity>:<uid>"``.

**wait()** uses IDLE when the server has it (and ``idle`` is on): it returns when the
server reports new mail (``EXISTS``), when ``timeout`` passed, or within a second of the
stop event being set. IDLE is re-issued every 25 minutes (servers may drop an IDLE after
30, RFC 2177). Without IDLE it sleeps ``timeout``.

**Connection loss** (socket error, ``BYE``, aborted response) is noticed by poll or wait;
the connection is dropped, the source is logged as unavailable once, and the next
connect is scheduled after an exponential back-off with jitter (about 1 s, 2 s, 4 s ...
capped at 60 s). Until then poll raises RemoteUnavailable (with ``retry_after``) and
wait sleeps until that time (or ``timeout``). The first successful connect logs the
recovery once and resets the back-off. Nothing is lost across a reconnect: what was not
acknowledged is offered again.

**Login refused** raises RemoteAuthFailed (never "0 messages"); a server that reports
the refusal as temporary (``[UNAVAILABLE]``) raises RemoteUnavailable. With
``tls: starttls`` a server without STARTTLS raises RemoteAuthFailed: the password is
never sent in clear.

Threading: the receiver belongs to one thread. The daemon sets the stop event, joins the
thread, then calls :meth:`ImapReceiver.close`.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, LoginError

from ticketbridge.errors import RemoteAuthFailed, RemoteUnavailable
from ticketbridge.runtime.receivers.base import (
    Availability,
    Backoff,
    Sink,
    StateStore,
    hand_over,
)
from ticketbridge.runtime.receivers.settings import ImapSettings

__all__ = ["ImapReceiver"]

log = logging.getLogger(__name__)

#: Re-issue IDLE after this many seconds; RFC 2177 lets servers end it after 30 minutes.
REIDLE_AFTER = 25 * 60.0
#: Longest time wait() spends inside one idle_check, so a stop is noticed promptly.
_IDLE_SLICE = 1.0

_SEEN = b"\\Seen"
_DELETED = b"\\Deleted"


class _ConnectionLost(Exception):
    """The server said BYE or closed the connection."""


#: What a broken connection looks like: imaplib's abort, socket and TLS errors, BYE.
_LOST = (imaplib.IMAP4.abort, OSError, EOFError, _ConnectionLost)
#: A broken connection, or a command that failed and left the session in doubt.
_FAILED = (imaplib.IMAP4.error, OSError, EOFError, _ConnectionLost)


class _Imap:
    """The few IMAPClient calls the receiver makes, with types (imapclient has none)."""

    def __init__(self, client: Any) -> None:
        self._c = client
        self.in_idle = False

    @classmethod
    def connect(cls, settings: ImapSettings) -> _Imap:
        ctx: ssl.SSLContext | None = None
        if settings.tls != "none":
            cafile = str(settings.ca_file) if settings.ca_file else None
            ctx = ssl.create_default_context(cafile=cafile)
        port = settings.port or (993 if settings.tls == "ssl" else 143)
        client = IMAPClient(
            settings.host,
            port=port,
            ssl=settings.tls == "ssl",
            ssl_context=ctx,
            timeout=settings.timeout,
        )
        conn = cls(client)
        if settings.tls == "starttls":
            conn._c.starttls(ctx)
        return conn

    def login(self, user: str, password: str) -> None:
        self._c.login(user, password)

    def has(self, capability: str) -> bool:
        return bool(self._c.has_capability(capability))

    def select(self, folder: str) -> tuple[int, int | None]:
        """Select ``folder`` read-write; returns (UIDVALIDITY, UIDNEXT or None)."""
        info = cast(dict[bytes, Any], self._c.select_folder(folder))
        uidnext = info.get(b"UIDNEXT")
        return int(info[b"UIDVALIDITY"]), None if uidnext is None else int(uidnext)

    def ensure_folder(self, folder: str) -> None:
        if not self._c.folder_exists(folder):
            self._c.create_folder(folder)

    def search(self, criteria: Sequence[str]) -> list[int]:
        return [int(u) for u in cast(Iterable[int], self._c.search(list(criteria)))]

    def fetch_body(self, uid: int) -> bytes | None:
        """The full message (without setting \\Seen); None if it is gone."""
        data = cast(dict[int, dict[bytes, Any]], self._c.fetch([uid], [b"BODY.PEEK[]"]))
        item = data.get(uid)
        if item is None or b"BODY[]" not in item:
            return None
        return bytes(item[b"BODY[]"])

    def mark_seen(self, uid: int) -> None:
        self._c.add_flags([uid], [_SEEN], silent=True)

    def move(self, uid: int, folder: str) -> None:
        if self.has("MOVE"):
            self._c.move([uid], folder)
            return
        self._c.copy([uid], folder)
        self._c.add_flags([uid], [_DELETED], silent=True)
        if self.has("UIDPLUS"):
            self._c.uid_expunge([uid])
        else:
            self._c.expunge()

    def idle(self) -> None:
        self._c.idle()
        self.in_idle = True

    def idle_check(self, timeout: float) -> list[tuple[Any, ...]]:
        return cast(list[tuple[Any, ...]], self._c.idle_check(timeout=timeout))

    def idle_done(self) -> None:
        self.in_idle = False
        self._c.idle_done()

    def logout(self) -> None:
        try:
            if self.in_idle:
                self.idle_done()
            self._c.logout()
        except _FAILED:
            pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        try:
            self._c.shutdown()
        except _FAILED:
            pass


class ImapReceiver:
    """Watches one IMAP folder. See the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        settings: ImapSettings,
        *,
        state: StateStore,
        stop: threading.Event,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._state = state
        self._stop = stop
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._availability = Availability(name, log)
        self._conn: _Imap | None = None
        self._next_attempt = 0.0  # monotonic time before which no reconnect is tried

    @property
    def is_connected(self) -> bool:
        """True while the receiver holds a connection it believes to be alive."""
        return self._conn is not None

    # -- the Receiver protocol -------------------------------------------------------

    def poll(self, sink: Sink) -> int:
        """Hand each new message to ``sink``; acknowledge each one it accepted.

        Raises RemoteUnavailable when the server cannot be reached (``retry_after`` says
        when the next connect is due) and RemoteAuthFailed when the login is refused.
        """
        conn = self._connection()
        try:
            return self._poll(conn, sink)
        except _LOST as exc:
            self._lost(exc)
            raise RemoteUnavailable(self.name, f"connection lost: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            # A command failed in a way that leaves the session's state unknown.
            self._lost(exc)
            raise RemoteUnavailable(self.name, f"IMAP command failed: {exc}") from exc

    def wait(self, timeout: float) -> None:
        """Return when new mail may be there, ``timeout`` passed, or stop was set."""
        if self._stop.is_set():
            return
        conn = self._conn
        if conn is None:
            delay = max(0.0, self._next_attempt - time.monotonic())
            self._stop.wait(min(delay, timeout))
            return
        if not (self.settings.idle and conn.has("IDLE")):
            self._stop.wait(timeout)
            return
        try:
            # Mail that arrived after the last poll's search but before IDLE starts is
            # not announced by IDLE: look for it first, or it would wait for the timeout.
            if self._new_since_poll(conn):
                return
            self._idle(conn, timeout)
        except _FAILED as exc:
            self._lost(exc)

    def _new_since_poll(self, conn: _Imap) -> bool:
        """True when the folder holds a UID above the last one polled."""
        last_uid = self._state.receiver_state(self.name).get("last_uid")
        if last_uid is None:
            return False
        return any(u > last_uid for u in conn.search(["UID", f"{int(last_uid) + 1}:*"]))

    def close(self) -> None:
        """Log out and close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.logout()

    # -- connection --------------------------------------------------------------------

    def _connection(self) -> _Imap:
        if self._conn is not None:
            return self._conn
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise RemoteUnavailable(
                self.name, "not connected; next attempt scheduled", retry_after=wait
            )
        try:
            conn = self._connect()
        except RemoteUnavailable as exc:
            self._schedule_reconnect()
            self._availability.down(exc)
            raise
        self._backoff.reset()
        self._availability.up()
        self._conn = conn
        return conn

    def _connect(self) -> _Imap:
        s = self.settings
        where = f"{s.host}:{s.port or ''}"
        try:
            conn = _Imap.connect(s)
        except CapabilityError as exc:
            raise RemoteAuthFailed(
                self.name, f"{where} offers no STARTTLS; not sending the password in clear"
            ) from exc
        except _FAILED as exc:
            raise RemoteUnavailable(self.name, f"cannot connect to {where}: {exc}") from exc
        try:
            try:
                conn.login(s.user, s.password.get_secret_value())
            except LoginError as exc:
                if "[UNAVAILABLE]" in str(exc):
                    raise RemoteUnavailable(self.name, f"login deferred: {exc}") from exc
                raise RemoteAuthFailed(
                    self.name, f"IMAP login as {s.user!r} refused: {exc}"
                ) from exc
            if s.move_to:
                conn.ensure_folder(s.move_to)
        except (RemoteAuthFailed, RemoteUnavailable):
            conn.shutdown()
            raise
        except _FAILED as exc:
            conn.shutdown()
            raise RemoteUnavailable(self.name, f"IMAP session broke: {exc}") from exc
        return conn

    def _schedule_reconnect(self) -> None:
        self._next_attempt = time.monotonic() + self._backoff.next_delay()

    def _lost(self, exc: BaseException) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.shutdown()
        self._schedule_reconnect()
        self._availability.down(exc)

    # -- reading -----------------------------------------------------------------------

    def _poll(self, conn: _Imap, sink: Sink) -> int:
        uidvalidity, uidnext = conn.select(self.settings.folder)
        state = self._state.receiver_state(self.name)
        last_uid: int | None = state.get("last_uid")
        retry = {int(u) for u in state.get("retry", [])}
        if state and state.get("uidvalidity") != uidvalidity:
            log.warning(
                "receiver %s: UIDVALIDITY of %s changed (%s -> %s); scanning the folder "
                "again for messages not acknowledged",
                self.name,
                self.settings.folder,
                state.get("uidvalidity"),
                uidvalidity,
            )
            last_uid, retry = None, set()

        if last_uid is None:
            if uidnext is None:
                uidnext = max(conn.search(["ALL"]), default=0) + 1
            scan = ["NOT", "DELETED"] if self.settings.move_to else ["UNSEEN", "NOT", "DELETED"]
            candidates = set(conn.search(scan))
            last_uid = uidnext - 1
        else:
            # "n:*" always matches the highest UID, even when it is below n.
            candidates = {u for u in conn.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid}
            if retry:
                still_there = set(conn.search(["UID", ",".join(str(u) for u in sorted(retry))]))
                retry &= still_there
                candidates |= retry
        self._save(uidvalidity, last_uid, retry)

        accepted = 0
        for uid in sorted(candidates):
            if self._stop.is_set():
                break
            raw = conn.fetch_body(uid)
            if raw is None:
                retry.discard(uid)  # expunged by someone else meanwhile
            elif hand_over(self.name, sink, raw, f"{uidvalidity}:{uid}"):
                accepted += 1
                self._acknowledge(conn, uid)
                retry.discard(uid)
            else:
                retry.add(uid)
            last_uid = max(last_uid, uid)
            self._save(uidvalidity, last_uid, retry)
        return accepted

    def _acknowledge(self, conn: _Imap, uid: int) -> None:
        try:
            if self.settings.move_to:
                conn.move(uid, self.settings.move_to)
            else:
                conn.mark_seen(uid)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:
            # Stored in the inbox already; the UID position keeps it from being offered
            # again, so a refused flag or move costs nothing but a mailbox left untidy.
            log.exception("receiver %s: could not acknowledge UID %s", self.name, uid)

    def _save(self, uidvalidity: int, last_uid: int, retry: set[int]) -> None:
        self._state.save_receiver_state(
            self.name,
            {"uidvalidity": uidvalidity, "last_uid": last_uid, "retry": sorted(retry)},
        )

    # -- IDLE --------------------------------------------------------------------------

    def _idle(self, conn: _Imap, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            conn.idle()
            try:
                has_mail = self._idle_until(conn, deadline, started=time.monotonic())
            finally:
                # Ending IDLE also proves the connection is alive: on a dead one this
                # raises, and the caller treats that as a lost connection.
                conn.idle_done()
            if has_mail:
                return

    def _idle_until(self, conn: _Imap, deadline: float, *, started: float) -> bool:
        """True when the server reported new mail; False to end this IDLE command."""
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline or now - started >= REIDLE_AFTER:
                return False
            chunk = min(_IDLE_SLICE, deadline - now)
            responses = conn.idle_check(chunk)
            for response in responses:
                if response and response[0] == b"BYE":
                    raise _ConnectionLost(b" ".join(_as_bytes(r) for r in response).decode())
            if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                return True
            if not responses and time.monotonic() - now < chunk / 2:
                # Woken without a whole response: EOF (imapclient hides it) or a partial
                # line. Ending IDLE tells which.
                return False
        return False


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
