"""Claim jobs, run them through the executor, and settle each one: done, retry or dead.

A worker holds a lease on the job it runs and renews it from a heartbeat thread, so a
worker that dies lets the job go to another one when the lease expires. Failures are
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

from ticketbridge.errors import RemoteError, TicketbridgeError
from ticketbridge.exchange.retry import Bury, RetryPolicy
from ticketbridge.runtime.executor import Executor
from ticketbridge.runtime.outcome import Clock, Outcome, utcnow
from ticketbridge.store import Job, Store

log = logging.getLogger(__name__)

Report = Callable[[Job, Outcome | None, str], None]


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

    def run_once(self) -> int:
        """Run every job that is claimable now; return how many were run."""
        # Claims compare with the time the pass started, so a job that fails and is
        # rescheduled during this pass waits for the next pass instead of spinning here.
        started = self.clock()
        count = 0
        while (job := self.store.claim_job(self.name, lease=self.lease, now=started)) is not None:
            self.run_job(job)
            count += 1
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
        beat = _Heartbeat(self.store, job, self.name, self.lease, self.clock)
        beat.start()
        try:
            outcome = self.executor.process(job)
        except Exception as exc:  # every failure is settled below, none escapes silently
            beat.stop()
            self._settle_failure(job, exc)
            return
        beat.stop()
        self.store.complete_job(job.id, self.name)
        if self.report:
            self.report(job, outcome, outcome.reason)

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
    """Renews a job's lease every third of its length while the job runs."""

    def __init__(self, store: Store, job: Job, worker: str, lease: timedelta, clock: Clock) -> None:
        self._store, self._job, self._worker = store, job, worker
        self._lease, self._clock = lease, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = self._lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                if not self._store.heartbeat(
                    self._job.id, self._worker, lease=self._lease, now=self._clock()
                ):
                    log.warning("job %s: lease lost", self._job.id)
                    return
            except TicketbridgeError as exc:
                log.warning("job %s: heartbeat failed: %s", self._job.id, exc)
