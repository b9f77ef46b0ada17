"""Copy a linked ticket's new attachments to the other side, once, and never back.

GOC-TX's rules (spec A3.2, (d) 9), kept: each attachment not yet copied is sent on its own
(one failure does not stop the others); a copy is recorded in both directions, so it is
never echoed back; names lose trailing newlines; GGUS takes at most 2 MB per file; 0-byte
files are copied as they are.

Provenance is by content: the digest of (name, bytes) of every file written is recorded as
the copy's destination key, and a file on the other side with the same digest is our own
copy coming back, whatever id that helpdesk gave it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from ticketbridge.connectors.base import TargetConnector
from ticketbridge.errors import RemoteRejected
from ticketbridge.model import AddAttachment, Attachment, Ticket
from ticketbridge.store import Store

#: The largest file GGUS accepts (its web UI and interface limit).
GGUS_LIMIT = 2 * 1024 * 1024

OPPOSITE = {"ab": "ba", "ba": "ab"}


def clean_name(name: str) -> str:
    """A file name without the trailing newlines and blanks GGUS sometimes returns."""
    return name.strip().replace("/", "_").replace("\\", "_") or "attachment"


def content_key(attachment: Attachment) -> str:
    """The provenance key of a file: its cleaned name and a digest of its bytes."""
    digest = hashlib.sha256(attachment.data).hexdigest()[:32]
    return f"content:{clean_name(attachment.name)}:{digest}"


@dataclass(frozen=True, slots=True)
class Copied:
    """What one pass did: files sent, and files left out with the reason."""

    sent: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


def copy_attachments(
    store: Store,
    link_id: int,
    direction: str,
    source: Ticket,
    target: TargetConnector,
    target_helpdesk: str,
    target_id: str,
    *,
    limit: int | None,
    audit: Callable[[str], None],
) -> Copied:
    """Send ``source``'s attachments that are neither copied yet nor our own copies.

    RemoteUnavailable propagates (the job is retried; files already sent stay recorded);
    a file the target refuses, or one over ``limit`` bytes, is recorded as not copied
    with the reason, so it is not tried again, and the others go on.
    """
    copied = store.copied_map(link_id, direction, "attachment")
    echoes = {
        dest
        for dest in store.copied_map(link_id, OPPOSITE[direction], "attachment").values()
        if dest
    }
    sent: list[str] = []
    refused: list[str] = []
    for item in source.attachments:
        key = content_key(item)
        if item.key in copied or key in echoes:
            continue
        name = clean_name(item.name)
        if limit is not None and len(item.data) > limit:
            reason = (
                f"{name}: {len(item.data)} bytes is over the {limit}-byte limit "
                f"of {target_helpdesk}"
            )
            store.record_copied(link_id, direction, "attachment", item.key, None)
            audit(f"attachment not copied: {reason}")
            refused.append(reason)
            continue
        op = AddAttachment(target_helpdesk, target_id, replace(item, name=name))
        try:
            receipt = target.apply(op)
        except RemoteRejected as exc:
            store.record_copied(link_id, direction, "attachment", item.key, None)
            audit(f"attachment not copied: {name}: {exc}")
            refused.append(f"{name}: {exc}")
            continue
        store.record_copied(link_id, direction, "attachment", item.key, key)
        audit(f"attachment {name} ({len(item.data)} bytes) copied: {receipt.detail}")
        sent.append(name)
    return Copied(tuple(sent), tuple(refused))
