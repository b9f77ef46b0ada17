"""Inbox: a trigger and its job are stored together, once, and end in a visible state."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ticketbridge.errors import NotFound
from ticketbridge.store import InboxState, JobState, ReceiveResult, Store
from ticketbridge.store import jobs as jobs_module

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def mail(n: int) -> bytes:
    head = f"Message-ID: <{n}@ggus.example>\r\nSubject: GGUS-Ticket-ID: #{n}\r\n"
    return f"{head}\r\nbody {n}\r\n".encode()


def receive(
    store: Store, n: int, *, key: str | None = None, message_id: str | None = None
) -> ReceiveResult:
    return store.receive(
        source="imap-ggus",
        raw=mail(n),
        message_id=f"<{n}@ggus.example>" if message_id is None else message_id,
        key=key,
        received_at=T0,
    )


def test_receive_stores_entry_and_pending_trigger_job(store: Store) -> None:
    result = receive(store, 1, key="ggus:40637")

    assert not result.duplicate
    assert result.job_id is not None
    entry = store.inbox_entry(result.inbox_id)
    assert entry.raw == mail(1)
    assert entry.state is InboxState.RECEIVED
    assert (entry.helpdesk, entry.ticket_id) == ("ggus", "40637")
    assert entry.received_at == T0
    assert entry.processed_at is None
    (job,) = store.list_jobs()
    assert (job.id, job.kind, job.key, job.state, job.inbox_id, job.attempts) == (
        result.job_id,
        "trigger",
        "ggus:40637",
        JobState.PENDING,
        result.inbox_id,
        0,
    )
    (event,) = store.timeline("ggus", "40637")
    assert (event.kind, event.inbox_id, event.job_id, event.at) == (
        "trigger",
        result.inbox_id,
        result.job_id,
        T0,
    )


def test_receive_without_key_keys_the_job_by_inbox_id(store: Store) -> None:
    result = receive(store, 1)

    assert store.job(result.job_id or 0).key == f"inbox:{result.inbox_id}"
    assert store.inbox_entry(result.inbox_id).helpdesk is None
    assert store.audit_events() == []  # no ticket known: no trigger event yet


def test_receive_is_atomic_when_the_job_cannot_be_stored(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_enqueue(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(jobs_module, "enqueue", broken_enqueue)
    with pytest.raises(RuntimeError, match="disk full"):
        receive(store, 1, key="ggus:1")

    assert store.list_inbox() == []
    assert store.list_jobs() == []


def test_duplicate_message_id_inserts_nothing(store: Store) -> None:
    first = receive(store, 1, message_id="<same@ggus.example>")
    again = receive(store, 2, message_id="<same@ggus.example>")

    assert again == ReceiveResult(first.inbox_id, None, True)
    assert len(store.list_inbox()) == 1
    assert len(store.list_jobs()) == 1


def test_duplicate_digest_inserts_nothing(store: Store) -> None:
    first = receive(store, 1, message_id="<one@x>")
    again = receive(store, 1, message_id="<other@x>")

    assert again == ReceiveResult(first.inbox_id, None, True)
    assert len(store.list_jobs()) == 1


def test_mail_without_message_id_is_deduplicated_by_digest_only(store: Store) -> None:
    first = receive(store, 1, message_id="")
    second = receive(store, 2, message_id="")
    again = receive(store, 1, message_id="")

    assert not first.duplicate and not second.duplicate
    assert again == ReceiveResult(first.inbox_id, None, True)
    assert store.inbox_entry(first.inbox_id).message_id is None


def test_racing_receivers_store_one_entry_and_one_job(store: Store) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def race(_: int) -> ReceiveResult:
        barrier.wait()
        return receive(store, 7, key="ggus:7")

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(race, range(threads)))

    assert sum(not r.duplicate for r in results) == 1
    assert {r.inbox_id for r in results} == {results[0].inbox_id}
    assert len(store.list_inbox()) == 1
    assert len(store.list_jobs()) == 1


def test_racing_receivers_with_different_message_ids_but_same_bytes(store: Store) -> None:
    threads = 6
    barrier = threading.Barrier(threads)

    def race(n: int) -> ReceiveResult:
        barrier.wait()
        return receive(store, 9, message_id=f"<copy-{n}@relay>")

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(race, range(threads)))

    assert sum(not r.duplicate for r in results) == 1
    assert len(store.list_inbox()) == 1


def test_ignored_mail_is_stored_with_reason_and_no_job(store: Store) -> None:
    result = store.record_ignored(
        source="imap-ggus",
        raw=mail(3),
        message_id="<3@ggus.example>",
        reason="Auto-Submitted: auto-replied",
        received_at=T0,
    )
    again = store.record_ignored(
        source="imap-ggus",
        raw=mail(3),
        message_id="<3@ggus.example>",
        reason="Auto-Submitted: auto-replied",
        received_at=T0,
    )

    assert result.job_id is None and not result.duplicate
    assert again == ReceiveResult(result.inbox_id, None, True)
    entry = store.inbox_entry(result.inbox_id)
    assert entry.state is InboxState.IGNORED
    assert entry.reason == "Auto-Submitted: auto-replied"
    assert entry.processed_at == T0
    assert store.list_jobs() == []
    assert [e.kind for e in store.audit_events(inbox_id=result.inbox_id)] == ["ignored"]


def test_set_inbox_state_records_outcome_and_ticket(store: Store) -> None:
    result = receive(store, 1)

    store.set_inbox_state(
        result.inbox_id, InboxState.SKIPPED, reason="our own echo", helpdesk="ggus", ticket_id="5"
    )

    entry = store.inbox_entry(result.inbox_id)
    assert (entry.state, entry.reason, entry.helpdesk, entry.ticket_id) == (
        InboxState.SKIPPED,
        "our own echo",
        "ggus",
        "5",
    )
    assert entry.processed_at is not None and entry.processed_at.tzinfo is UTC


def test_list_inbox_newest_first_by_state(store: Store) -> None:
    ids = [receive(store, n).inbox_id for n in range(3)]
    store.set_inbox_state(ids[1], InboxState.APPLIED)

    assert [e.id for e in store.list_inbox()] == ids[::-1]
    assert [e.id for e in store.list_inbox(InboxState.RECEIVED)] == [ids[2], ids[0]]
    assert [e.id for e in store.list_inbox(limit=1)] == [ids[2]]
    assert [e.raw for e in store.list_inbox("received")] == [mail(2), mail(0)]


def test_unknown_inbox_entry_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.inbox_entry(999)
    with pytest.raises(NotFound):
        store.set_inbox_state(999, InboxState.APPLIED)
    with pytest.raises(NotFound):
        store.quarantine(999, "bad")


def test_times_come_back_in_utc_and_naive_times_are_refused(store: Store) -> None:
    cest = timezone(timedelta(hours=2))
    result = store.receive(
        source="s",
        raw=b"x",
        message_id="<x@y>",
        key=None,
        received_at=datetime(2026, 6, 1, 14, 0, tzinfo=cest),
    )

    received = store.inbox_entry(result.inbox_id).received_at
    assert received == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert received.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetime"):
        store.receive(
            source="s", raw=b"y", message_id="<y@y>", key=None, received_at=datetime(2026, 6, 1)
        )


def test_quarantine_lists_until_released(store: Store) -> None:
    bad = receive(store, 1, key="ggus:1")
    good = receive(store, 2)

    entry = store.quarantine(bad.inbox_id, "GHD_Priority 'urgentest' is not a priority")

    assert entry.inbox_id == bad.inbox_id
    assert (entry.source, entry.helpdesk, entry.ticket_id) == ("imap-ggus", "ggus", "1")
    assert entry.released_at is None
    assert store.list_quarantine() == [entry]
    inbox_entry = store.inbox_entry(bad.inbox_id)
    assert inbox_entry.state is InboxState.QUARANTINED
    assert inbox_entry.reason == "GHD_Priority 'urgentest' is not a priority"
    assert [e.kind for e in store.timeline("ggus", "1")] == ["trigger", "quarantine"]
    assert store.inbox_entry(good.inbox_id).state is InboxState.RECEIVED

    store.release_quarantine(bad.inbox_id)

    assert store.list_quarantine() == []
    (released,) = store.list_quarantine(include_released=True)
    assert released.released_at is not None
    assert store.inbox_entry(bad.inbox_id).state is InboxState.QUARANTINED  # how it ended
    assert [e.kind for e in store.timeline("ggus", "1")] == ["trigger", "quarantine", "release"]
    with pytest.raises(NotFound):
        store.release_quarantine(bad.inbox_id)


def test_replay_releases_quarantine_and_queues_behind_the_ticket(store: Store) -> None:
    bad = receive(store, 1, key="ggus:1")
    store.quarantine(bad.inbox_id, "broken MIME")
    later = receive(store, 2, key="ggus:1")

    job_id = store.replay_inbox(bad.inbox_id)

    assert store.list_quarantine() == []
    entry = store.inbox_entry(bad.inbox_id)
    assert (entry.state, entry.reason, entry.processed_at) == (InboxState.RECEIVED, None, None)
    replay = store.job(job_id)
    assert (replay.kind, replay.key, replay.inbox_id, replay.state) == (
        "replay",
        "ggus:1",
        bad.inbox_id,
        JobState.PENDING,
    )
    assert job_id > (later.job_id or 0)  # it queues behind what arrived meanwhile
    assert store.timeline("ggus", "1")[-1].kind == "replay"


def test_replay_of_unquarantined_entry_and_unknown_entry(store: Store) -> None:
    plain = receive(store, 1)
    store.set_inbox_state(plain.inbox_id, InboxState.APPLIED)

    job_id = store.replay_inbox(plain.inbox_id, not_before=T0)

    assert store.job(job_id).key == f"inbox:{plain.inbox_id}"
    assert store.job(job_id).not_before == T0
    assert store.inbox_entry(plain.inbox_id).state is InboxState.RECEIVED
    with pytest.raises(NotFound):
        store.replay_inbox(999)
