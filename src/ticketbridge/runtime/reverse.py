"""The home -> GGUS direction: operator push and the continuous exchange of linked tickets.

A trigger from the exchange's *target* helpdesk (a Footprints notification, or the
operator's ``ticketbridge send``) is handled here:

* ``send HOME:ID --to ggus --new``: create the GGUS ticket (assigned to TPM or the unit
  given), link it, and remember every home entry as copied; refused when already linked;
* ``send HOME:ID --to ggus --update GGUS-ID``: link the two tickets and send the home
  ticket's state and entries to that GGUS ticket; refused when linked elsewhere;
* a notification of a linked home ticket: send what changed (status and priority under the
  GGUS team's guards, title, new entries: public stay public, internal stay internal);
* a notification of a home ticket that is not linked: skipped, with the reason.

What a write shows on the other side is recorded (``runtime/echo.py``), so the GGUS
notification of our own write never comes back as another write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ticketbridge.connectors.footprints import FootprintsSettings
from ticketbridge.connectors.ggus.settings import GgusMailSettings
from ticketbridge.exchange.footprints_ggus import SOLUTION, TITLE_LIMIT, FootprintsToGgus, fit_title
from ticketbridge.exchange.plan import LinkView, Plan, plan
from ticketbridge.model import Comment, CreateTicket, Ticket, UpdateTicket
from ticketbridge.runtime.attachments import GGUS_LIMIT, copy_attachments
from ticketbridge.runtime.echo import record_written
from ticketbridge.runtime.outcome import Outcome, parse_time
from ticketbridge.runtime.triggers import Trigger
from ticketbridge.store import Job, LinkRecord

if TYPE_CHECKING:
    from ticketbridge.config.settings import ExchangeSettings
    from ticketbridge.runtime.executor import Executor


class Reverse:
    """One trigger of the target side of an exchange, processed."""

    def __init__(
        self,
        executor: Executor,
        job: Job,
        inbox_id: int,
        trigger: Trigger,
        name: str,
        exchange: ExchangeSettings,
    ) -> None:
        self.x = executor
        self.store = executor.store
        self.job, self.inbox_id, self.trigger = job, inbox_id, trigger
        self.name, self.exchange = name, exchange
        self.home = trigger.ref
        self.ggus = exchange.source
        self.target = executor.connectors[self.ggus]
        self.by_mail = isinstance(executor.settings.helpdesks[self.ggus], GgusMailSettings)
        home_settings = executor.settings.helpdesks[self.home.helpdesk]
        assert isinstance(home_settings, FootprintsSettings)
        self.project = home_settings.project
        unit = trigger.command.get("unit") or exchange.responsible_unit
        self.direction = FootprintsToGgus(
            ticket_url=home_settings.ticket_url,
            origin_sg=exchange.origin_sg,
            responsible_unit=unit,
            allow_top_priority=exchange.allow_top_priority,
        )

    def run(self) -> Outcome:
        snapshot = self.x.connectors[self.home.helpdesk].fetch(self.home.id)
        link = self.store.find_link_by_b(self.home.helpdesk, self.home.id)
        if link is not None and link.exchange != self.name:
            link = None
        mode = self.trigger.command.get("mode")
        if mode == "new":
            if link is not None:
                return self._refuse(
                    f"{self.home} is already linked to {self.ggus}:{link.a_id}; "
                    f"use --update {link.a_id} to send it there"
                )
            return self._create(snapshot)
        if mode == "update":
            ggus_id = str(self.trigger.command["ggus_id"])
            if link is not None and link.a_id != ggus_id:
                return self._refuse(
                    f"{self.home} is linked to {self.ggus}:{link.a_id}, not {ggus_id}"
                )
            if link is None:
                link = self.store.create_link(
                    exchange=self.name,
                    a_helpdesk=self.ggus,
                    a_id=ggus_id,
                    b_helpdesk=self.home.helpdesk,
                    b_id=self.home.id,
                    state="active",
                    data={},
                )
        if link is None:
            return self._skip(
                f"{self.home} is not linked to {self.ggus}; push it with "
                f"`ticketbridge send {self.home} --to {self.ggus} --new`"
            )
        outcome = self._update(snapshot, link)
        self._attachments(snapshot, link)
        return outcome

    def _attachments(self, snapshot: Ticket, link: LinkRecord) -> None:
        if snapshot.attachments:
            copy_attachments(
                self.store,
                link.id,
                "ba",
                snapshot,
                self.target,
                self.ggus,
                link.a_id,
                limit=GGUS_LIMIT,
                audit=lambda summary: self._audit(self.store, "operation", summary, link),
            )

    # -- the three paths -----------------------------------------------------------------

    def _create(self, snapshot: Ticket) -> Outcome:
        result = plan(snapshot, None, direction=self.direction, target_helpdesk=self.ggus)
        (op,) = result.ops
        assert isinstance(op, CreateTicket)
        note = ""
        if self.by_mail:
            # Mail submission has no internal diary (internal entries stay at home) and no
            # GHD_Origin_ID: the title carries Footprints' own "ISSUE=n PROJ=p" tag, as the
            # 2006 pushes did, so GGUS' notification of the new ticket links back to home
            # instead of opening a second home ticket.
            public = tuple(c for c in op.comments if c.visibility == "public")
            if len(public) != len(op.comments):
                note = " (internal entries stay at home: GGUS mail has no internal diary)"
            tag = f"ISSUE={self.home.id} PROJ={self.project}"
            room = TITLE_LIMIT - len(tag) - 1
            title = fit_title(op.title)
            if len(title) > room:
                title = title[: room - 3] + "..."
            op = replace(op, comments=public, title=f"{title} {tag}")
        decision = f"push {self.home} to {self.ggus}: {result.decision}{note}"
        self._record_decision(snapshot, decision, None)
        receipt = self.target.apply(op)
        ggus_id = receipt.ticket_id
        with self.store.transaction() as tx:
            if ggus_id:
                link = tx.create_link(
                    exchange=self.name,
                    a_helpdesk=self.ggus,
                    a_id=ggus_id,
                    b_helpdesk=self.home.helpdesk,
                    b_id=self.home.id,
                    state="active",
                    data=self._data({}, result, snapshot),
                )
                for comment in snapshot.comments:
                    tx.record_copied(link.id, "ba", "comment", comment.key)
                record_written(tx, link.id, "ba", [*op.comments, _text(op.description)])
                got = f"{self.ggus}:{ggus_id}"
            else:
                got = (
                    f"mailed; {self.ggus} will link it by GHD_Origin_ID={self.home.id} "
                    "when its notification arrives"
                )
            self._audit(tx, "operation", f"create on {self.ggus}: {op.title!r}")
            self._audit(tx, "receipt", f"{got}; {receipt.detail}".rstrip("; "))
            tx.set_inbox_state(self.inbox_id, "applied", decision, self.home.helpdesk, self.home.id)
        created = self.store.find_link_by_b(self.home.helpdesk, self.home.id)
        if ggus_id and created is not None:
            self._attachments(snapshot, created)
        return Outcome("applied", decision, str(self.home))

    def _update(self, snapshot: Ticket, link: LinkRecord) -> Outcome:
        data = link.data
        view = LinkView(
            target_id=link.a_id,
            newest_applied=parse_time(data.get("b_modified")),
            sent=dict(data.get("sent_ba", {})),
            copied=frozenset(self.store.copied_keys(link.id, "ba", "comment")),
            current=dict(data.get("a_current", {})),
        )
        result = plan(snapshot, view, direction=self.direction, target_helpdesk=self.ggus)
        ops = result.ops
        note = ""
        if self.by_mail and ops:
            ops, note = _mail_only_comments(ops)
        decision = f"{result.decision}{note}"
        if not ops or result.is_skip:
            with self.store.transaction() as tx:
                self._decision(tx, snapshot, decision, link)
                tx.update_link(link.id, data=self._data(data, result, snapshot))
                for key in result.copied:
                    tx.record_copied(link.id, "ba", "comment", key)
                tx.set_inbox_state(
                    self.inbox_id, "skipped", decision, self.home.helpdesk, self.home.id
                )
            return Outcome("skipped", decision, str(self.home))
        self._record_decision(snapshot, decision, link)
        for index, op in enumerate(ops):
            receipt = self.target.apply(op)
            with self.store.transaction() as tx:
                tx.update_link(link.id, data=self._data(data, result, snapshot))
                for key in result.copied:
                    tx.record_copied(link.id, "ba", "comment", key)
                if isinstance(op, UpdateTicket):
                    solution = op.fields.get(SOLUTION, "")
                    record_written(tx, link.id, "ba", [*op.comments, _text(solution)])
                    fields = ", ".join(f"{k}={v!r}" for k, v in sorted(op.fields.items()))
                    self._audit(
                        tx,
                        "operation",
                        f"update {self.ggus}:{link.a_id}: "
                        f"{fields or 'no field change'}; {len(op.comments)} comment(s)",
                    )
                self._audit(tx, "receipt", f"{self.ggus}:{link.a_id}; {receipt.detail}")
                if index == len(ops) - 1:
                    tx.set_inbox_state(
                        self.inbox_id, "applied", decision, self.home.helpdesk, self.home.id
                    )
        return Outcome("applied", decision, str(self.home))

    def _refuse(self, reason: str) -> Outcome:
        return self._skip(f"refused: {reason}")

    def _skip(self, reason: str) -> Outcome:
        with self.store.transaction() as tx:
            self._audit(tx, "decision", reason)
            tx.set_inbox_state(self.inbox_id, "skipped", reason, self.home.helpdesk, self.home.id)
        return Outcome("skipped", reason, str(self.home))

    # -- records -------------------------------------------------------------------------

    def _data(self, data: Mapping[str, Any], result: Plan, snapshot: Ticket) -> dict[str, Any]:
        """Link data after this exchange: what was sent to GGUS, and what home holds now."""
        new = dict(data)
        new["sent_ba"] = dict(result.sent)
        if result.newest_applied is not None:
            new["b_modified"] = result.newest_applied.isoformat()
        new["b_current"] = {
            "title": snapshot.title,
            "status": snapshot.status,
            "priority": snapshot.priority,
        }
        if "sent" not in new:
            # What GGUS -> home last "sent" is what home holds: a GGUS echo of these
            # values is then no change.
            new["sent"] = dict(new["b_current"])
        return new

    def _record_decision(self, snapshot: Ticket, decision: str, link: LinkRecord | None) -> None:
        with self.store.transaction() as tx:
            self._decision(tx, snapshot, decision, link)

    def _decision(self, tx: Any, snapshot: Ticket, decision: str, link: LinkRecord | None) -> None:
        summary = self.trigger.summary or f"{self.home} changed"
        self._audit(
            tx,
            "snapshot",
            f"{summary} status={snapshot.status!r} priority={snapshot.priority!r}",
            link,
        )
        self._audit(tx, "decision", decision, link)

    def _audit(self, tx: Any, kind: str, summary: str, link: LinkRecord | None = None) -> None:
        tx.audit(
            helpdesk=self.home.helpdesk,
            ticket_id=self.home.id,
            kind=kind,
            summary=summary,
            link_id=link.id if link else None,
            inbox_id=self.inbox_id,
            job_id=self.job.id,
            at=self.x.clock(),
        )


def _mail_only_comments(ops: tuple[Any, ...]) -> tuple[tuple[Any, ...], str]:
    """GGUS mail submission carries public text only: fields and internal text stay home."""
    kept = []
    dropped = False
    for op in ops:
        if isinstance(op, UpdateTicket):
            public = tuple(c for c in op.comments if c.visibility == "public")
            dropped = dropped or bool(op.fields) or len(public) != len(op.comments)
            if public:
                kept.append(replace(op, fields={}, comments=public))
    note = " (by mail only public text reaches GGUS; fields and internal entries stay home)"
    return tuple(kept), note if dropped else ""


def _text(body: str) -> Comment:
    return Comment(key="description", body=body)
