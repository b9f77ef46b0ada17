"""The ``ggus-rest`` connector: GGUS (Zammad era) through the Zammad REST API v1.

Authentication is ``Authorization: Token token=<token>`` (spec C8). Writes:

* :class:`~ticketbridge.model.CreateTicket` -> ``POST /api/v1/tickets`` with the title,
  ``group`` (the field ``GHD_Responsible_Unit``, else the configured group), ``state`` and
  ``priority`` (fields ``status``/``priority``), the custom attributes ``origin_id`` = the
  correlation key and ``origin_sg`` = the configured reverse assignee, and the
  description as the embedded first article (public: in GGUS the first article *is* the
  description). The operation's comments follow as one ``PUT`` each (below).
* :class:`~ticketbridge.model.UpdateTicket` -> one ``PUT /api/v1/tickets/{id}`` per
  comment, each embedding one new article (``internal`` true for internal comments), then
  one ``PUT`` with the fields (``title``, ``state``, ``priority``, ``group`` and the custom
  attributes). A ``GHD_Detailed_Solution`` travels as the public article of that last
  ``PUT`` together with ``state: solved`` (GGUS takes a public article sent with
  ``solved`` as the solution), which is also why the comments go first, on their own.
* :class:`~ticketbridge.model.AddAttachment` -> ``POST /api/v1/ticket_articles`` with the
  file base64-encoded, on a public note "Attachment added: NAME".

``GHD_*`` field names are accepted and mapped to the REST attributes (table
:data:`REST_ATTRIBUTES`); a field without a REST counterpart is refused before anything is
sent. The receipt's ``version`` is the ticket's ``updated_at`` from the last answer.

Reads: :meth:`GgusRestConnector.fetch` = the ticket, its articles and (unless disabled)
the attachment data. The snapshot's ref is the ticket ``id`` (the API's key; the display
``number`` is in the fields), ``modified`` is ``updated_at``, comments are the articles
after the first (keyed ``article:<id>``, internal ones internal), and the fields carry
both the REST names and the gen-1 mail-XML names (``GHD_Request-ID`` = number,
``GHD_Responsible_Unit`` = group ...), so the GGUS -> Footprints mapping reads it as it
reads a notification mail.

:meth:`GgusRestConnector.find_by_correlation` searches ``origin_id:"<key>"`` and keeps
tickets whose ``origin_sg`` is ours (or empty). :meth:`GgusRestConnector.changed_since`
serves a poller: see its docstring.

Errors (one translator): 401/403 -> RemoteAuthFailed; 429 and 5xx -> RemoteUnavailable
carrying ``Retry-After``; connection failures and timeouts -> RemoteUnavailable; every
other 4xx (404 unknown ticket, 422 refused value) -> RemoteRejected with GGUS' text.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from ticketbridge.codecs import ggus_rest as rest
from ticketbridge.connectors.ggus._common import (
    clean_name,
    content_type,
    is_internal,
    native_fields,
)
from ticketbridge.connectors.ggus._http import (
    HttpAnswer,
    HttpStatusError,
    HttpTransport,
    translate_http,
)
from ticketbridge.connectors.ggus.settings import GgusRestSettings
from ticketbridge.errors import BadInput, RemoteRejected, RemoteUnavailable
from ticketbridge.model import (
    AddAttachment,
    Comment,
    CreateTicket,
    Operation,
    Receipt,
    Ticket,
    TicketRef,
    UpdateTicket,
)

__all__ = ["REST_ATTRIBUTES", "GgusRestConnector"]

#: Operation field (planner name or GGUS element) -> REST ticket attribute.
REST_ATTRIBUTES: Mapping[str, str] = MappingProxyType({
    "GHD_Short_Description": "title",
    "GHD_Status": "state",
    "GHD_Priority": "priority",
    "GHD_Responsible_Unit": "group",
    "GHD_Type_Of_Problem": "ticket_area",
    "GHD_Affected_VO": "affected_vo",
    "GHD_Experiment": "affected_vo",
    "GHD_Affected_Site": "affected_site",
    "GHD_Origin_ID": "origin_id",
    "GHD_Origin_SG": "origin_sg",
    "GHD_Ticket_Category": "category",
    "GHD_Date_Time_Of_Problem": "time_of_issue",
    "GHD_EMail": "customer",
    "GHD_E-Mail": "customer",
})
#: Submitter details GGUS' REST side has no attribute for: not sent, named in the receipt.
_NOT_CARRIED = frozenset({"GHD_Name", "GHD_Phone", "GHD_Loginname"})
#: Fields that say *who* writes: they become the article's ``from``, not an attribute.
_AUTHOR_FIELDS = frozenset({"GHD_Last_Modifier"})
_SOLUTION = "GHD_Detailed_Solution"
#: The gen-1 mail-XML name of each REST attribute, for snapshots.
_MAIL_XML_NAMES: Mapping[str, str] = MappingProxyType({
    "number": "GHD_Request-ID",
    "group": "GHD_Responsible_Unit",
    "ticket_area": "GHD_Type_Of_Problem",
    "affected_vo": "GHD_Experiment",
    "affected_site": "GHD_Affected_Site",
    "origin_id": "GHD_Origin_ID",
    "origin_sg": "GHD_Origin_SG",
    "category": "GHD_Ticket_Category",
    "time_of_issue": "GHD_Date_Time_Of_Problem",
})
_MAX_JSON_BYTES = 16 * 1024 * 1024


class GgusRestConnector:
    """GGUS over Zammad REST v1 as a target helpdesk (``TargetConnector``) and a poll source."""

    def __init__(self, name: str, settings: GgusRestSettings) -> None:
        self.name = name
        self.settings = settings
        self.http = HttpTransport(settings.url, connect_timeout=settings.connect_timeout,
                                  read_timeout=settings.read_timeout,
                                  max_bytes=_MAX_JSON_BYTES)

    # -- TargetConnector -----------------------------------------------------------------

    def apply(self, op: Operation) -> Receipt:
        """Create, update or attach; see the module docstring."""
        if isinstance(op, CreateTicket):
            body = self._attributes(op.fields)
            author = op.fields.get("GHD_Last_Modifier", "")
            body.update({
                "title": op.title,
                "group": body.get("group") or self.settings.group,
                "origin_id": op.correlation_key,
                "origin_sg": self.settings.origin_sg,
                "article": _article(op.description, internal=False, subject=op.title,
                                    author=author),
            })
            if _SOLUTION in op.fields:
                raise RemoteRejected(self.name, "a new GGUS ticket cannot carry a solution")
            created = self._ticket_json("POST", "/tickets", body, what="create")
            ticket_id = str(created.id)
            last = created
            for comment in op.comments:
                last = self._put_article(ticket_id, comment, author) or last
            return Receipt(ticket_id=ticket_id, version=_version(last),
                           detail=f"created in group {created.group}{_left_out(op.fields)}")
        if isinstance(op, UpdateTicket):
            ticket_id = self._ticket_id(op.ticket_id)
            author = op.fields.get("GHD_Last_Modifier", "")
            fields = self._fields_body(op.fields, author)
            results: list[rest.RestTicket] = []
            for comment in op.comments:
                result = self._put_article(ticket_id, comment, author)
                if result is not None:
                    results.append(result)
            if fields or not results:
                results.append(self._ticket_json("PUT", f"/tickets/{ticket_id}", fields,
                                                 what="update"))
            return Receipt(ticket_id=ticket_id, version=_version(results[-1]),
                           detail=f"updated{_left_out(op.fields)}")
        return self._attach(op)

    def find_by_correlation(self, key: str) -> str | None:
        """The oldest ticket whose ``origin_id`` is ``key`` (and ``origin_sg`` ours or empty)."""
        query = rest.build_search_query(rest.SearchQuery(origin_id=key))
        ids = [t.id for t in self._search_all(query, sort_by="id")
               if t.custom.get("origin_id") == key
               and t.custom.get("origin_sg", "") in ("", self.settings.origin_sg)]
        return str(min(ids)) if ids else None

    def fetch(self, ticket_id: str) -> Ticket:
        """The ticket, its articles and attachments. RemoteRejected if it does not exist."""
        request_id = self._ticket_id(ticket_id)
        ticket = self._ticket_json("GET", f"/tickets/{request_id}", None, what="fetch")
        data = self._get_json(f"/ticket_articles/by_ticket/{request_id}", "articles")
        if not isinstance(data, list):
            raise RemoteUnavailable(self.name, "articles: the answer is not a list")
        with _translate(self.name, "articles answer"):
            articles = [rest.article_from_json(item) for item in data]
        files: dict[int, bytes] = {}
        if self.settings.fetch_attachments:
            for article in articles:
                for item in article.attachments:
                    files[item.id] = self._get_bytes(
                        f"/ticket_attachment/{request_id}/{article.id}/{item.id}",
                        f"attachment {item.id}")
        with _translate(self.name, "ticket answer"):
            snapshot = rest.to_ticket(ticket, articles, helpdesk=self.name, attachments=files)
        attachments = tuple(replace(a, name=clean_name(a.name)) for a in snapshot.attachments)
        return replace(snapshot, ref=TicketRef(self.name, str(ticket.id)),
                       fields=MappingProxyType(_snapshot_fields(ticket)),
                       attachments=attachments)

    def close(self) -> None:
        """Close the kept HTTP connections of every thread."""
        self.http.close()

    # -- polling -------------------------------------------------------------------------

    def changed_since(self, watermark: datetime, *,
                      overlap: timedelta = timedelta(0)) -> tuple[list[str], datetime]:
        """Ids of tickets changed since ``watermark``; see :meth:`changes_since`."""
        changes, newest = self.changes_since(watermark, overlap=overlap)
        return [ticket_id for ticket_id, _ in changes], newest

    def changes_since(
        self, watermark: datetime, *, overlap: timedelta = timedelta(0)
    ) -> tuple[list[tuple[str, datetime | None]], datetime]:
        """Ids of tickets updated after ``watermark - overlap``, oldest change first, and
        the new watermark (the newest ``updated_at`` seen; never earlier than ``watermark``).

        A naive ``watermark`` is read as UTC. ``overlap`` re-reads a window before the
        watermark, so a change committed late with an earlier ``updated_at`` (clock skew,
        a long transaction) is not missed; the same ticket may then be returned by two
        consecutive calls, which the exchange recognises as already applied.

        Paging is by key, not by offset: each page asks for ``updated_at:>=`` the last
        time seen, so a ticket updated while the pages are read cannot shift a page and be
        skipped; ids are returned once. At most ``max_pages`` pages are read per call; the
        watermark then stops at the last time seen, and the next call goes on from there.
        """
        start = _utc(watermark) - overlap
        newest = _utc(watermark)
        seen: dict[int, datetime | None] = {}
        operator, cursor, page = ">", start, 1
        for _ in range(self.settings.max_pages):
            query = f"updated_at:{operator}{rest.format_time(cursor)}"
            found = self._search_page(query, sort_by="updated_at", page=page)
            for ticket in found:
                seen[ticket.id] = ticket.updated_at
                if ticket.updated_at is not None and ticket.updated_at > newest:
                    newest = ticket.updated_at
            if len(found) < self.settings.page_size:
                break
            last = found[-1].updated_at
            if last is None:  # no order to page by: fall back to numbered pages
                page += 1
            elif operator == ">=" and last == cursor:
                page += 1  # a full page of ties: the next page of the same query
            else:
                operator, cursor, page = ">=", last, 1
        return [(str(i), at) for i, at in seen.items()], newest

    # -- requests ------------------------------------------------------------------------

    def _ticket_id(self, ticket_id: str) -> str:
        value = ticket_id.strip()
        if not (value.isascii() and value.isdigit()):
            raise RemoteRejected(self.name, f"{ticket_id!r} is not a GGUS ticket id")
        return value

    def _attributes(self, fields: Mapping[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        unknown: list[str] = []
        for name, value in native_fields(fields).items():
            if name in _AUTHOR_FIELDS or name in _NOT_CARRIED or name in (
                    _SOLUTION, "GHD_Last_Login"):
                continue
            attribute = REST_ATTRIBUTES.get(name)
            if attribute is None:
                unknown.append(name)
            else:
                body[attribute] = value
        if unknown:
            raise RemoteRejected(
                self.name, f"GGUS' REST API has no attribute for {', '.join(sorted(unknown))}")
        return body

    def _fields_body(self, fields: Mapping[str, str], author: str) -> dict[str, Any]:
        body = self._attributes(fields)
        solution = fields.get(_SOLUTION, "")
        if solution.strip():
            state = body.get("state", "solved")
            if state != "solved":
                raise RemoteRejected(self.name, f"a solution is sent with state solved only, "
                                                f"not with {state!r}")
            body["state"] = "solved"
            body["article"] = _article(solution, internal=False, subject="Solution",
                                       author=author)
        return body

    def _put_article(self, ticket_id: str, comment: Comment,
                     author: str) -> rest.RestTicket | None:
        if not comment.body.strip():
            return None
        internal = is_internal(comment)
        article = _article(comment.body, internal=internal, subject="",
                           author=comment.author or author)
        return self._ticket_json("PUT", f"/tickets/{ticket_id}", {"article": article},
                                 what="comment")

    def _attach(self, op: AddAttachment) -> Receipt:
        ticket_id = self._ticket_id(op.ticket_id)
        item = op.attachment
        name = clean_name(item.name)
        body = {
            "ticket_id": int(ticket_id), "body": f"Attachment added: {name}",
            "type": "note", "internal": False, "content_type": "text/plain",
            **({"from": item.author} if item.author else {}),
            "attachments": [{
                "filename": name, "data": base64.b64encode(item.data).decode("ascii"),
                "mime-type": item.content_type or content_type(name)}],
        }
        data = self._json("POST", "/ticket_articles", body, "attachment")
        with _translate(self.name, "attachment answer"):
            article = rest.article_from_json(data)
        ticket = self._ticket_json("GET", f"/tickets/{ticket_id}", None, what="attachment")
        ids = ",".join(str(a.id) for a in article.attachments)
        return Receipt(ticket_id=ticket_id, version=_version(ticket),
                       detail=f"attachment:{ids}")

    def _search_page(self, query: str, *, sort_by: str, page: int) -> list[rest.RestTicket]:
        params = urllib.parse.urlencode({
            "query": query, "sort_by": sort_by, "order_by": "asc", "expand": "true",
            "limit": self.settings.page_size, "page": page})
        data = self._get_json(f"/tickets/search?{params}", "search")
        if isinstance(data, Mapping):  # the non-expanded form: ids plus assets
            assets = (data.get("assets") or {}).get("Ticket") or {}
            data = [assets[str(i)] for i in data.get("tickets") or [] if str(i) in assets]
        if not isinstance(data, list):
            raise RemoteUnavailable(self.name, "search: the answer is not a list")
        with _translate(self.name, "search answer"):
            return [rest.ticket_from_json(item) for item in data]

    def _search_all(self, query: str, *, sort_by: str) -> list[rest.RestTicket]:
        found: list[rest.RestTicket] = []
        for page in range(1, self.settings.max_pages + 1):
            batch = self._search_page(query, sort_by=sort_by, page=page)
            found.extend(batch)
            if len(batch) < self.settings.page_size:
                break
        return found

    def _ticket_json(self, verb: str, path: str, body: Any, *, what: str) -> rest.RestTicket:
        data = self._json(verb, path, body, what)
        with _translate(self.name, f"{what} answer"):
            return rest.ticket_from_json(data)

    def _get_json(self, path: str, what: str) -> Any:
        return self._json("GET", path, None, what)

    def _json(self, verb: str, path: str, body: Any, what: str) -> Any:
        payload = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        answer = self._request(verb, path, payload, what)
        with _translate(self.name, what):
            try:
                return json.loads(answer.body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RemoteUnavailable(self.name, f"{what}: the answer is not JSON: {exc}"
                                        ) from exc

    def _get_bytes(self, path: str, what: str) -> bytes:
        return self._request("GET", path, None, what).body

    def _request(self, verb: str, path: str, payload: bytes | None, what: str) -> HttpAnswer:
        token = self.settings.token.get_secret_value()
        headers = {"Authorization": f"Token token={token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        with _translate(self.name, what):
            answer = self.http.request(verb, "/api/v1" + path, body=payload, headers=headers,
                                       idempotent=verb == "GET")
            if len(answer.body) > self.http.max_bytes:
                raise RemoteUnavailable(self.name, f"{what}: answer larger than "
                                                   f"{self.http.max_bytes} bytes")
            if not 200 <= answer.status < 300:
                raise HttpStatusError(answer, _error_text(answer))
            return answer


def _article(body: str, *, internal: bool, subject: str, author: str) -> dict[str, Any]:
    article: dict[str, Any] = {"body": body, "internal": internal, "type": "note",
                               "content_type": "text/plain"}
    if subject:
        article["subject"] = subject
    if author:
        article["from"] = author
    return article


def _left_out(fields: Mapping[str, str]) -> str:
    names = sorted(n for n in fields if n in _NOT_CARRIED)
    return f"; not carried by the REST API: {', '.join(names)}" if names else ""


def _version(ticket: rest.RestTicket) -> str:
    return rest.format_time(ticket.updated_at) if ticket.updated_at else ""


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _snapshot_fields(ticket: rest.RestTicket) -> dict[str, str]:
    values: dict[str, str] = {"number": ticket.number, "group": ticket.group,
                              **ticket.custom}
    fields = {k: v for k, v in values.items() if v}
    for name, value in list(fields.items()):
        canonical = _MAIL_XML_NAMES.get(name)
        if canonical is not None:
            fields[canonical] = value
    fields.update({k: v for k, v in {
        "GHD_Short_Description": ticket.title,
        "GHD_Status": ticket.state,
        "GHD_Priority": ticket.priority,
        "GHD_E-Mail": ticket.customer,
        "GHD_Date_Of_Change": rest.format_time(ticket.updated_at)
        if ticket.updated_at else "",
    }.items() if v})
    return fields


def _error_text(answer: HttpAnswer) -> str:
    """Zammad's ``error_human``/``error`` when the body is its JSON, else the body's start."""
    text = answer.body.decode("utf-8", "replace").strip()
    with contextlib.suppress(json.JSONDecodeError):
        data = json.loads(text)
        if isinstance(data, Mapping):
            found = data.get("error_human") or data.get("error")
            if isinstance(found, str) and found:
                return found
    return text[:200] or answer.reason


@contextlib.contextmanager
def _translate(helpdesk: str, what: str) -> Iterator[None]:
    """HTTP and network failures, and unreadable answers, into ticketbridge's error tree."""
    try:
        with translate_http(helpdesk, what):
            yield
    except BadInput as exc:  # JSON that does not describe a ticket or an article
        raise RemoteUnavailable(helpdesk, f"{what}: unreadable answer: {exc}") from exc
