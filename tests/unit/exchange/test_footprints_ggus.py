"""The Footprints -> GGUS tables of spec B5.2, the GGUS team's guards and GGUS's text limits."""

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketbridge.codecs.ggus_mail import GGUS_PRIORITIES, GGUS_STATUSES
from ticketbridge.exchange.footprints_ggus import (
    NO_DESCRIPTION,
    TEXT_LIMIT,
    TITLE_LIMIT,
    TRUNCATION_NOTE,
    UNTITLED,
    FootprintsToGgus,
    byline,
    diary_text,
    fit_create,
    fit_title,
    fit_update,
    ggus_priority,
    ggus_status,
    ggus_values,
    is_copy_from_ggus,
    is_final,
    keep_finer_open_state,
    keep_top_priority_set_in_ggus,
    keep_unsolved_verified_closed,
    never_create_in_progress,
    nothing_to_final_ticket,
    priority_to_send,
    solution_only_with_solved,
    solved_carries_solution,
    status_to_send,
    xml_safe,
)
from ticketbridge.exchange.ggus_footprints import GgusToFootprints
from ticketbridge.exchange.plan import LinkView, plan
from ticketbridge.model import (
    Comment,
    CreateTicket,
    Ticket,
    TicketRef,
    UpdateTicket,
    Visibility,
)

URL = "https://ticket.example.org/12345"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DIRECTION = FootprintsToGgus(ticket_url="https://ticket.example.org/{id}")


def entry(body, minutes=0, author="John Smith", visibility=Visibility.PUBLIC):
    return Comment(
        key=f"{visibility}:{minutes}:{body[:20]}",
        body=body,
        author=author,
        created=T0 + timedelta(minutes=minutes),
        visibility=visibility,
        kind="description" if visibility is Visibility.PUBLIC else "internal description",
    )


def secret(body, minutes=0):
    return entry(body, minutes, author="Agent", visibility=Visibility.INTERNAL)


def fp(status="Engineering", priority="3", title="CE down at MWT2", entries=None, **fields):
    if entries is None:
        entries = [entry("The CE rejects every pilot.")]
    return Ticket(
        ref=TicketRef("goc", "12345"),
        title=title,
        description=next((e.body for e in entries if e.visibility is Visibility.PUBLIC), ""),
        status=status,
        priority=priority,
        fields={
            "First Name": "John",
            "Last Name": "Smith",
            "Office Phone": "+1 812 555 0100",
            "Email address": "john@example.org",
            "SUBMITTER_DN": "/DC=org/DC=example/CN=John Smith",
            **fields,
        },
        comments=tuple(entries),
        modified=T0 + timedelta(minutes=len(entries)),
    )


# --- tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("footprints", "ggus"),
    [
        ("Engineering", "in progress"),
        ("Customer", "in progress"),
        ("Network Administration", "in progress"),
        ("Support Agency", "in progress"),
        ("Vendor", "in progress"),
        ("Resolved", "solved"),
        ("Closed", "solved"),
        ("closed", "solved"),
        (" Network  Administration ", "in progress"),
        ("Waiting", "assigned"),
        ("", "assigned"),
    ],
)
def test_status_table(footprints, ggus):
    assert ggus_status(footprints) == ggus
    assert ggus in GGUS_STATUSES


@pytest.mark.parametrize(
    ("footprints", "allow_top", "ggus"),
    [
        ("1", False, "very urgent"),
        ("1", True, "top priority"),
        ("2", False, "very urgent"),
        ("3", False, "urgent"),
        ("4", False, "less urgent"),
        ("4", True, "less urgent"),
        (" 2 ", False, "very urgent"),
        ("0", False, None),
        ("5", False, None),
        ("", True, None),
        ("Normal", False, None),
    ],
)
def test_priority_table_never_normal_and_no_automatic_top_priority(footprints, allow_top, ggus):
    assert ggus_priority(footprints, allow_top_priority=allow_top) == ggus
    assert ggus is None or (ggus in GGUS_PRIORITIES and ggus != "normal")


# --- guards ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapped", "sent"),
    [("in progress", "new"), ("assigned", "assigned"), ("solved", "solved")],
)
def test_never_create_in_progress(mapped, sent):
    assert never_create_in_progress(mapped) == sent


@pytest.mark.parametrize(
    ("ggus_now", "expected"),
    [
        ("new", None),
        ("assigned", None),
        ("waiting for reply", None),
        ("on hold", None),
        ("reopened", None),
        (" Waiting  for Reply ", None),
        ("in progress", "in progress"),
        ("solved", "in progress"),
        ("unsolved", "in progress"),
        (None, "in progress"),
    ],
)
def test_keep_finer_open_state(ggus_now, expected):
    assert keep_finer_open_state("in progress", ggus_now) == expected
    # only the coarse "in progress" is held back
    assert keep_finer_open_state("solved", ggus_now) == "solved"


@pytest.mark.parametrize(
    ("ggus_now", "expected"),
    [
        ("verified", None),
        ("closed", None),
        ("unsolved", None),
        ("solved", "solved"),
        ("in progress", "solved"),
        ("on hold", "solved"),
        ("reopened", "solved"),
        (None, "solved"),
    ],
)
def test_keep_unsolved_verified_closed(ggus_now, expected):
    assert keep_unsolved_verified_closed("solved", ggus_now) == expected
    assert keep_unsolved_verified_closed("in progress", ggus_now) == "in progress"


@pytest.mark.parametrize(
    ("status", "final"),
    [(s, s in {"verified", "closed"}) for s in GGUS_STATUSES] + [(None, False), ("Closed", True)],
)
def test_verified_and_closed_are_final(status, final):
    assert is_final(status) is final
    assert (nothing_to_final_ticket(status) is not None) is final


@pytest.mark.parametrize(
    ("new", "ggus_now", "last_exchanged", "expected"),
    [
        # a final ticket gets nothing, whatever changed
        ("in progress", "verified", "solved", None),
        ("solved", "closed", "in progress", None),
        # no-downgrade: the Footprints status did not change since the last exchange
        ("in progress", "solved", "in progress", None),
        ("solved", "reopened", "solved", None),
        # it changed: the GGUS-side guards decide
        ("in progress", "waiting for reply", "solved", None),
        ("in progress", "on hold", None, None),
        ("in progress", "solved", "solved", "in progress"),
        ("solved", "unsolved", "in progress", None),
        ("solved", "in progress", "in progress", "solved"),
        ("solved", "waiting for reply", None, "solved"),
        ("assigned", "in progress", "in progress", "assigned"),
        # GGUS already holds it
        ("solved", "solved", "in progress", None),
        # GGUS's status unknown
        ("solved", None, "in progress", "solved"),
        ("in progress", None, None, "in progress"),
    ],
)
def test_status_to_send(new, ggus_now, last_exchanged, expected):
    assert status_to_send(new, ggus_now, last_exchanged=last_exchanged) == expected


@pytest.mark.parametrize(
    ("new", "ggus_now", "allow_top", "expected"),
    [
        ("urgent", "less urgent", False, "urgent"),
        ("less urgent", "very urgent", False, "less urgent"),
        ("very urgent", "top priority", False, None),  # an ALARM's priority is not lowered
        ("very urgent", "top priority", True, "very urgent"),
        ("top priority", "urgent", False, None),  # never escalate automatically
        ("top priority", "urgent", True, "top priority"),
        ("normal", "urgent", True, None),
        ("", None, False, None),
    ],
)
def test_priority_to_send(new, ggus_now, allow_top, expected):
    assert priority_to_send(new, ggus_now, allow_top_priority=allow_top) == expected


def test_keep_top_priority_set_in_ggus_leaves_other_values():
    assert keep_top_priority_set_in_ggus("urgent", "very urgent") == "urgent"
    assert keep_top_priority_set_in_ggus("top priority", "top priority") == "top priority"


@pytest.mark.parametrize(
    ("fields", "solution", "expected"),
    [
        ({"status": "solved"}, "Fixed.", "Fixed."),
        ({"status": "solved"}, "   ", NO_DESCRIPTION),
        ({"status": "solved", "GHD_Detailed_Solution": " "}, "", NO_DESCRIPTION),
        ({"status": "solved", "GHD_Detailed_Solution": "Mine"}, "Fixed.", "Mine"),
        ({"status": "in progress"}, "Fixed.", None),
        ({}, "Fixed.", None),
    ],
)
def test_solved_carries_solution(fields, solution, expected):
    assert solved_carries_solution(fields, solution).get("GHD_Detailed_Solution") == expected


@pytest.mark.parametrize(
    ("fields", "ggus_now", "kept"),
    [
        ({"status": "solved", "GHD_Detailed_Solution": "x"}, "in progress", True),
        ({"GHD_Detailed_Solution": "x"}, "solved", True),
        ({"GHD_Detailed_Solution": "x"}, None, True),  # unknown: we sent solved before
        ({"GHD_Detailed_Solution": "x"}, "unsolved", False),
        ({"GHD_Detailed_Solution": "x"}, "reopened", False),
        ({"status": "in progress", "GHD_Detailed_Solution": "x"}, "solved", False),
    ],
)
def test_solution_only_with_solved(fields, ggus_now, kept):
    assert ("GHD_Detailed_Solution" in solution_only_with_solved(fields, ggus_now)) is kept


@pytest.mark.parametrize(
    ("name", "new", "current", "expected"),
    [
        ("status", "in progress", "waiting for reply", None),
        ("status", "in progress", "solved", "in progress"),
        ("status", "solved", "unsolved", None),
        ("status", "solved", "verified", None),
        ("status", "solved", None, "solved"),
        ("priority", "urgent", "less urgent", "urgent"),
        ("priority", "very urgent", "top priority", None),
        ("title", "New title", "Old title", "New title"),
        ("GHD_Last_Modifier", "A (via Footprints)", None, "A (via Footprints)"),
    ],
)
def test_guard_per_field(name, new, current, expected):
    assert DIRECTION.guard(name, new, current) == expected


def test_guard_top_priority_when_allowed():
    allowed = dataclasses.replace(DIRECTION, allow_top_priority=True)
    assert allowed.guard("priority", "top priority", "urgent") == "top priority"
    assert DIRECTION.guard("priority", "top priority", "urgent") is None


# --- text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\x00b\x1bc", "a?b?c"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("crlf\r\nand\rcr", "crlf\nand\ncr"),
        ("\ufffe\uffff", "??"),
        ("lone \ud800 surrogate", "lone ? surrogate"),
        ("e\u0301", "\u00e9"),
        ("\U0001f600", "\U0001f600"),
    ],
)
def test_xml_safe(text, expected):
    assert xml_safe(text) == expected


def _xml_valid(ch):
    cp = ord(ch)
    return cp in (9, 10, 13) or 0x20 <= cp <= 0xD7FF or 0xE000 <= cp <= 0xFFFD or cp >= 0x10000


ANY_TEXT = st.text(st.characters(exclude_categories=()))


@given(ANY_TEXT)
def test_xml_safe_output_is_valid_nfc_and_stable(text):
    out = xml_safe(text)
    assert all(_xml_valid(ch) for ch in out)
    assert unicodedata.is_normalized("NFC", out)
    assert xml_safe(out) == out


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("", UNTITLED),
        ("  \n ", UNTITLED),
        ("CE\ndown", "CE down"),
        ("x" * 255, "x" * 255),
        ("x" * 256, "x" * 252 + "..."),
    ],
)
def test_fit_title(title, expected):
    assert fit_title(title) == expected


def test_fit_create_keeps_the_end_with_note_and_origin():
    text = "".join(f"{i:05d}\n" for i in range(1000))  # 6000 chars
    out = fit_create(text, URL)
    assert len(out) == TEXT_LIMIT
    assert out.startswith(f"{TRUNCATION_NOTE}\n{URL}\n\n")
    assert out.endswith("00999\n")
    assert len(out) - len(f"{TRUNCATION_NOTE}\n{URL}\n\n") > 3800


def test_fit_update_keeps_the_start_with_note_and_origin():
    text = "".join(f"{i:05d}\n" for i in range(1000))
    out = fit_update(text, URL)
    assert len(out) == TEXT_LIMIT
    assert out.startswith("00000\n")
    assert out.endswith(f"\n\n{TRUNCATION_NOTE}\n{URL}")


def test_text_within_the_limit_is_untouched():
    text = "x" * TEXT_LIMIT
    assert fit_create(text, URL) == text == fit_update(text, URL)


@given(ANY_TEXT, ANY_TEXT, st.integers(min_value=0, max_value=300))
def test_fitted_text_never_exceeds_the_limit(text, url, limit):
    for fit in (fit_create, fit_update):
        out = fit(text, url, limit)
        assert len(out) <= limit
        if len(text) <= limit:
            assert out == text


@given(
    ANY_TEXT,
    st.integers(min_value=TEXT_LIMIT + 1, max_value=2 * TEXT_LIMIT),
    ANY_TEXT,
    st.text(max_size=200),
)
def test_truncation_keeps_most_of_the_text_and_names_the_origin(start, filler, end, url):
    text = start + "~" * filler + end
    note = f"{TRUNCATION_NOTE}\n{url}" if url else TRUNCATION_NOTE
    room = TEXT_LIMIT - len(note) - 2
    created, updated = fit_create(text, url), fit_update(text, url)
    assert len(created) <= TEXT_LIMIT and len(updated) <= TEXT_LIMIT
    assert created == f"{note}\n\n{text[-room:]}"
    assert updated == f"{text[:room]}\n\n{note}"


@pytest.mark.parametrize(
    ("author", "created", "expected"),
    [
        ("John Smith", T0, " -- by John Smith at 2026-03-02 10:00:00 UTC"),
        ("John\nSmith", None, " -- by John Smith"),
        ("", T0, " -- by unknown at 2026-03-02 10:00:00 UTC"),
        (
            "A",
            datetime(2026, 3, 2, 5, 0, tzinfo=timezone(timedelta(hours=-5))),
            " -- by A at 2026-03-02 10:00:00 UTC",
        ),
        ("A", datetime(2026, 3, 2, 10, 0), " -- by A at 2026-03-02 10:00:00 UTC"),
    ],
)
def test_byline(author, created, expected):
    assert byline(author, created) == expected


def test_diary_text_skips_empty_and_returns_nothing_for_nothing():
    assert diary_text(["", "  "], URL) == ""
    assert diary_text(["one", "", "two"], URL) == "one\n\ntwo"
    assert len(diary_text(["x" * 3000, "y" * 3000], URL)) == TEXT_LIMIT


# --- create ----------------------------------------------------------------------------


def history_ticket(status="Engineering", priority="3"):
    return fp(
        status=status,
        priority=priority,
        entries=[
            entry("The CE rejects every pilot.", 0),
            secret("Private: the admin is on leave.", 1),
            entry("Restarted the gatekeeper.", 2, author="Ann Admin"),
            entry("Still failing.", 3, author="John Smith"),
            entry("Fixed the gridmap file.", 4, author="Ann Admin"),
        ],
    )


def test_create_fields_follow_b52():
    op = DIRECTION.create(history_ticket(), "ggus")
    assert isinstance(op, CreateTicket)
    assert op.correlation_key == "12345"
    assert op.title == "CE down at MWT2"
    assert dict(op.fields) == {
        "status": "new",  # never created in progress
        "priority": "urgent",
        "GHD_Origin_ID": "12345",
        "GHD_Origin_SG": "TX_FP71_GGUS2",
        "GHD_Responsible_Unit": "TPM",
        "GHD_Affected_VO": "none",
        "GHD_Last_Modifier": "Ann Admin (via Footprints)",
        "GHD_Name": "John Smith",
        "GHD_Phone": "+1 812 555 0100",
        "GHD_Loginname": "/DC=org/DC=example/CN=John Smith",
    }


def test_create_never_copies_the_email_address():
    op = DIRECTION.create(history_ticket(), "ggus")
    everything = [op.title, op.description, *op.fields.values(), *(c.body for c in op.comments)]
    assert not any("john@example.org" in text for text in everything)


def test_create_description_first_entry_origin_then_history():
    op = DIRECTION.create(history_ticket(), "ggus")
    assert op.description == (
        "The CE rejects every pilot.\n\n"
        "[Ticket Origin]\nhttps://ticket.example.org/12345\n\n"
        "[Ticket History]\n"
        "Restarted the gatekeeper.\n -- by Ann Admin at 2026-03-02 10:02:00 UTC\n\n"
        "Still failing.\n -- by John Smith at 2026-03-02 10:03:00 UTC"
    )


def test_create_latest_entry_and_internal_entries_go_to_the_internal_diary():
    op = DIRECTION.create(history_ticket(), "ggus")
    (diary,) = op.comments
    assert diary.visibility is Visibility.INTERNAL and diary.kind == "internal diary"
    assert diary.body == (
        "Private: the admin is on leave.\n -- by Agent at 2026-03-02 10:01:00 UTC\n\n"
        "Fixed the gridmap file.\n -- by Ann Admin at 2026-03-02 10:04:00 UTC"
    )
    assert "Fixed the gridmap" not in op.description
    assert "Private" not in op.description


def test_create_with_only_the_original_description():
    op = DIRECTION.create(fp(entries=[entry("Only this.")]), "ggus")
    assert op.description == "Only this.\n\n[Ticket Origin]\nhttps://ticket.example.org/12345"
    assert op.comments == ()


def test_create_with_no_text_at_all():
    op = DIRECTION.create(fp(title="", entries=[]), "ggus")
    assert op.title == UNTITLED
    assert op.description.startswith(NO_DESCRIPTION)
    assert op.fields["GHD_Last_Modifier"] == "OSG GOC (via Footprints)"


def test_create_caps_history_to_the_last_3000_chars():
    middle = [entry(f"step {i:03d} " + "x" * 90, i) for i in range(1, 60)]
    op = DIRECTION.create(fp(entries=[entry("start", 0), *middle, entry("end", 99)]), "ggus")
    history = op.description.split("[Ticket History]\n", 1)[1]
    assert len(history) == 3000
    assert history.endswith("-- by John Smith at 2026-03-02 10:59:00 UTC")
    assert "step 001" not in history


def test_create_long_description_keeps_the_end_and_names_the_origin():
    op = DIRECTION.create(fp(entries=[entry("A" * 5000 + "THE END")]), "ggus")
    assert len(op.description) <= TEXT_LIMIT
    assert op.description.startswith(f"{TRUNCATION_NOTE}\nhttps://ticket.example.org/12345")
    assert op.description.endswith("[Ticket Origin]\nhttps://ticket.example.org/12345")
    assert "THE END" in op.description


@pytest.mark.parametrize(
    ("priority", "expected"), [("0", "less urgent"), ("", "less urgent"), ("1", "very urgent")]
)
def test_create_priority_without_mapping_is_less_urgent(priority, expected):
    assert DIRECTION.create(fp(priority=priority), "ggus").fields["priority"] == expected


def test_create_resolved_ticket_is_solved_with_solution():
    op = DIRECTION.create(history_ticket(status="Resolved"), "ggus")
    assert op.fields["status"] == "solved"
    assert op.fields["GHD_Detailed_Solution"] == "Fixed the gridmap file."


def test_create_resolved_ticket_without_further_entry_gets_placeholder_solution():
    op = DIRECTION.create(fp(status="Closed"), "ggus")
    assert op.fields["GHD_Detailed_Solution"] == NO_DESCRIPTION


def test_operator_chosen_unit_and_origin_sg():
    direction = dataclasses.replace(DIRECTION, responsible_unit="OSG", origin_sg="TX_FP114_GGUS2")
    op = direction.create(fp(), "ggus")
    assert op.fields["GHD_Responsible_Unit"] == "OSG"
    assert op.fields["GHD_Origin_SG"] == "TX_FP114_GGUS2"


def test_create_cleans_text_for_xml():
    op = DIRECTION.create(fp(title="CE\x00down", entries=[entry("bad\x0bbyte e\u0301")]), "ggus")
    assert op.title == "CE?down"
    assert op.description.startswith("bad?byte \u00e9")


# --- update: fields and comments --------------------------------------------------------


def test_fields_open_ticket():
    assert dict(DIRECTION.fields(history_ticket())) == {
        "title": "CE down at MWT2",
        "status": "in progress",
        "priority": "urgent",
        "GHD_Last_Modifier": "Ann Admin (via Footprints)",
    }


def test_fields_unknown_priority_is_left_out():
    assert "priority" not in DIRECTION.fields(fp(priority="9"))


def test_fields_resolved_ticket_carries_latest_public_entry_as_solution():
    ticket = fp(
        status="Resolved",
        entries=[entry("Problem."), entry("Fixed it.", 1), secret("internal after fix", 2)],
    )
    fields = DIRECTION.fields(ticket)
    assert fields["status"] == "solved"
    assert fields["GHD_Detailed_Solution"] == "Fixed it."


def test_comment_public_entry_becomes_public_diary_with_byline():
    out = DIRECTION.comment(entry("Restarted.", 5), fp())
    assert out.kind == "public diary" and out.visibility is Visibility.PUBLIC
    assert out.body == "Restarted.\n -- by John Smith at 2026-03-02 10:05:00 UTC"
    assert out.author == "" and out.created is None


def test_comment_internal_entry_becomes_internal_diary():
    out = DIRECTION.comment(secret("hush", 1), fp())
    assert out.kind == "internal diary" and out.visibility is Visibility.INTERNAL
    assert out.body.startswith("hush\n -- by Agent")


def test_comment_long_entry_keeps_the_start_and_names_the_origin():
    out = DIRECTION.comment(entry("B" * 5000), fp())
    assert len(out.body) <= TEXT_LIMIT
    assert out.body.startswith("BBBB")
    assert out.body.endswith(f"{TRUNCATION_NOTE}\nhttps://ticket.example.org/12345")


def test_entries_copied_from_ggus_are_not_echoed_back():
    ggus_comment = Comment("k", "Seen on our side.", author="Supporter", created=T0)
    ggus_ticket = Ticket(ref=TicketRef("ggus", "40637"))
    written = GgusToFootprints().comment(
        dataclasses.replace(ggus_comment, kind="public diary"), ggus_ticket
    )
    in_footprints = entry(written.body, 3, author="ggus")
    assert is_copy_from_ggus(in_footprints)
    assert not is_copy_from_ggus(entry("[GGUS 40637] is mentioned here\nand more"))
    assert DIRECTION.comment(in_footprints, fp()).body == ""
    resolved = fp(status="Resolved", entries=[entry("Problem."), entry("Fix.", 1), in_footprints])
    assert DIRECTION.solution(resolved) == "Fix."


def test_guard_update_sends_nothing_to_a_final_ticket():
    update = UpdateTicket("ggus", "91234", {"status": "solved"}, (entry("x"),))
    for status in ("verified", "closed"):
        assert DIRECTION.guard_update(update, fp(), {"status": status}) is None


def test_guard_update_adds_solution_to_solved():
    update = UpdateTicket("ggus", "91234", {"status": "solved"})
    ticket = fp(status="Resolved", entries=[entry("Problem."), entry("Done.", 1)])
    out = DIRECTION.guard_update(update, ticket, {"status": "in progress"})
    assert out is not None
    assert out.fields["GHD_Detailed_Solution"] == "Done."


def test_guard_update_drops_solution_when_ticket_stays_unsolved():
    update = UpdateTicket("ggus", "91234", {"GHD_Detailed_Solution": "Done."}, (entry("x"),))
    out = DIRECTION.guard_update(update, fp(status="Resolved"), {"status": "unsolved"})
    assert out is not None
    assert dict(out.fields) == {}
    assert out.comments == update.comments


def test_ggus_values_reads_a_ggus_snapshot():
    ggus = Ticket(
        ref=TicketRef("ggus", "91234"),
        title="t",
        status="Waiting for reply",
        priority="urgent",
        fields={"GHD_Detailed_Solution": "s"},
    )
    assert ggus_values(ggus) == {
        "title": "t",
        "status": "waiting for reply",
        "priority": "urgent",
        "GHD_Detailed_Solution": "s",
    }


# --- with the planner --------------------------------------------------------------------


def recorded(result, previous=None):
    copied = frozenset(result.copied) | (previous.copied if previous else frozenset())
    return LinkView("91234", result.newest_applied, result.sent, copied)


def test_planner_create_then_updates():
    entries = [entry("Problem.")]
    first = plan(fp(entries=entries), None, direction=DIRECTION, target_helpdesk="ggus")
    (create,) = first.ops
    assert isinstance(create, CreateTicket) and create.fields["status"] == "new"

    # Customer maps to in progress as Engineering did: no status push, only the entry
    entries.append(entry("Asked the user.", 1))
    second = plan(
        fp(status="Customer", entries=entries),
        recorded(first),
        direction=DIRECTION,
        target_helpdesk="ggus",
    )
    (update,) = second.ops
    assert isinstance(update, UpdateTicket)
    assert "status" not in update.fields
    assert [c.body.splitlines()[0] for c in update.comments] == ["Asked the user."]

    entries.append(entry("Fixed.", 2))
    third = plan(
        fp(status="Resolved", entries=entries),
        recorded(second, recorded(first)),
        direction=DIRECTION,
        target_helpdesk="ggus",
    )
    (update,) = third.ops
    assert update.fields["status"] == "solved"
    assert update.fields["GHD_Detailed_Solution"] == "Fixed."


# --- properties ------------------------------------------------------------------------

TOKEN = "INTERNALTOKEN"
PUBLIC_TEXT = st.text(st.characters(exclude_characters="I"), max_size=300)


@st.composite
def footprints_tickets(draw):
    kinds = draw(st.lists(st.booleans(), max_size=8))  # True = internal
    entries = []
    for i, internal in enumerate(kinds):
        if internal:
            entries.append(secret(f"{TOKEN}{i} " + draw(PUBLIC_TEXT), i))
        else:
            entries.append(entry(draw(PUBLIC_TEXT), i, author=draw(PUBLIC_TEXT)))
    return fp(
        status=draw(st.sampled_from(["Engineering", "Customer", "Resolved", "Closed", "X"])),
        priority=draw(st.sampled_from(["1", "2", "3", "4", "0", ""])),
        title=draw(PUBLIC_TEXT),
        entries=entries,
    )


@given(footprints_tickets(), st.booleans())
def test_internal_entries_never_reach_a_public_value(ticket, top):
    direction = dataclasses.replace(DIRECTION, allow_top_priority=top)
    op = direction.create(ticket, "ggus")
    public = [op.title, op.description, *op.fields.values()]
    public += [c.body for c in op.comments if c.visibility is Visibility.PUBLIC]
    public += list(direction.fields(ticket).values())
    public += [
        direction.comment(c, ticket).body
        for c in ticket.comments
        if c.visibility is Visibility.PUBLIC
    ]
    assert not any(TOKEN in text for text in public)
    for c in ticket.comments:
        out = direction.comment(c, ticket)
        assert (TOKEN in out.body) == (out.visibility is Visibility.INTERNAL)


@given(footprints_tickets(), st.text(max_size=300))
def test_create_respects_ggus_limits_and_never_sends_in_progress(ticket, url):
    direction = dataclasses.replace(DIRECTION, ticket_url=url.replace("{", "").replace("}", ""))
    op = direction.create(ticket, "ggus")
    assert op.fields["status"] in GGUS_STATUSES and op.fields["status"] != "in progress"
    assert op.fields["priority"] in GGUS_PRIORITIES and op.fields["priority"] != "normal"
    assert op.fields["priority"] != "top priority"
    assert 0 < len(op.title) <= TITLE_LIMIT
    assert len(op.description) <= TEXT_LIMIT
    assert all(len(c.body) <= TEXT_LIMIT for c in op.comments)
    assert len(op.fields.get("GHD_Detailed_Solution", "")) <= TEXT_LIMIT
    if op.fields["status"] == "solved":
        assert op.fields["GHD_Detailed_Solution"].strip()
    texts = [op.title, op.description, *op.fields.values(), *(c.body for c in op.comments)]
    assert all(_xml_valid(ch) for text in texts for ch in text)
