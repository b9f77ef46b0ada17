"""Audit trail and receiver state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ticketbridge.store import LinkState, Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_timeline_orders_by_time_then_id_and_includes_linked_tickets(store: Store) -> None:
    link = store.create_link(exchange="ggus_goc", a_helpdesk="ggus", a_id="40637", b_helpdesk="goc")
    store.update_link(link.id, b_id="5170", state=LinkState.ACTIVE)
    store.audit(helpdesk="goc", ticket_id="5170", kind="receipt", summary="goc updated", at=at(3))
    store.audit(helpdesk="ggus", ticket_id="40637", kind="trigger", summary="mail", at=at(1))
    store.audit(helpdesk="ggus", ticket_id="40637", kind="decision", summary="update goc", at=at(2))
    store.audit(helpdesk="ggus", ticket_id="40637", kind="operation", summary="same time", at=at(2))
    store.audit(
        helpdesk=None,
        ticket_id=None,
        kind="error",
        summary="link-level",
        at=at(4),
        link_id=link.id,
        detail={"error": "timeout"},
    )
    store.audit(helpdesk="ggus", ticket_id="99", kind="trigger", summary="other ticket", at=at(0))
    store.audit(
        helpdesk="goc", ticket_id="40637", kind="trigger", summary="same id, other desk", at=at(0)
    )

    from_ggus = store.timeline("ggus", "40637")
    from_goc = store.timeline("goc", "5170")

    assert [e.summary for e in from_ggus] == [
        "mail",
        "update goc",
        "same time",
        "goc updated",
        "link-level",
    ]
    assert from_goc == from_ggus
    assert from_ggus[-1].detail == {"error": "timeout"}
    assert all(e.at.tzinfo is UTC for e in from_ggus)


def test_timeline_of_unlinked_ticket(store: Store) -> None:
    event_id = store.audit(
        helpdesk="ggus",
        ticket_id="1",
        kind="ignored",
        summary="auto-reply",
        at=T0,
        inbox_id=4,
        job_id=5,
        detail={"reason": "Auto-Submitted"},
    )

    (event,) = store.timeline("ggus", "1")

    assert (event.id, event.kind, event.inbox_id, event.job_id, event.link_id) == (
        event_id,
        "ignored",
        4,
        5,
        None,
    )
    assert store.timeline("ggus", "2") == []


def test_receiver_state_round_trip(store: Store) -> None:
    assert store.receiver_state("imap-ggus") == {}

    store.save_receiver_state("imap-ggus", {"uidvalidity": 1711, "last_uid": 40})
    store.save_receiver_state("pop3-goc", {"seen": ["a", "b"]})
    store.save_receiver_state("imap-ggus", {"uidvalidity": 1711, "last_uid": 42})

    assert store.receiver_state("imap-ggus") == {"uidvalidity": 1711, "last_uid": 42}
    assert store.receiver_state("pop3-goc") == {"seen": ["a", "b"]}
