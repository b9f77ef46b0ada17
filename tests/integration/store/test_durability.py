"""What is committed with an fsync (SQLite ``synchronous=FULL``) and what is not.

A power loss cannot be simulated here; these tests check the mechanism: which commits run
at which synchronous level, that the level never changes inside a transaction, and that
:meth:`Store.sync` fsyncs the WAL. docs/adr/0005-sqlite-durability.md has the reasoning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.support.databases import make_sqlite_url
from ticketbridge.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(make_sqlite_url(tmp_path))
    yield store
    store.close()


@pytest.fixture
def statements(sqlite_store: Store) -> list[str]:
    """Every statement the store sends, PRAGMA and BEGIN included."""
    seen: list[str] = []

    @event.listens_for(sqlite_store.engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    return seen


def _levels(statements: list[str]) -> list[str]:
    """The synchronous level each BEGIN IMMEDIATE ran at, in order."""
    level, out = "NORMAL", []
    for statement in statements:
        if statement.startswith("PRAGMA synchronous = "):
            level = statement.rsplit(" ", 1)[1]
        elif statement == "BEGIN IMMEDIATE":
            out.append(level)
    return out


def _receive(store: Any, n: int) -> Any:
    return store.receive(source="s", raw=f"m{n}".encode(), message_id=f"<m{n}@x>",
                         key=f"ggus:{n}", received_at=T0)


def test_inbox_writes_commit_with_fsync_other_writes_without(
    sqlite_store: Store, statements: list[str]
) -> None:
    job = _receive(sqlite_store, 1).job_id
    sqlite_store.record_ignored(source="s", raw=b"auto", message_id="<a@x>",
                                reason="auto-reply", received_at=T0)
    claimed = sqlite_store.claim_job("w", lease=timedelta(minutes=5), now=T0)
    assert claimed is not None and claimed.id == job
    sqlite_store.complete_job(job, "w")
    sqlite_store.audit(helpdesk="ggus", ticket_id="1", kind="note", summary="x", at=T0)
    _receive(sqlite_store, 2)

    assert _levels(statements) == ["FULL", "FULL", "NORMAL", "NORMAL", "NORMAL", "FULL"]
    # Never changed inside a transaction (SQLite refuses that): always just before BEGIN.
    for index, statement in enumerate(statements):
        if statement.startswith("PRAGMA synchronous"):
            assert statements[index + 1] == "BEGIN IMMEDIATE"


def test_a_pending_link_is_durable_an_active_one_is_not(
    sqlite_store: Store, statements: list[str]
) -> None:
    sqlite_store.create_link(exchange="e", a_helpdesk="ggus", a_id="1", b_helpdesk="goc")
    sqlite_store.create_link(exchange="e", a_helpdesk="ggus", a_id="2", b_helpdesk="goc",
                             b_id="9", state="active")
    assert _levels(statements) == ["FULL", "NORMAL"]


def test_the_level_is_the_real_one_inside_transactions(sqlite_store: Store) -> None:
    for durable, expected in ((True, 2), (False, 1), (True, 2)):
        with sqlite_store.transaction(durable=durable) as tx:
            level = tx.connection.exec_driver_sql("PRAGMA synchronous").scalar()
        assert level == expected


def test_a_receive_inside_an_ordinary_transaction_is_synced_after_its_commit(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []

    def sync() -> None:
        # Called after the commit: another connection already sees the entry.
        synced.append(len(Store(sqlite_store.engine).list_inbox()))

    monkeypatch.setattr(sqlite_store, "sync", sync)
    with sqlite_store.transaction() as tx:
        _receive(tx, 1)
        assert synced == []
    assert synced == [1]

    with sqlite_store.transaction() as tx:  # nothing that must be durable: no sync
        tx.audit(helpdesk="ggus", ticket_id="1", kind="note", summary="x", at=T0)
    with sqlite_store.transaction(durable=True) as tx:  # durable by its own commit
        _receive(tx, 2)
    with pytest.raises(RuntimeError), sqlite_store.transaction() as tx:
        _receive(tx, 3)
        raise RuntimeError("rolled back: nothing to sync")
    assert synced == [1]


def test_sync_fsyncs_the_wal(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _receive(sqlite_store, 1)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sqlite_store.sync()
    assert len(synced) == 1 and synced[0].endswith("ticketbridge.db-wal")


def test_durable_writes_and_sync_work_on_both_databases(store: Store) -> None:
    with store.transaction(durable=True) as tx:
        _receive(tx, 1)
    _receive(store, 2)
    store.sync()
    assert len(store.list_inbox()) == 2


def test_a_durable_transaction_commits_a_batch_with_one_fsync(
    sqlite_store: Store, statements: list[str]
) -> None:
    with sqlite_store.transaction(durable=True) as tx:
        for n in range(5):
            _receive(tx, n)
    assert _levels(statements) == ["FULL"]
    assert sqlite_store.pending_count() == 5
