"""Pollers: find changed tickets by an ``updated_at`` watermark, so no lost mail loses an update.

Zammad-era GGUS is polled every ``poll_interval`` seconds (the KIT relayer polls every
10 s): the search asks for tickets updated after the watermark minus an overlap window,
paged, in UTC. Every hit is stored in the inbox as a trigger (source ``poll:HELPDESK``)
before the watermark moves, so a crash between the two reads the same hits again; the
trigger's Message-ID is derived from (helpdesk, ticket, updated_at), so the same change
seen by two polls of the overlap window is one trigger, stored once.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta

from ticketbridge.connectors.ggus.rest import GgusRestConnector
from ticketbridge.errors import TicketbridgeError
from ticketbridge.runtime.outcome import Clock, parse_time
from ticketbridge.runtime.triggers import POLL
from ticketbridge.store import Store

log = logging.getLogger(__name__)


def link_key(store: Store, helpdesk: str, ticket_id: str) -> str:
    """The job key of a ticket: its link's source side when linked, so both sides of a
    link run one at a time in arrival order."""
    link = store.find_link_by_ref(helpdesk, ticket_id)
    return f"{link.a_helpdesk}:{link.a_id}" if link else f"{helpdesk}:{ticket_id}"


class RestPoller:
    """Polls one ``ggus-rest`` helpdesk for tickets changed since its watermark."""

    def __init__(
        self,
        helpdesk: str,
        connector: GgusRestConnector,
        store: Store,
        *,
        overlap: float,
        interval: float,
        clock: Clock,
        wake: threading.Event,
    ) -> None:
        self.helpdesk, self.connector, self.store = helpdesk, connector, store
        self.overlap = timedelta(seconds=overlap)
        self.interval = interval
        self.clock = clock
        self.wake = wake
        self.name = f"{POLL}{helpdesk}"

    def poll(self) -> int:
        """One poll: store a trigger per changed ticket, then move the watermark."""
        state = self.store.receiver_state(self.name)
        watermark = parse_time(state.get("watermark")) or datetime(1970, 1, 1, tzinfo=UTC)
        changes, newest = self.connector.changes_since(watermark, overlap=self.overlap)
        stored = 0
        for ticket_id, updated_at in changes:
            stamp = updated_at.isoformat() if updated_at else "unknown"
            raw = json.dumps(
                {"poll": self.helpdesk, "id": ticket_id, "updated_at": stamp}, sort_keys=True
            ).encode()
            result = self.store.receive(
                source=self.name,
                raw=raw,
                message_id=f"<poll-{self.helpdesk}-{ticket_id}-{stamp}@ticketbridge.invalid>",
                key=link_key(self.store, self.helpdesk, ticket_id),
                received_at=self.clock(),
            )
            if not result.duplicate:
                stored += 1
        self.store.save_receiver_state(self.name, {"watermark": newest.isoformat()})
        if stored:
            self.wake.set()
        return stored

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` seconds until ``stop``; failures are logged once."""
        down = False
        while not stop.is_set():
            try:
                self.poll()
                if down:
                    log.warning("%s: polling recovered", self.name)
                down = False
            except TicketbridgeError as exc:
                if not down:
                    log.error("%s: polling failed: %s", self.name, exc)
                down = True
            stop.wait(self.interval)
