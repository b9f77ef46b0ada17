"""GGUS Zammad-era REST v1: ticket and article JSON, search queries. Pure.

Since 2024 GGUS runs on Zammad and its integration surface is Zammad's REST API v1
(spec/domain.md A4, C8). This module maps its JSON both ways:

* :class:`RestTicket` / :func:`ticket_to_json` / :func:`ticket_from_json`: a ticket as
  ``GET /api/v1/tickets/{id}`` shows it, with names *and* ids of group, state and
  priority (Zammad's ``expand=true`` form), ISO-8601 UTC times ending in ``Z``, and the
  GGUS custom attributes ``ticket_area``, ``affected_vo``, ``affected_site``,
  ``origin_id``, ``origin_sg``, ``category`` and ``time_of_issue``. **[R]** The custom
  attribute names are our reconstruction: the public GGUS documentation names the
  attributes (TICKET AREA, AFFECTED VO ...) but not their API names.
* :class:`RestArticle` / :func:`article_to_json` / :func:`article_from_json`: one article
  (``internal`` true = an internal diary entry, false = public).
* :func:`parse_ticket_input` and :func:`parse_article_input`: the bodies of
  ``POST/PUT /api/v1/tickets`` and ``POST /api/v1/ticket_articles``, validated.
* :func:`parse_search_query` / :func:`build_search_query`: the subset of Zammad's
  (Elasticsearch) query syntax used to poll: ``updated_at:>2025-01-01T00:00:00Z AND
  group.name:"NGI_CZ"``.
* :func:`to_ticket`: a :class:`~ticketbridge.model.Ticket` snapshot from a ticket and its
  articles, for a client connector.

Invalid input raises :class:`~ticketbridge.errors.InvalidValue` naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from ticketbridge.errors import InvalidValue
from ticketbridge.model import (
    Attachment,
    Comment,
    Contact,
    Ticket,
    TicketRef,
    Visibility,
)

__all__ = [
    "CUSTOM_ATTRIBUTES",
    "PRIORITIES",
    "STATES",
    "STATE_TYPES",
    "ArticleInput",
    "AttachmentInput",
    "RestArticle",
    "RestAttachment",
    "RestTicket",
    "SearchQuery",
    "TicketInput",
    "article_from_json",
    "article_to_json",
    "build_search_query",
    "format_time",
    "parse_article_input",
    "parse_search_query",
    "parse_ticket_input",
    "parse_time",
    "priority_id",
    "state_id",
    "ticket_from_json",
    "ticket_to_json",
    "to_ticket",
]

#: Ticket states, by id 1..10 (the GGUS statuses kept as Zammad state names, B5.7).
STATES: tuple[str, ...] = (
    "new", "assigned", "in progress", "waiting for reply", "on hold", "reopened",
    "solved", "unsolved", "verified", "closed",
)
#: Zammad's state type of each state (what ``GET /api/v1/ticket_states`` reports). [R]
STATE_TYPES: Mapping[str, str] = MappingProxyType({
    "new": "new", "assigned": "open", "in progress": "open",
    "waiting for reply": "pending reminder", "on hold": "pending reminder",
    "reopened": "open", "solved": "closed", "unsolved": "closed", "verified": "closed",
    "closed": "closed",
})
#: Priorities, by id 1..4 (the four GGUS names, B3.2; the SOAP-only ``normal`` is absent).
PRIORITIES: tuple[str, ...] = ("less urgent", "urgent", "very urgent", "top priority")
#: GGUS custom ticket attributes on the REST side. [R] names reconstructed.
CUSTOM_ATTRIBUTES: tuple[str, ...] = (
    "ticket_area", "affected_vo", "affected_site", "origin_id", "origin_sg", "category",
    "time_of_issue",
)

_MAX_ATTACHMENTS = 20


def state_id(name: str) -> int:
    return STATES.index(name) + 1


def priority_id(name: str) -> int:
    return PRIORITIES.index(name) + 1 if name in PRIORITIES else 0


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, with milliseconds when the time has them, as Zammad
    writes it: ``2025-01-01T10:11:12.345Z`` (or ``2025-01-01T10:11:12Z``)."""
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``Z``, an offset, or none = UTC) as aware UTC.

    Raises :class:`InvalidValue` when ``text`` is not one.
    """
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{text!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# --- tickets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestTicket:
    """A ticket as the REST API shows it. ``custom`` holds :data:`CUSTOM_ATTRIBUTES`."""

    id: int
    number: str
    title: str
    group: str
    state: str
    priority: str
    group_id: int = 0
    customer: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    article_count: int = 0
    custom: Mapping[str, str] = field(default_factory=dict)


def ticket_to_json(ticket: RestTicket) -> dict[str, Any]:
    """The JSON object of one ticket (names and ids, like Zammad's ``expand=true``)."""
    data: dict[str, Any] = {
        "id": ticket.id,
        "number": ticket.number,
        "title": ticket.title,
        "group_id": ticket.group_id,
        "group": ticket.group,
        "state_id": state_id(ticket.state) if ticket.state in STATES else 0,
        "state": ticket.state,
        "priority_id": priority_id(ticket.priority),
        "priority": ticket.priority,
        "customer": ticket.customer,
        "article_count": ticket.article_count,
        "created_at": format_time(ticket.created_at) if ticket.created_at else None,
        "updated_at": format_time(ticket.updated_at) if ticket.updated_at else None,
    }
    for name in CUSTOM_ATTRIBUTES:
        data[name] = ticket.custom.get(name, "")
    return data


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidValue(f"{key} must be a string")
    return str(value)


def _optional_time(data: Mapping[str, Any], key: str) -> datetime | None:
    text = _str(data, key)
    return parse_time(text) if text else None


def ticket_from_json(data: Mapping[str, Any]) -> RestTicket:
    """Read one ticket object (client side). Raises InvalidValue for a malformed one."""
    if not isinstance(data, Mapping):
        raise InvalidValue("a ticket must be a JSON object")
    try:
        ticket_id = int(data["id"])
    except (KeyError, TypeError, ValueError):
        raise InvalidValue("a ticket needs a numeric id") from None
    count = data.get("article_count") or 0
    return RestTicket(
        id=ticket_id,
        number=_str(data, "number", str(ticket_id)),
        title=_str(data, "title"),
        group=_str(data, "group"),
        state=_str(data, "state"),
        priority=_str(data, "priority"),
        group_id=int(data.get("group_id") or 0),
        customer=_str(data, "customer"),
        created_at=_optional_time(data, "created_at"),
        updated_at=_optional_time(data, "updated_at"),
        article_count=int(count) if isinstance(count, int | str) else 0,
        custom={name: _str(data, name) for name in CUSTOM_ATTRIBUTES if data.get(name)},
    )


# --- articles ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestAttachment:
    """An attachment as an article lists it (its data is fetched separately)."""

    id: int
    filename: str
    size: int
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class RestArticle:
    """One article: the description, a diary entry, a solution, a mail reply."""

    id: int
    ticket_id: int
    body: str
    internal: bool = False
    subject: str = ""
    type: str = "note"
    sender: str = "Agent"
    from_: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    content_type: str = "text/plain"
    attachments: tuple[RestAttachment, ...] = ()


def article_to_json(article: RestArticle) -> dict[str, Any]:
    return {
        "id": article.id,
        "ticket_id": article.ticket_id,
        "type": article.type,
        "sender": article.sender,
        "from": article.from_,
        "subject": article.subject,
        "body": article.body,
        "content_type": article.content_type,
        "internal": article.internal,
        "created_by": article.created_by,
        "created_at": format_time(article.created_at) if article.created_at else None,
        "updated_at": format_time(article.created_at) if article.created_at else None,
        "attachments": [
            {"id": a.id, "filename": a.filename, "size": str(a.size),
             "preferences": {"Mime-Type": a.content_type}}
            for a in article.attachments
        ],
    }


def article_from_json(data: Mapping[str, Any]) -> RestArticle:
    """Read one article object (client side). Raises InvalidValue for a malformed one."""
    if not isinstance(data, Mapping):
        raise InvalidValue("an article must be a JSON object")
    try:
        article_id, ticket_id = int(data["id"]), int(data["ticket_id"])
    except (KeyError, TypeError, ValueError):
        raise InvalidValue("an article needs numeric id and ticket_id") from None
    attachments = []
    for item in data.get("attachments") or []:
        if not isinstance(item, Mapping):
            raise InvalidValue("an attachment entry must be a JSON object")
        prefs = item.get("preferences") or {}
        attachments.append(RestAttachment(
            id=int(item.get("id") or 0), filename=_str(item, "filename"),
            size=int(item.get("size") or 0),
            content_type=str(prefs.get("Mime-Type") or "application/octet-stream")))
    return RestArticle(
        id=article_id, ticket_id=ticket_id, body=_str(data, "body"),
        internal=bool(data.get("internal")), subject=_str(data, "subject"),
        type=_str(data, "type", "note"), sender=_str(data, "sender", "Agent"),
        from_=_str(data, "from"), created_by=_str(data, "created_by"),
        created_at=_optional_time(data, "created_at"),
        content_type=_str(data, "content_type", "text/plain"),
        attachments=tuple(attachments),
    )


# --- request bodies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttachmentInput:
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class ArticleInput:
    """The body of ``POST /api/v1/ticket_articles`` or an embedded ``article``."""

    body: str
    internal: bool = False
    ticket_id: int | None = None
    subject: str = ""
    type: str = "note"
    from_: str = ""
    content_type: str = "text/plain"
    attachments: tuple[AttachmentInput, ...] = ()


@dataclass(frozen=True, slots=True)
class TicketInput:
    """The body of ``POST /api/v1/tickets`` or ``PUT /api/v1/tickets/{id}``.

    Only keys present in the JSON are set (None = not given).
    """

    title: str | None = None
    group: str | None = None
    state: str | None = None
    priority: str | None = None
    customer: str | None = None
    custom: Mapping[str, str] = field(default_factory=dict)
    article: ArticleInput | None = None


def _named(data: Mapping[str, Any], key: str, values: Sequence[str]) -> str | None:
    """``state``/``priority`` by name, or ``state_id``/``priority_id`` by id."""
    if data.get(key) is not None:
        name = _str(data, key).strip().lower()
        if name not in values:
            raise InvalidValue(f"{key} {name!r} is not one of: {', '.join(values)}")
        return name
    id_key = f"{key}_id"
    if data.get(id_key) is not None:
        raw = data[id_key]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= len(values):
            raise InvalidValue(f"{id_key} {raw!r} is not an id between 1 and {len(values)}")
        return values[raw - 1]
    return None


def parse_article_input(data: Any, *, embedded: bool = False) -> ArticleInput:
    """Validate an article body. ``embedded``: inside a ticket, no ``ticket_id`` needed."""
    if not isinstance(data, Mapping):
        raise InvalidValue("an article must be a JSON object")
    ticket_id: int | None = None
    if not embedded:
        raw = data.get("ticket_id")
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
            raise InvalidValue("ticket_id is required and must be a number")
        ticket_id = int(raw)
    body = _str(data, "body")
    if not body.strip():
        raise InvalidValue("body is required")
    internal = data.get("internal", False)
    if not isinstance(internal, bool):
        raise InvalidValue("internal must be true or false")
    items = data.get("attachments") or []
    if not isinstance(items, list) or len(items) > _MAX_ATTACHMENTS:
        raise InvalidValue(f"attachments must be a list of at most {_MAX_ATTACHMENTS} objects")
    attachments = []
    for item in items:
        if not isinstance(item, Mapping):
            raise InvalidValue("an attachment must be a JSON object")
        filename = _str(item, "filename")
        if not filename:
            raise InvalidValue("an attachment needs a filename")
        try:
            payload = base64.b64decode("".join(_str(item, "data").split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidValue(f"attachment {filename!r}: data is not base64") from None
        attachments.append(AttachmentInput(
            filename, payload, _str(item, "mime-type") or _str(item, "mime_type")
            or "application/octet-stream"))
    return ArticleInput(
        body=body, internal=internal, ticket_id=ticket_id, subject=_str(data, "subject"),
        type=_str(data, "type", "note") or "note", from_=_str(data, "from"),
        content_type=_str(data, "content_type", "text/plain") or "text/plain",
        attachments=tuple(attachments))


def parse_ticket_input(data: Any, *, groups: Sequence[str] = ()) -> TicketInput:
    """Validate a ticket body; ``groups`` (when given) is the list of valid group names."""
    if not isinstance(data, Mapping):
        raise InvalidValue("the request body must be a JSON object")
    group = _str(data, "group") if data.get("group") is not None else None
    if group is not None and groups and group not in groups:
        raise InvalidValue(f"group {group!r} does not exist (known: {', '.join(groups)})")
    article = None
    if data.get("article") is not None:
        article = parse_article_input(data["article"], embedded=True)
    return TicketInput(
        title=_str(data, "title") if data.get("title") is not None else None,
        group=group,
        state=_named(data, "state", STATES),
        priority=_named(data, "priority", PRIORITIES),
        customer=(_str(data, "customer").removeprefix("guess:")
                  if data.get("customer") is not None else None),
        custom={name: _str(data, name) for name in CUSTOM_ATTRIBUTES
                if data.get(name) is not None},
        article=article,
    )


# --- search -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """The conditions of a search; all of them must hold (AND)."""

    updated_after: datetime | None = None   # updated_at:>T
    updated_from: datetime | None = None    # updated_at:>=T
    updated_before: datetime | None = None  # updated_at:<T
    group: str | None = None
    number: str | None = None
    state: str | None = None
    origin_id: str | None = None


_SEARCH_TERM = re.compile(
    r"""\s*(?P<key>[a-z_.]+):(?P<op>>=|>|<)?(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"]+))\s*""")
_SEARCH_AND = re.compile(r"\s*AND\s+", re.IGNORECASE)


def parse_search_query(text: str) -> SearchQuery:
    """Read ``updated_at:>T``, ``updated_at:>=T``, ``updated_at:<T``, ``group.name:"X"``,
    ``number:N``, ``state.name:"x"`` and ``origin_id:"x"`` joined by ``AND``.

    An empty query or ``*`` matches everything. Raises InvalidValue for anything else.
    """
    found: dict[str, Any] = {}
    if text.strip() in ("", "*"):
        return SearchQuery()
    pos = 0
    while True:
        match = _SEARCH_TERM.match(text, pos)
        if match is None:
            raise InvalidValue(
                f"unsupported search at {text[pos:].strip()[:40]!r}: use updated_at:>TIME, "
                'group.name:"X", number:N, state.name:"x", origin_id:"x" joined by AND')
        key, op = match.group("key"), match.group("op") or ""
        value = match.group("quoted") if match.group("quoted") is not None \
            else match.group("bare")
        if key == "updated_at" and op:
            slot = {">": "updated_after", ">=": "updated_from", "<": "updated_before"}[op]
            found[slot] = parse_time(value)
        elif op:
            raise InvalidValue(f"{key}: comparison {op} is only supported on updated_at")
        elif key == "group.name":
            found["group"] = value
        elif key == "number":
            found["number"] = value.lstrip("#")
        elif key == "state.name":
            found["state"] = value.lower()
        elif key == "origin_id":
            found["origin_id"] = value
        else:
            raise InvalidValue(f"unsupported search field {key!r}")
        pos = match.end()
        if pos >= len(text):
            return SearchQuery(**found)
        joiner = _SEARCH_AND.match(text, pos)
        if joiner is None:
            raise InvalidValue(f"unsupported search at {text[pos:].strip()[:40]!r}: "
                               "only AND joins terms")
        pos = joiner.end()


def build_search_query(query: SearchQuery) -> str:
    """The query text for ``query`` (the inverse of :func:`parse_search_query`)."""
    terms = []
    if query.updated_after is not None:
        terms.append(f"updated_at:>{format_time(query.updated_after)}")
    if query.updated_from is not None:
        terms.append(f"updated_at:>={format_time(query.updated_from)}")
    if query.updated_before is not None:
        terms.append(f"updated_at:<{format_time(query.updated_before)}")
    for key, value in (("group.name", query.group), ("number", query.number),
                       ("state.name", query.state), ("origin_id", query.origin_id)):
        if value is not None:
            if '"' in value:
                raise ValueError(f"{key}: a value cannot contain a double quote")
            terms.append(f'{key}:"{value}"')
    return " AND ".join(terms) or "*"


# --- snapshot ---------------------------------------------------------------------------


def to_ticket(
    ticket: RestTicket,
    articles: Sequence[RestArticle] = (),
    *,
    helpdesk: str = "ggus",
    attachments: Mapping[int, bytes] | None = None,
) -> Ticket:
    """A :class:`Ticket` snapshot. The first article is the description; later ones are
    comments keyed ``article:<id>``. ``attachments`` maps attachment ids to fetched data
    (attachments without data are left out)."""
    ordered = sorted(articles, key=lambda a: a.id)
    first = ordered[0] if ordered else None
    comments = tuple(
        Comment(key=f"article:{a.id}", body=a.body, author=a.from_ or a.created_by,
                created=a.created_at,
                visibility=Visibility.INTERNAL if a.internal else Visibility.PUBLIC,
                kind="internal diary" if a.internal else "public diary")
        for a in ordered[1:]
    )
    files = attachments or {}
    found = tuple(
        Attachment(key=f"attachment:{item.id}", name=item.filename, data=files[item.id],
                   content_type=item.content_type, created=a.created_at)
        for a in ordered for item in a.attachments if item.id in files
    )
    fields = {"group": ticket.group, "number": ticket.number, **ticket.custom}
    return Ticket(
        ref=TicketRef(helpdesk, ticket.number),
        title=ticket.title,
        description=first.body if first is not None else "",
        status=ticket.state,
        priority=ticket.priority,
        submitter=Contact(email=ticket.customer),
        fields=MappingProxyType(fields),
        comments=comments,
        attachments=found,
        modified=ticket.updated_at,
        created=ticket.created_at,
    )
