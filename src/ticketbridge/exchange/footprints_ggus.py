"""Footprints -> GGUS: the mapping of spec B5.2 and the guards the GGUS team asked for.

Pure: no I/O, no clock. Tables (GOC-TX ``FP2GGUSTicketConverter``, guards of its
``GGUSSOAPAccessor``):

==========================================================  ===============================
Footprints                                                  GGUS
==========================================================  ===============================
status Engineering / Customer / Network Administration /    ``in progress``
Support Agency / Vendor
status Resolved / Closed                                    ``solved`` + Detailed_Solution
any other status                                            ``assigned``
priority 1 / 2 / 3 / 4                                      (top priority, only with
                                                            ``allow_top_priority``; else
                                                            very urgent) / very urgent /
                                                            urgent / less urgent
any other priority                                          not sent (GGUS keeps its own);
                                                            ``less urgent`` on create;
                                                            ``normal`` is never sent
==========================================================  ===============================

Values are GGUS-native (statuses and priorities lowercased as in
:data:`ticketbridge.codecs.ggus_mail.GGUS_STATUSES`); ``title``, ``status`` and ``priority``
keep the planner's state-field names (so a stale snapshot cannot regress them) and the
connector writes them to ``GHD_Short_Description``, ``GHD_Status`` and ``GHD_Priority``;
every other field carries its ``GHD_*`` name. Every text is cleaned for XML 1.0
(:func:`xml_safe`) and held to GGUS's limits (:func:`fit_create`, :func:`fit_update`).

Guards (spec B5.2, (d) items 4-6) are small pure functions named after what they
protect; :meth:`FootprintsToGgus.guard` applies the per-field ones and
:meth:`FootprintsToGgus.guard_update` the ones that need the whole update.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ticketbridge.model import Comment, CreateTicket, Ticket, UpdateTicket, Visibility

__all__ = [
    "CREATE_STATUS",
    "FINAL_STATES",
    "FINER_OPEN_STATES",
    "HISTORY_LIMIT",
    "NO_DESCRIPTION",
    "OPEN_FP_STATUSES",
    "PRIORITY",
    "RESOLVED_FP_STATUSES",
    "SOLVED_IS_KEPT_BY",
    "TEXT_LIMIT",
    "TITLE_LIMIT",
    "TRUNCATION_NOTE",
    "UNTITLED",
    "FootprintsToGgus",
    "byline",
    "diary_text",
    "fit_create",
    "fit_title",
    "fit_update",
    "ggus_priority",
    "ggus_status",
    "ggus_values",
    "is_copy_from_ggus",
    "is_final",
    "keep_finer_open_state",
    "keep_top_priority_set_in_ggus",
    "keep_unsolved_verified_closed",
    "never_create_in_progress",
    "nothing_to_final_ticket",
    "priority_to_send",
    "solution_only_with_solved",
    "solved_carries_solution",
    "status_to_send",
    "xml_safe",
]

OPEN_FP_STATUSES = frozenset(
    {"engineering", "customer", "network administration", "support agency", "vendor"}
)
RESOLVED_FP_STATUSES = frozenset({"resolved", "closed"})
UNKNOWN_FP_STATUS = "assigned"

PRIORITY = {"1": "top priority", "2": "very urgent", "3": "urgent", "4": "less urgent"}
#: What Footprints priority 1 becomes unless ``allow_top_priority`` is set ((d) item 15).
NO_AUTOMATIC_TOP = "very urgent"
CREATE_PRIORITY = "less urgent"

#: Open GGUS states finer than ``in progress``: a coarse Footprints status never overwrites them.
FINER_OPEN_STATES = frozenset({"new", "assigned", "waiting for reply", "on hold", "reopened"})
#: GGUS states that ``solved`` must not overwrite.
SOLVED_IS_KEPT_BY = frozenset({"verified", "closed", "unsolved"})
#: GGUS states after which nothing at all is written to the ticket (B3.1, (d) item 6).
FINAL_STATES = frozenset({"verified", "closed"})
#: What a ticket is created with instead of ``in progress`` (B5.2, (d) item 5).
CREATE_STATUS = "new"

TEXT_LIMIT = 4000  # GHD_Description, GHD_Public_Diary, GHD_Internal_Diary, GHD_Detailed_Solution
TITLE_LIMIT = 255  # GHD_Short_Description
HISTORY_LIMIT = 3000  # the [Ticket History] block of a create
TRUNCATION_NOTE = "(Text truncated due to GGUS 4000 char limit - please view origin ticket)"
NO_DESCRIPTION = "(No description given)"
UNTITLED = "(Untitled Ticket)"
ELLIPSIS = "..."

SOLUTION = "GHD_Detailed_Solution"


# --- text ------------------------------------------------------------------------------


def _xml_char_ok(ch: str) -> bool:
    cp = ord(ch)
    return (
        cp in (0x9, 0xA, 0xD)
        or 0x20 <= cp <= 0xD7FF
        or 0xE000 <= cp <= 0xFFFD
        or 0x10000 <= cp <= 0x10FFFF
    )


def xml_safe(text: str) -> str:
    """``text`` NFC-normalised, line breaks as LF, XML-1.0-invalid characters as ``?``.

    GOC-TX replaced non-XML-1.0 code points with ``?`` before SOAP ((d) item 8): a
    replacement, not a removal, so a reader sees that something was there.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch if _xml_char_ok(ch) else "?" for ch in text)
    return unicodedata.normalize("NFC", text)


def _one_line(text: str) -> str:
    return " ".join(xml_safe(text).split())


def _note(url: str) -> str:
    return f"{TRUNCATION_NOTE}\n{url}" if url else TRUNCATION_NOTE


def fit_create(text: str, url: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` within ``limit`` as a create sends it: the truncation note, then the END.

    GOC-TX kept the last ~3800 characters on create (B5.2): the newest history survives.
    The note names the origin ticket. The result never exceeds ``limit``, whatever the
    lengths of ``text`` and ``url``.
    """
    if len(text) <= limit:
        return text
    head = _note(url)[:limit] + "\n\n"
    room = limit - len(head)
    if room <= 0:
        return _note(url)[:limit]
    return head + text[len(text) - room :]


def fit_update(text: str, url: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` within ``limit`` as an update sends it: the START, then the truncation note.

    GOC-TX kept the first ~3800 characters on update and added a note plus the origin
    URL (B5.2). The result never exceeds ``limit``, whatever the lengths of the inputs.
    """
    if len(text) <= limit:
        return text
    tail = "\n\n" + _note(url)[:limit]
    room = limit - len(tail)
    if room <= 0:
        return _note(url)[:limit]
    return text[:room] + tail


def fit_title(title: str) -> str:
    """A GGUS short description: one line, at most 255 characters, never empty."""
    line = _one_line(title) or UNTITLED
    if len(line) <= TITLE_LIMIT:
        return line
    return line[: TITLE_LIMIT - len(ELLIPSIS)] + ELLIPSIS


def _utc(moment: datetime) -> datetime:
    # A naive time is read as UTC, never as the host's local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def byline(author: str, created: datetime | None) -> str:
    """The `` -- by NAME at TIME`` line that follows each copied entry ((d) item 12)."""
    line = f" -- by {_one_line(author) or 'unknown'}"
    if created is not None:
        line += f" at {_utc(created).strftime('%Y-%m-%d %H:%M:%S')} UTC"
    return line


def _entry_text(comment: Comment) -> str:
    """One Footprints entry with its byline, or "" when the entry has no text."""
    body = xml_safe(comment.body).strip()
    if not body:
        return ""
    return f"{body}\n{byline(comment.author, comment.created)}"


def diary_text(texts: Iterable[str], url: str, *, create: bool = False) -> str:
    """Formatted entries joined into one diary value within 4000 characters ("" if none).

    This is how the connector writes the comments of one update into ``GHD_Public_Diary``
    (the bodies of the public ones) and ``GHD_Internal_Diary`` (the internal ones): one
    call per visibility, so internal text never joins a public value. Empty texts are
    skipped, and a diary with no text is not sent at all.
    """
    text = "\n\n".join(t for t in texts if t.strip())
    return fit_create(text, url) if create else fit_update(text, url)


_GGUS_STAMP = re.compile(r"^\[GGUS \d+(?: by .*?)?(?: at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)?\]$")


def is_copy_from_ggus(comment: Comment) -> bool:
    """True for a Footprints entry that the GGUS -> Footprints direction wrote.

    Such an entry ends with that direction's ``[GGUS id by NAME at TIME]`` stamp; copying
    it back would echo GGUS's own diary into GGUS ((d) item 2).
    """
    lines = comment.body.strip().splitlines()
    return bool(lines) and _GGUS_STAMP.match(lines[-1].strip()) is not None


# --- tables ----------------------------------------------------------------------------


def ggus_status(fp_status: str) -> str:
    """The GGUS status for a Footprints status (B5.2 table, before any guard)."""
    key = " ".join(fp_status.split()).lower()
    if key in OPEN_FP_STATUSES:
        return "in progress"
    if key in RESOLVED_FP_STATUSES:
        return "solved"
    return UNKNOWN_FP_STATUS


def ggus_priority(fp_priority: str, *, allow_top_priority: bool = False) -> str | None:
    """The GGUS priority for a Footprints priority number, or None when there is none.

    GOC-TX sent ``normal`` for anything else; ``normal`` is never sent here (B3.2 [REC]):
    None means "leave GGUS's priority as it is" (``less urgent`` on create). Priority 1
    becomes ``top priority`` only when the exchange allows it ((d) item 15), otherwise
    ``very urgent``: ``top priority`` is meant for ALARM tickets and may page people.
    """
    mapped = PRIORITY.get(fp_priority.strip())
    if mapped == "top priority" and not allow_top_priority:
        return NO_AUTOMATIC_TOP
    return mapped


# --- guards ----------------------------------------------------------------------------


def _state(value: str | None) -> str:
    """A GGUS status or priority as compared here: lowercased, whitespace collapsed."""
    return " ".join((value or "").split()).lower()


def never_create_in_progress(status: str) -> str:
    """The status a create sends: ``new`` instead of ``in progress`` (B5.2, (d) item 5)."""
    return CREATE_STATUS if status == "in progress" else status


def is_final(ggus_status_now: str | None) -> bool:
    """True when GGUS's ticket is verified or closed: no reopen, no further updates."""
    return _state(ggus_status_now) in FINAL_STATES


def keep_finer_open_state(new: str, ggus_now: str | None) -> str | None:
    """None (keep GGUS's value) when a coarse ``in progress`` would overwrite a finer open state.

    new / assigned / waiting for reply / on hold / reopened say more than Footprints'
    "someone is working on it" (B5.2, (d) item 4).
    """
    if new == "in progress" and _state(ggus_now) in FINER_OPEN_STATES:
        return None
    return new


def keep_unsolved_verified_closed(new: str, ggus_now: str | None) -> str | None:
    """None (keep GGUS's value) when ``solved`` would overwrite verified, closed or unsolved."""
    if new == "solved" and _state(ggus_now) in SOLVED_IS_KEPT_BY:
        return None
    return new


def status_to_send(
    new: str, ggus_now: str | None, *, last_exchanged: str | None = None
) -> str | None:
    """The GGUS status an update sends, or None to leave GGUS's status alone.

    ``ggus_now`` is GGUS's current status (None when unknown); ``last_exchanged`` is the
    mapped value of the previous exchange (None if none). In order:

    1. a verified or closed ticket is final: nothing is sent;
    2. no-downgrade ((d) item 4 [REC]): status is pushed only when the Footprints status
       changed (as mapped) since the last exchange;
    3. ``in progress`` never overwrites a finer open state;
    4. ``solved`` never overwrites unsolved (nor verified, closed);
    5. nothing is sent when GGUS already holds the value.
    """
    if is_final(ggus_now):
        return None
    if last_exchanged is not None and new == last_exchanged:
        return None
    kept = keep_finer_open_state(new, ggus_now)
    kept = None if kept is None else keep_unsolved_verified_closed(kept, ggus_now)
    if kept is None or kept == _state(ggus_now):
        return None
    return kept


def keep_top_priority_set_in_ggus(
    new: str, ggus_now: str | None, *, allow_top_priority: bool = False
) -> str | None:
    """None (keep GGUS's value) when GGUS says ``top priority`` and we may not set it.

    An exchange that may not escalate to ``top priority`` did not put it there: someone
    on the GGUS side did (an ALARM), and the Footprints priority does not lower it.
    """
    top = "top priority"
    if not allow_top_priority and _state(ggus_now) == top and new != top:
        return None
    return new


def priority_to_send(
    new: str, ggus_now: str | None, *, allow_top_priority: bool = False
) -> str | None:
    """The GGUS priority an update sends, or None to leave GGUS's priority alone."""
    if new not in PRIORITY.values():  # never ``normal``, never an unknown value
        return None
    if not allow_top_priority and new == "top priority":
        return None
    return keep_top_priority_set_in_ggus(new, ggus_now, allow_top_priority=allow_top_priority)


def solved_carries_solution(fields: Mapping[str, str], solution: str) -> dict[str, str]:
    """``fields`` with a non-empty ``GHD_Detailed_Solution`` whenever status is ``solved``.

    GGUS refuses ``solved`` without solution text (B1, (d) item 5): the latest Footprints
    entry, or ``(No description given)``.
    """
    out = dict(fields)
    if out.get("status") == "solved" and not out.get(SOLUTION, "").strip():
        out[SOLUTION] = solution.strip() or NO_DESCRIPTION
    return out


def solution_only_with_solved(fields: Mapping[str, str], ggus_now: str | None) -> dict[str, str]:
    """``fields`` without a solution when the GGUS ticket will not be ``solved`` after them.

    A guard that keeps GGUS at unsolved (or an open state) must not leave a solution text
    behind it: the solution mail goes out on the change to solved only.
    """
    out = dict(fields)
    will_be = out.get("status", _state(ggus_now) or None)
    if SOLUTION in out and will_be is not None and will_be != "solved":
        del out[SOLUTION]
    return out


def nothing_to_final_ticket(ggus_now: str | None) -> str | None:
    """The reason nothing may be sent to a GGUS ticket in this state, or None."""
    if is_final(ggus_now):
        return f"GGUS ticket is {ggus_now!s}: final, nothing is sent"
    return None


def ggus_values(ggus: Ticket) -> dict[str, str]:
    """A GGUS snapshot's current values under the names :meth:`FootprintsToGgus.fields` uses.

    This is what the caller passes as ``current`` to :meth:`FootprintsToGgus.guard` and
    :meth:`FootprintsToGgus.guard_update`.
    """
    values = {
        "title": ggus.title,
        "status": ggus.status.strip().lower(),
        "priority": ggus.priority.strip().lower(),
        SOLUTION: ggus.field(SOLUTION),
    }
    return {k: v for k, v in values.items() if v}


# --- the direction ---------------------------------------------------------------------


def _public(comments: Iterable[Comment]) -> list[Comment]:
    """Public entries with text that did not come from GGUS, oldest first."""
    return [
        c
        for c in comments
        if c.visibility is Visibility.PUBLIC and c.body.strip() and not is_copy_from_ggus(c)
    ]


@dataclass(frozen=True, slots=True)
class FootprintsToGgus:
    """The Footprints -> GGUS direction of an exchange, with its per-exchange settings.

    ``responsible_unit`` is the support unit a create is routed to (GGUS' first line, TPM,
    by default); an operator who names a unit for one ticket uses
    ``dataclasses.replace(direction, responsible_unit=...)``. ``origin_sg`` is our reverse
    assignee as GGUS knows it (``GHD_Origin_SG``); ``allow_top_priority`` lets Footprints
    priority 1 become ``top priority``.
    """

    ticket_url: str = "https://ticket.grid.iu.edu/{id}"
    origin_sg: str = "TX_FP71_GGUS2"
    responsible_unit: str = "TPM"
    affected_vo: str = "none"
    allow_top_priority: bool = False
    default_modifier: str = "OSG GOC"

    def url(self, source: Ticket) -> str:
        return _one_line(self.ticket_url.format(id=source.ref.id))

    def correlation_key(self, source: Ticket) -> str:
        """The Footprints id, written to ``GHD_Origin_ID``."""
        return source.ref.id

    # -- what the entries become -------------------------------------------------------

    def _first(self, source: Ticket) -> Comment | None:
        public = _public(source.comments)
        return public[0] if public else None

    def first_description(self, source: Ticket) -> str:
        """The original description: the first public entry (internal ones never)."""
        first = self._first(source)
        text = first.body if first is not None else source.description
        return xml_safe(text).strip() or NO_DESCRIPTION

    def latest_entry(self, source: Ticket) -> Comment | None:
        """The newest public entry after the original description, if there is one."""
        public = _public(source.comments)
        return public[-1] if len(public) > 1 else None

    def solution(self, source: Ticket) -> str:
        """``GHD_Detailed_Solution``: the latest public entry, or ``(No description given)``.

        The original description alone is not a solution, so a ticket resolved without a
        further entry gets the placeholder.
        """
        latest = self.latest_entry(source)
        text = xml_safe(latest.body).strip() if latest is not None else ""
        return fit_update(text or NO_DESCRIPTION, self.url(source))

    def last_modifier(self, source: Ticket) -> str:
        """``GHD_Last_Modifier``: the author of the newest public entry, "(via Footprints)"."""
        authors = [c.author for c in _public(source.comments) if c.author.strip()]
        name = _one_line(authors[-1]) if authors else self.default_modifier
        return f"{name} (via Footprints)"

    def history(self, source: Ticket) -> str:
        """The middle entries (public, between the first and the latest), last 3000 chars."""
        public = _public(source.comments)
        text = "\n\n".join(_entry_text(c) for c in public[1:-1])
        return text[len(text) - HISTORY_LIMIT :] if len(text) > HISTORY_LIMIT else text

    def submitter(self, source: Ticket) -> dict[str, str]:
        """GHD_Name, GHD_Phone, GHD_Loginname; the e-mail is never copied ((d) item 10)."""
        name = (
            " ".join(
                p for p in (source.field("First Name"), source.field("Last Name")) if p.strip()
            )
            or source.submitter.name
        )
        values = {
            "GHD_Name": _one_line(name),
            "GHD_Phone": _one_line(source.field("Office Phone") or source.submitter.phone),
            "GHD_Loginname": _one_line(source.field("SUBMITTER_DN")),
        }
        return {k: v for k, v in values.items() if v}

    # -- Direction ---------------------------------------------------------------------

    def fields(self, source: Ticket) -> Mapping[str, str]:
        """What follows the Footprints ticket on every update.

        ``priority`` is left out when Footprints has no 1..4 priority (GGUS keeps its own);
        ``GHD_Detailed_Solution`` is present while Footprints is Resolved/Closed.
        """
        values: dict[str, str] = {
            "title": fit_title(source.title),
            "status": ggus_status(source.status),
            "GHD_Last_Modifier": self.last_modifier(source),
        }
        priority = ggus_priority(source.priority, allow_top_priority=self.allow_top_priority)
        if priority is not None:
            values["priority"] = priority
        if values["status"] == "solved":
            values[SOLUTION] = self.solution(source)
        return values

    def guard(self, name: str, new: str, current: str | None) -> str | None:
        """The value to send for ``name``, or None to leave GGUS as it is.

        ``current`` must be the value the GGUS ticket holds now (:func:`ggus_values` of a
        fresh GGUS snapshot) when the caller knows it, falling back to what we last sent.
        Status: :func:`status_to_send`; priority: :func:`priority_to_send`. Rules that need
        the whole ticket (a final ticket gets nothing; a solution only with solved) are in
        :meth:`guard_update`.
        """
        if name == "status":
            return status_to_send(new, current)
        if name == "priority":
            return priority_to_send(new, current, allow_top_priority=self.allow_top_priority)
        return new

    def guard_update(
        self, update: UpdateTicket, source: Ticket, current: Mapping[str, str]
    ) -> UpdateTicket | None:
        """The update after the whole-ticket guards, or None when nothing may be sent.

        ``current`` is :func:`ggus_values` of the GGUS ticket now (empty when unknown):

        * verified / closed: nothing at all is sent, not even a diary entry;
        * ``solved`` always carries a non-empty solution (re-sent when unchanged);
        * a solution is not sent when the ticket does not end up ``solved``.
        """
        ggus_now = current.get("status")
        if nothing_to_final_ticket(ggus_now) is not None:
            return None
        fields = solved_carries_solution(update.fields, self.solution(source))
        fields = solution_only_with_solved(fields, ggus_now)
        return replace(update, fields=fields)

    def comment(self, comment: Comment, source: Ticket) -> Comment:
        """A Footprints entry as one GGUS diary entry with its byline (within 4000 chars).

        Public entries become ``public diary`` entries, internal ones ``internal diary``
        entries (``GHD_Internal_Diary``, never a public field). The byline is in the body;
        the connector must not add another. An entry without text, or one that came from
        GGUS (:func:`is_copy_from_ggus`), has an empty body and is skipped by
        :func:`diary_text`.
        """
        internal = comment.visibility is not Visibility.PUBLIC
        text = "" if is_copy_from_ggus(comment) else _entry_text(comment)
        return replace(
            comment,
            body=fit_update(text, self.url(source)),
            author="",
            created=None,
            kind="internal diary" if internal else "public diary",
            visibility=Visibility.INTERNAL if internal else Visibility.PUBLIC,
        )

    def description(self, source: Ticket) -> str:
        """``GHD_Description`` of a create: first description, origin, history (C5 order)."""
        parts = [self.first_description(source), f"[Ticket Origin]\n{self.url(source)}"]
        history = self.history(source)
        if history:
            parts.append(f"[Ticket History]\n{history}")
        return fit_create("\n\n".join(parts), self.url(source))

    def internal_diary(self, source: Ticket) -> str:
        """``GHD_Internal_Diary`` of a create: the latest public entry and every internal one.

        GOC-TX put the latest description into the internal diary on create (B5.2);
        internal Footprints entries can go nowhere else.
        """
        latest = self.latest_entry(source)
        entries = [
            c for c in source.comments if c is latest or c.visibility is not Visibility.PUBLIC
        ]
        return diary_text((_entry_text(c) for c in entries), self.url(source), create=True)

    def create(self, source: Ticket, target_helpdesk: str) -> CreateTicket:
        mapped = self.fields(source)
        status = never_create_in_progress(mapped["status"])
        fields: dict[str, str] = {
            "status": status,
            "priority": mapped.get("priority", CREATE_PRIORITY),
            "GHD_Origin_ID": self.correlation_key(source),
            "GHD_Origin_SG": self.origin_sg,
            "GHD_Responsible_Unit": self.responsible_unit,
            "GHD_Affected_VO": self.affected_vo,
            "GHD_Last_Modifier": mapped["GHD_Last_Modifier"],
            **self.submitter(source),
        }
        if SOLUTION in mapped:
            fields[SOLUTION] = mapped[SOLUTION]
        fields = solved_carries_solution(fields, self.solution(source))
        internal = self.internal_diary(source)
        comments = (
            (
                Comment(
                    key=f"create:{source.ref.id}",
                    body=internal,
                    kind="internal diary",
                    visibility=Visibility.INTERNAL,
                ),
            )
            if internal
            else ()
        )
        return CreateTicket(
            helpdesk=target_helpdesk,
            correlation_key=self.correlation_key(source),
            title=mapped["title"],
            description=self.description(source),
            fields=fields,
            comments=comments,
        )
