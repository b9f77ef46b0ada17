"""Provenance of copied comments: how our own writes are recognised when they come back.

When ticketbridge writes text into a helpdesk, the helpdesk later shows that text in its
own snapshots (a GGUS notification's diary, a Footprints description entry). Before such
a snapshot is planned, comments whose text we wrote are counted as already copied, so a
write never echoes back as another write (architecture invariant 4).

The key of a written text is a digest of its normal form (line endings, NFC, control
characters and outer blank lines as the GGUS codec normalises diaries), recorded in the
``copied`` table as the *destination* key of the copy, in the direction of the write.
"""

from __future__ import annotations

from collections.abc import Iterable

from ticketbridge.codecs.ggus_mail import normalise_value
from ticketbridge.connectors.ggus._common import diaries
from ticketbridge.model import Comment, text_digest
from ticketbridge.store import Store, Transaction


def echo_digest(text: str) -> str:
    """The key under which text we wrote is recognised when it comes back."""
    return text_digest("echo", normalise_value("GHD_Public_Diary", text))


def written_digests(comments: Iterable[Comment]) -> set[str]:
    """Digests of every text a write of ``comments`` may show up as on the other side.

    Each comment alone (one article per comment, as Zammad-era GGUS stores them) and the
    joined public and internal texts (one diary value per update, as mail and SOAP do).
    """
    comments = list(comments)
    texts = [c.body for c in comments]
    texts.extend(diaries(comments))
    return {echo_digest(t) for t in texts if t.strip()}


def record_written(
    tx: Transaction, link_id: int, direction: str, comments: Iterable[Comment]
) -> None:
    """Remember the texts of a write in ``direction`` ("ab" or "ba") for echo detection."""
    for digest in written_digests(comments):
        tx.record_copied(link_id, direction, "comment", f"echo:{digest}", digest)


def echo_keys(store: Store | Transaction, link_id: int, direction: str) -> set[str]:
    """Digests of the texts written in ``direction`` on this link."""
    return {
        dest
        for source, dest in store.copied_map(link_id, direction, "comment").items()
        if dest is not None and source.startswith("echo:")
    }
