"""Carry out one trigger: decode, look up, plan, apply, record. The I/O around the pure core.

For each job the executor

1. decodes the stored trigger with the source helpdesk's codec (bad input -> quarantine);
2. finds the link, or, when there is none, the target ticket that already carries our
   correlation key or that the source names as its origin (a lost link never creates a
   second ticket);
3. asks the pure planner what to do;
4. applies each operation through the target connector and records the receipt, the link
   state and the copied comment keys in one transaction per operation, with an audit
   event for every trigger, decision, operation and receipt.

A create sent over a mail interface has no id in its receipt. The link then stays
``pending`` with the time the create was sent; later triggers look the ticket up by
correlation key and wait (RemotePending, retried with backoff) rather than create again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ticketbridge.config.settings import ExchangeSettings, Settings
from ticketbridge.connectors.base import TargetConnector
from ticketbridge.connectors.ggus.settings import (
    GgusMailSettings,
    GgusRestSettings,
    GgusSoapSettings,
)
from ticketbridge.errors import BadInput, RemotePending, RemoteRejected
from ticketbridge.exchange.footprints_ggus import ggus_values
from ticketbridge.exchange.ggus_footprints import GgusToFootprints
from ticketbridge.exchange.plan import LinkView, Plan, plan
from ticketbridge.model import CreateTicket, Ticket, UpdateTicket
from ticketbridge.runtime import triggers
from ticketbridge.runtime.attachments import copy_attachments
from ticketbridge.runtime.echo import echo_digest, echo_keys
from ticketbridge.runtime.outcome import Clock, Outcome, parse_time, utcnow
from ticketbridge.runtime.reverse import Reverse
from ticketbridge.runtime.triggers import Trigger
from ticketbridge.store import Job, LinkRecord, Store, Transaction


class Executor:
    """Processes trigger jobs for every configured exchange."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        connectors: Mapping[str, TargetConnector],
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.connectors = connectors
        self.clock = clock

    # -- entry point ---------------------------------------------------------------------

    def process(self, job: Job) -> Outcome:
        """Process one job. Raises RemoteError for the worker's retry policy to judge."""
        if job.inbox_id is None:
            raise RemoteRejected("ticketbridge", f"job {job.id} names no inbox entry")
        entry = self.store.inbox_entry(job.inbox_id)
        try:
            trigger = triggers.decode(entry.source, entry.raw, self.settings)
        except BadInput as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.store.quarantine(entry.id, reason)
            return Outcome("quarantined", reason)
        found = self._exchange_for(trigger)
        if found is None:
            reason = f"no exchange takes triggers from {trigger.ref.helpdesk!r}"
            self.store.set_inbox_state(entry.id, "skipped", reason)
            return Outcome("skipped", reason)
        name, exchange, side = found
        if side == "b":
            return Reverse(self, job, entry.id, trigger, name, exchange).run()
        snapshot = trigger.snapshot
        if snapshot is None:
            snapshot = self.connectors[trigger.ref.helpdesk].fetch(trigger.ref.id)
        ref = snapshot.ref
        summary = trigger.summary
        detail: dict[str, Any] = {
            "message_id": trigger.message_id,
            "warnings": list(trigger.warnings),
        }
        source_settings = self.settings.helpdesks[ref.helpdesk]
        assert isinstance(source_settings, GgusMailSettings | GgusSoapSettings | GgusRestSettings)
        direction = GgusToFootprints(
            ticket_url=source_settings.ticket_url,
            assignees=tuple(exchange.assignees),
            next_action=exchange.next_action,
            ticket_type=exchange.ticket_type,
            origin_sg=exchange.origin_sg,
            home_project=exchange.home_project,
        )
        target = self.connectors[exchange.target]
        link = self.store.find_link(name, ref.helpdesk, ref.id)
        view, note = self._view(name, exchange, snapshot, link, direction, target)
        result = plan(snapshot, view, direction=direction, target_helpdesk=exchange.target)
        decision = f"{note}{result.decision}"
        # What was received and what was decided are recorded together (one transaction);
        # a skip is settled in the same transaction.
        with self.store.transaction() as tx:
            state = "skipped" if result.is_skip else "received"
            tx.set_inbox_state(
                entry.id, state, decision if result.is_skip else None, ref.helpdesk, ref.id
            )
            self._audit(
                tx,
                snapshot,
                "snapshot",
                f"inbox {entry.id}: {summary}",
                detail,
                entry.id,
                job.id,
                link,
            )
            self._audit(tx, snapshot, "decision", decision, None, entry.id, job.id, link)
            if result.is_skip and view is not None and (link is None or link.b_id is None):
                self._remember_adopted(tx, name, exchange, snapshot, view, result)
        if not result.is_skip:
            self._apply(
                name, exchange, snapshot, link, view, result, target, entry.id, job, decision
            )
        self._attachments(name, snapshot, target, exchange.target, entry.id, job)
        return Outcome("skipped" if result.is_skip else "applied", decision, str(ref))

    # -- look-ups ------------------------------------------------------------------------

    def _exchange_for(self, trigger: Trigger) -> tuple[str, ExchangeSettings, str] | None:
        """The exchange a trigger belongs to, and the side ("a" source, "b" target) it is on."""
        helpdesk = trigger.ref.helpdesk
        for name, exchange in self.settings.exchanges.items():
            if trigger.command:
                if exchange.target == helpdesk and exchange.source == trigger.command.get("to"):
                    return name, exchange, "b"
            elif exchange.source == helpdesk:
                return name, exchange, "a"
            elif exchange.target == helpdesk and exchange.two_way:
                if exchange.source not in self.connectors:
                    continue  # the source cannot be written (GGUS mail without an address)
                return name, exchange, "b"
        return None

    def _view(
        self,
        name: str,
        exchange: ExchangeSettings,
        snapshot: Ticket,
        link: LinkRecord | None,
        direction: GgusToFootprints,
        target: TargetConnector,
    ) -> tuple[LinkView | None, str]:
        """The link as the planner sees it, learning or adopting the target id if needed."""
        key = direction.correlation_key(snapshot)
        if link is not None and link.b_id is not None:
            return self._link_view(link, snapshot, exchange), ""
        if link is not None:  # a create was attempted; has the ticket appeared?
            found = target.find_by_correlation(key)
            if found is not None:
                # The create went through but its outcome was not recorded: what the
                # ticket already shows counts as sent, so nothing is copied twice.
                self.store.update_link(link.id, b_id=found, state="active")
                self._audit(
                    self.store,
                    snapshot,
                    "receipt",
                    f"learnt {exchange.target}:{found} by search",
                    {"correlation_key": key},
                    None,
                    None,
                    link,
                )
                return self._adopt(target.fetch(found), snapshot, direction), (
                    f"create already applied as {exchange.target}:{found}; "
                )
            sent_at = parse_time(link.data.get("create_sent_at"))
            if sent_at is None:
                return None, "earlier create was never sent; "
            grace = timedelta(seconds=self.settings.worker.pending_grace_seconds)
            if self.clock() - sent_at < grace:
                raise RemotePending(
                    exchange.target,
                    f"create for {snapshot.ref} sent at {sent_at:%Y-%m-%d %H:%M:%S}Z "
                    f"has not appeared yet (searching {key!r})",
                )
            raise RemoteRejected(
                exchange.target,
                f"create for {snapshot.ref} sent at {sent_at:%Y-%m-%d %H:%M:%S}Z never "
                f"appeared; check the {exchange.target} mail interface, then replay",
            )
        origin = direction.origin_id(snapshot)
        if origin is not None:
            try:
                home = target.fetch(origin)
            except RemoteRejected:
                note = f"origin {exchange.target}:{origin} does not exist; "
            else:
                return self._adopt(home, snapshot, direction), (
                    f"originated at home as {exchange.target}:{origin}; "
                )
        else:
            note = ""
        found = target.find_by_correlation(key)
        if found is None:
            return None, note
        return self._adopt(target.fetch(found), snapshot, direction), (
            f"{note}adopt {exchange.target}:{found} (it carries correlation key {key!r}); "
        )

    def _remember_adopted(
        self,
        tx: Transaction,
        name: str,
        exchange: ExchangeSettings,
        snapshot: Ticket,
        view: LinkView,
        result: Plan,
    ) -> None:
        """Record a link found by search even when nothing needed sending."""
        ref = snapshot.ref
        link = tx.find_link(name, ref.helpdesk, ref.id) or tx.create_link(
            exchange=name,
            a_helpdesk=ref.helpdesk,
            a_id=ref.id,
            b_helpdesk=exchange.target,
            b_id=view.target_id,
            state="active",
            data={},
        )
        tx.update_link(
            link.id,
            b_id=view.target_id,
            state="active",
            a_modified=result.newest_applied,
            data={**link.data, "sent": dict(result.sent)},
        )
        for key in view.copied:
            tx.record_copied(link.id, "ab", "comment", key)

    def writes_back(self, exchange: ExchangeSettings) -> bool:
        """Whether this exchange also writes the source (so echoes can come back to it)."""
        return exchange.two_way and exchange.source in self.connectors

    def _link_view(
        self, link: LinkRecord, snapshot: Ticket, exchange: ExchangeSettings
    ) -> LinkView:
        assert link.b_id is not None
        copied = set(self.store.copied_keys(link.id, "ab", "comment"))
        if self.writes_back(exchange):
            # Comments that are our own copies from the other side, coming back:
            # recognised by the digest of the text we wrote there.
            echoes = echo_keys(self.store, link.id, "ba")
            copied |= {c.key for c in snapshot.comments if echo_digest(c.body) in echoes}
        sent = link.data.get("sent", {})
        current = link.data.get("b_current", {})
        return LinkView(link.b_id, link.a_modified, dict(sent), frozenset(copied), dict(current))

    @staticmethod
    def _adopt(home: Ticket, snapshot: Ticket, direction: GgusToFootprints) -> LinkView:
        """A view of a target ticket we have no link for: what it already shows counts.

        Fields are taken from the ticket as it is, and a source comment whose mapped text
        is already there counts as copied, so recovering a lost link copies nothing twice.
        """
        sent = {"title": home.title, "status": home.status, "priority": home.priority}
        existing = "\n".join([home.description, *(c.body for c in home.comments)])
        copied = frozenset(
            c.key for c in snapshot.comments if direction.comment_text(c) in existing
        )
        return LinkView(home.ref.id, None, sent, copied)

    # -- applying ------------------------------------------------------------------------

    def _apply(
        self,
        name: str,
        exchange: ExchangeSettings,
        snapshot: Ticket,
        link: LinkRecord | None,
        view: LinkView | None,
        result: Plan,
        target: TargetConnector,
        inbox_id: int,
        job: Job,
        decision: str,
    ) -> None:
        """Apply each operation, recording its receipt and link state in one transaction.

        The inbox entry is marked applied in the transaction of the last operation.
        """
        ref = snapshot.ref
        for index, op in enumerate(result.ops):
            if isinstance(op, CreateTicket):
                if link is None:
                    link = self.store.create_link(
                        exchange=name,
                        a_helpdesk=ref.helpdesk,
                        a_id=ref.id,
                        b_helpdesk=exchange.target,
                        b_id=None,
                        state="pending",
                        data={"create_attempted_at": self.clock().isoformat()},
                    )
                receipt = target.apply(op)
                b_id = receipt.ticket_id or target.find_by_correlation(op.correlation_key)
            else:
                if link is None:
                    assert view is not None
                    link = self.store.create_link(
                        exchange=name,
                        a_helpdesk=ref.helpdesk,
                        a_id=ref.id,
                        b_helpdesk=exchange.target,
                        b_id=view.target_id,
                        state="active",
                        data={},
                    )
                receipt = target.apply(op)
                b_id = op.ticket_id if isinstance(op, UpdateTicket) else link.b_id
            data = dict(link.data)
            data["sent"] = dict(result.sent)
            data["b_current"] = {**data.get("b_current", {}), **result.sent}
            if not result.stale:
                data["a_current"] = ggus_values(snapshot)
            if isinstance(op, CreateTicket):
                data["create_sent_at"] = self.clock().isoformat()
            with self.store.transaction() as tx:
                tx.update_link(
                    link.id,
                    b_id=b_id,
                    state="active" if b_id else "pending",
                    a_modified=result.newest_applied,
                    data=data,
                )
                for key in result.copied:
                    tx.record_copied(link.id, "ab", "comment", key)
                if index == len(result.ops) - 1:
                    tx.set_inbox_state(inbox_id, "applied", decision)
                summary = _describe(op)
                tx.audit(
                    helpdesk=ref.helpdesk,
                    ticket_id=ref.id,
                    kind="operation",
                    summary=summary,
                    link_id=link.id,
                    inbox_id=inbox_id,
                    job_id=job.id,
                    at=self.clock(),
                    detail={"op": type(op).__name__},
                )
                got = f"{exchange.target}:{b_id}" if b_id else "id not known yet"
                tx.audit(
                    helpdesk=ref.helpdesk,
                    ticket_id=ref.id,
                    kind="receipt",
                    summary=f"{got}; {receipt.detail}".rstrip("; "),
                    link_id=link.id,
                    inbox_id=inbox_id,
                    job_id=job.id,
                    at=self.clock(),
                    detail={"ticket_id": b_id, "idempotency_key": receipt.idempotency_key},
                )
            if isinstance(op, CreateTicket) and b_id:
                if self.writes_back(exchange):
                    self._remember_created(link.id, target, b_id)
                self._write_back_reference(snapshot, exchange, b_id, link)

    def _attachments(
        self,
        name: str,
        snapshot: Ticket,
        target: TargetConnector,
        target_helpdesk: str,
        inbox_id: int,
        job: Job,
    ) -> None:
        """Copy the source ticket's new attachments once the link knows the target id."""
        if not snapshot.attachments:
            return
        link = self.store.find_link(name, snapshot.ref.helpdesk, snapshot.ref.id)
        if link is None or link.b_id is None:
            return
        copy_attachments(
            self.store,
            link.id,
            "ab",
            snapshot,
            target,
            target_helpdesk,
            link.b_id,
            limit=None,
            audit=lambda summary: self._audit(
                self.store, snapshot, "operation", summary, None, inbox_id, job.id, link
            ),
        )

    def _write_back_reference(
        self, snapshot: Ticket, exchange: ExchangeSettings, b_id: str, link: LinkRecord
    ) -> None:
        """Write our home id into the GGUS ticket (GHD_Origin_ID / GHD_Origin_SG), as GOC-TX
        did with TicketModify, so the link can be recovered from GGUS alone.

        Only through an API (``ggus-soap``, ``ggus-rest``); GGUS takes no fields by mail.
        A refusal is recorded and does not fail the exchange.
        """
        source = self.connectors.get(snapshot.ref.helpdesk)
        if source is None or isinstance(
            self.settings.helpdesks[snapshot.ref.helpdesk], GgusMailSettings
        ):
            return
        op = UpdateTicket(
            snapshot.ref.helpdesk,
            snapshot.ref.id,
            {"GHD_Origin_ID": b_id, "GHD_Origin_SG": exchange.origin_sg},
        )
        try:
            source.apply(op)
        except RemoteRejected as exc:
            summary = f"back-reference not written to {snapshot.ref}: {exc}"
        else:
            summary = f"back-reference {exchange.target}:{b_id} written to {snapshot.ref}"
        self._audit(self.store, snapshot, "operation", summary, None, None, None, link)

    def _remember_created(self, link_id: int, target: TargetConnector, b_id: str) -> None:
        """Count every entry of a ticket we just created as ours, for the other direction.

        The new ticket's description and entries all came from the source; read back,
        they are recorded as copied so they never travel back as new entries.
        """
        created = target.fetch(b_id)
        with self.store.transaction() as tx:
            for comment in created.comments:
                tx.record_copied(link_id, "ba", "comment", comment.key)

    def _audit(
        self,
        tx: Transaction | Store,
        snapshot: Ticket,
        kind: str,
        summary: str,
        detail: dict[str, Any] | None,
        inbox_id: int | None,
        job_id: int | None,
        link: LinkRecord | None = None,
    ) -> None:
        tx.audit(
            helpdesk=snapshot.ref.helpdesk,
            ticket_id=snapshot.ref.id,
            kind=kind,
            summary=summary,
            detail=detail,
            link_id=link.id if link else None,
            inbox_id=inbox_id,
            job_id=job_id,
            at=self.clock(),
        )


def _describe(op: CreateTicket | UpdateTicket | Any) -> str:
    if isinstance(op, CreateTicket):
        return f"create on {op.helpdesk}: {op.title!r} (key {op.correlation_key})"
    if isinstance(op, UpdateTicket):
        fields = ", ".join(f"{k}={v!r}" for k, v in sorted(op.fields.items()))
        return (
            f"update {op.helpdesk}:{op.ticket_id}: {fields or 'no field change'}; "
            f"{len(op.comments)} comment(s)"
        )
    return f"{type(op).__name__} on {op.helpdesk}"
