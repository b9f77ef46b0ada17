"""The planner: create vs adopt vs update, changed fields only, comments once, no regression."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketbridge.exchange.ggus_footprints import GgusToFootprints
from ticketbridge.exchange.plan import LinkView, plan
from ticketbridge.model import Comment, CreateTicket, Ticket, TicketRef, UpdateTicket, Visibility

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DIRECTION = GgusToFootprints()


def ggus(
    status="assigned", priority="less urgent", title="CE rejects pilots", minutes=0, comments=()
):
    return Ticket(
        ref=TicketRef("ggus", "40637"),
        title=title,
        description="desc",
        status=status,
        priority=priority,
        comments=tuple(comments),
        modified=T0 + timedelta(minutes=minutes),
    )


def diary(text, kind="public diary", visibility=Visibility.PUBLIC):
    return Comment(key=f"{kind}:{text}", body=text, kind=kind, visibility=visibility)


def applied(snapshot, result, target_id="7"):
    """The link as the executor records it after applying ``result``."""
    return LinkView(target_id, result.newest_applied, result.sent, frozenset(result.copied))


def test_no_link_and_nothing_found_creates_with_correlation_key():
    result = plan(ggus(), None, direction=DIRECTION, target_helpdesk="goc")
    (op,) = result.ops
    assert isinstance(op, CreateTicket)
    assert op.correlation_key == "40637"
    assert op.fields["Originating Ticket Number"] == "40637"
    assert result.sent == {"title": "CE rejects pilots", "status": "Engineering", "priority": "4"}


def test_found_by_correlation_key_updates_instead_of_creating():
    result = plan(ggus(), None, direction=DIRECTION, target_helpdesk="goc", found_id="12")
    (op,) = result.ops
    assert isinstance(op, UpdateTicket)
    assert op.ticket_id == "12"
    assert "adopt" in result.decision


def test_same_snapshot_twice_is_skipped():
    first = plan(ggus(comments=[diary("a")]), None, direction=DIRECTION, target_helpdesk="goc")
    again = plan(
        ggus(comments=[diary("a")]),
        applied(None, first),
        direction=DIRECTION,
        target_helpdesk="goc",
    )
    assert again.is_skip
    assert "no change" in again.decision


def test_update_sends_only_changed_fields_and_new_comments():
    first = plan(ggus(comments=[diary("a")]), None, direction=DIRECTION, target_helpdesk="goc")
    later = ggus(
        status="in progress", priority="urgent", minutes=5, comments=[diary("a"), diary("b")]
    )
    result = plan(later, applied(None, first), direction=DIRECTION, target_helpdesk="goc")
    (op,) = result.ops
    assert isinstance(op, UpdateTicket)
    # in progress maps to Engineering, which Footprints already has: not resent
    assert dict(op.fields) == {"priority": "3"}
    assert [c.body.splitlines()[1] for c in op.comments] == ["b"]
    assert result.copied == ("public diary:b",)


def test_stale_snapshot_never_regresses_status_or_priority_but_copies_comments():
    first = plan(
        ggus(status="solved", priority="urgent", minutes=30),
        None,
        direction=DIRECTION,
        target_helpdesk="goc",
    )
    stale = ggus(
        status="assigned",
        priority="less urgent",
        title="old title",
        minutes=10,
        comments=[diary("late")],
    )
    result = plan(stale, applied(None, first), direction=DIRECTION, target_helpdesk="goc")
    (op,) = result.ops
    assert dict(op.fields) == {}
    assert len(op.comments) == 1
    assert result.stale
    assert result.newest_applied == T0 + timedelta(minutes=30)


def test_stale_snapshot_with_nothing_new_is_skipped_with_reason():
    first = plan(
        ggus(status="solved", minutes=30), None, direction=DIRECTION, target_helpdesk="goc"
    )
    result = plan(
        ggus(status="assigned", minutes=10),
        applied(None, first),
        direction=DIRECTION,
        target_helpdesk="goc",
    )
    assert result.is_skip
    assert "stale" in result.decision


def test_internal_diary_stays_internal_on_create_and_update():
    internal = diary("secret", kind="internal diary", visibility=Visibility.INTERNAL)
    created = plan(ggus(comments=[internal]), None, direction=DIRECTION, target_helpdesk="goc")
    (op,) = created.ops
    assert [c.visibility for c in op.comments] == [Visibility.INTERNAL]
    assert "secret" not in op.description
    assert all("secret" not in v for v in op.fields.values())


@given(
    st.lists(
        st.sampled_from(
            [
                "new",
                "assigned",
                "in progress",
                "waiting for reply",
                "on hold",
                "reopened",
                "solved",
                "unsolved",
                "verified",
                "closed",
            ]
        ),
        min_size=1,
        max_size=8,
    ),
    st.permutations(range(8)),
)
def test_any_delivery_order_ends_at_the_newest_status(statuses, order):
    """Snapshots delivered in any order leave Footprints with the newest snapshot's status."""
    snaps = [ggus(status=s, minutes=i) for i, s in enumerate(statuses)]
    view = None
    for index in [i for i in order if i < len(snaps)]:
        result = plan(snaps[index], view, direction=DIRECTION, target_helpdesk="goc")
        if view is None:
            view = LinkView("7", result.newest_applied, result.sent, frozenset(result.copied))
        else:
            view = LinkView(
                "7", result.newest_applied, result.sent, view.copied | frozenset(result.copied)
            )
    assert view is not None
    expected = (
        "Closed" if statuses[-1] in {"solved", "unsolved", "verified", "closed"} else "Engineering"
    )
    assert view.sent["status"] == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("CE down ISSUE=7932 PROJ=71", "CE down"),
        ("", "(Untitled Ticket)"),
        ("two\nlines", "two lines"),
    ],
)
def test_title_mapping(title, expected):
    assert DIRECTION.fields(ggus(title=title))["title"] == expected
