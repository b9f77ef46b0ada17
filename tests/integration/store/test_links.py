"""Links and copied items: unique per ticket, found from either side, recorded once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketbridge.errors import NotFound
from ticketbridge.model import TicketRef
from ticketbridge.store import CopiedKind, Direction, LinkConflict, LinkState, Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_create_link_and_find_it_from_both_sides(store: Store) -> None:
    link = store.create_link(
        exchange="ggus_goc",
        a_helpdesk="ggus",
        a_id="40637",
        b_helpdesk="goc",
        a_modified=T0,
        a_digest="d1",
        data={"a": {"status": "assigned"}},
    )

    assert (link.state, link.a, link.b) == (LinkState.PENDING, TicketRef("ggus", "40637"), None)
    assert link.data == {"a": {"status": "assigned"}}
    assert link.a_modified == T0
    assert store.find_link("ggus_goc", "ggus", "40637") == link
    assert store.find_link("goc_ggus", "ggus", "40637") is None
    assert store.find_link_by_b("goc", "5170") is None

    confirmed = store.update_link(link.id, b_id="5170", state=LinkState.ACTIVE, b_version="v1")

    assert confirmed.b == TicketRef("goc", "5170")
    assert (confirmed.state, confirmed.b_version, confirmed.a_digest) == (
        LinkState.ACTIVE,
        "v1",
        "d1",  # untouched fields stay
    )
    assert store.find_link_by_b("goc", "5170") == confirmed
    assert store.find_link_by_ref("goc", "5170") == confirmed
    assert store.find_link_by_ref("ggus", "40637") == confirmed
    assert store.find_link_by_ref("goc", "40637") is None
    assert store.link(link.id) == confirmed


def test_create_link_twice_returns_the_existing_link(store: Store) -> None:
    first = store.create_link(exchange="x", a_helpdesk="ggus", a_id="1", b_helpdesk="goc")
    again = store.create_link(exchange="x", a_helpdesk="ggus", a_id="1", b_helpdesk="goc", b_id="9")

    assert again == first
    assert len(store.list_links()) == 1


def test_a_b_ticket_belongs_to_one_link_only(store: Store) -> None:
    first = store.create_link(exchange="x", a_helpdesk="ggus", a_id="1", b_helpdesk="goc", b_id="9")
    other = store.create_link(exchange="x", a_helpdesk="ggus", a_id="2", b_helpdesk="goc")

    with pytest.raises(LinkConflict) as conflict:
        store.create_link(exchange="x", a_helpdesk="ggus", a_id="3", b_helpdesk="goc", b_id="9")
    assert conflict.value.existing == first
    with pytest.raises(LinkConflict):
        store.update_link(other.id, b_id="9")
    assert store.link(other.id).b_id is None


def test_one_a_ticket_may_be_linked_in_several_exchanges(store: Store) -> None:
    goc = store.create_link(exchange="ggus_goc", a_helpdesk="ggus", a_id="1", b_helpdesk="goc")
    rt = store.create_link(exchange="ggus_rt", a_helpdesk="ggus", a_id="1", b_helpdesk="rt")

    assert store.find_links_by_ref("ggus", "1") == [goc, rt]
    assert store.find_link_by_ref("ggus", "1") == goc
    assert store.find_links_by_ref("rt", "1") == []


def test_update_link_replaces_data_and_clears_values(store: Store) -> None:
    link = store.create_link(
        exchange="x", a_helpdesk="a", a_id="1", b_helpdesk="b", b_digest="old", data={"k": 1}
    )

    updated = store.update_link(link.id, data={"j": 2}, b_digest=None)

    assert updated.data == {"j": 2}
    assert updated.b_digest is None
    assert updated.updated_at >= link.updated_at
    with pytest.raises(NotFound):
        store.update_link(999, state=LinkState.CLOSED)
    with pytest.raises(NotFound):
        store.link(999)


def test_list_links_filters(store: Store) -> None:
    a = store.create_link(exchange="ggus_goc", a_helpdesk="ggus", a_id="1", b_helpdesk="goc")
    b = store.create_link(exchange="ggus_rt", a_helpdesk="ggus", a_id="2", b_helpdesk="rt")
    c = store.create_link(
        exchange="rt_goc", a_helpdesk="rt", a_id="3", b_helpdesk="goc", state=LinkState.CLOSED
    )

    assert store.list_links() == [a, b, c]
    assert store.list_links(exchange="ggus_rt") == [b]
    assert store.list_links(helpdesk="goc") == [a, c]
    assert store.list_links(helpdesk="rt", state=LinkState.CLOSED) == [c]


def test_record_copied_is_idempotent_and_fills_in_dest_key(store: Store) -> None:
    link = store.create_link(exchange="x", a_helpdesk="a", a_id="1", b_helpdesk="b")

    assert store.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, "c1")
    assert not store.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, "c1")
    assert not store.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, "c1", "b-77")
    assert not store.record_copied(link.id, Direction.AB, CopiedKind.COMMENT, "c1", "b-other")
    assert store.record_copied(link.id, Direction.BA, CopiedKind.COMMENT, "c1", "a-5")
    assert store.record_copied(link.id, Direction.AB, CopiedKind.ATTACHMENT, "c1")

    assert store.copied_keys(link.id, Direction.AB, CopiedKind.COMMENT) == {"c1"}
    assert store.copied_map(link.id, Direction.AB, CopiedKind.COMMENT) == {"c1": "b-77"}
    assert store.copied_map(link.id, Direction.BA, CopiedKind.COMMENT) == {"c1": "a-5"}
    assert store.copied_map(link.id, Direction.AB, CopiedKind.ATTACHMENT) == {"c1": None}
    assert store.copied_keys(link.id, Direction.BA, CopiedKind.ATTACHMENT) == set()
