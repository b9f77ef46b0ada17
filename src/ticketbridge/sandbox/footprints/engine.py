"""What the emulated Footprints does with a submission, whichever door it came through.

Both interfaces end here: the email interface (:meth:`Footprints.submit_mail`) and the
MRWebServices calls (:meth:`Footprints.create_issue`, :meth:`edit_issue`,
:meth:`issue_details`, :meth:`search`). Values are validated the way Footprints validated
them (spec/domain.md B3.7, C4): a submission with any invalid value changes nothing. A mail
is answered with a reply naming every problem; a SOAP call gets a fault.

After each create or update the emulator mails its notification
(``<title> ISSUE=<n> PROJ=<p>``) to the configured notification addresses and to every
assignee that has an address in the agent address book: that mail is what GOC-TX used as
its trigger (C3). Mails leave through the smarthost when one is configured, and are kept
in the outbox either way.
"""

from __future__ import annotations

import email
import email.policy
import html
import logging
import re
import shlex
import smtplib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from ticketbridge.codecs import footprints_mail as fpmail
from ticketbridge.codecs import mime
from ticketbridge.codecs.footprints_mail import (
    INTERNAL_DESCRIPTION,
    UNTITLED,
    Submission,
    decode_field_name,
    encode_field_name,
)
from ticketbridge.codecs.mrwebservices import SoapValue
from ticketbridge.sandbox.footprints.query import Query, QueryError, parse_query
from ticketbridge.sandbox.footprints.store import Issue, IssueStore, OutboxMail

__all__ = [
    "ADDRESS_BOOK_FIELDS",
    "PRIORITIES",
    "PROJECT_FIELDS",
    "STATUSES",
    "TICKET_TYPES",
    "Footprints",
    "FootprintsFault",
    "MailOutcome",
]

log = logging.getLogger(__name__)

#: Footprints statuses of the OSG GOC project (B3.7); the first is the default.
STATUSES = ("Engineering", "Customer", "Network Administration", "Support Agency", "Vendor",
            "Resolved", "Closed")
#: Priority numbers and their names.
PRIORITIES = {1: "Critical", 2: "High", 3: "Elevated", 4: "Normal"}
DEFAULT_PRIORITY = 4
#: The largest file a mail may attach unless configured otherwise (10 MB).
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
#: Ticket types (project field ``Ticket__uType``); the first is the default.
TICKET_TYPES = ("Problem/Request", "Security", "Security_Notification",
                "User Certificate Request", "Host Certificate Request")
#: Project fields of project 71 other than Ticket Type, by label.
PROJECT_FIELDS = ("ENG Next Action Item", "ENG Next Action Date/Time (UTC)",
                  "Originating Ticket Number", "Originating VO Support Center",
                  "Destination VO Support Center", "Ready to Close?")
#: Address-book fields, by label.
ADDRESS_BOOK_FIELDS = ("First Name", "Last Name", "Office Phone", "Email address")

_NEXT_ACTION_DATE = "ENG Next Action Date/Time (UTC)"
_ORIGIN = "Originating Ticket Number"
_READY = "Ready to Close?"
_DATE_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?")
_ADDRESS_SPLIT = re.compile(r"[\s,;]+")

Clock = Callable[[], datetime]

# Fold headers only past SMTP's line limit: the standard library's folding at 78 characters
# can lose a space between two encoded words of a non-ASCII title.
_MAIL_POLICY = mime.POLICY.clone(max_line_length=998)  # memoised headers, else the default


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class FootprintsFault(Exception):
    """A call Footprints refuses; the SOAP interface turns it into a fault."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        self.message = message
        self.auth = auth
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class MailOutcome:
    """What one mail did: ``created``, ``updated``, ``rejected`` or ``duplicate``."""

    outcome: str
    mrid: int | None = None
    problems: tuple[str, ...] = ()


@dataclass
class _Changes:
    """Validated changes to one issue, the same for both interfaces."""

    title: str | None = None
    status: str | None = None
    priority: int | None = None
    ticket_type: str | None = None
    contact: dict[str, str] = field(default_factory=dict)
    project_fields: dict[str, str] = field(default_factory=dict)
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    replace_assignees: list[str] | None = None
    replace_ccs: list[str] | None = None
    text: str = ""
    internal_text: str = ""
    attachments: list[fpmail.MailAttachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Footprints:
    """The emulated Footprints project: its rules, its store and its outgoing mail."""

    def __init__(
        self,
        store: IssueStore,
        *,
        project: int = 71,
        incoming_address: str = "fp-incoming@goc.example.org",
        notify: Sequence[str] = (),
        agents: Mapping[str, str] | None = None,
        smarthost: tuple[str, int] | None = None,
        dedupe_message_ids: bool = True,
        max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
        clock: Clock = _utcnow,
    ) -> None:
        self.store = store
        self.project = project
        self.incoming_address = incoming_address
        self.notify = tuple(notify)
        self.agents = dict(agents or {})
        self.smarthost = smarthost
        self.dedupe_message_ids = dedupe_message_ids
        self.max_attachment_bytes = max_attachment_bytes
        self.clock = clock
        self._lock = threading.RLock()  # one submission at a time, as Footprints' queue

    # -- the email interface -------------------------------------------------------------

    def submit_mail(self, raw: bytes, envelope_sender: str = "") -> MailOutcome:
        """Process one mail sent to the incoming address (create, update or reject)."""
        msg = email.message_from_bytes(raw, policy=mime.POLICY)
        sub = fpmail.decode_submission(msg)
        sender = sub.sender or envelope_sender
        with self._lock, self.store.transaction():  # one transaction per mail
            if self.dedupe_message_ids and sub.message_id:
                seen = self.store.processed(sub.message_id)
                if seen is not None:
                    log.info("mail %s was processed before (%s); not applied again",
                             sub.message_id, seen[1])
                    return MailOutcome("duplicate", seen[0])
            outcome, notices = self._apply_mail(sub, sender)
            if sub.message_id:
                self.store.record_processed(sub.message_id, outcome.mrid, outcome.outcome,
                                            self.clock())
            if outcome.outcome == "rejected":
                notices.append(self._rejection(sub, sender, outcome.problems))
            if self.smarthost is None:  # nothing leaves: keep the outbox rows in it too
                self._send_all(notices)
                notices = []
        self._send_all(notices)
        return outcome

    def _send_all(self, notices: Sequence[tuple[str, int | None, EmailMessage]]) -> None:
        for kind, mrid, msg in notices:
            self._send(kind, mrid, msg)

    def _apply_mail(
        self, sub: Submission, sender: str
    ) -> tuple[MailOutcome, list[tuple[str, int | None, EmailMessage]]]:
        changes = self._changes_from_mail(sub)
        existing: Issue | None = None
        if sub.issue is not None:
            if sub.project != self.project:
                changes.problems.insert(0, f"PROJ={sub.project}: there is no project "
                                           f"{sub.project} (this is project {self.project})")
            else:
                existing = self.store.issue(sub.issue)
                if existing is None:
                    changes.problems.insert(
                        0, f"ISSUE={sub.issue}: there is no issue {sub.issue} in project "
                           f"{self.project}")
        if changes.problems:
            return MailOutcome("rejected", sub.issue, tuple(changes.problems)), []
        author = sender or "unknown"
        if existing is None:
            changes.title = sub.title or UNTITLED
            first, _, last = sub.sender_name.strip().partition(" ")
            contact = {"Email address": sender, "First Name": first, "Last Name": last.strip()}
            contact = {k: v for k, v in contact.items() if v}
            changes.contact = {**contact, **changes.contact}
            changes.add = [*(f"CC:{a}" for a in sub.cc), *changes.add]
            mrid = self._create(changes, submitter=author, author=author)
            return MailOutcome("created", mrid), self._notifications(mrid, "created", author)
        changes.add = [*(f"CC:{a}" for a in sub.cc), *changes.add]
        self._update(existing, changes, author=author)
        return (MailOutcome("updated", existing.mrid),
                self._notifications(existing.mrid, "updated", author))

    def _changes_from_mail(self, sub: Submission) -> _Changes:
        changes = _Changes(text=sub.text.strip("\n"), problems=list(sub.problems))
        for item in sub.attachments:
            if len(item.data) > self.max_attachment_bytes:
                changes.problems.append(
                    f"attachment {item.name!r} is {len(item.data)} bytes; the limit is "
                    f"{self.max_attachment_bytes} bytes")
            changes.attachments.append(item)
        for label, value in sub.fields.items():
            if label == "status":
                changes.status = _status(value, changes.problems)
            elif label == "priority":
                changes.priority = _priority(value, changes.problems)
            elif label == "project":
                if value.strip() != str(self.project):
                    changes.problems.append(
                        f"project={value}: there is no project {value.strip() or '(empty)'} "
                        f"(this is project {self.project})")
            elif label == "assignees":
                _assignee_ops(value, changes)
            elif label == "permanentCCs":
                changes.add.extend(f"CC:{a}" for a in _ADDRESS_SPLIT.split(value) if a)
            elif label == INTERNAL_DESCRIPTION:
                changes.internal_text = value
            elif label == "Ticket Type":
                changes.ticket_type = _ticket_type(value, changes.problems)
            elif label in ADDRESS_BOOK_FIELDS:
                changes.contact[label] = value
            else:
                _project_field(label, value, changes)
        return changes

    def _rejection(
        self, sub: Submission, sender: str, problems: Sequence[str]
    ) -> tuple[str, int | None, EmailMessage]:
        msg = EmailMessage(policy=_MAIL_POLICY)
        msg["From"] = self.incoming_address
        msg["To"] = sender or "(no sender)"
        msg["Subject"] = f"Footprints could not process your mail: {sub.subject}"[:250]
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = make_msgid("fp-reject", self._domain())
        msg["Auto-Submitted"] = "auto-replied"
        if sub.message_id:
            msg["In-Reply-To"] = sub.message_id
        lines = [
            f"Footprints project {self.project} did not accept your mail "
            f"{sub.message_id or ''}".rstrip() + ".",
            "Nothing was changed. The reasons:",
            "",
            *(f"  - {p}" for p in problems),
            "",
            f"Valid statuses: {', '.join(STATUSES)}.",
            "Valid priorities: 1-4 or " + ", ".join(PRIORITIES.values()) + ".",
            f"Valid ticket types: {', '.join(TICKET_TYPES)}.",
        ]
        msg.set_content("\n".join(lines) + "\n")
        return "rejection", sub.issue, msg

    # -- MRWebServices -------------------------------------------------------------------

    def create_issue(self, args: Mapping[str, SoapValue], *, user: str) -> int:
        """createIssue: the new issue number. Raises FootprintsFault for invalid args."""
        changes = self._changes_from_soap(args, creating=True)
        if changes.problems:
            raise FootprintsFault("; ".join(changes.problems))
        submitter = _scalar(args.get("submitter")) or user
        with self._lock, self.store.transaction():  # one transaction per call
            mrid = self._create(changes, submitter=submitter, author=submitter)
            notices = self._notifications(mrid, "created", submitter, mail=args.get("mail"))
            if self.smarthost is None:
                self._send_all(notices)
                notices = []
        self._send_all(notices)
        return mrid

    def edit_issue(self, args: Mapping[str, SoapValue], *, user: str) -> int:
        """editIssue: the issue number. Raises FootprintsFault for invalid args."""
        changes = self._changes_from_soap(args, creating=False)
        mrid = _int(args.get("mrID"), "mrID", changes.problems)
        with self._lock, self.store.transaction():  # one transaction per call
            existing = self.store.issue(mrid) if mrid else None
            if mrid and existing is None:
                changes.problems.insert(
                    0, f"issue {mrid} does not exist in project {self.project}")
            if changes.problems or existing is None:
                raise FootprintsFault("; ".join(changes.problems) or "mrID is required")
            author = _scalar(args.get("submitter")) or user
            self._update(existing, changes, author=author)
            notices = self._notifications(mrid, "updated", author, mail=args.get("mail"))
            if self.smarthost is None:
                self._send_all(notices)
                notices = []
        self._send_all(notices)
        return mrid

    def _changes_from_soap(self, args: Mapping[str, SoapValue], *, creating: bool) -> _Changes:
        changes = _Changes()
        problems = changes.problems
        project = _int(args.get("projectID"), "projectID", problems)
        if project and project != self.project:
            problems.append(f"project {project} does not exist (this is project {self.project})")
        mail = args.get("mail")
        if "mail" in args and (mail in ("", None) or mail == {} or mail == []):
            # SOAP::Lite hands an empty hash over as an empty value; Footprints then dies
            # dereferencing it (spec C6). Faithful, because clients must not send one.
            problems.append("Can't coerce array into hash (an empty 'mail' hash was sent)")
        title = _scalar(args.get("title"))
        if creating and not title.strip():
            problems.append("title is required")
        if title.strip():
            changes.title = " ".join(title.split())
        if "priorityNumber" in args:
            changes.priority = _priority(_scalar(args.get("priorityNumber")), problems,
                                         numbers_only=True)
        elif creating:
            problems.append("priorityNumber is required")
        if _scalar(args.get("status")):
            changes.status = _status(_scalar(args.get("status")), problems)
        changes.text = _scalar(args.get("description"))
        if "assignees" in args:
            changes.replace_assignees = _string_list(args.get("assignees"), "assignees", problems)
        if "permanentCCs" in args:
            changes.replace_ccs = _string_list(args.get("permanentCCs"), "permanentCCs",
                                               problems)
        for key, value in _struct(args.get("abfields"), "abfields", problems).items():
            label = decode_field_name(key)
            if label in ADDRESS_BOOK_FIELDS:
                changes.contact[label] = _scalar(value)
            else:
                problems.append(f"abfields: unknown address book field {key!r}")
        for key, value in _struct(args.get("projfields"), "projfields", problems).items():
            label = decode_field_name(key)
            if label == "Ticket Type":
                changes.ticket_type = _ticket_type(_scalar(value), problems)
            elif label in PROJECT_FIELDS:
                _project_field(label, _scalar(value), changes)
            else:
                problems.append(f"projfields: unknown project field {key!r}")
        return changes

    def issue_details(self, project: int, mrid: int) -> dict[str, SoapValue]:
        """getIssueDetails: fields, allDescriptions (newest first), lastdate and lasttime."""
        if project != self.project:
            raise FootprintsFault(f"project {project} does not exist")
        issue = self.store.issue(mrid)
        if issue is None:
            raise FootprintsFault(f"issue {mrid} does not exist in project {project}")
        details: dict[str, SoapValue] = {
            "mrID": issue.mrid,
            "projectID": issue.project,
            "title": issue.title,
            "status": issue.status,
            "priority": issue.priority,
            "submitter": issue.submitter,
            "assignees": " ".join(issue.assignees),
            encode_field_name("Ticket Type"): issue.ticket_type,
        }
        for label in PROJECT_FIELDS:
            details[encode_field_name(label)] = issue.project_fields.get(label, "")
        for label in ADDRESS_BOOK_FIELDS:
            details[encode_field_name(label)] = issue.contact.get(label, "")
        details["allDescriptions"] = [
            # Footprints answers description text HTML-escaped (spec C6).
            {"data": html.escape(e.data, quote=False), "stamp": e.stamp,
             "internal": int(e.internal)}
            for e in issue.descriptions
        ]
        details["createdate"] = issue.created.strftime("%Y-%m-%d")
        details["createtime"] = issue.created.strftime("%H:%M:%S")
        details["lastdate"] = issue.lastdate
        details["lasttime"] = issue.lasttime
        # [R] Footprints listed files in its web UI; the emulator lists them here.
        details["attachments"] = [
            {"id": a.id, "name": a.name, "size": a.size, "contentType": a.content_type,
             "created": a.created.strftime("%Y-%m-%d %H:%M:%S"), "author": a.author}
            for a in issue.attachments
        ]
        return details

    def attachment_data(self, project: int, mrid: int, attachment_id: int) -> bytes:
        """getAttachment (an emulator extension): the bytes of one file of an issue."""
        if project != self.project:
            raise FootprintsFault(f"project {project} does not exist")
        found = self.store.attachment(mrid, attachment_id)
        if found is None:
            if self.store.issue(mrid) is None:
                raise FootprintsFault(f"issue {mrid} does not exist in project {project}")
            raise FootprintsFault(f"attachment {attachment_id} does not exist on issue {mrid}")
        return found.data

    def search(self, query: str) -> list[dict[str, SoapValue]]:
        """search: rows of the selected columns for Footprints' SQL subset, by mrID."""
        try:
            parsed = parse_query(query)
        except QueryError as exc:
            raise FootprintsFault(str(exc)) from exc
        if parsed.project != self.project:
            raise FootprintsFault(f"Table 'footprints.MASTER{parsed.project}' doesn't exist")
        # A non-empty Originating Ticket Number (what clients search by) is answered from
        # its index; all conditions then filter those few issues as they would all.
        origin = next((value for column, value in parsed.where
                       if decode_field_name(column).casefold() == _ORIGIN.casefold()
                       and value), None)
        issues = self.store.issues() if origin is None else self.store.issues_by_origin(origin)
        return [_row(issue, parsed) for issue in issues if _matches(issue, parsed)]

    # -- shared --------------------------------------------------------------------------

    def _create(self, changes: _Changes, *, submitter: str, author: str) -> int:
        now = self.clock()
        assignees = _merge_assignees((), changes)
        with self.store.transaction():
            mrid = self.store.insert_issue(
                project=self.project,
                title=changes.title or UNTITLED,
                status=changes.status or STATUSES[0],
                priority=changes.priority or DEFAULT_PRIORITY,
                ticket_type=changes.ticket_type or TICKET_TYPES[0],
                submitter=submitter,
                contact={k: v for k, v in changes.contact.items() if v},
                assignees=assignees,
                project_fields={k: v for k, v in changes.project_fields.items() if v},
                when=now,
            )
            self._entries(mrid, changes, author, now)
        return mrid

    def _update(self, issue: Issue, changes: _Changes, *, author: str) -> None:
        now = self.clock()
        contact = {**issue.contact, **changes.contact}
        fields = {**issue.project_fields, **changes.project_fields}
        with self.store.transaction():
            self.store.update_issue(
                issue.mrid,
                title=changes.title or issue.title,
                status=changes.status or issue.status,
                priority=changes.priority or issue.priority,
                ticket_type=changes.ticket_type or issue.ticket_type,
                contact={k: v for k, v in contact.items() if v},
                assignees=_merge_assignees(issue.assignees, changes),
                project_fields={k: v for k, v in fields.items() if v},
                when=now,
            )
            self._entries(issue.mrid, changes, author, now)

    def _entries(self, mrid: int, changes: _Changes, author: str, now: datetime) -> None:
        if changes.text.strip():
            self.store.add_description(mrid, changes.text, author=author, internal=False,
                                       when=now)
        if changes.internal_text.strip():
            self.store.add_description(mrid, changes.internal_text, author=author,
                                       internal=True, when=now)
        for item in changes.attachments:
            self.store.add_attachment(mrid, name=item.name, content_type=item.content_type,
                                      data=item.data, author=author, when=now)

    def _notifications(
        self, mrid: int, what: str, author: str, *, mail: SoapValue = None
    ) -> list[tuple[str, int | None, EmailMessage]]:
        issue = self.store.issue(mrid)
        assert issue is not None
        assignee_mail = not (isinstance(mail, dict) and _scalar(mail.get("assignees")) == "0")
        if not assignee_mail:
            return []
        recipients = list(self.notify)
        recipients += [self.agents[a] for a in issue.assignees if a in self.agents]
        recipients = list(dict.fromkeys(r for r in recipients if r))
        if not recipients:
            return []
        msg = EmailMessage(policy=_MAIL_POLICY)
        msg["From"] = self.incoming_address
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = f"{issue.title} ISSUE={issue.mrid} PROJ={issue.project}"
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = make_msgid(f"fp{issue.project}.{issue.mrid}", self._domain())
        msg.set_content(_notification_body(issue, what, author))
        return [("notification", mrid, msg)]

    def _send(self, kind: str, mrid: int | None, msg: EmailMessage) -> None:
        recipients = [a.strip() for a in str(msg["To"]).split(",") if "@" in a]
        row = self.store.add_outbox(
            kind=kind, mrid=mrid, sender=self.incoming_address, recipients=recipients,
            subject=str(msg["Subject"]), body=msg.get_content(),
            message_id=str(msg["Message-ID"]), raw=msg.as_bytes(), when=self.clock(),
        )
        if self.smarthost is None or not recipients:
            return
        host, port = self.smarthost
        try:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.send_message(msg, from_addr=self.incoming_address, to_addrs=recipients)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("could not send %s for issue %s via %s:%s: %s", kind, mrid, host, port,
                        exc)
            self.store.mark_outbox(row, delivered=False, error=str(exc) or type(exc).__name__)
        else:
            self.store.mark_outbox(row, delivered=True, error=None)

    def outbox(self) -> list[OutboxMail]:
        return self.store.outbox()

    def _domain(self) -> str:
        return self.incoming_address.rpartition("@")[2] or "footprints.invalid"


# --- validation -------------------------------------------------------------------------


def _status(value: str, problems: list[str]) -> str | None:
    for status in STATUSES:
        if status.lower() == value.strip().lower():
            return status
    problems.append(f"status={value}: not a valid status")
    return None


def _priority(value: str, problems: list[str], *, numbers_only: bool = False) -> int | None:
    text = value.strip()
    if text.isdigit() and int(text) in PRIORITIES:
        return int(text)
    if not numbers_only:
        for number, name in PRIORITIES.items():
            if name.lower() == text.lower():
                return number
    allowed = "1-4" if numbers_only else "1-4 or Critical, High, Elevated, Normal"
    problems.append(f"priority={value}: not a valid priority ({allowed})")
    return None


def _ticket_type(value: str, problems: list[str]) -> str | None:
    for kind in TICKET_TYPES:
        if kind.lower() == value.strip().lower():
            return kind
    problems.append(f"Ticket Type={value}: not a valid ticket type")
    return None


def _project_field(label: str, value: str, changes: _Changes) -> None:
    text = value.strip() if "\n" not in value else value
    if label == _READY and text and text.lower() not in ("yes", "no"):
        changes.problems.append(f"{label}={value}: must be Yes or No")
        return
    if label == _READY and text:
        text = text.capitalize()
    if label == _NEXT_ACTION_DATE and text and not _DATE_TIME_RE.fullmatch(text):
        changes.problems.append(f"{label}={value}: must be YYYY-MM-DD HH:MM:SS")
        return
    changes.project_fields[label] = text


def _assignee_ops(value: str, changes: _Changes) -> None:
    """``assignees=+id -id "Team Name"``: add (``+`` or bare) or remove assignees/teams."""
    try:
        tokens = shlex.split(value)
    except ValueError:
        changes.problems.append(f"assignees={value}: unbalanced quotes")
        return
    for token in tokens:
        if token.startswith("-") and len(token) > 1:
            changes.remove.append(_assignee_id(token[1:]))
        elif token.startswith("+") and len(token) > 1:
            changes.add.append(_assignee_id(token[1:]))
        elif token not in ("+", "-"):
            changes.add.append(_assignee_id(token))


def _assignee_id(name: str) -> str:
    # Teams are stored under their encoded names ("OSG__bGOC__bSupport__bTeam").
    return name if name.startswith("CC:") else encode_field_name(name.strip())


def _merge_assignees(current: Iterable[str], changes: _Changes) -> list[str]:
    result = list(current)
    if changes.replace_assignees is not None:
        result = [a for a in result if a.startswith("CC:")]
        result += [_assignee_id(a) for a in changes.replace_assignees]
    if changes.replace_ccs is not None:
        result = [a for a in result if not a.startswith("CC:")]
        result += [f"CC:{a}" for a in changes.replace_ccs]
    removed = set(changes.remove)
    result = [a for a in result if a not in removed]
    for name in changes.add:
        if name not in result and name not in removed:
            result.append(name)
    return list(dict.fromkeys(result))


# --- SOAP argument helpers --------------------------------------------------------------


def _scalar(value: SoapValue) -> str:
    if value is None or isinstance(value, list | dict):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _int(value: SoapValue, name: str, problems: list[str]) -> int:
    text = _scalar(value).strip()
    if not text.isdigit():
        problems.append(f"{name} must be a number, got {text!r}" if text else f"{name} is required")
        return 0
    return int(text)


def _string_list(value: SoapValue, name: str, problems: list[str]) -> list[str]:
    if isinstance(value, list):
        return [_scalar(v) for v in value if _scalar(v)]
    if isinstance(value, str):
        return value.split()
    problems.append(f"{name} must be an array of strings")
    return []


def _struct(value: SoapValue, name: str, problems: list[str]) -> dict[str, SoapValue]:
    if value is None or value == "" or value == []:
        return {}
    if isinstance(value, dict):
        return value
    problems.append(f"{name} must be a struct")
    return {}


# --- search -----------------------------------------------------------------------------

_BUILTIN_COLUMNS: dict[str, Callable[[Issue], str]] = {
    "mrid": lambda i: str(i.mrid),
    "mrtitle": lambda i: i.title,
    "mrstatus": lambda i: i.status,
    "mrpriority": lambda i: str(i.priority),
    "mrsubmitter": lambda i: i.submitter,
    "mrassignees": lambda i: " ".join(i.assignees),
}


def _column(issue: Issue, column: str) -> str:
    getter = _BUILTIN_COLUMNS.get(column.lower())
    if getter is not None:
        return getter(issue)
    return issue.field(decode_field_name(column))


def column_known(column: str) -> bool:
    """Whether ``column`` names a column of MASTER<project> (case-insensitive, as MySQL)."""
    if column.lower() in _BUILTIN_COLUMNS:
        return True
    label = decode_field_name(column).lower()
    return any(label == known.lower()
               for known in ("Ticket Type", *PROJECT_FIELDS, *ADDRESS_BOOK_FIELDS))


def _matches(issue: Issue, query: Query) -> bool:
    # MySQL's default collation compares case-insensitively; so does the emulator.
    return all(_column(issue, col).casefold() == value.casefold()
               for col, value in query.where)


def _row(issue: Issue, query: Query) -> dict[str, SoapValue]:
    row: dict[str, SoapValue] = {}
    for column in query.columns:
        row[column] = issue.mrid if column.lower() == "mrid" else _column(issue, column)
    return row


# --- notification text ------------------------------------------------------------------


def _notification_body(issue: Issue, what: str, author: str) -> str:
    lines = [
        f"Issue {issue.mrid} in project {issue.project} was {what} by {author}.",
        f"To update it, reply to this mail and keep ISSUE={issue.mrid} PROJ={issue.project} "
        "in the subject.",
        "",
        f"Title: {issue.title}",
        f"Status: {issue.status}",
        f"Priority: {issue.priority} ({PRIORITIES.get(issue.priority, '?')})",
        f"Ticket Type: {issue.ticket_type}",
        f"Submitter: {issue.submitter}",
        f"Assignees: {' '.join(issue.assignees)}",
    ]
    lines += [f"{label}: {issue.contact[label]}" for label in ADDRESS_BOOK_FIELDS
              if issue.contact.get(label)]
    lines += [f"{label}: {issue.project_fields[label]}" for label in PROJECT_FIELDS
              if issue.project_fields.get(label)]
    # Agent-only entries are never mailed: the notification may leave the helpdesk.
    public = [e for e in issue.descriptions if not e.internal]
    if public:
        lines += ["", "Description (newest first):"]
        for entry in public:
            lines += ["", entry.stamp, entry.data]
    return "\n".join(lines) + "\n"
