"""Maildir receiver: the file system is the state.

What is read: every file in ``new/``, and every file in ``cur/`` whose info
(``:2,FLAGS``) has neither ``S`` (seen) nor ``T`` (trashed). Files in ``tmp/`` are never
read: a delivering MTA writes there and renames into ``new/`` only when the file is
complete, so a partly written message is never seen. Dot files are ignored, as the
Maildir specification asks. Messages are offered oldest first (modification time, then
name).

Acknowledgement, only after the sink returned: the file is renamed to ``cur/`` with the
``S`` flag added (``new/1700000000.x.host`` -> ``cur/1700000000.x.host:2,S``), or into
``cur/`` of the ``move_to`` Maildir. A rename within one file system is atomic, so a
message is either still waiting or acknowledged, never half of each. A refused message
stays where it was and is offered again on the next poll.

Messages are handed over in batches of up to :data:`BATCH` (:func:`hand_over_batch`):
with the daemon's intake, one durable transaction stores a whole batch, and each
message of it is acknowledged only after that commit.

No StateStore is needed. The stdlib :class:`mailbox.Maildir` is used to create the
``move_to`` folder; the listing is done here because on Python 3.11 ``mailbox.Maildir``
cannot read a message's flags without reading and parsing the whole message.
"""

from __future__ import annotations

import logging
import mailbox
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ticketbridge.errors import RemoteUnavailable
from ticketbridge.runtime.receivers.base import Sink, hand_over_batch
from ticketbridge.runtime.receivers.settings import MaildirSettings

__all__ = ["MaildirReceiver"]

log = logging.getLogger(__name__)

_INFO_SEP = ":2,"
#: At most this many messages are stored in one transaction (one fsync).
BATCH = 64


@dataclass(frozen=True, slots=True)
class _Entry:
    path: Path
    unique: str  # the file name without its info part: the message's Maildir id
    flags: str
    mtime: float


class MaildirReceiver:
    """Reads one Maildir. See the module docstring for what is read and acknowledged."""

    def __init__(self, name: str, settings: MaildirSettings, *, stop: threading.Event) -> None:
        self.name = name
        self.settings = settings
        self._stop = stop
        self.root = Path(settings.path)
        self.done: Path | None = None
        if settings.move_to is not None:
            move_to = Path(settings.move_to)
            self.done = move_to if move_to.is_absolute() else self.root / move_to

    def poll(self, sink: Sink) -> int:
        """Hand each waiting message to ``sink``; acknowledge it once the sink returned.

        Raises RemoteUnavailable when the Maildir does not exist (e.g. an unmounted
        file system).
        """
        entries = self._waiting()
        if self.done is not None and entries:
            mailbox.Maildir(self.done, create=True)  # tmp/ new/ cur/, idempotent
        accepted = 0
        for start in range(0, len(entries), BATCH):
            if self._stop.is_set():
                break
            batch: list[tuple[_Entry, bytes]] = []
            for entry in entries[start : start + BATCH]:
                try:
                    batch.append((entry, entry.path.read_bytes()))
                except FileNotFoundError:
                    continue  # another reader took it; not ours to acknowledge
            stored = hand_over_batch(self.name, sink, [(raw, entry.unique) for entry, raw in batch])
            for (entry, _raw), ok in zip(batch, stored, strict=True):
                if ok:
                    accepted += 1
                    self._acknowledge(entry)
        return accepted

    def wait(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or until the stop event is set."""
        self._stop.wait(timeout)

    def close(self) -> None:
        """Nothing to release."""

    def _waiting(self) -> list[_Entry]:
        new, cur = self.root / "new", self.root / "cur"
        if not new.is_dir() or not cur.is_dir():
            raise RemoteUnavailable(self.name, f"{self.root} is not a Maildir (no new/ or cur/)")
        found: list[_Entry] = []
        for subdir in (new, cur):
            with os.scandir(subdir) as listing:
                for item in listing:
                    if item.name.startswith(".") or not item.is_file():
                        continue
                    unique, sep, flags = item.name.partition(_INFO_SEP)
                    if subdir is cur and ("S" in flags or "T" in flags):
                        continue
                    if subdir is new and sep:
                        flags = ""  # info in new/ is not defined by the spec; ignore it
                    try:
                        mtime = item.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    found.append(_Entry(Path(item.path), unique, flags, mtime))
        found.sort(key=lambda e: (e.mtime, e.unique))
        return found

    def _acknowledge(self, entry: _Entry) -> None:
        flags = "".join(sorted(set(entry.flags) | {"S"}))
        target_dir = (self.done if self.done is not None else self.root) / "cur"
        target = target_dir / f"{entry.unique}{_INFO_SEP}{flags}"
        try:
            os.rename(entry.path, target)
        except OSError:
            # The message is stored in the inbox, but will be offered again; the inbox
            # drops the duplicate by Message-ID. Nothing is lost either way.
            log.exception(
                "receiver %s: could not acknowledge %s (rename to %s)",
                self.name,
                entry.path,
                target,
            )
