"""The worker loop: one heartbeat thread per worker keeps each running job's lease alive."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from tests.support.databases import make_sqlite_url
from ticketbridge.exchange.retry import RetryPolicy
from ticketbridge.runtime.executor import Executor
from ticketbridge.runtime.outcome import Outcome
from ticketbridge.runtime.worker import Worker
from ticketbridge.store import Job, JobState, Store

WORKER = "heartbeat-test-worker"
IDLE_WORKER = "idle-heartbeat-test-worker"


class SlowExecutor:
    """Takes longer than a lease for every job; records the lease seen at the end."""

    def __init__(self, store: Store, seconds: float, worker: str = WORKER) -> None:
        self.store, self.seconds, self.worker = store, seconds, worker
        self.leases: list[tuple[Job, Job]] = []  # (as claimed, as it stands at the end)
        self.heartbeat_threads: list[int] = []

    def process(self, job: Job) -> Outcome:
        time.sleep(self.seconds)
        self.leases.append((job, self.store.job(job.id)))
        self.heartbeat_threads.append(
            sum(t.name == f"heartbeat-{self.worker}" for t in threading.enumerate())
        )
        return Outcome("applied", "done slowly")


def test_one_heartbeat_thread_renews_the_lease_of_each_job(tmp_path: Path) -> None:
    store = Store.open(make_sqlite_url(tmp_path))
    try:
        for n in range(3):
            store.enqueue(kind="trigger", key=f"ggus:{n}")
        executor = SlowExecutor(store, 0.5)
        worker = Worker(
            store,
            cast(Executor, executor),
            policy=RetryPolicy(),
            lease=timedelta(seconds=0.6),  # renewed every 0.2 s
            name=WORKER,
        )
        reports: list[Any] = []
        worker.report = lambda job, outcome, reason: reports.append((job.id, reason))

        assert worker.run_once() == 3

        for claimed, at_end in executor.leases:
            assert claimed.lease_until is not None and at_end.lease_until is not None
            assert at_end.lease_until > claimed.lease_until  # renewed while it ran
            assert at_end.state is JobState.RUNNING and at_end.lease_owner == WORKER
        assert executor.heartbeat_threads == [1, 1, 1]  # one thread, kept between jobs
        assert [reason for _, reason in reports] == ["done slowly"] * 3
        assert store.job_counts()[JobState.DONE].count == 3
    finally:
        store.close()


def test_an_idle_heartbeat_thread_ends_and_the_next_job_starts_another(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from ticketbridge.runtime import worker as worker_module

    monkeypatch.setattr(worker_module, "_IDLE_SECONDS", 0.1)
    executor_name = IDLE_WORKER
    store = Store.open(make_sqlite_url(tmp_path))
    try:
        executor = SlowExecutor(store, 0.0, executor_name)
        worker = Worker(store, cast(Executor, executor), policy=RetryPolicy(), name=IDLE_WORKER)

        def alive() -> int:
            return sum(t.name == f"heartbeat-{IDLE_WORKER}" for t in threading.enumerate())

        for n in range(2):
            store.enqueue(kind="trigger", key=f"ggus:{n}")
            assert worker.run_once() == 1
            deadline = time.monotonic() + 5
            while alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert alive() == 0
        assert executor.heartbeat_threads == [1, 1]
    finally:
        store.close()
