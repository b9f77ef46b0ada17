"""Opening, migrating, transactions and the SQLite locking set-up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import ticketbridge
from tests.support.databases import make_sqlite_url
from ticketbridge.errors import StoreError
from ticketbridge.store import CopiedKind, Direction, Store
from ticketbridge.store.db import READ_ONLY, normalise_url
from ticketbridge.store.migrate import current_revision, head_revision
from ticketbridge.store.schema import metadata

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_open_migrates_to_head_and_opening_again_changes_nothing(store_url: str) -> None:
    first = Store.open(store_url)
    first.receive(source="s", raw=b"m", message_id="<m@x>", key="ggus:1", received_at=T0)
    first.close()

    second = Store.open(store_url)
    try:
        with second.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert len(second.list_inbox()) == 1
    finally:
        second.close()


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_processes_opening_a_new_database_at_once_all_succeed(store_url: str) -> None:
    src = str(Path(ticketbridge.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    script = "import sys\nfrom ticketbridge.store import Store\nStore.open(sys.argv[1]).close()\n"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outcomes = [
        (p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in processes
    ]
    for process in processes:
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()

    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
    store = Store.open(store_url)
    try:
        with store.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
    finally:
        store.close()


def test_transaction_commits_everything_together(store: Store) -> None:
    with store.transaction() as tx:
        result = tx.receive(source="s", raw=b"m", message_id="<m@x>", key="ggus:1", received_at=T0)
        link = tx.create_link(exchange="x", a_helpdesk="ggus", a_id="1", b_helpdesk="goc")
        tx.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, "c1")
        assert tx.find_link("x", "ggus", "1") == link  # reads see the open transaction

    assert store.inbox_entry(result.inbox_id).message_id == "<m@x>"
    assert store.copied_keys(link.id, Direction.AB, CopiedKind.COMMENT) == {"c1"}


def test_transaction_rolls_everything_back_on_error(store: Store) -> None:
    link = store.create_link(exchange="x", a_helpdesk="ggus", a_id="1", b_helpdesk="goc")

    with pytest.raises(RuntimeError, match="crash"), store.transaction() as tx:
        tx.update_link(link.id, b_id="5170", b_version="v2")
        tx.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, "c1", "d1")
        tx.audit(helpdesk="ggus", ticket_id="1", kind="receipt", summary="done", at=T0)
        tx.receive(source="s", raw=b"m", message_id="<m@x>", key="ggus:1", received_at=T0)
        tx.save_receiver_state("imap", {"last_uid": 3})
        raise RuntimeError("crash")

    assert store.link(link.id) == link
    assert store.copied_keys(link.id, Direction.AB, CopiedKind.COMMENT) == set()
    assert store.timeline("ggus", "1") == []
    assert store.list_inbox() == [] and store.list_jobs() == []
    assert store.receiver_state("imap") == {}


def test_duplicate_inside_a_transaction_leaves_it_usable(store: Store) -> None:
    store.receive(source="s", raw=b"m", message_id="<m@x>", key=None, received_at=T0)

    with store.transaction() as tx:
        assert tx.receive(
            source="s", raw=b"m", message_id="<m@x>", key=None, received_at=T0
        ).duplicate
        tx.save_receiver_state("imap", {"last_uid": 1})

    assert store.receiver_state("imap") == {"last_uid": 1}


def test_url_normalisation() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    for bad in ("mysql://h/db", "sqlite://", "sqlite:///:memory:", "not a url"):
        with pytest.raises(StoreError):
            normalise_url(bad)


def test_sqlite_connections_use_wal_and_wait_for_locks(tmp_path: Path) -> None:
    store = Store.open(make_sqlite_url(tmp_path))
    try:
        with store.engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "busy_timeout": 5000,
            "foreign_keys": 1,
            # NORMAL; durable writes switch to FULL for their own commit (test_durability.py).
            "synchronous": 1,
        }
    finally:
        store.close()


def test_sqlite_write_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    url = make_sqlite_url(tmp_path)
    store = Store.open(url)
    other = sqlite3.connect(str(tmp_path / "ticketbridge.db"), timeout=0, isolation_level=None)
    try:
        with store.transaction():
            # Nothing written yet, but BEGIN IMMEDIATE already holds the write lock.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with store.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                conn.execute(sa.text("SELECT count(*) FROM inbox"))
                other.execute("BEGIN IMMEDIATE")  # a reader does not block writers
                other.execute("ROLLBACK")
    finally:
        other.close()
        store.close()
