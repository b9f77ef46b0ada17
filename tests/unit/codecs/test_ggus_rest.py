"""The GGUS Zammad-era REST codec: ticket and article JSON, inputs, search queries."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from ticketbridge.codecs import ggus_rest as rest
from ticketbridge.errors import InvalidValue
from ticketbridge.model import Visibility

T0 = datetime(2025, 1, 1, 10, 11, 12, tzinfo=UTC)


def test_ticket_json_round_trip_with_ids_names_and_custom_attributes() -> None:
    ticket = rest.RestTicket(
        id=1000, number="1000", title="SRM timeouts", group="OSG", group_id=2,
        state="in progress", priority="urgent", customer="jane@example.org",
        created_at=T0, updated_at=T0, article_count=3,
        custom={"ticket_area": "Storage Systems", "affected_vo": "atlas"})
    data = rest.ticket_to_json(ticket)
    assert data["state_id"] == 3 and data["priority_id"] == 2
    assert data["created_at"] == "2025-01-01T10:11:12Z"
    assert data["ticket_area"] == "Storage Systems" and data["origin_id"] == ""
    assert rest.ticket_from_json(data) == ticket


def test_article_json_round_trip() -> None:
    article = rest.RestArticle(
        id=5, ticket_id=1000, body="Restarted.", internal=True, from_="Sup",
        created_at=T0, attachments=(rest.RestAttachment(9, "log.txt", 12, "text/plain"),))
    assert rest.article_from_json(rest.article_to_json(article)) == article


def test_ticket_input_accepts_names_ids_and_embedded_article() -> None:
    given = rest.parse_ticket_input({
        "title": "x", "group": "OSG", "state_id": 1, "priority": "Urgent",
        "customer": "guess:jane@example.org", "affected_vo": "atlas",
        "article": {"body": "b", "internal": False, "attachments": [
            {"filename": "a.txt", "data": base64.b64encode(b"hi").decode(),
             "mime-type": "text/plain"}]},
    }, groups=["TPM", "OSG"])
    assert (given.title, given.group, given.state, given.priority) == (
        "x", "OSG", "new", "urgent")
    assert given.customer == "jane@example.org"
    assert given.custom == {"affected_vo": "atlas"}
    assert given.article is not None
    assert given.article.attachments == (rest.AttachmentInput("a.txt", b"hi", "text/plain"),)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"state": "bogus"}, "state 'bogus' is not one of"),
        ({"priority": "normal"}, "priority 'normal' is not one of"),
        ({"priority_id": 9}, "priority_id 9"),
        ({"group": "Nowhere"}, "group 'Nowhere' does not exist"),
        ({"article": {"body": ""}}, "body is required"),
        ({"article": {"body": "x", "internal": "yes"}}, "internal must be true or false"),
        ({"article": {"body": "x", "attachments": [{"filename": "a", "data": "%%"}]}},
         "not base64"),
        ([], "must be a JSON object"),
    ],
)
def test_invalid_ticket_input_names_the_problem(data: object, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        rest.parse_ticket_input(data, groups=["TPM", "OSG"])


def test_article_input_needs_a_ticket_id() -> None:
    with pytest.raises(InvalidValue, match="ticket_id is required"):
        rest.parse_article_input({"body": "x"})
    assert rest.parse_article_input({"ticket_id": "7", "body": "x"}).ticket_id == 7


def test_search_query_round_trip() -> None:
    text = 'updated_at:>2025-01-01T10:11:12Z AND group.name:"NGI_CZ" AND number:1000'
    query = rest.parse_search_query(text)
    assert query == rest.SearchQuery(updated_after=T0, group="NGI_CZ", number="1000")
    assert rest.parse_search_query(rest.build_search_query(query)) == query
    assert rest.parse_search_query("*") == rest.SearchQuery()
    assert rest.parse_search_query("updated_at:>=2025-01-01T10:11:12+00:00").updated_from == T0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('group.name:"A" OR group.name:"B"', "only AND"),
        ("title:foo", "unsupported search field 'title'"),
        ("number:>5", "only supported on updated_at"),
        ("updated_at:>yesterday", "not an ISO-8601 time"),
    ],
)
def test_search_outside_the_subset_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        rest.parse_search_query(text)


def test_to_ticket_first_article_is_the_description() -> None:
    ticket = rest.RestTicket(id=1, number="1", title="t", group="OSG", state="new",
                             priority="urgent", updated_at=T0)
    articles = [
        rest.RestArticle(id=3, ticket_id=1, body="secret", internal=True),
        rest.RestArticle(id=1, ticket_id=1, body="the problem"),
    ]
    snapshot = rest.to_ticket(ticket, articles)
    assert snapshot.description == "the problem"
    ((comment),) = snapshot.comments
    assert comment.key == "article:3" and comment.visibility is Visibility.INTERNAL
    assert snapshot.modified == T0 and snapshot.fields["group"] == "OSG"
