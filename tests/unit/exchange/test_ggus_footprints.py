"""The GGUS -> Footprints tables of spec B5.1 and the 2009 intake (A2)."""

from datetime import UTC, datetime

import pytest

from ticketbridge.exchange.ggus_footprints import (
    GgusToFootprints,
    footprints_priority,
    footprints_status,
    split_name,
)
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility


@pytest.mark.parametrize(
    ("ggus", "fp"),
    [
        ("top priority", "1"),
        ("very urgent", "2"),
        ("urgent", "3"),
        ("less urgent", "4"),
        ("normal", "4"),
        ("", "4"),
        ("Urgent", "3"),
    ],
)
def test_priority_table(ggus, fp):
    assert footprints_priority(ggus) == fp


@pytest.mark.parametrize(
    ("ggus", "fp"),
    [
        ("new", "Engineering"),
        ("assigned", "Engineering"),
        ("in progress", "Engineering"),
        ("waiting for reply", "Engineering"),
        ("on hold", "Engineering"),
        ("reopened", "Engineering"),
        ("", "Engineering"),
        ("solved", "Closed"),
        ("unsolved", "Closed"),
        ("verified", "Closed"),
        ("closed", "Closed"),
    ],
)
def test_status_table(ggus, fp):
    assert footprints_status(ggus) == fp


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Maria Rossi 555", ("Maria", "Rossi")),
        ("Guenter Grein", ("Guenter", "Grein")),
        ("", ("Empty", "Submitter")),
        ("Cher", ("Cher", "")),
        ("Anna Maria Schmidt", ("Anna", "Maria")),
    ],
)
def test_split_name_keeps_two_tokens_without_serial(name, expected):
    assert split_name(name) == expected


def ticket(**fields):
    return Ticket(
        ref=TicketRef("ggus", "40637"),
        title="CE rejects pilots",
        description="It fails.",
        status="assigned",
        priority="urgent",
        submitter=Contact("Maria Rossi 555", "maria@example.org", "+49 1", "/CN=Maria"),
        fields={
            "GHD_Experiment": "cms",
            "GHD_Affected_Site": "UCSDT2",
            "GHD_Responsible_Unit": "OSG",
            **fields,
        },
        comments=(
            Comment(
                "k1",
                "Public words",
                author="Supporter",
                created=datetime(2026, 3, 2, 10, tzinfo=UTC),
                kind="public diary",
            ),
            Comment("k2", "Secret words", kind="internal diary", visibility=Visibility.INTERNAL),
        ),
        modified=datetime(2026, 3, 2, 10, 5, tzinfo=UTC),
    )


def test_create_carries_other_info_block_origin_and_contact():
    op = GgusToFootprints(ticket_url="https://ggus.example.org/{id}").create(ticket(), "goc")
    assert op.description.startswith("It fails.")
    assert "[Other GGUS Ticket Info]" in op.description
    assert "GGUS Ticket ID: 40637" in op.description
    assert "Affected Site: UCSDT2" in op.description
    assert "[Ticket Origin]\nhttps://ggus.example.org/40637" in op.description
    assert op.fields["First Name"] == "Maria" and op.fields["Last Name"] == "Rossi"
    assert op.fields["Office Phone"] == "+49 1"
    assert op.fields["priority"] == "3" and op.fields["status"] == "Engineering"
    assert op.fields["assignees"] == 'TX_FP71_GGUS2 "OSG GOC Support Team"'
    assert op.fields["ENG Next Action Item"] == "TX Incoming"
    assert op.fields["ENG Next Action Date/Time (UTC)"] == "2026-03-02 10:05:00"


def test_diaries_become_entries_with_header_author_and_time_internal_kept_internal():
    op = GgusToFootprints().create(ticket(), "goc")
    public, internal = op.comments
    assert public.body.startswith("[Public Diary]\nPublic words")
    assert "[GGUS 40637 by Supporter at 2026-03-02 10:00:00 UTC]" in public.body
    assert public.visibility is Visibility.PUBLIC
    assert internal.body.startswith("[Internal Diary]\nSecret words")
    assert internal.visibility is Visibility.INTERNAL
    assert "Secret words" not in op.description


@pytest.mark.parametrize(
    ("fields", "title", "expected"),
    [
        ({"GHD_Origin_ID": "7932"}, "x", "7932"),
        ({"GHD_Origin_ID": "7932", "GHD_Origin_SG": "TX_FP71_GGUS2"}, "x", "7932"),
        ({"GHD_Origin_ID": "7932", "GHD_Origin_SG": "SOMEONE_ELSE"}, "x", None),
        ({}, "CE down ISSUE=7932 PROJ=71", "7932"),
        ({}, "CE down ISSUE=7932 PROJ=114", None),
        ({"GHD_Origin_ID": "INC0001"}, "x", None),
        ({}, "x", None),
    ],
)
def test_origin_id(fields, title, expected):
    t = Ticket(ref=TicketRef("ggus", "1"), title=title, fields=fields)
    assert GgusToFootprints().origin_id(t) == expected


@pytest.mark.parametrize(
    ("new", "current", "expected"),
    [
        ("Closed", "Resolved", None),  # already done at home: keep Resolved
        ("Closed", "Closed", None),
        ("Closed", "Engineering", "Closed"),
        ("Engineering", "Customer", None),  # a finer open state at home is kept
        ("Engineering", "Vendor", None),
        ("Engineering", "Closed", "Engineering"),  # GGUS reopened: reopen at home
        ("Engineering", "Resolved", "Engineering"),
        ("Closed", None, "Closed"),  # nothing known: send
    ],
)
def test_status_guard_keeps_finer_footprints_states(new, current, expected):
    assert GgusToFootprints().guard("status", new, current) == expected


def test_guard_leaves_other_fields_alone():
    assert GgusToFootprints().guard("priority", "2", "4") == "2"
