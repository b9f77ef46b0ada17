"""Jobs: claimed one at a time per key, in arrival order, with leases."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.databases import make_sqlite_url
from ticketbridge.errors import NotFound
from ticketbridge.store import InboxState, Job, JobCount, JobState, Store
from ticketbridge.store.schema import jobs as jobs_table

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def claim(store: Store, worker: str = "w1", now: datetime = T0) -> Job | None:
    return store.claim_job(worker, lease=LEASE, now=now)


def claimed(store: Store, worker: str = "w1", now: datetime = T0) -> Job:
    job = claim(store, worker, now)
    assert job is not None
    return job


def test_claim_takes_oldest_and_sets_lease(store: Store) -> None:
    first = store.enqueue(kind="trigger", key="ggus:1")
    store.enqueue(kind="trigger", key="ggus:2")

    job = claimed(store)

    assert job.id == first
    assert (job.state, job.attempts, job.lease_owner, job.lease_until) == (
        JobState.RUNNING,
        1,
        "w1",
        T0 + LEASE,
    )
    assert store.job(first) == job


def test_claim_returns_none_when_nothing_to_do(store: Store) -> None:
    assert claim(store) is None


def test_later_job_of_a_key_waits_for_the_running_one_other_keys_flow(store: Store) -> None:
    a1 = store.enqueue(kind="trigger", key="ggus:1")
    a2 = store.enqueue(kind="trigger", key="ggus:1")
    b1 = store.enqueue(kind="trigger", key="ggus:2")

    assert claimed(store, "w1").id == a1
    assert claimed(store, "w2").id == b1
    assert claim(store, "w3") is None

    assert store.complete_job(a1, "w1")
    assert claimed(store, "w3").id == a2


def test_later_job_waits_behind_a_retrying_one(store: Store) -> None:
    a1 = store.enqueue(kind="trigger", key="ggus:1")
    a2 = store.enqueue(kind="trigger", key="ggus:1")
    b1 = store.enqueue(kind="trigger", key="ggus:2")
    claimed(store)
    assert store.retry_job_later(
        a1, "w1", error="GGUS SOAP 503", not_before=T0 + timedelta(minutes=1)
    )

    assert claimed(store, now=T0).id == b1  # a1 is not due, a2 must not overtake it
    assert claim(store, now=T0) is None

    again = claimed(store, now=T0 + timedelta(minutes=1))
    assert (again.id, again.attempts, again.last_error) == (a1, 2, "GGUS SOAP 503")
    assert store.complete_job(a1, "w1")
    assert claimed(store, now=T0 + timedelta(minutes=1)).id == a2


def test_dead_job_holds_back_its_key_until_requeued(store: Store) -> None:
    a1 = store.enqueue(kind="trigger", key="ggus:1")
    a2 = store.enqueue(kind="trigger", key="ggus:1")
    b1 = store.enqueue(kind="trigger", key="ggus:2")
    claimed(store)
    assert store.bury_job(a1, "w1", error="RemoteRejected: unknown ticket")

    assert claimed(store).id == b1
    assert claim(store) is None
    dead = store.job(a1)
    assert (dead.state, dead.last_error, dead.lease_owner) == (
        JobState.DEAD,
        "RemoteRejected: unknown ticket",
        None,
    )

    assert store.requeue(a1)
    requeued = store.job(a1)
    assert (requeued.state, requeued.attempts) == (JobState.PENDING, 0)
    assert claimed(store).id == a1
    assert store.complete_job(a1, "w1")
    assert claimed(store).id == a2


def test_done_jobs_do_not_hold_back_later_ones(store: Store) -> None:
    a1 = store.enqueue(kind="trigger", key="k")
    a2 = store.enqueue(kind="trigger", key="k")
    claimed(store)
    store.complete_job(a1, "w1")

    assert claimed(store).id == a2


def test_not_before_delays_a_job(store: Store) -> None:
    job_id = store.enqueue(kind="replay", key="k", not_before=T0 + timedelta(hours=1))

    assert claim(store, now=T0) is None
    assert claimed(store, now=T0 + timedelta(hours=1)).id == job_id


def test_expired_lease_is_reclaimed_and_old_worker_loses_it(store: Store) -> None:
    job_id = store.enqueue(kind="trigger", key="k")
    claimed(store, "w1", T0)

    assert claim(store, "w2", T0 + LEASE) is None  # lease still valid at its last instant
    later = T0 + LEASE + timedelta(seconds=1)
    taken = claimed(store, "w2", later)

    assert (taken.id, taken.attempts, taken.lease_owner) == (job_id, 2, "w2")
    assert not store.heartbeat(job_id, "w1", lease=LEASE, now=later)
    assert not store.complete_job(job_id, "w1")
    assert not store.retry_job_later(job_id, "w1", error="x", not_before=later)
    assert not store.bury_job(job_id, "w1", error="x")
    assert store.job(job_id).state is JobState.RUNNING
    assert store.complete_job(job_id, "w2")
    assert store.job(job_id).state is JobState.DONE


def test_heartbeat_extends_the_lease(store: Store) -> None:
    job_id = store.enqueue(kind="trigger", key="k")
    claimed(store, "w1", T0)
    beat = T0 + timedelta(minutes=4)

    assert store.heartbeat(job_id, "w1", lease=LEASE, now=beat)

    assert store.job(job_id).lease_until == beat + LEASE
    assert claim(store, "w2", T0 + LEASE + timedelta(seconds=1)) is None


def test_heartbeat_of_finished_job_reports_lost_lease(store: Store) -> None:
    job_id = store.enqueue(kind="trigger", key="k")
    claimed(store)
    store.complete_job(job_id, "w1")

    assert not store.heartbeat(job_id, "w1", lease=LEASE, now=T0)


def test_bury_marks_the_trigger_dead_and_requeue_revives_it(store: Store) -> None:
    result = store.receive(source="s", raw=b"m", message_id="<m@x>", key="ggus:9", received_at=T0)
    job_id = result.job_id or 0
    claimed(store)

    store.bury_job(job_id, "w1", error="RemoteAuthFailed: ggus")

    entry = store.inbox_entry(result.inbox_id)
    assert (entry.state, entry.reason) == (InboxState.DEAD, "RemoteAuthFailed: ggus")
    assert store.requeue_dead(key="ggus:9") == 1
    entry = store.inbox_entry(result.inbox_id)
    assert (entry.state, entry.reason, entry.processed_at) == (InboxState.RECEIVED, None, None)
    assert store.job(job_id).state is JobState.PENDING


def test_requeue_dead_filters_and_requeue_refuses_other_states(store: Store) -> None:
    ids = [store.enqueue(kind=kind, key=f"k{n}") for n, kind in enumerate(["trigger", "replay"])]
    for _ in ids:
        job = claimed(store)
        store.bury_job(job.id, "w1", error="boom")
    running = store.enqueue(kind="trigger", key="k-run")
    claimed(store)

    assert store.requeue_dead(kind="replay") == 1
    assert [j.id for j in store.list_jobs((JobState.DEAD,))] == [ids[0]]
    assert not store.requeue(running)
    with pytest.raises(NotFound):
        store.requeue(999)
    assert store.requeue_dead() == 1
    assert store.list_jobs((JobState.DEAD,)) == []


def test_counts(store_url: str) -> None:
    clock_now = T0 + timedelta(minutes=10)
    store = Store.open(store_url, clock=lambda: clock_now)
    try:
        clock_now = T0
        first = store.enqueue(kind="trigger", key="a")
        clock_now = T0 + timedelta(minutes=2)
        store.enqueue(kind="trigger", key="b")
        store.enqueue(kind="trigger", key="c")
        claimed(store, now=clock_now)
        store.complete_job(first, "w1")
        clock_now = T0 + timedelta(minutes=10)

        counts = store.job_counts()

        assert counts == {
            JobState.PENDING: JobCount(2, timedelta(minutes=8)),
            JobState.RUNNING: JobCount(0, None),
            JobState.RETRYING: JobCount(0, None),
            JobState.DONE: JobCount(1, timedelta(minutes=10)),
            JobState.DEAD: JobCount(0, None),
        }
        assert store.pending_count() == 2
        assert [j.key for j in store.list_jobs((JobState.PENDING,), key="c")] == ["c"]
    finally:
        store.close()


def _work_concurrently(stores: list[Store], workers_per_store: int) -> None:
    """Workers claim and complete until every job is done; assert the ordering rules."""
    guard = threading.Lock()
    busy_keys: set[str] = set()
    claims: list[int] = []
    order: dict[str, list[int]] = defaultdict(list)
    violations: list[str] = []
    errors: list[BaseException] = []

    def work(store: Store, name: str) -> None:
        try:
            while True:
                job = store.claim_job(name, lease=timedelta(hours=1), now=datetime.now(UTC))
                if job is None:
                    if store.pending_count() == 0:
                        return
                    time.sleep(0.001)
                    continue
                with guard:
                    if job.key in busy_keys:
                        violations.append(f"{name} got {job.key} while another worker held it")
                    busy_keys.add(job.key)
                    claims.append(job.id)
                    order[job.key].append(job.id)
                with guard:
                    busy_keys.discard(job.key)  # before completing, so no false alarm
                if not store.complete_job(job.id, name):
                    violations.append(f"{name} lost job {job.id}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(store, f"worker-{s}-{n}"))
        for s, store in enumerate(stores)
        for n in range(workers_per_store)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert violations == []
    assert len(claims) == len(set(claims)), "a job was claimed twice"
    for key, ids in order.items():
        assert ids == sorted(ids), f"jobs of {key} ran out of order: {ids}"
    return None


def _enqueue_many(store: Store, keys: int, per_key: int) -> list[int]:
    return [
        store.enqueue(kind="trigger", key=f"ggus:{k}") for _ in range(per_key) for k in range(keys)
    ]


def test_concurrent_claimers_never_share_a_job_or_a_key(store: Store) -> None:
    ids = _enqueue_many(store, keys=5, per_key=8)

    _work_concurrently([store], workers_per_store=6)

    assert {j.id for j in store.list_jobs((JobState.DONE,), limit=1000)} == set(ids)
    assert all(j.attempts == 1 for j in store.list_jobs(limit=1000))


def test_concurrent_claimers_on_separate_engines(store_url: str) -> None:
    stores = [Store.open(store_url) for _ in range(2)]
    try:
        ids = _enqueue_many(stores[0], keys=4, per_key=6)

        _work_concurrently(stores, workers_per_store=3)

        assert {j.id for j in stores[1].list_jobs((JobState.DONE,), limit=1000)} == set(ids)
    finally:
        for store in stores:
            store.close()


def test_no_job_is_handed_out_while_another_job_of_its_key_holds_a_lease(store: Store) -> None:
    # Only reachable by hand-editing (the API never runs a later job first), but the claim
    # must still never give out two jobs of one key at once.
    first = store.enqueue(kind="trigger", key="k")
    second = store.enqueue(kind="trigger", key="k")
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(jobs_table)
            .where(jobs_table.c.id == second)
            .values(state="running", lease_owner="w0", lease_until=T0 + LEASE)
        )

    assert claim(store, now=T0) is None
    assert claimed(store, now=T0 + LEASE + timedelta(seconds=1)).id == first


def test_states_may_be_given_as_strings(store: Store) -> None:
    job_id = store.enqueue(kind="trigger", key="k")

    assert [j.id for j in store.list_jobs(["pending"])] == [job_id]
    with pytest.raises(ValueError):
        store.list_jobs(["finished"])


# --- head of line: claims stay cheap however many jobs there are ----------------------


def _heads(store: Store) -> dict[str, list[int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(jobs_table.c.key, jobs_table.c.id).where(jobs_table.c.head)
        ).all()
    heads: dict[str, list[int]] = defaultdict(list)
    for key, job_id in rows:
        heads[key].append(job_id)
    return dict(heads)


def _expected_heads(store: Store) -> dict[str, list[int]]:
    first: dict[str, int] = {}
    for job in store.list_jobs(limit=100_000):
        if job.state is not JobState.DONE and job.key not in first:
            first[job.key] = job.id
    return {key: [job_id] for key, job_id in first.items()}


def test_each_key_has_exactly_its_first_unfinished_job_as_head(store: Store) -> None:
    a1 = store.enqueue(kind="trigger", key="a")
    a2 = store.enqueue(kind="trigger", key="a")
    b1 = store.enqueue(kind="trigger", key="b")
    assert _heads(store) == {"a": [a1], "b": [b1]}

    assert store.complete_job(claimed(store).id, "w1")  # a1
    assert _heads(store) == {"a": [a2], "b": [b1]}

    job = claimed(store)
    assert job.id == a2
    assert store.bury_job(job.id, "w1", error="boom")  # dead: still heads its line
    a3 = store.enqueue(kind="trigger", key="a")
    assert _heads(store) == {"a": [a2], "b": [b1]}
    assert store.requeue(a2)
    order = []
    for _ in range(3):
        job = claimed(store)
        order.append(job.id)
        assert store.complete_job(job.id, "w1")
    assert order == [a2, b1, a3]
    assert _heads(store) == {}
    b2 = store.enqueue(kind="trigger", key="b")
    assert _heads(store) == {"b": [b2]} == _expected_heads(store)


def test_claim_work_does_not_grow_with_done_or_waiting_jobs(tmp_path: Path) -> None:
    """Counts SQLite's virtual-machine steps: a measure of work that ignores the clock."""
    store = Store.open(make_sqlite_url(tmp_path))

    def steps_of_one_claim() -> int:
        ticks = [0]
        with store.transaction() as tx:
            raw = tx.connection.connection.dbapi_connection
            assert raw is not None
            raw.set_progress_handler(lambda: ticks.__setitem__(0, ticks[0] + 1) or 0, 1)
            job = tx.claim_job("w", lease=LEASE, now=T0)
            raw.set_progress_handler(None, 0)
        assert job is not None
        with store.transaction() as tx:
            assert tx.complete_job(job.id, "w")
        return ticks[0]

    def add(n: int, **values: object) -> None:
        with store.engine.begin() as conn:
            conn.execute(sa.insert(jobs_table), [
                {"kind": "trigger", "state": "done", "attempts": 1, "created_at": T0,
                 "updated_at": T0, **values, "key": f"{values.get('key', 'old')}:{i}"}
                for i in range(n)])

    try:
        add(50)
        store.enqueue(kind="trigger", key="blocked")
        assert claimed(store).key == "blocked"  # now running: it holds its key back
        for _ in range(4):
            store.enqueue(kind="trigger", key="fresh")
        small = steps_of_one_claim()
        # 20,000 more done jobs, and 2,000 jobs waiting behind the running one.
        add(20_000)
        with store.engine.begin() as conn:
            conn.execute(sa.insert(jobs_table), [
                {"kind": "trigger", "key": "blocked", "state": "pending", "attempts": 0,
                 "created_at": T0, "updated_at": T0} for _ in range(2_000)])
        large = steps_of_one_claim()
        # A B-tree one level deeper may cost a few steps more; a scan would cost thousands.
        assert large <= small + 50, (small, large)
    finally:
        store.close()


def test_concurrent_enqueues_and_completions_of_one_key_leave_no_job_behind(
    store: Store,
) -> None:
    """Enqueuing while the head completes must never leave a job without a head flag."""
    total = 60
    store.enqueue(kind="trigger", key="hot")
    enqueued = [1]
    done: list[int] = []
    stop = threading.Event()

    def enqueuer() -> None:
        while enqueued[0] < total:
            store.enqueue(kind="trigger", key="hot")
            enqueued[0] += 1
            time.sleep(0.001)

    def worker(name: str) -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            job = store.claim_job(name, lease=LEASE, now=datetime.now(UTC))
            if job is None:
                if len(done) >= total:
                    return
                time.sleep(0.001)
                continue
            assert store.complete_job(job.id, name)
            done.append(job.id)

    threads = [threading.Thread(target=enqueuer)] + [
        threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    stop.set()
    assert sorted(done) == done  # one key: strictly in arrival order
    assert len(done) == total
    assert _heads(store) == {} == _expected_heads(store)


def test_complete_and_claim_is_completion_then_claim(store: Store) -> None:
    first = store.enqueue(kind="trigger", key="ggus:1")
    second = store.enqueue(kind="trigger", key="ggus:1")  # waits behind the first
    job = claimed(store)
    assert job.id == first and claim(store, "w2") is None

    done, following = store.complete_and_claim(job.id, "w1", lease=LEASE, now=T0)

    assert done
    assert following is not None and following.id == second
    assert store.job(first).state is JobState.DONE
    assert (following.state, following.lease_owner) == (JobState.RUNNING, "w1")
    # Nothing left: the completion is still made, and no job is claimed.
    assert store.complete_and_claim(second, "w1", lease=LEASE, now=T0) == (True, None)
    # A worker that lost its job completes nothing, but may still claim.
    assert store.complete_and_claim(second, "w1", lease=LEASE, now=T0) == (False, None)


def test_threads_of_one_process_queue_for_the_sqlite_write_lock(tmp_path: Path) -> None:
    """Writers of one process wait for each other, whatever the busy timeout says."""
    store = Store.open(make_sqlite_url(tmp_path))
    try:
        errors: list[BaseException] = []

        def write(n: int) -> None:
            try:
                for i in range(40):
                    with store.transaction() as tx:
                        tx.enqueue(kind="trigger", key=f"ggus:{n}-{i}")
                        time.sleep(0.001)  # hold the write lock for a while
            except BaseException as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store.pending_count() == 160
    finally:
        store.close()
