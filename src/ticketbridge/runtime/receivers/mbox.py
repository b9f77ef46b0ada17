"""mbox receiver: reads a local mbox file from a stored position.

State (in the StateStore, per receiver)::

    {"file": {"dev": 2049, "ino": 131},   # which file the position belongs to
     "offset": 5120,                      # every message before this byte is acknowledged
     "acked": [6144]}                     # start offsets of acknowledged messages after
                                          # ``offset`` (behind a refused one)

Acknowledging a message means recording it in this state, saved after each message. The
position only moves past a contiguous run of acknowledged messages, so a message the
sink refused holds it back and is offered again on the next poll, while the messages
after it are acknowledged one by one in ``acked`` and not offered twice.

The position is reset to the start of the file (and every message offered again; the
inbox drops duplicates by Message-ID) when the file is not the one the state names
(rotated: another device/inode), is shorter than the position (truncated), or does not
have a ``From `` line at the position (rewritten by someone else).

The file is read under the mailbox lock (``fcntl`` + dot lock, as the MTA takes it, via
:class:`mailbox.mbox`), so a message being appended is never read half-written. When the
lock is busy the poll reads nothing and the next poll tries again.

``delete_after``: the lock is held for the whole poll; afterwards the acknowledged
messages are removed by rewriting the file **in place** (same inode, so an MTA waiting
for the lock appends to the file we keep). The state is reset to ``offset 0`` *before*
the rewrite, so a crash in between offers messages again rather than skipping any.

Message bytes are handed over as stored, without the ``From `` separator line and the
blank line before the next one; ``>From `` quoting is left as it is (mboxo and mboxrd
cannot be told apart reliably, and it never matters for a ticket mail's headers).
"""

from __future__ import annotations

import logging
import mailbox
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketbridge.errors import RemoteUnavailable
from ticketbridge.runtime.receivers.base import Sink, StateStore, hand_over
from ticketbridge.runtime.receivers.settings import MboxSettings

__all__ = ["MboxReceiver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Message:
    start: int  # absolute offset of its "From " line
    segment: bytes  # the "From " line up to the next one (or EOF), as in the file

    @property
    def end(self) -> int:
        """Absolute offset just past the segment."""
        return self.start + len(self.segment)

    @property
    def raw(self) -> bytes:
        """The message itself: no "From " line, no blank line before the next one."""
        nl = self.segment.find(b"\n")
        body = b"" if nl < 0 else self.segment[nl + 1 :]
        if body.endswith(b"\r\n\r\n"):
            return body[:-2]
        if body.endswith(b"\n\n"):
            return body[:-1]
        return body


@dataclass(slots=True)
class _Position:
    dev: int
    ino: int
    offset: int
    acked: set[int]

    def as_state(self) -> dict[str, Any]:
        return {
            "file": {"dev": self.dev, "ino": self.ino},
            "offset": self.offset,
            "acked": sorted(self.acked),
        }


def split_mbox(data: bytes, base: int) -> list[_Message]:
    """The messages in ``data`` (which starts at absolute offset ``base``).

    Like :class:`mailbox.mbox`, every line starting with ``From `` starts a message.
    Bytes before the first ``From `` line are not a message and are ignored.
    """
    starts: list[int] = []
    pos = 0
    while pos < len(data):
        if data.startswith(b"From ", pos):
            starts.append(pos)
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    return [
        _Message(base + start, data[start : starts[i + 1] if i + 1 < len(starts) else len(data)])
        for i, start in enumerate(starts)
    ]


class MboxReceiver:
    """Reads one mbox file. See the module docstring for the state and the rules."""

    def __init__(
        self,
        name: str,
        settings: MboxSettings,
        *,
        state: StateStore,
        stop: threading.Event,
    ) -> None:
        self.name = name
        self.settings = settings
        self.path = Path(settings.path)
        self._state = state
        self._stop = stop

    def poll(self, sink: Sink) -> int:
        """Hand each message after the stored position to ``sink``; record each accepted one.

        Returns 0 when the file does not exist yet (no mail delivered) or its lock is busy.
        Raises RemoteUnavailable when the file cannot be read.
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise RemoteUnavailable(self.name, f"cannot stat {self.path}: {exc}") from exc
        pos = self._load(st)
        if pos.offset == st.st_size and not pos.acked:
            if pos.offset == 0 or not self.settings.delete_after:
                return 0  # nothing new (and, with delete_after, nothing left to delete)
        try:
            box = mailbox.mbox(str(self.path), create=False)
        except mailbox.NoSuchMailboxError:
            return 0
        except OSError as exc:
            raise RemoteUnavailable(self.name, f"cannot open {self.path}: {exc}") from exc
        try:
            try:
                box.lock()
            except mailbox.ExternalClashError:
                log.debug("receiver %s: %s is locked; next poll", self.name, self.path)
                return 0
            try:
                messages = self._read(pos)
                if not self.settings.delete_after:
                    box.unlock()
                accepted = self._deliver(messages, pos, sink)
                if self.settings.delete_after:
                    self._delete_acknowledged(messages, pos)
                return accepted
            finally:
                if self.settings.delete_after:
                    box.unlock()
        finally:
            box.close()

    def wait(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or until the stop event is set."""
        self._stop.wait(timeout)

    def close(self) -> None:
        """Nothing to release."""

    def _load(self, st: os.stat_result) -> _Position:
        data = self._state.receiver_state(self.name)
        ident = data.get("file") or {}
        pos = _Position(
            dev=st.st_dev,
            ino=st.st_ino,
            offset=int(data.get("offset", 0)),
            acked={int(a) for a in data.get("acked", [])},
        )
        if (ident.get("dev"), ident.get("ino")) != (st.st_dev, st.st_ino):
            if ident:
                log.info(
                    "receiver %s: %s was replaced; reading it from the start", self.name, self.path
                )
            pos.offset, pos.acked = 0, set()
        elif pos.offset > st.st_size:
            log.info(
                "receiver %s: %s was truncated; reading it from the start", self.name, self.path
            )
            pos.offset, pos.acked = 0, set()
        return pos

    def _read(self, pos: _Position) -> list[_Message]:
        with open(self.path, "rb") as f:
            f.seek(pos.offset)
            data = f.read()
            if pos.offset and data and not data.startswith(b"From "):
                log.info(
                    "receiver %s: %s was rewritten; reading it from the start", self.name, self.path
                )
                pos.offset, pos.acked = 0, set()
                f.seek(0)
                data = f.read()
        return split_mbox(data, pos.offset)

    def _deliver(self, messages: list[_Message], pos: _Position, sink: Sink) -> int:
        accepted = 0
        for msg in messages:
            if self._stop.is_set():
                break
            if msg.start < pos.offset or msg.start in pos.acked:
                continue  # acknowledged already (the position may have moved past it)
            if not hand_over(self.name, sink, msg.raw, f"{pos.ino}:{msg.start}"):
                continue
            accepted += 1
            pos.acked.add(msg.start)
            self._advance(messages, pos)
            self._state.save_receiver_state(self.name, pos.as_state())
        return accepted

    @staticmethod
    def _advance(messages: list[_Message], pos: _Position) -> None:
        for msg in messages:
            if msg.start < pos.offset:
                continue
            if msg.start != pos.offset or msg.start not in pos.acked:
                break
            pos.acked.discard(msg.start)
            pos.offset = msg.end

    def _delete_acknowledged(self, messages: list[_Message], pos: _Position) -> None:
        # Everything before the first message read was acknowledged in an earlier poll
        # that ended before deleting it; of the messages read, the acknowledged ones go.
        read_from = messages[0].start if messages else pos.offset
        keep = [m for m in messages if m.start >= pos.offset and m.start not in pos.acked]
        if read_from == 0 and len(keep) == len(messages):
            return  # nothing acknowledged: leave the file alone
        pos.offset, pos.acked = 0, set()
        # Saved first: a crash during the rewrite offers messages again, never skips one.
        self._state.save_receiver_state(self.name, pos.as_state())
        with open(self.path, "r+b") as f:
            f.seek(0)
            for msg in keep:
                f.write(msg.segment)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
