"""Decide what one trigger changes on the other side. Pure: no I/O, no clock, no randomness.

The planner compares a fresh snapshot of the source ticket with what the link remembers
of the last exchange and returns the operations that bring the target up to date:

* no link and nothing found by correlation key          -> create the ticket
* no link, but the target already carries our key       -> adopt that ticket, update it
  (a lost link never creates a second ticket: invariant 3)
* a link                                                -> update only what changed:
  mapped fields whose value differs from what we last sent, and comments whose key has
  not been copied yet
* a snapshot older than the newest one applied           -> copy its new comments, but never
  let it regress status, priority or title (GOC-TX's ``source_timestamp`` guard)
* nothing changed                                       -> skip, with the reason

Everything specific to a pair of helpdesks (field tables, status guards, text formats)
comes in through a :class:`Direction`; this module knows none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ticketbridge.model import Comment, CreateTicket, Operation, Ticket, UpdateTicket

#: Mapped fields that a stale snapshot may not change (they describe the ticket's *state*).
STATE_FIELDS = frozenset({"status", "priority", "title"})


class Direction(Protocol):
    """The mapping of one direction of an exchange (e.g. GGUS -> Footprints)."""

    def correlation_key(self, source: Ticket) -> str:
        """The value written into the target ticket that identifies the source ticket."""
        ...

    def create(self, source: Ticket, target_helpdesk: str) -> CreateTicket:
        """The create operation for a source ticket seen for the first time."""
        ...

    def fields(self, source: Ticket) -> Mapping[str, str]:
        """The target's field values that follow the source on every update."""
        ...

    def guard(self, name: str, new: str, current: str | None) -> str | None:
        """The value to send for field ``name``, or None to leave the target as it is.

        ``current`` is what we last sent (None if never). Direction-specific rules such
        as "never overwrite verified with solved" live here.
        """
        ...

    def comment(self, comment: Comment, source: Ticket) -> Comment:
        """A source comment as it must appear on the target (header, author line ...)."""
        ...


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the planner needs to know of an existing link."""

    target_id: str
    newest_applied: datetime | None = None  # ``modified`` of the newest snapshot applied
    sent: Mapping[str, str] = field(default_factory=dict)  # field values last sent
    copied: frozenset[str] = frozenset()  # keys of source comments already copied
    #: the target's mapped values as last seen (its own snapshot), for the direction's
    #: guards; a field missing here is taken to hold what was last sent
    current: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of planning one snapshot."""

    ops: tuple[Operation, ...]
    decision: str  # one line, for the audit trail and the operator
    sent: Mapping[str, str]  # field values the target holds once ``ops`` are applied
    copied: tuple[str, ...] = ()  # source comment keys the ops copy
    newest_applied: datetime | None = None
    stale: bool = False

    @property
    def is_skip(self) -> bool:
        return not self.ops


def is_stale(snapshot: Ticket, newest_applied: datetime | None) -> bool:
    """True when ``snapshot`` is older than a snapshot already applied."""
    return (
        snapshot.modified is not None
        and newest_applied is not None
        and snapshot.modified < newest_applied
    )


def plan(
    snapshot: Ticket,
    link: LinkView | None,
    *,
    direction: Direction,
    target_helpdesk: str,
    found_id: str | None = None,
) -> Plan:
    """The operations that bring ``target_helpdesk`` up to date with ``snapshot``.

    ``found_id`` is the target ticket that already carries the correlation key (or that
    the source names as its origin), looked up by the caller when there is no link.
    """
    if link is None and found_id is None:
        create = direction.create(snapshot, target_helpdesk)
        copied = tuple(c.key for c in snapshot.comments)
        return Plan(
            ops=(create,),
            decision=f"create: no {target_helpdesk} ticket carries {create.correlation_key!r}",
            sent=dict(direction.fields(snapshot)),
            copied=copied,
            newest_applied=snapshot.modified,
        )
    if link is None:
        assert found_id is not None
        link = LinkView(target_id=found_id)
        adopted = f"adopt {target_helpdesk}:{found_id} (found by correlation key); "
    else:
        adopted = ""

    stale = is_stale(snapshot, link.newest_applied)
    changes: dict[str, str] = {}
    sent = dict(link.sent)
    for name, value in direction.fields(snapshot).items():
        if stale and name in STATE_FIELDS:
            continue
        if link.sent.get(name) == value:
            continue  # unchanged on the source since the last exchange
        # The source changed this field: it is remembered as sent even when a guard keeps
        # the target's value, so the same source value is not judged again next time.
        sent[name] = value
        current = link.current.get(name, link.sent.get(name))
        guarded = direction.guard(name, value, current)
        if guarded is None or guarded == current:
            continue
        changes[name] = guarded
        sent[name] = guarded

    new_comments = [c for c in snapshot.comments if c.key not in link.copied]
    # A comment the direction maps to nothing (an echo of our own copy, an empty entry)
    # is recorded as copied without being sent.
    comments = tuple(
        mapped
        for mapped in (direction.comment(c, snapshot) for c in new_comments)
        if mapped.body.strip()
    )
    newest = link.newest_applied
    if snapshot.modified is not None and (newest is None or snapshot.modified > newest):
        newest = snapshot.modified

    if not changes and not comments:
        reason = "stale snapshot with nothing new" if stale else "no change since last exchange"
        return Plan((), f"{adopted}skip: {reason}", sent, (), newest, stale)

    parts = []
    if changes:
        parts.append("fields " + ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items())))
    if comments:
        parts.append(f"{len(comments)} new comment(s)")
    if stale:
        parts.append("stale snapshot: status/priority/title left alone")
    update: UpdateTicket | None = UpdateTicket(target_helpdesk, link.target_id, changes, comments)
    guard_update = getattr(direction, "guard_update", None)
    if guard_update is not None and update is not None:
        update = guard_update(update, snapshot, link.current)
    if update is None or (not update.fields and not update.comments):
        reason = "the target's state forbids this update (e.g. verified or closed)"
        return Plan((), f"{adopted}skip: {reason}", sent, (), newest, stale)
    return Plan(
        ops=(update,),
        decision=f"{adopted}update {target_helpdesk}:{link.target_id}: " + "; ".join(parts),
        sent=sent,
        copied=tuple(c.key for c in new_comments),
        newest_applied=newest,
        stale=stale,
    )
