"""Claim jobs, run them through the executor, and settle each one: done, retry or dead.

A worker holds a lease on the job it runs and renews it from its heartbeat thread (one
per worker, started with its first job, idle between jobs), so a worker that dies lets
the job go to another one when the lease expires. Failures are
judged by the pure :class:`~ticketbridge.exchange.retry.RetryPolicy`; nothing is dropped:
a job that gives up becomes a dead letter with its full error.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from ticketbridge.errors import RemoteError, TicketbridgeError
from ticketbridge.exchange.retry import Bury, RetryPolicy
from ticketbridge.runtime.executor import Executor
from ticketbridge.runtime.outcome import Clock, Outcome, utcnow
from ticketbridge.store import Job, Store

log = logging.getLogger(__name__)

Report = Callable[[Job, Outcome | None, str], None]

# A heartbeat thread without a job for this long ends (the next job starts another).
_IDLE_SECONDS = 5.0


def worker_name() -> str:
    """``host:pid``: unique per process, readable in ``ticketbridge jobs``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Runs jobs one at a time (one per ticket key across all workers, by the store's rules)."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        policy: RetryPolicy,
        lease: timedelta = timedelta(seconds=60),
        name: str | None = None,
        clock: Clock = utcnow,
        report: Report | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.policy = policy
        self.lease = lease
        self.name = name or worker_name()
        self.clock = clock
        self.report = report
        self._beats = threading.local()  # the heartbeat of the thread running this worker

    def run_once(self) -> int:
        """Run every job that is claimable now; return how many were run."""
        # Claims compare with the time the pass started, so a job that fails and is
        # rescheduled during this pass waits for the next pass instead of spinning here.
        started = self.clock()
        count = 0
        job = self.store.claim_job(self.name, lease=self.lease, now=started)
        while job is not None:
            count += 1
            outcome = self._process(job)
            if outcome is None:  # failed, and settled
                job = self.store.claim_job(self.name, lease=self.lease, now=started)
                continue
            # Done, and the next claim, in one transaction.
            _, following = self.store.complete_and_claim(
                job.id, self.name, lease=self.lease, now=started
            )
            if self.report:
                self.report(job, outcome, outcome.reason)
            job = following
        return count

    def run_forever(self, stop: threading.Event, wake: threading.Event, idle: float) -> None:
        """Run jobs until ``stop`` is set, sleeping on ``wake`` (or ``idle`` seconds) when idle."""
        while not stop.is_set():
            try:
                ran = self.run_once()
            except TicketbridgeError as exc:
                log.error("worker %s: %s", self.name, exc)
                ran = 0
            if not ran:
                wake.wait(idle)
                wake.clear()

    def run_job(self, job: Job) -> None:
        """Process one claimed job and settle it."""
        outcome = self._process(job)
        if outcome is None:
            return
        self.store.complete_job(job.id, self.name)
        if self.report:
            self.report(job, outcome, outcome.reason)

    def _process(self, job: Job) -> Outcome | None:
        """Run the job under its lease's heartbeat; settle a failure and return None."""
        beat = self._beat()
        beat.watch(job)
        try:
            outcome = self.executor.process(job)
        except Exception as exc:  # every failure is settled below, none escapes silently
            beat.release()
            self._settle_failure(job, exc)
            return None
        beat.release()
        return outcome

    def _beat(self) -> _Heartbeat:
        beat: _Heartbeat | None = getattr(self._beats, "beat", None)
        if beat is None:
            beat = _Heartbeat(self.store, self.name, self.lease, self.clock)
            self._beats.beat = beat
        return beat

    def _settle_failure(self, job: Job, exc: Exception) -> None:
        now = self.clock()
        decision = self.policy.decide(exc, attempts=job.attempts, now=now, jitter=random.random())
        if not isinstance(exc, TicketbridgeError):
            detail = "".join(traceback.format_exception(exc)).strip()
            log.error("job %s failed unexpectedly:\n%s", job.id, detail)
        else:
            detail = f"{type(exc).__name__}: {exc}"
        helpdesk = exc.helpdesk if isinstance(exc, RemoteError) else "ticketbridge"
        key_helpdesk, _, key_id = job.key.partition(":")
        if isinstance(decision, Bury):
            self.store.bury_job(job.id, self.name, error=f"{decision.reason}\n{detail}".strip())
            if job.inbox_id is not None:
                self.store.set_inbox_state(job.inbox_id, "dead", decision.reason)
            summary = f"dead letter (job {job.id}): {decision.reason}"
        else:
            self.store.retry_job_later(job.id, self.name, error=detail, not_before=decision.when)
            summary = f"retry job {job.id} at {decision.when:%H:%M:%S}: {exc}"
        log.warning("%s: %s", helpdesk, summary)
        self.store.audit(
            helpdesk=key_helpdesk,
            ticket_id=key_id or job.key,
            kind="error",
            summary=summary,
            detail={"error": detail[:4000]},
            inbox_id=job.inbox_id,
            job_id=job.id,
            at=now,
        )
        if self.report:
            self.report(job, None, summary)


class _Heartbeat:
    """Renews the lease of the job being run every third of the lease's length.

    One daemon thread per worker (and thread running it), started with its first job:
    :meth:`watch` hands it the job that starts, :meth:`release` takes it back once the
    job is over (waiting for a renewal in progress, so none happens after it returns).
    Between jobs the thread sleeps; after :data:`_IDLE_SECONDS` without a job it ends,
    and the next :meth:`watch` starts a new one.
    """

    def __init__(self, store: Store, worker: str, lease: timedelta, clock: Clock) -> None:
        self._store, self._worker = store, worker
        self._lease, self._clock = lease, clock
        self._changed = threading.Condition()
        self._job: Job | None = None
        self._generation = 0  # counts watch() calls: a renewal is for one job only
        self._thread: threading.Thread | None = None

    def watch(self, job: Job) -> None:
        with self._changed:
            self._job = job
            self._generation += 1
            self._changed.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"heartbeat-{self._worker}", daemon=True
                )
                self._thread.start()

    def release(self) -> None:
        with self._changed:  # a renewal runs under this lock: it is over once we hold it
            self._job = None
            self._generation += 1
            self._changed.notify()

    def _busy(self) -> bool:
        return self._job is not None

    def _moved_on(self, generation: int) -> bool:
        return self._generation != generation

    def _run(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            with self._changed:
                if self._job is None:
                    self._changed.wait_for(self._busy, _IDLE_SECONDS)
                    if self._job is None:  # idle for a while: end; watch() starts another
                        self._thread = None
                        return
                generation = self._generation
                # Sleep one interval, unless the job ends (or another starts) before.
                self._changed.wait_for(partial(self._moved_on, generation), interval)
                if self._moved_on(generation) or self._job is None:
                    continue
                job = self._job
                try:
                    alive = self._store.heartbeat(
                        job.id, self._worker, lease=self._lease, now=self._clock()
                    )
                except TicketbridgeError as exc:
                    log.warning("job %s: heartbeat failed: %s", job.id, exc)
                    continue
                if not alive:
                    log.warning("job %s: lease lost", job.id)
                    self._job = None  # stop renewing it until the next job
