"""Assemble the running exchange from the configuration: store, connectors, receivers, worker.

``App.run_once()`` is the cron-compatible pass (read every mailbox once, run every job that
can run, exit); ``App.run()`` is the daemon: one thread per mailbox (IMAP IDLE or polling)
and the worker in the calling thread, woken as soon as a receiver stored a message.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ticketbridge.codecs import mime
from ticketbridge.config.settings import Settings
from ticketbridge.connectors.base import TargetConnector
from ticketbridge.connectors.footprints import FootprintsConnector, FootprintsSettings
from ticketbridge.connectors.ggus import GgusMailConnector, GgusRestConnector, GgusSoapConnector
from ticketbridge.connectors.ggus.settings import GgusRestSettings, GgusSoapSettings
from ticketbridge.errors import BadInput, TicketbridgeError
from ticketbridge.exchange.retry import RetryPolicy
from ticketbridge.runtime.executor import Executor
from ticketbridge.runtime.outcome import Clock, utcnow
from ticketbridge.runtime.pollers import RestPoller
from ticketbridge.runtime.receivers.base import BatchSink, Receiver, run_until_stopped
from ticketbridge.runtime.receivers.settings import build_receiver
from ticketbridge.runtime.triggers import trigger_key
from ticketbridge.runtime.worker import Report, Worker, worker_name
from ticketbridge.store import Store, Transaction

log = logging.getLogger(__name__)


def build_connectors(settings: Settings) -> dict[str, TargetConnector]:
    """One connector per helpdesk the exchange writes to."""
    connectors: dict[str, TargetConnector] = {}
    for name, helpdesk in settings.helpdesks.items():
        if isinstance(helpdesk, FootprintsSettings):
            connectors[name] = FootprintsConnector(name, helpdesk)
        elif isinstance(helpdesk, GgusSoapSettings):
            connectors[name] = GgusSoapConnector(name, helpdesk)
        elif isinstance(helpdesk, GgusRestSettings):
            connectors[name] = GgusRestConnector(name, helpdesk)
        elif helpdesk.helpdesk_address and helpdesk.sender:
            # Without a submission address GGUS mail is read only (a source, never written).
            connectors[name] = GgusMailConnector(name, helpdesk)
    return connectors


def inspect_message(raw: bytes, max_bytes: int) -> tuple[str, str | None]:
    """The Message-ID of a raw mail and, for an auto-reply or bounce, why it is one.

    A mail too large to parse is not judged here: it is stored and the worker
    quarantines it with the reason.

    Only the header block is parsed, unless the mail is a multipart or encapsulates a
    message: then a bounce may hide in one of its parts (``message/delivery-status``),
    and the whole mail is parsed, as :func:`mime.auto_reply_reason` needs.
    """
    try:
        msg = mime.parse_headers(raw, max_bytes=max_bytes)
        if msg.get_content_maintype() in ("multipart", "message"):
            msg = mime.parse_message(raw, max_bytes=max_bytes)
    except BadInput:
        return f"<sha256-{hashlib.sha256(raw).hexdigest()}@ticketbridge.invalid>", None
    return mime.message_id(msg, raw), mime.auto_reply_reason(msg)


class _IntakeSink:
    """The sink of one receiver: one message at a time, or a batch in one transaction."""

    def __init__(self, intake: Intake, receiver: str, helpdesk: str) -> None:
        self._intake, self._receiver, self._helpdesk = intake, receiver, helpdesk

    def __call__(self, raw: bytes, source_id: str) -> None:
        self._intake.accept(self._receiver, self._helpdesk, raw)

    def batch(self, messages: Sequence[tuple[bytes, str]]) -> None:
        self._intake.accept_batch(self._receiver, self._helpdesk, [raw for raw, _ in messages])


@dataclass
class Intake:
    """The sink every receiver hands its messages to: store first, acknowledge after.

    A receiver with several messages at hand passes them as a batch
    (:meth:`accept_batch`): they are stored in one durable transaction, one fsync for
    all, before any of them is acknowledged.
    """

    store: Store
    settings: Settings
    clock: Clock = utcnow
    wake: threading.Event = field(default_factory=threading.Event)

    def sink_for(self, receiver: str) -> BatchSink:
        return _IntakeSink(self, receiver, self.settings.receivers[receiver].helpdesk)

    def accept(self, receiver: str, helpdesk: str, raw: bytes) -> None:
        """Store one raw message durably (or record it as ignored) and wake the worker."""
        self.accept_batch(receiver, helpdesk, [raw])

    def accept_batch(self, receiver: str, helpdesk: str, raws: Sequence[bytes]) -> None:
        """Store raw messages durably, all in one transaction, and wake the worker.

        Returns after the commit (and its fsync); raises, storing none of them, if one
        cannot be stored.
        """
        now = self.clock()
        with self.store.transaction(durable=True) as tx:
            stored = [self._store(tx, receiver, helpdesk, raw, now) for raw in raws]
        if any(stored):
            self.wake.set()

    def _store(
        self, tx: Transaction, receiver: str, helpdesk: str, raw: bytes, now: datetime
    ) -> bool:
        """Store one message in ``tx``; True when it made a new job."""
        message_id, reason = inspect_message(raw, self.settings.max_message_bytes(helpdesk))
        if reason is not None:
            tx.record_ignored(
                source=receiver, raw=raw, message_id=message_id, reason=reason, received_at=now
            )
            return False
        key = trigger_key(raw, helpdesk, self.settings)
        if key is not None:
            # Triggers from both sides of a link share one key, so they run in order.
            side, _, ticket_id = key.partition(":")
            link = tx.find_link_by_ref(side, ticket_id)
            if link is not None:
                key = f"{link.a_helpdesk}:{link.a_id}"
        result = tx.receive(
            source=receiver, raw=raw, message_id=message_id, key=key, received_at=now
        )
        return not result.duplicate


class App:
    """Everything one ticketbridge process runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        connectors: dict[str, TargetConnector] | None = None,
        clock: Clock = utcnow,
        report: Report | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store.open(settings.database_url())
        self.connectors = connectors if connectors is not None else build_connectors(settings)
        self.clock = clock
        self.stop_event = threading.Event()
        self.intake = Intake(self.store, settings, clock)
        self.executor = Executor(self.store, settings, self.connectors, clock=clock)
        w = settings.worker
        policy = RetryPolicy(
            max_attempts=w.max_attempts,
            base=timedelta(seconds=w.base_delay),
            ceiling=timedelta(seconds=w.max_delay),
        )
        #: Worker threads; the store lets one job per ticket run at a time, so they only
        #: overlap work on different tickets (and the waits on remote helpdesks).
        self.workers = [
            Worker(
                self.store,
                self.executor,
                policy=policy,
                lease=timedelta(seconds=w.lease_seconds),
                name=f"{worker_name()}/{n}",
                clock=clock,
                report=report,
            )
            for n in range(w.threads)
        ]
        self.worker = self.workers[0]
        self.pollers = self._pollers()
        self.receivers: dict[str, Receiver] = {
            name: build_receiver(
                name, settings.resolve_paths(binding.mailbox), self.store, self.stop_event
            )
            for name, binding in settings.receivers.items()
        }

    def _pollers(self) -> list[RestPoller]:
        """A poller for each ``ggus-rest`` helpdesk with polling switched on."""
        pollers = []
        for name, helpdesk in self.settings.helpdesks.items():
            connector = self.connectors.get(name)
            if (
                isinstance(helpdesk, GgusRestSettings)
                and helpdesk.poll_interval
                and isinstance(connector, GgusRestConnector)
            ):
                pollers.append(
                    RestPoller(
                        name,
                        connector,
                        self.store,
                        overlap=helpdesk.poll_overlap,
                        interval=helpdesk.poll_interval,
                        clock=self.clock,
                        wake=self.intake.wake,
                    )
                )
        return pollers

    def poll_receivers(self) -> int:
        """Read every mailbox once; a mailbox that fails is logged and the others go on."""
        total = 0
        for poller in self.pollers:
            try:
                total += poller.poll()
            except TicketbridgeError as exc:
                log.error("%s: %s", poller.name, exc)
        for name, receiver in self.receivers.items():
            try:
                total += receiver.poll(self.intake.sink_for(name))
            except TicketbridgeError as exc:
                log.error("receiver %s: %s", name, exc)
        return total

    def run_once(self) -> tuple[int, int]:
        """One pass: read every mailbox, then run every job that can run now."""
        received = self.poll_receivers()
        if len(self.workers) == 1:
            return received, self.worker.run_once()
        counts = [0] * len(self.workers)

        def drain(n: int) -> None:
            counts[n] = self.workers[n].run_once()

        threads = [threading.Thread(target=drain, args=(n,)) for n in range(1, len(self.workers))]
        threads += [
            threading.Thread(target=p.run, args=(self.stop_event,), name=p.name, daemon=True)
            for p in self.pollers
        ]
        for thread in threads:
            thread.start()
        drain(0)
        for thread in threads:
            thread.join()
        return received, sum(counts)

    def run(self) -> None:
        """Run until :meth:`stop`: receivers in threads, the worker here."""
        threads = [
            threading.Thread(
                target=self._receive_loop, args=(name, r), name=f"receiver-{name}", daemon=True
            )
            for name, r in self.receivers.items()
        ]
        idle = self.settings.worker.idle_poll
        threads += [
            threading.Thread(
                target=worker.run_forever,
                args=(self.stop_event, self.intake.wake, idle),
                name=f"worker-{n}",
                daemon=True,
            )
            for n, worker in enumerate(self.workers[1:], start=1)
        ]
        for thread in threads:
            thread.start()
        try:
            self.worker.run_forever(
                self.stop_event, self.intake.wake, self.settings.worker.idle_poll
            )
        finally:
            self.stop_event.set()
            self.intake.wake.set()
            for thread in threads:
                thread.join(timeout=10)

    def _receive_loop(self, name: str, receiver: Receiver) -> None:
        interval = self.settings.receivers[name].mailbox.poll_interval
        run_until_stopped(receiver, self.intake.sink_for(name), self.stop_event, interval=interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.intake.wake.set()

    def close(self) -> None:
        self.stop()
        for receiver in self.receivers.values():
            receiver.close()
        for connector in self.connectors.values():
            connector.close()
        self.store.close()
