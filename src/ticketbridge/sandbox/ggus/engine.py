"""What the emulated GGUS does with a change, whichever door it came through.

Every interface ends here: mail submission (:meth:`Ggus.submit_mail`), the Remedy-era SOAP
services and the Zammad-era REST API (both through :meth:`Ggus.create`,
:meth:`Ggus.modify`, :meth:`Ggus.add_attachment`), TPM routing (:meth:`Ggus.route`) and
the supporter-side calls of the sandbox. The rules are spec/domain.md B1 (fields and
limits) and B3 (values and status rules); a change that breaks one changes nothing and
raises :class:`GgusFault` with a Remedy-style error text.

After every change the emulator mails a gen-1 XML notification
(:func:`ticketbridge.codecs.ggus_mail.encode`) to the address of the support unit the
ticket is assigned to. The diary elements of that XML hold only *this* change's text.
Mails leave through the smarthost when one is configured and are kept in the outbox
either way.
"""

from __future__ import annotations

import email.policy
import logging
import operator
import re
import smtplib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid, parseaddr
from types import MappingProxyType
from typing import Any

from ticketbridge.codecs import ggus_mail, mime
from ticketbridge.codecs.ggus_soap import MAX_ATTACHMENT_BYTES, Term, parse_datetime
from ticketbridge.errors import InvalidValue, MalformedMessage
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, Visibility, text_digest
from ticketbridge.sandbox.ggus.store import (
    Article,
    GgusTicket,
    HistoryEntry,
    OutboxMail,
    StoredAttachment,
    TicketStore,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_UNITS",
    "FINAL_STATUSES",
    "GHD_NAMES",
    "OPEN_STATUSES",
    "PRIORITIES",
    "STATUSES",
    "TICKET_TYPES",
    "TYPES_OF_PROBLEM",
    "Actor",
    "Ggus",
    "GgusFault",
    "MailOutcome",
    "NewAttachment",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: B3.1, in lifecycle order.
STATUSES: tuple[str, ...] = ggus_mail.GGUS_STATUSES
OPEN_STATUSES: tuple[str, ...] = STATUSES[:6]
#: No further update and no reopen.
FINAL_STATUSES: tuple[str, ...] = ("verified", "closed")
#: B3.2 plus the WSDL's ``normal`` (accepted on SOAP only).
PRIORITIES: tuple[str, ...] = ggus_mail.GGUS_PRIORITIES
#: B3.3; USER is the default and a ticket's type never changes.
TICKET_TYPES: tuple[str, ...] = ("USER", "TEAM", "ALARM", "OPS", "CIC", "LHCOPN", "SAVANNAH",
                                 "SECURITY")
#: B3.4: the USER list, the older "GGUS Internal Tests" and the VO-specific examples.
TYPES_OF_PROBLEM: tuple[str, ...] = (
    "Accounting", "AppDB", "Authorization/Authentication", "COD Operations", "Catalogue",
    "Computing Services", "Data Management - generic", "Databases", "Deployment - other",
    "Documentation", "File Access", "File Transfer", "GGUS", "IaaS Operations",
    "Information System", "Installation", "Local Batch System", "Middleware", "Monitoring",
    "Network problem", "Operations", "Other", "Security", "Storage Systems",
    "VO Specific Software", "Virtual Appliance Management", "Workload Management",
    "GGUS Internal Tests", "CMS_Facilities", "CMS_Data Transfers", "ATLAS_Staging",
)
#: B3.5: the WSDL enum, then the later UI list.
CATEGORIES: tuple[str, ...] = (
    "Incident", "Change Request", "Documentation", "Test", "Spam", "Service request",
    "Release", "CMS Internal", "EGI Coordination/Planning", "WLCG Coordination/Planning",
)
#: B3.6: support units and their mailing lists (a sandbox may configure others).
DEFAULT_UNITS: Mapping[str, str] = MappingProxyType({
    "TPM": "tpm@su.ggus.example.org",
    "OSG": "osg@su.ggus.example.org",
    "NGI_CZ": "ngi_cz@su.ggus.example.org",
    "NGI_UK": "ngi_uk@su.ggus.example.org",
    "ROC_CERN": "roc_cern@su.ggus.example.org",
    "DMSU": "dmsu@su.ggus.example.org",
    "VOSupport": "vosupport@su.ggus.example.org",
    "Helpdesk (GGUS)": "helpdesk-ggus@su.ggus.example.org",
})

#: The GHD_* name of every ticket column and diary field.
GHD_NAMES: Mapping[str, str] = MappingProxyType({
    "request_id": "GHD_Request_ID", "short_description": "GHD_Short_Description",
    "description": "GHD_Description", "status": "GHD_Status",
    "meta_status": "GHD_Meta_Status", "priority": "GHD_Priority",
    "ticket_type": "GHD_Ticket_Type", "type_of_problem": "GHD_Type_Of_Problem",
    "ticket_category": "GHD_Ticket_Category", "responsible_unit": "GHD_Responsible_Unit",
    "name": "GHD_Name", "loginname": "GHD_Loginname", "email": "GHD_EMail",
    "phone": "GHD_Phone", "affected_vo": "GHD_Affected_VO",
    "affected_site": "GHD_Affected_Site",
    "experiment_specific_problem": "GHD_Experiment_Specific_Problem",
    "date_time_of_problem": "GHD_Date_Time_Of_Problem", "origin_id": "GHD_Origin_ID",
    "origin_sg": "GHD_Origin_SG", "carbon_copy": "GHD_CarbonCopy", "involve": "GHD_Involve",
    "assign_to": "GHD_Assign_To", "related_issue": "GHD_Related_Issue",
    "detailed_solution": "GHD_Detailed_Solution", "short_solution": "GHD_Short_Solution",
    "last_modifier": "GHD_Last_Modifier", "last_login": "GHD_Last_Login",
    "target_id": "GHD_Target_ID", "incident_id": "GHD_Incident_ID",
    "product_name": "GHD_Product_Name", "product_version": "GHD_Product_Version",
    "eta": "GHD_ETA", "public_diary": "GHD_Public_Diary",
    "internal_diary": "GHD_Internal_Diary",
})

#: Field length limits (B1).
LIMITS: Mapping[str, int] = MappingProxyType({
    "short_description": 255, "description": 4000, "public_diary": 4000,
    "internal_diary": 4000, "detailed_solution": 4000, "short_solution": 255,
    "status": 50, "priority": 20, "type_of_problem": 50, "responsible_unit": 50,
    "involve": 254, "assign_to": 254, "related_issue": 125,
})
_DEFAULT_LIMIT = 254

_DIARIES = ("public_diary", "internal_diary")
#: Fields a change may carry: every writable ticket column plus the two diaries.
WRITABLE: frozenset[str] = frozenset(
    set(GHD_NAMES) - {"request_id", "meta_status"})

_SUBJECT_ID = re.compile(r"GGUS-Ticket-ID:\s*#\s*(\d{1,12})", re.IGNORECASE)
_MAIL_POLICY = email.policy.default.clone(max_line_length=998)
_HTML_TAG = re.compile(r"<[^<>]*>")


def _utcnow() -> datetime:
    """Now, to the millisecond (Zammad's resolution; Remedy's one-second stamps are
    formatted from it where the SOAP and mail interfaces show them)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class GgusFault(Exception):
    """A change GGUS refuses. ``message`` reads like Remedy: ``ERROR (302): ...``.

    ``number`` is the Remedy error number: 302 no such entry, 306 value outside the
    field's limits or enumeration, 326 required field blank, 623 authentication, 1587
    qualification not understood, 10000 a GGUS workflow rule (status rules, size limit).
    """

    def __init__(self, number: int, text: str) -> None:
        self.number = number
        self.text = text
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"ERROR ({self.number}): {self.text}"


def _no_entry(request_id: int | str) -> GgusFault:
    return GgusFault(302, f"Entry does not exist in database; {request_id}")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: display name (Last_Modifier), login (Last_Login), channel."""

    name: str
    login: str
    channel: str  # mail | soap | rest | supporter | system

    @property
    def sender(self) -> str:
        return {"mail": "Customer", "system": "System"}.get(self.channel, "Agent")

    @property
    def article_type(self) -> str:
        return {"mail": "email", "rest": "note", "soap": "web"}.get(self.channel, "note")


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """A file arriving with a change (a mail part, a REST article attachment)."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"
    double: bool = False


@dataclass(frozen=True, slots=True)
class MailOutcome:
    """What one mail did: ``created``, ``updated``, ``ignored`` (auto-reply) or ``rejected``."""

    outcome: str
    request_id: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Notice:
    """One mail to send: its raw bytes exactly as built, and what the outbox records."""

    kind: str
    request_id: int | None
    unit: str
    recipients: tuple[str, ...]
    subject: str
    message_id: str
    raw: bytes

    @classmethod
    def of(cls, kind: str, request_id: int | None, unit: str, raw: bytes) -> _Notice:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        recipients = tuple(a.strip() for a in str(msg.get("To", "")).split(",") if "@" in a)
        return cls(kind, request_id, unit, recipients, str(msg.get("Subject", "")),
                   str(msg.get("Message-ID", "")), raw)


class Ggus:
    """The emulated GGUS: its rules, its store and its outgoing mail."""

    def __init__(
        self,
        store: TicketStore,
        *,
        helpdesk_address: str = "helpdesk@ggus.example.org",
        units: Mapping[str, str] | None = None,
        smarthost: tuple[str, int] | None = None,
        first_id: int = 1000,
        double_base64_attachments: bool = False,
        clock: Clock = _utcnow,
    ) -> None:
        self.store = store
        self.helpdesk_address = helpdesk_address
        self.units = dict(DEFAULT_UNITS if units is None else units)
        if "TPM" not in self.units:
            raise ValueError("the support units must include TPM (the default target)")
        self.smarthost = smarthost
        self.first_id = first_id
        self.double_base64_attachments = double_base64_attachments
        self.clock = clock
        self._lock = threading.RLock()

    @property
    def lock(self) -> threading.RLock:
        """Held during every change; hold it to read a change's result consistently."""
        return self._lock

    # -- reading -------------------------------------------------------------------------

    def ticket(self, request_id: int) -> GgusTicket:
        found = self.store.ticket(request_id)
        if found is None:
            raise _no_entry(request_id)
        return found

    def tickets(self) -> list[GgusTicket]:
        return self.store.tickets()

    def history(self, request_id: int) -> list[HistoryEntry]:
        self.ticket(request_id)
        return self.store.history(request_id)

    def articles(self, request_id: int) -> list[Article]:
        self.ticket(request_id)
        return self.store.articles(request_id)

    def attachments(self, request_id: int) -> list[StoredAttachment]:
        self.ticket(request_id)
        return self.store.attachments(request_id)

    def attachment(self, attachment_id: int) -> StoredAttachment:
        found = self.store.attachment(attachment_id)
        if found is None:
            raise _no_entry(attachment_id)
        return found

    def outbox(self) -> list[OutboxMail]:
        return self.store.outbox()

    def latest_diaries(self, request_id: int) -> dict[str, str]:
        """The latest public diary, internal diary and solution (TicketGet's view)."""
        latest: dict[str, str] = {}
        for entry in self.store.history(request_id):
            for name in ("public_diary", "internal_diary", "detailed_solution"):
                text = getattr(entry, name)
                if text:
                    latest[name] = text
        return latest

    # -- validation ----------------------------------------------------------------------

    def _check(self, fields: Mapping[str, str], *, priorities: Sequence[str]) -> dict[str, str]:
        """Validated, normalised values. Raises GgusFault naming the first problem."""
        values: dict[str, str] = {}
        for name, raw in fields.items():
            if name not in WRITABLE:
                raise GgusFault(8962, "Unexpected element encountered in the input XML "
                                      f"document; {GHD_NAMES.get(name, name)}")
            value = raw.replace("\r\n", "\n").replace("\r", "\n")
            if name not in ("description", *_DIARIES, "detailed_solution"):
                value = value.strip()
            limit = LIMITS.get(name, _DEFAULT_LIMIT)
            if len(value) > limit:
                raise GgusFault(306, "Value does not fall within the limits specified for "
                                     f"the field; {GHD_NAMES[name]}: {len(value)} characters, "
                                     f"the limit is {limit}")
            values[name] = value
        _enum(values, "status", STATUSES)
        _enum(values, "priority", priorities)
        _enum(values, "ticket_type", TICKET_TYPES, case=True)
        _enum(values, "type_of_problem", TYPES_OF_PROBLEM, case=True)
        _enum(values, "ticket_category", CATEGORIES, case=True)
        _enum(values, "experiment_specific_problem", ("Yes", "No"), case=True)
        _enum(values, "responsible_unit", tuple(self.units), case=True)
        if values.get("date_time_of_problem"):
            try:
                moment = parse_datetime(values["date_time_of_problem"])
            except InvalidValue as exc:
                raise GgusFault(306, "Value does not fall within the limits specified for "
                                     f"the field; GHD_Date_Time_Of_Problem: {exc}") from None
            values["date_time_of_problem"] = _stamp(moment)
        return values

    # -- create --------------------------------------------------------------------------

    def create(
        self,
        fields: Mapping[str, str],
        actor: Actor,
        *,
        attachments: Sequence[NewAttachment] = (),
        priorities: Sequence[str] = PRIORITIES,
        subject: str = "",
    ) -> int:
        """Submit a new ticket; returns its Request_ID. Raises GgusFault."""
        values = {k: v for k, v in self._check(fields, priorities=priorities).items() if v}
        if not values.get("short_description"):
            raise GgusFault(326, "Required field cannot be blank.; GHD_Short_Description")
        status = values.get("status", "new")
        if status not in ("new", "assigned"):
            raise GgusFault(10000, f"A ticket cannot be submitted with status {status!r}; "
                                   "submit it as 'new' (GGUS sets 'assigned' itself)")
        if values.get("detailed_solution"):
            raise GgusFault(10000, "A new ticket cannot carry a solution")
        unit = values.get("responsible_unit") or "TPM"
        if unit != "TPM" and status == "new":
            status = "assigned"
        now = self.clock()
        diaries = {k: values.pop(k) for k in _DIARIES if k in values}
        row = {
            "status": status, "meta_status": _meta(status),
            "priority": values.get("priority", "less urgent"),
            "ticket_type": values.get("ticket_type", "USER"),
            "type_of_problem": values.get("type_of_problem", "Other"),
            "ticket_category": values.get("ticket_category", "Incident"),
            "responsible_unit": unit,
            "experiment_specific_problem": values.get("experiment_specific_problem", "No"),
            "date_time_of_problem": values.get("date_time_of_problem", _stamp(now)),
            "last_modifier": values.get("last_modifier") or actor.name,
            "last_login": values.get("last_login") or actor.login,
        }
        row = {**values, **row}
        with self._lock:
            with self.store.transaction():
                request_id = self.store.next_request_id(self.first_id)
                self.store.insert_ticket(request_id, row, now)
                history = self._history(request_id, row, diaries, actor, "created", now,
                                        description=row.get("description", ""))
                first = self.store.add_article(
                    request_id, history, kind="description", body=row.get("description", ""),
                    internal=False, author=row["last_modifier"], login=row["last_login"],
                    sender=actor.sender, type=actor.article_type,
                    subject=subject or row["short_description"], when=now)
                self._diary_articles(request_id, history, diaries, row, actor, now)
                self._attach(request_id, first, attachments, row, now)
            notices = self._notification(request_id, diaries)
        self._send_all(notices)
        return request_id

    # -- modify --------------------------------------------------------------------------

    def modify(
        self,
        request_id: int,
        fields: Mapping[str, str],
        actor: Actor,
        *,
        attachments: Sequence[NewAttachment] = (),
        priorities: Sequence[str] = PRIORITIES,
        action: str = "modified",
        subject: str = "",
    ) -> int:
        """Change a ticket: fields, status (with B3.1's rules), diary entries.

        Empty values mean "no change". Returns the Request_ID. Raises GgusFault.
        """
        values = {k: v for k, v in self._check(fields, priorities=priorities).items() if v}
        with self._lock:
            current = self.ticket(request_id)
            if current.status in FINAL_STATUSES:
                raise GgusFault(10000, f"GGUS ticket {request_id} is {current.status}: "
                                       "verified and closed tickets cannot be updated or "
                                       "reopened")
            if "ticket_type" in values and values["ticket_type"] != current.ticket_type:
                raise GgusFault(10000, "The ticket type is set by GGUS and never changes "
                                       f"(ticket {request_id} is {current.ticket_type})")
            diaries = {k: values.pop(k) for k in _DIARIES if k in values}
            solution = values.get("detailed_solution", "")
            if solution:
                diaries["detailed_solution"] = solution
            status = self._next_status(current, values, solution)
            changed = {k: v for k, v in values.items() if getattr(current, k) != v}
            if status != current.status:
                changed["status"] = status
                changed["meta_status"] = _meta(status)
            substantive = set(changed) - {"last_modifier", "last_login"}
            if not substantive and not diaries and not attachments:
                return request_id  # nothing to record, nothing to notify
            changed["last_modifier"] = values.get("last_modifier") or actor.name
            changed["last_login"] = values.get("last_login") or actor.login
            now = self.clock()
            after = {**_columns(current), **changed}
            with self.store.transaction():
                self.store.update_ticket(request_id, changed, now)
                history = self._history(request_id, after, diaries, actor, action, now)
                first = self._diary_articles(request_id, history, diaries, after, actor, now,
                                             subject=subject)
                if attachments and first is None:
                    first = self._attachment_article(request_id, history, attachments, after,
                                                     actor, now)
                self._attach(request_id, first, attachments, after, now)
            notices = self._notification(request_id, diaries)
        self._send_all(notices)
        return request_id

    def _next_status(self, current: GgusTicket, values: Mapping[str, str],
                     solution: str) -> str:
        wanted = values.get("status")
        unit = values.get("responsible_unit")
        if wanted is None:
            if unit is not None and unit != current.responsible_unit \
                    and current.status in ("new", "assigned", "reopened", "in progress"):
                return "assigned"  # a new SU has not taken the ticket yet
            return current.status
        if wanted == current.status:
            if wanted == "solved" and solution == "" and not current.detailed_solution:
                raise _needs_solution()
            return wanted
        if wanted == "new":
            raise GgusFault(10000, "Status 'new' is set by GGUS on submit only "
                                   f"(ticket {current.request_id} is {current.status})")
        if wanted in ("reopened", "verified", "closed") \
                and current.status not in ("solved", "unsolved"):
            raise GgusFault(10000, f"Status {wanted!r} can only follow 'solved' or 'unsolved' "
                                   f"(ticket {current.request_id} is {current.status})")
        if wanted == "solved" and not (solution or current.detailed_solution):
            raise _needs_solution()
        return wanted

    # -- attachments ---------------------------------------------------------------------

    def add_attachment(
        self,
        request_id: int,
        attachment: NewAttachment,
        actor: Actor,
        *,
        orig_size: int | None = None,
        origin_sg: str = "",
    ) -> int:
        """Attach one file (SOAP AddAttachment, the supporter API). Returns its id."""
        size = len(attachment.data)
        if size > MAX_ATTACHMENT_BYTES:
            raise GgusFault(10000, f"Attachment {attachment.name.strip()!r} is {size} bytes; "
                                   f"the GGUS limit is {MAX_ATTACHMENT_BYTES} bytes (2 MB)")
        if orig_size is not None and orig_size != size:
            raise GgusFault(306, "Value does not fall within the limits specified for the "
                                 f"field; GAT_Attachment_Orig_Size: {orig_size} but the data "
                                 f"holds {size} bytes")
        if not attachment.name.strip():
            raise GgusFault(326, "Required field cannot be blank.; GAT_Attachment_Name")
        with self._lock:
            current = self.ticket(request_id)
            if current.status in FINAL_STATUSES:
                raise GgusFault(10000, f"GGUS ticket {request_id} is {current.status}: "
                                       "verified and closed tickets cannot be updated")
            now = self.clock()
            after = {**_columns(current), "last_modifier": actor.name,
                     "last_login": actor.login}
            double = attachment.double or self.double_base64_attachments
            with self.store.transaction():
                self.store.update_ticket(request_id, {"last_modifier": actor.name,
                                                      "last_login": actor.login}, now)
                history = self._history(request_id, after, {}, actor, "attachment", now)
                article = self._attachment_article(request_id, history, [attachment], after,
                                                   actor, now)
                attachment_id = self.store.add_attachment(
                    request_id, article, name=attachment.name, data=attachment.data,
                    orig_size=size, content_type=attachment.content_type,
                    last_modifier=actor.name, last_login=actor.login,
                    origin_sg=origin_sg or current.origin_sg, double=double, when=now)
            notices = self._notification(request_id, {})
        self._send_all(notices)
        return attachment_id

    def _attach(self, request_id: int, article: int | None,
                attachments: Sequence[NewAttachment], row: Mapping[str, str],
                now: datetime) -> None:
        for item in attachments:
            if len(item.data) > MAX_ATTACHMENT_BYTES:
                raise GgusFault(10000, f"Attachment {item.name.strip()!r} is {len(item.data)} "
                                       f"bytes; the GGUS limit is {MAX_ATTACHMENT_BYTES} "
                                       "bytes (2 MB)")
            self.store.add_attachment(
                request_id, article, name=item.name, data=item.data, orig_size=len(item.data),
                content_type=item.content_type, last_modifier=row.get("last_modifier", ""),
                last_login=row.get("last_login", ""), origin_sg=row.get("origin_sg", ""),
                double=item.double or self.double_base64_attachments, when=now)

    def _attachment_article(self, request_id: int, history: int,
                            attachments: Sequence[NewAttachment], row: Mapping[str, str],
                            actor: Actor, now: datetime) -> int:
        names = ", ".join(a.name.strip() for a in attachments)
        return self.store.add_article(
            request_id, history, kind="attachment", body=f"Attachment added: {names}",
            internal=False, author=row.get("last_modifier", ""),
            login=row.get("last_login", ""), sender=actor.sender, type=actor.article_type,
            subject="", when=now)

    # -- routing and the supporter side --------------------------------------------------

    def route(self, request_id: int, unit: str, actor: Actor | None = None) -> int:
        """TPM assigns the ticket to support unit ``unit``: status ``assigned``, a history
        row (action ``routed``) and a notification to that unit's address."""
        if unit not in self.units:
            raise GgusFault(306, "Value does not fall within the limits specified for the "
                                 f"field; GHD_Responsible_Unit: {unit!r} is not a support unit "
                                 f"(known: {', '.join(self.units)})")
        current = self.ticket(request_id)
        if current.status not in OPEN_STATUSES:
            raise GgusFault(10000, f"Only open tickets can be routed (ticket {request_id} is "
                                   f"{current.status})")
        who = actor or Actor("TPM", "tpm", "system")
        return self.modify(request_id, {"responsible_unit": unit, "status": "assigned"}
                           if current.status != "assigned" else {"responsible_unit": unit},
                           who, action="routed")

    # -- mail submission -----------------------------------------------------------------

    def submit_mail(self, raw: bytes, envelope_sender: str = "") -> MailOutcome:
        """Process one mail to the helpdesk address: create, append, ignore or reject."""
        try:
            msg = mime.parse_message(raw)
        except MalformedMessage as exc:
            return MailOutcome("rejected", None, str(exc))
        subject = mime.decoded_subject(msg)
        match = _SUBJECT_ID.search(subject)
        request_id = int(match.group(1)) if match else None
        reason = mime.auto_reply_reason(msg)
        if reason is not None:
            log.info("mail %r not appended: %s", subject, reason)
            return MailOutcome("ignored", request_id, reason)
        display, address = parseaddr(str(msg.get("From", "")))
        address = address or envelope_sender
        name = display.strip() or address.partition("@")[0] or "unknown"
        body, files = _mail_content(msg)
        actor = Actor(name, address, "mail")
        try:
            if request_id is None:
                created = self.create(
                    {"short_description": " ".join(subject.split()), "description": body,
                     "name": name, "email": address, "responsible_unit": "TPM",
                     "last_modifier": name, "last_login": address},
                    actor, attachments=files, subject=subject)
                return MailOutcome("created", created)
            current = self.ticket(request_id)
            change = {"public_diary": body}
            if current.status == "waiting for reply" and address \
                    and address.casefold() == current.email.casefold():
                change["status"] = "in progress"  # the submitter replied
            self.modify(request_id, change, actor, attachments=files, action="diary",
                        subject=subject)
            return MailOutcome("updated", request_id)
        except GgusFault as exc:
            self._send_all([self._rejection(msg, subject, address, request_id, exc.message)])
            return MailOutcome("rejected", request_id, exc.message)

    def _rejection(self, original: Message, subject: str, to: str, request_id: int | None,
                   reason: str) -> _Notice:
        msg = EmailMessage(policy=_MAIL_POLICY)
        msg["From"] = self.helpdesk_address
        msg["To"] = to or "(no sender)"
        msg["Subject"] = f"GGUS could not process your mail: {subject}"[:250]
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = make_msgid("ggus-reject", self._domain())
        msg["Auto-Submitted"] = "auto-replied"
        original_id = str(original.get("Message-ID", "")).strip()
        if original_id:
            msg["In-Reply-To"] = original_id
        msg.set_content("GGUS did not accept your mail. Nothing was changed.\n\n"
                        f"  {reason}\n\nTo update a ticket, keep 'GGUS-Ticket-ID: #<id>' in "
                        "the subject; the whole body is appended to the ticket.\n")
        return _Notice.of("rejection", request_id, "",
                          msg.as_bytes(policy=_MAIL_POLICY.clone(linesep="\r\n")))

    # -- shared --------------------------------------------------------------------------

    def _history(self, request_id: int, row: Mapping[str, str], diaries: Mapping[str, str],
                 actor: Actor, action: str, now: datetime, *, description: str = "") -> int:
        return self.store.add_history(request_id, {
            "last_modifier": row.get("last_modifier", actor.name),
            "last_login": row.get("last_login", actor.login),
            "channel": actor.channel, "action": action,
            "status": row.get("status", ""), "priority": row.get("priority", ""),
            "responsible_unit": row.get("responsible_unit", ""),
            "public_diary": diaries.get("public_diary", ""),
            "internal_diary": diaries.get("internal_diary", ""),
            "detailed_solution": diaries.get("detailed_solution", ""),
            "description": description,
            "type_of_problem": row.get("type_of_problem", ""),
            "affected_vo": row.get("affected_vo", ""),
            "affected_site": row.get("affected_site", ""),
            "vo_specific": row.get("experiment_specific_problem", ""),
            "assigned_to": row.get("assign_to", ""), "involve": row.get("involve", ""),
            "related_issue": row.get("related_issue", ""),
        }, now)

    def _diary_articles(self, request_id: int, history: int, diaries: Mapping[str, str],
                        row: Mapping[str, str], actor: Actor, now: datetime, *,
                        subject: str = "") -> int | None:
        first: int | None = None
        for name, kind, internal in (("public_diary", "public", False),
                                     ("internal_diary", "internal", True),
                                     ("detailed_solution", "solution", False)):
            text = diaries.get(name, "")
            if not text:
                continue
            article = self.store.add_article(
                request_id, history, kind=kind, body=text, internal=internal,
                author=row.get("last_modifier", actor.name),
                login=row.get("last_login", actor.login), sender=actor.sender,
                type=actor.article_type, subject=subject, when=now)
            first = first if first is not None else article
        return first

    def _notification(self, request_id: int, diaries: Mapping[str, str]) -> list[_Notice]:
        ticket = self.ticket(request_id)
        address = self.units.get(ticket.responsible_unit, "")
        if not address:
            return []
        now = self.clock()
        raw = ggus_mail.encode(
            _snapshot(ticket, diaries), to=address, sender=self.helpdesk_address, date=now,
            message_id=make_msgid(f"ggus.{request_id}", self._domain()))
        return [_Notice.of("notification", request_id, ticket.responsible_unit, raw)]

    def _send_all(self, notices: Sequence[_Notice]) -> None:
        for notice in notices:
            self._send(notice)

    def _send(self, notice: _Notice) -> None:
        row = self.store.add_outbox(
            kind=notice.kind, request_id=notice.request_id, unit=notice.unit,
            sender=self.helpdesk_address, recipients=notice.recipients,
            subject=notice.subject, message_id=notice.message_id, raw=notice.raw,
            when=self.clock())
        if self.smarthost is None or not notice.recipients:
            return
        host, port = self.smarthost
        try:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.sendmail(self.helpdesk_address, list(notice.recipients), notice.raw)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("could not send %s for ticket %s via %s:%s: %s", notice.kind,
                        notice.request_id, host, port, exc)
            self.store.mark_outbox(row, delivered=False, error=str(exc) or type(exc).__name__)
        else:
            self.store.mark_outbox(row, delivered=True, error=None)

    def _domain(self) -> str:
        return self.helpdesk_address.rpartition("@")[2] or "ggus.invalid"

    # -- queries -------------------------------------------------------------------------

    def select(self, terms: Sequence[Term]) -> list[GgusTicket]:
        """Tickets matching every term (TicketGetList), by Request_ID. Raises GgusFault."""
        checks = [_condition(term) for term in terms]
        return [t for t in self.store.tickets() if all(check(t) for check in checks)]


# --- helpers ----------------------------------------------------------------------------


def _needs_solution() -> GgusFault:
    return GgusFault(10000, "Status 'solved' requires a solution: fill in "
                            "GHD_Detailed_Solution")


def _meta(status: str) -> str:
    return "Open" if status in OPEN_STATUSES else "Closed"


def _enum(values: dict[str, str], name: str, allowed: Sequence[str], *,
          case: bool = False) -> None:
    """Check (and normalise the case of) an enumerated value."""
    if name not in values or not values[name]:
        return
    given = " ".join(values[name].split())
    for option in allowed:
        if option.casefold() == given.casefold():
            values[name] = option
            return
    raise GgusFault(306, "Value does not fall within the limits specified for the field; "
                         f"{GHD_NAMES[name]}: {given!r} is not one of: {', '.join(allowed)}")


def _columns(ticket: GgusTicket) -> dict[str, str]:
    return {name: getattr(ticket, name) for name in GHD_NAMES
            if name not in ("request_id", "public_diary", "internal_diary")}


def _snapshot(ticket: GgusTicket, diaries: Mapping[str, str]) -> Ticket:
    """The ticket as the gen-1 notification XML shows it; comments = this change's text."""
    fields = {
        "GHD_Experiment": ticket.affected_vo,
        "GHD_Responsible_Unit": ticket.responsible_unit,
        "GHD_Experiment_Specific_Problem": ticket.experiment_specific_problem,
        "GHD_Type_Of_Problem": ticket.type_of_problem,
        "GHD_Origin_ID": ticket.origin_id,
        "GHD_Affected_Site": ticket.affected_site,
        "GHD_Last_Modifier": ticket.last_modifier,
        "GHD_Ticket_Type": ticket.ticket_type,
        "GHD_Ticket_Category": ticket.ticket_category,
        "GHD_Meta_Status": ticket.meta_status,
    }
    if ticket.origin_sg:
        fields["GHD_Origin_SG"] = ticket.origin_sg
    comments = []
    for name, kind, visibility in (("public_diary", "public diary", Visibility.PUBLIC),
                                   ("internal_diary", "internal diary", Visibility.INTERNAL),
                                   ("detailed_solution", "solution", Visibility.PUBLIC)):
        text = diaries.get(name, "")
        if text:
            comments.append(Comment(key=text_digest(kind, text), body=text,
                                    author=ticket.last_modifier, created=ticket.modified,
                                    visibility=visibility, kind=kind))
    try:
        problem_time: datetime | None = parse_datetime(ticket.date_time_of_problem)
    except InvalidValue:
        problem_time = None
    return Ticket(
        ref=TicketRef("ggus", str(ticket.request_id)),
        title=ticket.short_description,
        description=ticket.description,
        status=ticket.status,
        priority=ticket.priority,
        submitter=Contact(name=ticket.name, email=ticket.email, phone=ticket.phone,
                          login=ticket.loginname),
        fields=MappingProxyType(fields),
        comments=tuple(comments),
        modified=ticket.modified,
        created=problem_time,
    )


def _mail_content(msg: EmailMessage) -> tuple[str, list[NewAttachment]]:
    """The body text (first plain part, else HTML without tags) and the attached files.

    Files that arrive by mail take GGUS's legacy path: their SOAP data is base64-encoded
    twice (GOC-TX's GOCTX-29).
    """
    plain = html = None
    files: list[NewAttachment] = []
    for part in mime.leaf_parts(msg):
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        is_text = part.get_content_maintype() == "text"
        if disposition == "attachment" or (filename and not is_text) or not is_text:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            files.append(NewAttachment(filename or "attachment.bin", data,
                                       part.get_content_type(), double=True))
            continue
        try:
            text = mime.part_text(part).text
        except MalformedMessage:
            continue
        if part.get_content_type() == "text/plain" and plain is None:
            plain = text
        elif part.get_content_type() == "text/html" and html is None:
            html = _HTML_TAG.sub("", text)
    body = plain if plain is not None else (html or "")
    return body.strip("\n").rstrip(), files


def _condition(term: Term) -> Callable[[GgusTicket], bool]:
    key = term.field.strip().removeprefix("GHD_").removeprefix("GHD ")
    key = re.sub(r"[\s\-]+", "_", key).lower()
    key = _QUALIFICATION_ALIASES.get(key, key)
    op = term.op
    if key in ("created", "modified"):
        try:
            bound = parse_datetime(term.value)
        except InvalidValue as exc:
            raise GgusFault(1587, f"Error in qualification: '{term.field}': {exc}") from None
        return lambda t: _compare(getattr(t, key), op, bound)
    if key == "request_id":
        if not term.value.strip().isdigit():
            raise GgusFault(1587, f"Error in qualification: '{term.field}' needs a number")
        number = int(term.value)
        return lambda t: _compare(t.request_id, op, number)
    if key not in GHD_NAMES or key in ("public_diary", "internal_diary"):
        raise GgusFault(1587, f"Error in qualification: unknown field '{term.field}'")
    wanted = term.value.casefold()
    return lambda t: _compare(str(getattr(t, key)).casefold(), op, wanted)


_OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType({
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
})


def _compare(left: object, op: str, right: object) -> bool:
    return bool(_OPERATORS[op](left, right))


_QUALIFICATION_ALIASES: Mapping[str, str] = MappingProxyType({
    "modified_date": "modified", "date_of_change": "modified", "modified": "modified",
    "create_date": "created", "date_of_creation": "created", "created": "created",
    "request_id": "request_id", "requestid": "request_id",
    "e_mail": "email", "submitter_mail": "email", "email": "email",
    "vo": "affected_vo", "experiment": "affected_vo", "carboncopy": "carbon_copy",
    "vo_specific": "experiment_specific_problem",
})
