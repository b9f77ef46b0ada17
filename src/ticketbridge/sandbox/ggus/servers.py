"""The GGUS emulator's doors: an SMTP listener (mail submission) and one HTTP server that
speaks the Remedy-era SOAP services, serves their WSDLs, the Zammad-era REST API v1 and
the sandbox's admin endpoint ``POST /sandbox/route``.

Everything binds to 127.0.0.1; port 0 picks a free port. Real GGUS processed incoming
mail asynchronously; the emulator processes each mail *before* answering the SMTP
``250``, so a test or the demo sees the result as soon as its ``sendmail`` returns.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ticketbridge.codecs import ggus_rest as rest
from ticketbridge.codecs import ggus_soap as soap
from ticketbridge.errors import BadInput, InvalidValue
from ticketbridge.sandbox.doors import PortZeroController
from ticketbridge.sandbox.ggus.engine import (
    GHD_NAMES,
    PRIORITIES,
    Actor,
    Ggus,
    GgusFault,
    NewAttachment,
)
from ticketbridge.sandbox.ggus.store import GgusTicket, StoredAttachment

__all__ = ["HttpDoor", "SmtpDoor", "load_wsdl"]

log = logging.getLogger(__name__)

MAX_MAIL_BYTES = 10 * 1024 * 1024
MAX_JSON_BYTES = 8 * 1024 * 1024
DEFAULT_SEARCH_LIMIT = 50
MAX_PAGE_SIZE = 500


# --- SMTP -------------------------------------------------------------------------------


class _MailHandler:
    def __init__(self, engine: Ggus) -> None:
        self.engine = engine

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.strip().lower() != self.engine.helpdesk_address.lower():
            return (f"550 5.1.1 <{address}>: no such mailbox (this is the GGUS helpdesk "
                    f"address {self.engine.helpdesk_address})")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        try:
            # Processing may mail a notification through a smarthost: keep the loop free.
            outcome = await loop.run_in_executor(
                None, self.engine.submit_mail, raw, envelope.mail_from or "")
        except Exception:
            log.exception("the GGUS emulator failed to process a mail")
            return "451 4.3.0 GGUS could not process the mail; try again later"
        log.info("mail from %s: %s %s %s", envelope.mail_from, outcome.outcome,
                 outcome.request_id or "", outcome.reason)
        return "250 2.0.0 OK"


class SmtpDoor:
    """Mail submission: an SMTP server accepting mail for the helpdesk address."""

    def __init__(self, engine: Ggus, port: int = 0) -> None:
        self._controller = PortZeroController(_MailHandler(engine), hostname="127.0.0.1", port=port,
                                       data_size_limit=MAX_MAIL_BYTES)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


# --- WSDL -------------------------------------------------------------------------------


def load_wsdl(service: str) -> str:
    """The WSDL of ``service`` shipped with the package (with an ``@ENDPOINT@`` placeholder)."""
    if service not in soap.SERVICES:
        raise KeyError(service)
    package = resources.files("ticketbridge.sandbox.ggus") / "wsdl" / f"{service}.wsdl"
    return package.read_text(encoding="utf-8")


# --- HTTP -------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    engine: Ggus
    ars_server: str
    soap_user: str
    soap_password: str
    rest_token: str


_FIELD_OF: Mapping[str, str] = {
    **{ghd: name for name, ghd in GHD_NAMES.items()},
    "GHD_Submitter_Mail": "email",
}
_SOAP_ONLY = frozenset({"GHD_Request_ID", "Qualification", "startRecord", "maxLimit"})


_Values = list[tuple[str, soap.FieldValue]]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "GGUS-ARS/emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s - " + format, self.address_string(), *args)

    # -- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, status: int, text: str) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(),
                   "application/json; charset=utf-8")

    def _body(self, limit: int) -> bytes | None:
        """The request body, or None after answering 411/413."""
        header = self.headers.get("Content-Length")
        if header is None or not header.strip().isdigit():
            self._plain(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            self.close_connection = True
            return None
        length = int(header)
        if length > limit:
            self._plain(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"request body larger than {limit} bytes")
            self.close_connection = True
            return None
        return self.rfile.read(length)

    # -- verbs ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith(soap.WSDL_PATH + "/"):
            self._wsdl(path)
        elif path.startswith("/api/v1/"):
            self._rest("GET", path, None)
        elif path == soap.ENDPOINT_PATH:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain", {"Allow": "POST"})
        else:
            self._plain(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == soap.ENDPOINT_PATH:
            body = self._body(soap.MAX_DOCUMENT_BYTES)
            if body is not None:
                status, payload = self._soap(body)
                self._send(status, payload, 'text/xml; charset="utf-8"')
        elif path.startswith(("/api/v1/", "/sandbox/")):
            self._rest_with_body("POST", path)
        else:
            self._plain(HTTPStatus.NOT_FOUND, "not found")

    def do_PUT(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/api/v1/"):
            self._rest_with_body("PUT", path)
        else:
            self._plain(HTTPStatus.NOT_FOUND, "not found")

    # -- WSDL ----------------------------------------------------------------------------

    def _wsdl(self, path: str) -> None:
        parts = path[len(soap.WSDL_PATH) + 1:].split("/")
        if len(parts) != 2 or parts[0] != self.server.ars_server \
                or parts[1] not in soap.SERVICES:
            self._plain(HTTPStatus.NOT_FOUND,
                        f"no WSDL here; known: {soap.WSDL_PATH}/{self.server.ars_server}/"
                        f"{{{','.join(soap.SERVICES)}}}")
            return
        host, port = self.server.server_address[:2]
        endpoint = f"http://{host!s}:{port}" + soap.endpoint_path(self.server.ars_server,
                                                                   parts[1])
        text = load_wsdl(parts[1]).replace("@ENDPOINT@", endpoint.replace("&", "&amp;"))
        self._send(HTTPStatus.OK, text.encode(), "text/xml; charset=utf-8")

    # -- SOAP ----------------------------------------------------------------------------

    def _soap(self, body: bytes) -> tuple[int, bytes]:
        query = parse_qs(urlsplit(self.path).query)
        server_name = (query.get("server") or [""])[0]
        service = (query.get("webService") or [""])[0]
        if server_name != self.server.ars_server:
            return 500, soap.build_fault(
                "ERROR (90): Cannot establish a network connection to the AR System server; "
                f"{server_name or '(no server= given)'}")
        if service not in soap.SERVICES:
            return 500, soap.build_fault(
                f"ERROR (8939): Web service not found; {service or '(no webService= given)'}")
        try:
            request = soap.parse_request(body)
        except BadInput as exc:
            return 500, soap.build_fault(f"Malformed SOAP request refused: {exc}",
                                         code="soapenv:Client")
        operation = soap.OPERATIONS.get(request.operation)
        if request.namespace != soap.NAMESPACE or operation is None \
                or operation.service != service:
            known = ", ".join(o.name for o in soap.OPERATIONS.values() if o.service == service)
            return 500, soap.build_fault(
                f"No such operation {{{request.namespace}}}{request.operation} on web service "
                f"{service}; known: {known}", code="soapenv:Client")
        action = (self.headers.get("SOAPAction") or "").strip().strip('"')
        if action and action != soap.soap_action(operation.name):
            return 500, soap.build_fault(
                f"SOAPAction {action!r} does not match the operation "
                f"{soap.soap_action(operation.name)!r}", code="soapenv:Client")
        credentials = request.credentials
        if credentials is None or not (_same(credentials.user, self.server.soap_user)
                                       and _same(credentials.password,
                                                 self.server.soap_password)):
            user = credentials.user if credentials else ""
            return 500, soap.build_fault(f"ERROR (623): Authentication failed; {user}")
        try:
            values, rows = self._operation(operation, request)
        except GgusFault as exc:
            return 500, soap.build_fault(exc.message)
        except Exception as exc:
            log.exception("the GGUS emulator failed on %s", operation.name)
            return 500, soap.build_fault(f"ERROR (9999): internal error: {exc}",
                                         code="soapenv:Server")
        return 200, soap.build_response(operation.name, values, rows)

    def _operation(self, operation: soap.Operation, request: soap.SoapRequest
                   ) -> tuple[_Values, list[_Values]]:
        for name in request.names():
            if name not in operation.inputs:
                raise GgusFault(8962, "Unexpected element encountered in the input XML "
                                      f"document; {name}")
        for name in operation.required:
            if not request.get(name).strip():
                raise GgusFault(326, f"Required field cannot be blank.; {name}")
        engine = self.server.engine
        name = operation.name
        if name in ("OpCreate", "TicketCreate", "TicketModify"):
            fields = {_FIELD_OF[k]: v or "" for k, v in request.values if k not in _SOAP_ONLY}
            actor = Actor(request.get("GHD_Last_Modifier"), request.get("GHD_Last_Login"),
                          "soap")
            if name == "TicketModify":
                request_id = _ticket_id(request.get("GHD_Request_ID"))
                engine.modify(request_id, fields, actor, priorities=PRIORITIES)
                return [("GHD_Request_ID", str(request_id))], []
            created = engine.create(fields, actor, priorities=PRIORITIES)
            return [(operation.outputs[0], str(created))], []
        if name == "TicketGet":
            ticket = engine.ticket(_ticket_id(request.get("GHD_Request_ID")))
            return _ticket_values(ticket, operation.outputs,
                                  engine.latest_diaries(ticket.request_id)), []
        if name == "TicketGetList":
            try:
                terms = list(soap.parse_qualification(request.get("Qualification")))
            except InvalidValue as exc:
                raise GgusFault(1587, f"Error in qualification: {exc}") from None
            for extra in ("GHD_Responsible_Unit", "GHD_Meta_Status", "GHD_Status"):
                if request.get(extra):
                    terms.append(soap.Term(extra, "=", request.get(extra)))
            found = _page(engine.select(terms), request)
            if not found:
                raise GgusFault(302, "Entry does not exist in database")
            return [], [_ticket_values(t, operation.outputs, {}) for t in found]
        if name == "OpGetTicketHist":
            history = _page(engine.history(_ticket_id(request.get("GHD_Request_ID"))), request)
            if not history:
                raise GgusFault(302, "Entry does not exist in database")
            return [], [[
                ("GHD_Creation_Date", soap.format_datetime(h.created)),
                ("GHD_Last_Modifier", h.last_modifier), ("GHD_Last_Login", h.last_login),
                ("GHD_Status", h.status), ("GHD_Priority", h.priority),
                ("GHD_Responsible_Unit", h.responsible_unit),
                ("GHD_Public_Diary", h.public_diary), ("GHD_Internal_Diary", h.internal_diary),
                ("GHD_Detailed_Solution", h.detailed_solution),
                ("GHD_Diary_Of_Steps", h.diary_of_steps), ("GHD_Description", h.description),
                ("GHD_Type_Of_Problem", h.type_of_problem), ("GHD_VO", h.affected_vo),
                ("GHD_VO_Specific", h.vo_specific), ("GHD_Assigned_To", h.assigned_to),
                ("GHD_Involve", h.involve), ("GHD_Related_Issue", h.related_issue),
                ("GHD_Remind_On", h.remind_on), ("GHD_Affected_Site", h.affected_site),
                ("GHD_Affected_VO", h.affected_vo),
            ] for h in history]
        if name == "GetAttachIDs":
            attachments = engine.attachments(_ticket_id(request.get("GAT_Request_ID")))
            if not attachments:
                raise GgusFault(302, "Entry does not exist in database")
            return [], [[
                ("GAT_Attachment_ID", str(a.id)), ("GAT_Attachment_Name", a.name),
                ("GAT_Last_Modifier", a.last_modifier),
                ("GAT_Create_Date", soap.format_datetime(a.created)),
                ("GAT_Origin_SG", a.origin_sg),
            ] for a in attachments]
        if name == "GetOneAttachment":
            return _attachment_values(engine.attachment(
                _ticket_id(request.get("GAT_Attachment_ID")))), []
        # AddAttachment
        try:
            data = base64.b64decode("".join(request.get("GAT_Attachment_Data").split()),
                                    validate=True)
        except (binascii.Error, ValueError):
            raise GgusFault(306, "Value does not fall within the limits specified for the "
                                 "field; GAT_Attachment_Data is not base64") from None
        size_text = request.get("GAT_Attachment_Orig_Size").strip()
        if size_text and not size_text.isdigit():
            raise GgusFault(306, "Value does not fall within the limits specified for the "
                                 f"field; GAT_Attachment_Orig_Size {size_text!r}")
        attachment_id = engine.add_attachment(
            _ticket_id(request.get("GAT_Request_ID")),
            NewAttachment(request.get("GAT_Attachment_Name"), data),
            Actor(request.get("GAT_Last_Modifier"), request.get("GAT_Last_Login"), "soap"),
            orig_size=int(size_text) if size_text else None,
            origin_sg=request.get("GAT_Origin_SG"))
        return [("GAT_Attachment_ID", str(attachment_id))], []

    # -- REST ----------------------------------------------------------------------------

    def _authorised(self) -> str | None:
        """The REST login, or None after answering 401."""
        header = self.headers.get("Authorization") or ""
        scheme, _, credentials = header.partition(" ")
        login: str | None = None
        if scheme.lower() == "token":
            token = credentials.strip()
            token = token.removeprefix("token=").strip('"')
            if token and _same(token, self.server.rest_token):
                login = self.server.soap_user
        elif scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True) \
                    .decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                user, password = "", ""
            if _same(user, self.server.soap_user) and _same(password,
                                                            self.server.soap_password):
                login = user
        if login is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "authentication failed"})
            return None
        return login

    def _rest_with_body(self, verb: str, path: str) -> None:
        login = self._authorised()
        if login is None:
            return
        raw = self._body(MAX_JSON_BYTES)
        if raw is None:
            return
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"invalid JSON: {exc}"})
            return
        self._rest(verb, path, data, login)

    def _rest(self, verb: str, path: str, data: Any, login: str | None = None) -> None:
        login = login or self._authorised()
        if login is None:
            return
        parts = [p for p in path.split("/") if p]
        try:
            status, payload = self._route(verb, parts, data, login)
        except GgusFault as exc:
            if exc.number == 302:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"Couldn't find {exc.text}"})
            else:
                self._json(HTTPStatus.UNPROCESSABLE_ENTITY,
                           {"error": exc.message, "error_human": exc.text})
            return
        except InvalidValue as exc:
            self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc),
                                                         "error_human": str(exc)})
            return
        if isinstance(payload, StoredAttachment):
            disposition = f'attachment; filename="{_header_safe(payload.name)}"'
            self._send(status, payload.data, payload.content_type,
                       {"Content-Disposition": disposition})
            return
        self._json(status, payload)

    def _route(self, verb: str, parts: list[str], data: Any, login: str) -> tuple[int, Any]:
        engine = self.server.engine
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if parts == ["sandbox", "route"] and verb == "POST":
            if not isinstance(data, dict):
                raise InvalidValue("expected {\"ticket\": ID, \"unit\": \"SU\"}")
            ticket_id = _ticket_id(str(data.get("ticket", "")))
            engine.route(ticket_id, str(data.get("unit", "")),
                         Actor("TPM", login, "system"))
            return 200, self._ticket_json(engine.ticket(ticket_id))
        resource = parts[2:] if parts[:2] == ["api", "v1"] else []
        if verb == "GET":
            if resource == ["ticket_states"]:
                return 200, [{"id": rest.state_id(s), "name": s, "active": True,
                              "state_type": rest.STATE_TYPES[s]} for s in rest.STATES]
            if resource == ["ticket_priorities"]:
                return 200, [{"id": rest.priority_id(p), "name": p, "active": True}
                             for p in rest.PRIORITIES]
            if resource == ["groups"]:
                return 200, [{"id": i, "name": n, "active": True, "email_address": a}
                             for i, (n, a) in enumerate(engine.units.items(), start=1)]
            if resource == ["tickets"]:
                return 200, [self._ticket_json(t) for t in _rest_page(
                    engine.tickets(), query, default=100)]
            if resource == ["tickets", "search"]:
                return 200, self._search(query)
            if len(resource) == 2 and resource[0] == "tickets":
                return 200, self._ticket_json(engine.ticket(_ticket_id(resource[1])))
            if len(resource) == 3 and resource[:2] == ["ticket_articles", "by_ticket"]:
                return 200, self._articles(_ticket_id(resource[2]))
            if len(resource) == 4 and resource[0] == "ticket_attachment":
                ticket_id, article_id, attachment_id = (_ticket_id(p) for p in resource[1:])
                found = engine.attachment(attachment_id)
                if found.request_id != ticket_id or found.article_id != article_id:
                    raise GgusFault(302, f"Attachment with 'id'={attachment_id}")
                return 200, found
        elif verb == "POST" and resource == ["tickets"]:
            return 201, self._rest_create(data, login)
        elif verb == "PUT" and len(resource) == 2 and resource[0] == "tickets":
            return 200, self._rest_update(_ticket_id(resource[1]), data, login)
        elif verb == "POST" and resource == ["ticket_articles"]:
            return 201, self._rest_article(data, login)
        raise GgusFault(302, f"route {verb} /{'/'.join(parts)}")

    def _ticket_json(self, ticket: GgusTicket) -> dict[str, Any]:
        engine = self.server.engine
        units = list(engine.units)
        try:
            time_of_issue = rest.format_time(soap.parse_datetime(ticket.date_time_of_problem))
        except InvalidValue:
            time_of_issue = ""
        return rest.ticket_to_json(rest.RestTicket(
            id=ticket.request_id, number=str(ticket.request_id),
            title=ticket.short_description, group=ticket.responsible_unit,
            group_id=units.index(ticket.responsible_unit) + 1
            if ticket.responsible_unit in units else 0,
            state=ticket.status, priority=ticket.priority, customer=ticket.email,
            created_at=ticket.created, updated_at=ticket.modified,
            article_count=engine.store.article_count(ticket.request_id),
            custom={"ticket_area": ticket.type_of_problem, "affected_vo": ticket.affected_vo,
                    "affected_site": ticket.affected_site, "origin_id": ticket.origin_id,
                    "origin_sg": ticket.origin_sg, "category": ticket.ticket_category,
                    "time_of_issue": time_of_issue},
        ))

    def _articles(self, request_id: int) -> list[dict[str, Any]]:
        engine = self.server.engine
        files: dict[int | None, list[StoredAttachment]] = {}
        for attachment in engine.attachments(request_id):
            files.setdefault(attachment.article_id, []).append(attachment)
        return [rest.article_to_json(rest.RestArticle(
            id=a.id, ticket_id=a.request_id, body=a.body, internal=a.internal,
            subject=a.subject, type=a.type, sender=a.sender, from_=a.author,
            created_by=a.login, created_at=a.created,
            attachments=tuple(rest.RestAttachment(f.id, f.name, len(f.data), f.content_type)
                              for f in files.get(a.id, [])),
        )) for a in engine.articles(request_id)]

    def _search(self, query: Mapping[str, str]) -> Any:
        engine = self.server.engine
        wanted = rest.parse_search_query(query.get("query", ""))
        found = [t for t in engine.tickets() if _matches(t, wanted)]
        sort_by = query.get("sort_by", "updated_at")
        keys: dict[str, Callable[[GgusTicket], Any]] = {
            "updated_at": lambda t: (t.modified, t.request_id),
            "created_at": lambda t: (t.created, t.request_id),
            "id": lambda t: t.request_id, "number": lambda t: t.request_id,
        }
        if sort_by not in keys:
            raise InvalidValue(f"sort_by {sort_by!r} is not one of: {', '.join(keys)}")
        order = query.get("order_by", "asc")
        if order not in ("asc", "desc"):
            raise InvalidValue("order_by must be asc or desc")
        found.sort(key=keys[sort_by], reverse=order == "desc")
        page = _rest_page(found, query, default=DEFAULT_SEARCH_LIMIT)
        tickets = [self._ticket_json(t) for t in page]
        if query.get("expand", "").lower() == "true":
            return tickets
        return {"tickets": [t["id"] for t in tickets], "tickets_count": len(found),
                "assets": {"Ticket": {str(t["id"]): t for t in tickets}}}

    def _fields(self, given: rest.TicketInput) -> dict[str, str]:
        fields: dict[str, str] = {}
        for key, name in (("title", "short_description"), ("group", "responsible_unit"),
                          ("state", "status"), ("priority", "priority"),
                          ("customer", "email")):
            value = getattr(given, key)
            if value is not None:
                fields[name] = value
        for key, name in (("ticket_area", "type_of_problem"), ("affected_vo", "affected_vo"),
                          ("affected_site", "affected_site"), ("origin_id", "origin_id"),
                          ("origin_sg", "origin_sg"), ("category", "ticket_category"),
                          ("time_of_issue", "date_time_of_problem")):
            if key in given.custom:
                fields[name] = given.custom[key]
        return fields

    def _rest_create(self, data: Any, login: str) -> dict[str, Any]:
        engine = self.server.engine
        given = rest.parse_ticket_input(data, groups=list(engine.units))
        if not given.title:
            raise InvalidValue("title is required")
        fields = self._fields(given)
        article = given.article
        if article is not None and article.internal:
            raise InvalidValue("the first article of a GGUS ticket is its (public) "
                               "description; send internal notes as later articles")
        if article is not None:
            fields["description"] = article.body
        author = (article.from_ if article else "") or login
        files = [NewAttachment(a.filename, a.data, a.content_type)
                 for a in (article.attachments if article else ())]
        request_id = engine.create(fields, Actor(author, login, "rest"), attachments=files,
                                   priorities=rest.PRIORITIES,
                                   subject=article.subject if article else "")
        return self._ticket_json(engine.ticket(request_id))

    def _change(self, request_id: int, fields: dict[str, str],
                article: rest.ArticleInput | None, login: str) -> None:
        files: list[NewAttachment] = []
        if article is not None:
            if fields.get("status") == "solved" and not article.internal:
                fields["detailed_solution"] = article.body
            else:
                fields["internal_diary" if article.internal else "public_diary"] = article.body
            files = [NewAttachment(a.filename, a.data, a.content_type)
                     for a in article.attachments]
        author = (article.from_ if article else "") or login
        self.server.engine.modify(request_id, fields, Actor(author, login, "rest"),
                                  attachments=files, priorities=rest.PRIORITIES,
                                  subject=article.subject if article else "")

    def _rest_update(self, request_id: int, data: Any, login: str) -> dict[str, Any]:
        engine = self.server.engine
        given = rest.parse_ticket_input(data, groups=list(engine.units))
        if given.title is not None and not given.title.strip():
            raise InvalidValue("title cannot be empty")
        self._change(request_id, self._fields(given), given.article, login)
        return self._ticket_json(engine.ticket(request_id))

    def _rest_article(self, data: Any, login: str) -> dict[str, Any]:
        engine = self.server.engine
        article = rest.parse_article_input(data)
        assert article.ticket_id is not None
        kind = "internal" if article.internal else "public"
        with engine.lock:  # so that the newest article of that kind is this one
            self._change(article.ticket_id, {}, article, login)
            created = [a for a in engine.articles(article.ticket_id) if a.kind == kind][-1]
            listed = self._articles(article.ticket_id)
        return next(a for a in listed if a["id"] == created.id)


def _header_safe(name: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)


def _ticket_id(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise GgusFault(302, f"Entry does not exist in database; {text.strip()}")
    return int(value)


def _page(items: Sequence[Any], request: soap.SoapRequest) -> list[Any]:
    numbers = {}
    for name in ("startRecord", "maxLimit"):
        text = request.get(name).strip()
        if text and not text.isdigit():
            raise GgusFault(306, "Value does not fall within the limits specified for the "
                                 f"field; {name} {text!r}")
        numbers[name] = int(text) if text else 0
    start, limit = numbers["startRecord"], numbers["maxLimit"]
    return list(items[start:start + limit] if limit else items[start:])


def _rest_page(items: Sequence[Any], query: Mapping[str, str], *, default: int) -> list[Any]:
    size_text = query.get("limit") or query.get("per_page") or str(default)
    page_text = query.get("page", "1")
    if not size_text.isdigit() or not page_text.isdigit() or int(page_text) < 1:
        raise InvalidValue("limit/per_page and page must be positive numbers")
    size = max(1, min(int(size_text), MAX_PAGE_SIZE))
    start = (int(page_text) - 1) * size
    return list(items[start:start + size])


def _matches(ticket: GgusTicket, query: rest.SearchQuery) -> bool:
    checks = (
        query.updated_after is None or ticket.modified > query.updated_after,
        query.updated_from is None or ticket.modified >= query.updated_from,
        query.updated_before is None or ticket.modified < query.updated_before,
        query.group is None or ticket.responsible_unit == query.group,
        query.number is None or str(ticket.request_id) == query.number,
        query.state is None or ticket.status == query.state,
        query.origin_id is None or ticket.origin_id == query.origin_id,
    )
    return all(checks)


def _ticket_values(ticket: GgusTicket, names: Sequence[str], diaries: Mapping[str, str]
                   ) -> list[tuple[str, soap.FieldValue]]:
    special: dict[str, str] = {
        "GHD_Request_ID": str(ticket.request_id),
        "GHD_Request-ID": str(ticket.request_id),
        "GHD_Date_Of_Change": soap.format_datetime(ticket.modified),
        "GHD_Modified_Date": soap.format_datetime(ticket.modified),
        "GHD_Date_Of_Creation": soap.format_datetime(ticket.created),
        "GHD_Create_Date": soap.format_datetime(ticket.created),
        "GHD_Public_Diary": diaries.get("public_diary", ""),
        "GHD_Internal_Diary": diaries.get("internal_diary", ""),
    }
    values: list[tuple[str, soap.FieldValue]] = []
    for name in names:
        if name == "GHD_ETA":
            # xsd:dateTime: an unset value is left out rather than sent empty.
            values.append((name, ticket.eta or None))
        elif name in special:
            values.append((name, special[name]))
        else:
            values.append((name, str(getattr(ticket, _FIELD_OF[name]))))
    return values


def _attachment_values(found: StoredAttachment) -> list[tuple[str, soap.FieldValue]]:
    data: soap.FieldValue = None  # a 0-byte file: no data element at all (GOCTX-28)
    if found.data:
        # bytes are written base64 once; a "double" attachment is encoded once more first.
        data = base64.b64encode(found.data) if found.double else found.data
    return [
        ("GAT_Attachment_Name", found.name), ("GAT_Attachment_Data", data),
        ("GAT_Attachment_Orig_Size", str(found.orig_size)),
        ("GAT_Request_ID", str(found.request_id)), ("GAT_Origin_SG", found.origin_sg),
        ("GAT_Last_Modifier", found.last_modifier),
        ("GAT_Create_Date", soap.format_datetime(found.created)),
    ]


class HttpDoor:
    """SOAP (``/arsys/services/ARService``), WSDLs, REST (``/api/v1``) and the admin route."""

    def __init__(self, engine: Ggus, *, ars_server: str, soap_user: str, soap_password: str,
                 rest_token: str, port: int = 0) -> None:
        self._server = _HttpServer(("127.0.0.1", port), _Handler)
        self._server.engine = engine
        self._server.ars_server = ars_server
        self._server.soap_user = soap_user
        self._server.soap_password = soap_password
        self._server.rest_token = rest_token
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="ggus-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
