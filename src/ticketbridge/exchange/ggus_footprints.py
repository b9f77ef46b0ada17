"""GGUS -> Footprints: the mapping of spec B5.1 and the 2009 intake of spec A2.

Tables (GOC-TX ``GGUS2FPTicketConverter``; the 2009 PHP used the same priority map):

=========================================================  ==========================
GGUS                                                       Footprints
=========================================================  ==========================
priority top priority / very urgent / urgent / less urgent  1 / 2 / 3 / 4
priority normal, unknown or empty                           4 (GOC-TX's literal "Normal"
                                                            was a bug; the 2009 PHP gave 4)
status new, assigned, in progress, waiting for reply,       Engineering
on hold, reopened, or empty
status solved, unsolved, verified, closed                   Closed
=========================================================  ==========================

The create carries the GGUS description followed by the ``[Other GGUS Ticket Info]``
block of the 2009 intake and a ``[Ticket Origin]`` link; every diary becomes its own
Footprints description entry under a ``[Public Diary]`` / ``[Diary Of Steps]`` /
``[Internal Diary]`` / ``[Solution]`` header with its author and time. The internal diary
stays internal: it is never written into a public field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC

from ticketbridge.model import Comment, CreateTicket, Ticket, Visibility

PRIORITY = {"top priority": "1", "very urgent": "2", "urgent": "3", "less urgent": "4"}
DEFAULT_PRIORITY = "4"
CLOSED_STATES = frozenset({"solved", "unsolved", "verified", "closed"})
OPEN_STATES = frozenset(
    {"new", "assigned", "in progress", "waiting for reply", "on hold", "reopened"}
)

#: Footprints statuses: open ones, and the two that end a ticket.
FP_OPEN_STATES = frozenset(
    {"Engineering", "Customer", "Network Administration", "Support Agency", "Vendor"}
)
FP_DONE_STATES = frozenset({"Resolved", "Closed"})

HEADERS = {
    "public diary": "[Public Diary]",
    "diary of steps": "[Diary Of Steps]",
    "internal diary": "[Internal Diary]",
    "solution": "[Solution]",
    "short solution": "[Short Solution]",
}

_FP_TAG = re.compile(r"ISSUE=(\d+)\s+PROJ=(\d+)")

#: Lines of the ``[Other GGUS Ticket Info]`` block: (label, GGUS mail-XML element).
OTHER_INFO = (
    ("Date Opened", "GHD_Date_Time_Of_Problem"),
    ("GGUS Ticket ID", "GHD_Request-ID"),
    ("Short Description", "GHD_Short_Description"),
    ("Short Solution", "GHD_Short_Solution"),
    ("Experiment", "GHD_Experiment"),
    ("Affected Site", "GHD_Affected_Site"),
    ("Responsible Unit", "GHD_Responsible_Unit"),
    ("Type Of Problem", "GHD_Type_Of_Problem"),
)


def footprints_priority(ggus_priority: str) -> str:
    """The Footprints priority number for a GGUS priority (B5.1)."""
    return PRIORITY.get(ggus_priority.strip().lower(), DEFAULT_PRIORITY)


def footprints_status(ggus_status: str) -> str:
    """The Footprints status for a GGUS status (B5.1): closed states close, all else is open."""
    return "Closed" if ggus_status.strip().lower() in CLOSED_STATES else "Engineering"


def split_name(name: str) -> tuple[str, str]:
    """First and last name from a GGUS name, dropping a certificate serial suffix.

    GGUS may append a serial ("Maria Rossi 555"); GOC-TX kept the first two tokens.
    """
    tokens = [t for t in name.split() if not t.isdigit()][:2]
    if not tokens:
        return "Empty", "Submitter"
    if len(tokens) == 1:
        return tokens[0], ""
    return tokens[0], tokens[1]


@dataclass(frozen=True, slots=True)
class GgusToFootprints:
    """The GGUS -> Footprints direction of an exchange, with its per-exchange settings."""

    ticket_url: str = "https://ggus.eu/?mode=ticket_info&ticket_id={id}"
    assignees: Sequence[str] = ("TX_FP71_GGUS2", "OSG GOC Support Team")
    next_action: str = "TX Incoming"
    ticket_type: str = "Problem/Request"
    origin_sg: str = "TX_FP71_GGUS2"
    home_project: int = 71

    def url(self, source: Ticket) -> str:
        return self.ticket_url.format(id=source.ref.id)

    def correlation_key(self, source: Ticket) -> str:
        return source.ref.id

    def origin_id(self, source: Ticket) -> str | None:
        """The home (Footprints) ticket a GGUS ticket came from, if it originated at home.

        A ticket pushed from home carries our id in ``GHD_Origin_ID`` (and our reverse
        assignee in ``GHD_Origin_SG`` when the mail shows it); a gen-1 echo may only show
        Footprints' ``ISSUE=n PROJ=p`` tag in its short description.
        """
        origin = source.field("GHD_Origin_ID").strip()
        origin_sg = source.field("GHD_Origin_SG").strip()
        if origin.isdigit() and (not origin_sg or origin_sg == self.origin_sg):
            return origin
        tag = _FP_TAG.search(source.title)
        if tag and int(tag.group(2)) == self.home_project:
            return tag.group(1)
        return None

    def fields(self, source: Ticket) -> Mapping[str, str]:
        # A ticket that came from home carries Footprints' own ISSUE/PROJ tag in its
        # title; sending it back would rename the home ticket.
        title = " ".join(_FP_TAG.sub("", source.title).split()) or "(Untitled Ticket)"
        return {
            "title": title,
            "status": footprints_status(source.status),
            "priority": footprints_priority(source.priority),
        }

    def guard(self, name: str, new: str, current: str | None) -> str | None:
        """Keep Footprints' finer states (``current`` is what Footprints holds now).

        The GGUS table is coarse: every open GGUS state is ``Engineering`` and every
        final one ``Closed``. A Footprints ticket already in another open state
        (Customer, Vendor ...) or already ``Resolved`` keeps it, so an exchange never
        undoes a finer choice made at home, and our own write echoing back from GGUS
        changes nothing.
        """
        if name != "status" or current is None:
            return new
        if new == "Closed" and current in FP_DONE_STATES:
            return None
        if new == "Engineering" and current in FP_OPEN_STATES:
            return None
        return new

    def comment_text(self, comment: Comment) -> str:
        """The entry's text without its GGUS stamp: what identifies a copied comment."""
        header = HEADERS.get(comment.kind, f"[{comment.kind.title()}]")
        return f"{header}\n{comment.body.strip()}"

    def comment(self, comment: Comment, source: Ticket) -> Comment:
        when = ""
        if comment.created is not None:
            when = comment.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        body = self.comment_text(comment)
        stamp = f"[GGUS {source.ref.id}"
        if comment.author:
            stamp += f" by {comment.author}"
        if when:
            stamp += f" at {when}"
        body += f"\n{stamp}]"
        # The byline is already in the body; the codec must not add another one.
        return replace(comment, body=body, author="", created=None)

    def other_info(self, source: Ticket) -> str:
        lines = ["[Other GGUS Ticket Info]"]
        for label, element in OTHER_INFO:
            value = source.field(element)
            if element == "GHD_Request-ID":
                value = source.ref.id
            if value:
                lines.append(f"{label}: {value}")
        return "\n".join(lines)

    def create(self, source: Ticket, target_helpdesk: str) -> CreateTicket:
        mapped = self.fields(source)
        first, last = split_name(source.submitter.name)
        description = "\n\n".join(
            part
            for part in (
                source.description.strip() or "(No description given)",
                self.other_info(source),
                f"[Ticket Origin]\n{self.url(source)}",
            )
            if part
        )
        fields: dict[str, str] = {
            "status": mapped["status"],
            "priority": mapped["priority"],
            "Originating Ticket Number": self.correlation_key(source),
            "Ticket Type": self.ticket_type,
            "ENG Next Action Item": self.next_action,
            "First Name": first,
            "Last Name": last,
        }
        if source.modified is not None:
            fields["ENG Next Action Date/Time (UTC)"] = source.modified.astimezone(UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
        if source.submitter.phone:
            fields["Office Phone"] = source.submitter.phone
        if source.submitter.email:
            fields["Email address"] = source.submitter.email
        if self.assignees:
            fields["assignees"] = " ".join(_quote(a) for a in self.assignees)
        return CreateTicket(
            helpdesk=target_helpdesk,
            correlation_key=self.correlation_key(source),
            title=mapped["title"],
            description=description,
            fields=fields,
            comments=tuple(self.comment(c, source) for c in source.comments),
        )


def _quote(name: str) -> str:
    """Footprints writes team names with spaces in double quotes on ``assignees=`` lines."""
    return f'"{name}"' if " " in name else name


def is_internal(comment: Comment) -> bool:
    """True for comments that must stay internal on the other side."""
    return comment.visibility is Visibility.INTERNAL
