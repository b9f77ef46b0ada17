"""What every mail receiver offers the daemon, and the rules they all follow.

A receiver reads triggers (mails) from one source -- a Maildir, an mbox file, a POP3 or
an IMAP mailbox -- and hands each one to a :data:`Sink`. The sink stores the raw message
in the inbox and enqueues its job in one transaction, and returns only once that is
committed (architecture.md, data flow steps 1-2). Only then does the receiver
*acknowledge* the message at the source (Maildir ``cur/`` + ``S``, mbox position, POP3
UIDL record / ``DELE``, IMAP ``\\Seen`` / ``MOVE``). This is invariant 1: nothing is
acknowledged before it is durably stored.

The rule when the sink raises: the message is **not** acknowledged, the receiver logs
the error and **continues with the next message**, so one bad message never blocks the
others. The refused message is offered again on the next :meth:`Receiver.poll`.

A crash between "sink returned" and "acknowledged" re-delivers that message once on
restart; the inbox drops the duplicate by its Message-ID. Delivery is at least once,
never at most once.

Batches: a sink may also offer ``batch(messages)`` (a :class:`BatchSink`, as the
daemon's intake does): it stores several messages in one durable transaction, so one
fsync covers them all, and returns only once that transaction is committed. A receiver
that has several messages at hand gives them to :func:`hand_over_batch`, then
acknowledges each one it reports stored. If the batch as a whole is refused, the
messages are handed over one at a time instead, so one bad message still never blocks
the others. The rule is unchanged: nothing is acknowledged before it is durably stored.

The daemon drives a receiver with :func:`run_until_stopped` (or its own loop of the same
shape): ``poll`` -> ``wait`` -> ``poll`` ..., one thread per receiver.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ticketbridge.errors import RemoteAuthFailed, RemoteUnavailable

__all__ = [
    "Availability",
    "Backoff",
    "BatchSink",
    "Receiver",
    "Sink",
    "StateStore",
    "hand_over",
    "hand_over_batch",
    "run_until_stopped",
]

#: ``sink(raw_message, source_id)``: returns only after the message is durably stored;
#: raises to refuse it (the receiver then leaves it un-acknowledged at the source).
Sink = Callable[[bytes, str], None]


@runtime_checkable
class BatchSink(Protocol):
    """A :data:`Sink` that can also store several messages in one durable transaction."""

    def __call__(self, raw: bytes, source_id: str) -> None:
        """Store one message (see :data:`Sink`)."""
        ...

    def batch(self, messages: Sequence[tuple[bytes, str]]) -> None:
        """Store every ``(raw, source_id)`` durably in one transaction, or none of them.

        Returns only after the commit; raises to refuse the batch as a whole.
        """
        ...


@runtime_checkable
class StateStore(Protocol):
    """Small JSON state per receiver, kept by the store (positions, seen UIDLs, ...)."""

    def receiver_state(self, name: str) -> dict[str, Any]:
        """The state last saved for receiver ``name``; ``{}`` when there is none."""
        ...

    def save_receiver_state(self, name: str, data: dict[str, Any]) -> None:
        """Replace the state of receiver ``name``; durable when it returns."""
        ...


@runtime_checkable
class Receiver(Protocol):
    """One configured mailbox, read by one thread of the daemon."""

    name: str

    def poll(self, sink: Sink) -> int:
        """Hand every new message to ``sink`` once and acknowledge each one it accepted.

        Returns how many messages the sink accepted. A sink exception leaves that message
        un-acknowledged (offered again on the next poll) and the poll continues with the
        next message.

        Raises RemoteUnavailable when the source cannot be reached (try again later) and
        RemoteAuthFailed when it refuses our credentials (an operator must act).
        """
        ...

    def wait(self, timeout: float) -> None:
        """Block until new mail may be there (IMAP IDLE) or ``timeout`` seconds passed.

        Returns early when the receiver's stop event is set.
        """
        ...

    def close(self) -> None:
        """Release connections and files. The receiver is not used afterwards."""
        ...


log = logging.getLogger(__name__)


def hand_over(receiver_name: str, sink: Sink, raw: bytes, source_id: str) -> bool:
    """Give one message to ``sink``; True when it was stored and may be acknowledged.

    A sink exception is logged with the source id and swallowed: the caller must not
    acknowledge the message and goes on with the next one.
    """
    try:
        sink(raw, source_id)
    except Exception:
        log.exception(
            "receiver %s: message %s was refused by the inbox; it stays un-acknowledged "
            "and is offered again on the next poll",
            receiver_name,
            source_id,
        )
        return False
    return True


def hand_over_batch(
    receiver_name: str, sink: Sink, messages: Sequence[tuple[bytes, str]]
) -> list[bool]:
    """Give several messages to ``sink``; for each, True when it may be acknowledged.

    A :class:`BatchSink` stores them all in one transaction. When it refuses the batch
    (or the sink takes one message at a time), each message is handed over on its own
    with :func:`hand_over`, so only the bad ones stay un-acknowledged.
    """
    if not messages:
        return []
    if len(messages) > 1 and isinstance(sink, BatchSink):
        try:
            sink.batch(messages)
        except Exception:
            log.warning(
                "receiver %s: a batch of %d messages was refused by the inbox; handing "
                "them over one at a time",
                receiver_name,
                len(messages),
                exc_info=True,
            )
        else:
            return [True] * len(messages)
    return [hand_over(receiver_name, sink, raw, source_id) for raw, source_id in messages]


class Backoff:
    """Exponential back-off with full jitter, capped: 1 s, 2 s, 4 s ... ``maximum``.

    ``next_delay()`` returns the delay before the next attempt and doubles the base;
    ``reset()`` starts again from ``initial`` after a success.
    """

    def __init__(self, *, initial: float = 1.0, maximum: float = 60.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._current = initial

    def next_delay(self) -> float:
        base = self._current
        self._current = min(self._current * 2, self.maximum)
        # Jitter between half and the whole base: receivers of many helpdesks that lost
        # the same server do not all come back in the same second.
        return base / 2 + random.uniform(0, base / 2)

    def reset(self) -> None:
        self._current = self.initial


class Availability:
    """Logs once when a source becomes unavailable and once when it recovers."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._log = logger
        self.is_down = False

    def down(self, reason: object) -> None:
        if not self.is_down:
            self.is_down = True
            self._log.warning("receiver %s: source unavailable: %s", self.name, reason)
        else:
            self._log.debug("receiver %s: still unavailable: %s", self.name, reason)

    def up(self) -> None:
        if self.is_down:
            self.is_down = False
            self._log.info("receiver %s: source available again", self.name)


def run_until_stopped(
    receiver: Receiver,
    sink: Sink,
    stop: threading.Event,
    *,
    interval: float,
    auth_retry: float = 300.0,
) -> None:
    """Poll and wait until ``stop`` is set; the loop of one receiver thread.

    RemoteUnavailable is expected (the receiver logs it once and reconnects with back-off
    inside ``wait``). RemoteAuthFailed is logged as an error every time and retried after
    ``auth_retry`` seconds, so a fixed password is picked up without a restart. Any other
    exception propagates: it is a bug, and the daemon decides what to do.
    """
    while not stop.is_set():
        try:
            receiver.poll(sink)
        except RemoteAuthFailed as exc:
            log.error("receiver %s: %s; retrying in %.0f s", receiver.name, exc, auth_retry)
            stop.wait(auth_retry)
            continue
        except RemoteUnavailable as exc:
            log.debug("receiver %s: %s", receiver.name, exc)
        if stop.is_set():
            break
        receiver.wait(interval)
