"""``MaildirRelay``: the mail server between the emulators and the exchange's mailboxes.

GGUS mails its notifications to each support unit's list, Footprints mails its own to the
agents of a ticket (the reverse TX agent among them); at a site those lists and agents are
mailboxes the exchange reads. The relay is that mail server for the sandbox: an SMTP
server on 127.0.0.1 that the emulators use as their ``smarthost`` and that files each mail
into the Maildir of its recipient::

    relay = MaildirRelay(
        {"OSG@su.ggus.example.org": root / "ggus",          # the OSG support unit's list
         "tx+fp71_ggus2@goc.example.org": root / "goc"},    # Footprints' reverse TX agent
        default=root / "other",                             # kept, read by nobody
    ).start()
    GgusSandbox(smarthost=relay.address); FootprintsSandbox(smarthost=relay.address)

Recipients are matched case-blind. A mail for a recipient that has no Maildir goes to
``default`` (or is dropped when there is none); a mail for several recipients is filed once
per Maildir. ``delivered`` counts what was filed, so a caller can wait until the relay is
quiet.
"""

from __future__ import annotations

import mailbox
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ticketbridge.sandbox.doors import PortZeroController

__all__ = ["MaildirRelay"]


class _Handler:
    def __init__(self, relay: MaildirRelay) -> None:
        self.relay = relay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.relay.file(raw, list(envelope.rcpt_tos))
        return "250 2.0.0 OK"


class MaildirRelay:
    """An SMTP server on 127.0.0.1 filing each mail into the Maildir of its recipient."""

    def __init__(
        self,
        boxes: Mapping[str, str | Path],
        *,
        default: str | Path | None = None,
        port: int = 0,
    ) -> None:
        self._paths = {address.casefold(): Path(path) for address, path in boxes.items()}
        self._default = Path(default) if default is not None else None
        self._boxes: dict[Path, mailbox.Maildir] = {}
        for path in [*self._paths.values(), *([self._default] if self._default else [])]:
            if path not in self._boxes:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._boxes[path] = mailbox.Maildir(path, create=True)
        self._lock = threading.Lock()
        self._controller = PortZeroController(_Handler(self), hostname="127.0.0.1", port=port)
        self._running = False
        #: Mails filed so far, per Maildir, and mails dropped (no Maildir, no default).
        self.delivered: dict[Path, int] = dict.fromkeys(self._boxes, 0)
        self.dropped = 0

    def file(self, raw: bytes, recipients: list[str]) -> None:
        """File ``raw`` once into each Maildir its recipients map to."""
        targets: list[Path] = []
        for rcpt in recipients:
            path = self._paths.get(rcpt.casefold(), self._default)
            if path is not None and path not in targets:
                targets.append(path)
        with self._lock:
            if not targets:
                self.dropped += 1
            for path in targets:
                self._boxes[path].add(raw)
                self.delivered[path] += 1

    @property
    def total(self) -> int:
        """Every mail filed or dropped so far."""
        with self._lock:
            return sum(self.delivered.values()) + self.dropped

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> MaildirRelay:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False

    def __enter__(self) -> MaildirRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._running:
            raise RuntimeError("the relay is not running")
        return int(self._controller.port)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``: what the emulators take as ``smarthost``."""
        return ("127.0.0.1", self.port)
