"""Operator actions as plain functions over the store: what the CLI (and a web UI) call.

Every function returns JSON-ready data (dicts of str/int/None), so ``--json`` output and
the tables printed for people come from the same values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ticketbridge.config.settings import Settings
from ticketbridge.errors import ConfigError, NotFound
from ticketbridge.model import TicketRef, text_digest
from ticketbridge.runtime.triggers import OPERATOR, command_bytes
from ticketbridge.store import Store


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def links(
    store: Store, *, exchange: str | None = None, helpdesk: str | None = None
) -> list[dict[str, Any]]:
    """Every link, oldest first: both ids, state and when each side was last exchanged."""
    return [
        {
            "id": link.id,
            "exchange": link.exchange,
            "source": f"{link.a_helpdesk}:{link.a_id}",
            "target": f"{link.b_helpdesk}:{link.b_id}" if link.b_id else f"{link.b_helpdesk}:?",
            "state": link.state,
            "source_modified": _iso(link.a_modified),
            "updated_at": _iso(link.updated_at),
        }
        for link in store.list_links(exchange=exchange, helpdesk=helpdesk)
    ]


def timeline(store: Store, ref: TicketRef) -> dict[str, Any]:
    """The history of one ticket: every trigger, decision, operation, receipt and error."""
    events = store.timeline(ref.helpdesk, ref.id)
    link = store.find_link_by_ref(ref.helpdesk, ref.id)
    if not events and link is None:
        raise NotFound(f"nothing is known of {ref}")
    return {
        "ticket": str(ref),
        "link": None
        if link is None
        else {
            "id": link.id,
            "exchange": link.exchange,
            "source": f"{link.a_helpdesk}:{link.a_id}",
            "target": f"{link.b_helpdesk}:{link.b_id}" if link.b_id else None,
            "state": link.state,
        },
        "events": [
            {
                "at": _iso(e.at),
                "ticket": f"{e.helpdesk}:{e.ticket_id}",
                "kind": e.kind,
                "summary": e.summary,
                "inbox_id": e.inbox_id,
                "job_id": e.job_id,
                "detail": dict(e.detail),  # a read-only mapping; JSON needs a dict
            }
            for e in events
        ],
    }


def quarantine(store: Store, *, include_released: bool = False) -> list[dict[str, Any]]:
    """Quarantined triggers with the reason each was refused."""
    out = []
    for q in store.list_quarantine(include_released=include_released):
        entry = store.inbox_entry(q.inbox_id)
        out.append(
            {
                "inbox_id": q.inbox_id,
                "source": entry.source,
                "message_id": entry.message_id,
                "received_at": _iso(entry.received_at),
                "reason": q.reason,
                "released": q.released_at is not None,
            }
        )
    return out


def inbox(store: Store, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Recent inbox entries with their state and reason."""
    return [
        {
            "id": e.id,
            "source": e.source,
            "message_id": e.message_id,
            "received_at": _iso(e.received_at),
            "state": e.state,
            "ticket": f"{e.helpdesk}:{e.ticket_id}" if e.ticket_id else None,
            "reason": e.reason,
        }
        for e in store.list_inbox(state=state, limit=limit)
    ]


def replay(store: Store, inbox_id: int, *, now: datetime) -> dict[str, Any]:
    """Queue a stored trigger again (after a fix), as if it had just arrived.

    Release from quarantine, reset to ``received`` and enqueue happen in one transaction.
    """
    job_id = store.replay_inbox(inbox_id, not_before=now)
    return {"inbox_id": inbox_id, "job_id": job_id, "key": store.job(job_id).key}


def jobs(store: Store, *, states: list[str] | None = None) -> list[dict[str, Any]]:
    """Jobs with their state, attempts and last error."""
    return [
        {
            "id": j.id,
            "kind": j.kind,
            "key": j.key,
            "state": j.state,
            "attempts": j.attempts,
            "not_before": _iso(j.not_before),
            "inbox_id": j.inbox_id,
            "last_error": j.last_error,
        }
        for j in store.list_jobs(states=states)
    ]


def send(
    store: Store,
    settings: Settings,
    ref: TicketRef,
    *,
    to: str,
    new: bool,
    update: str | None,
    unit: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Queue an operator push of home ticket ``ref`` to helpdesk ``to`` (the 2006 script).

    ``new`` creates a GGUS ticket (assigned to TPM, or ``unit``); ``update`` sends the home
    ticket to an existing GGUS ticket and links the two. Refused, with the reason, when
    ``new`` is asked for a ticket that is already linked, or the pairing does not exist.
    """
    if new == (update is not None):
        raise ConfigError(["say either --new or --update GGUS-ID"])
    exchange = next(
        (e for e in settings.exchanges.values() if e.source == to and e.target == ref.helpdesk),
        None,
    )
    if exchange is None:
        raise ConfigError([f"no exchange pairs {ref.helpdesk!r} with {to!r}"])
    link = store.find_link_by_b(ref.helpdesk, ref.id)
    if new and link is not None:
        raise NotFound(
            f"refused: {ref} is already linked to {link.a_helpdesk}:{link.a_id}; "
            f"use --update {link.a_id} to send it there"
        ) from None
    if update is not None and link is not None and link.a_id != update:
        raise NotFound(f"refused: {ref} is linked to {link.a_helpdesk}:{link.a_id}, not {update}")
    command: dict[str, Any] = {
        "command": "send",
        "ref": str(ref),
        "to": to,
        "mode": "new" if new else "update",
        "at": _iso(now),
    }
    if update is not None:
        command["ggus_id"] = update
    if unit:
        command["unit"] = unit
    key = f"{link.a_helpdesk}:{link.a_id}" if link else str(ref)
    raw = command_bytes(command)
    result = store.receive(
        source=OPERATOR,
        raw=raw,
        message_id=f"<send-{text_digest(raw.decode())}@ticketbridge>",
        key=key,
        received_at=now,
    )
    return {"inbox_id": result.inbox_id, "job_id": result.job_id, "key": key, **command}
