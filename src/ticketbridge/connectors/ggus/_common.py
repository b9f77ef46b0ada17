"""What the three GGUS connectors share: operation field names, diary texts, snapshots."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ticketbridge.codecs.ggus_mail import normalise_value
from ticketbridge.model import Comment, Visibility, text_digest

#: The planner's state-field names and the GGUS element each is written to.
STATE_FIELDS: Mapping[str, str] = MappingProxyType({
    "title": "GHD_Short_Description",
    "status": "GHD_Status",
    "priority": "GHD_Priority",
})

#: SOAP spelling -> the gen-1 mail-XML name (codecs/ggus_mail.py), for snapshots.
MAIL_XML_NAMES: Mapping[str, str] = MappingProxyType({
    "GHD_Request_ID": "GHD_Request-ID",
    "GHD_RequestID": "GHD_Request-ID",
    "GHD_EMail": "GHD_E-Mail",
    "GHD_Submitter_Mail": "GHD_E-Mail",
    "GHD_Affected_VO": "GHD_Experiment",
    "GHD_VO": "GHD_Experiment",
    "GHD_VO_Specific": "GHD_Experiment_Specific_Problem",
})

#: Diary elements that are carried as comments (with visibility), not as fields.
DIARY_FIELDS = frozenset({"GHD_Public_Diary", "GHD_Internal_Diary", "GHD_Diary_Of_Steps"})


def native_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """An operation's fields under GGUS element names (``title`` -> GHD_Short_Description)."""
    return {STATE_FIELDS.get(name, name): value for name, value in fields.items()}


def is_internal(comment: Comment) -> bool:
    """Internal by visibility, or by kind: a comment marked "internal diary" is never
    published, whatever its visibility says (as codecs/ggus_mail.py encodes it)."""
    return comment.visibility is Visibility.INTERNAL or comment.kind == "internal diary"


def diaries(comments: Iterable[Comment]) -> tuple[str, str]:
    """(public text, internal text): the bodies of each visibility joined by a blank line.

    An internal comment (:func:`is_internal`) always goes to the internal text; nothing
    internal ever joins the public text.
    """
    public: list[str] = []
    internal: list[str] = []
    for comment in comments:
        body = comment.body.strip("\n")
        if not body.strip():
            continue
        (internal if is_internal(comment) else public).append(body)
    return "\n\n".join(public), "\n\n".join(internal)


def mail_xml_fields(values: Mapping[str, str]) -> dict[str, str]:
    """GGUS values as the gen-1 notification mail shows them (:mod:`codecs.ggus_mail`).

    Every non-empty value is kept under the name it came with and, for the spellings
    that drifted (B1), also under the mail-XML name; values are in the mail codec's
    normal form (status and priority lowercased). Diary elements are left out: they
    are the snapshot's comments, with their visibility.
    """
    out: dict[str, str] = {}
    for name, raw in values.items():
        if name in DIARY_FIELDS:
            continue
        value = normalise_value(name, raw)
        if not value:
            continue
        if name in ("GHD_Status", "GHD_Priority"):
            value = " ".join(value.split()).lower()
        out[name] = value
        canonical = MAIL_XML_NAMES.get(name)
        if canonical is not None and canonical not in out:
            out[canonical] = value
    return out


def rekey(comments: Iterable[Comment]) -> tuple[Comment, ...]:
    """Comments keyed as the notification-mail codec keys them: ``text_digest(kind, body)``.

    The same diary entry then has the same key whether it was seen in a notification
    mail or fetched from the history, so a link fed by both copies it once. A text that
    occurs twice in one ticket gets ``#2``, ``#3`` ... on its later occurrences.
    """
    seen: dict[str, int] = {}
    out: list[Comment] = []
    for comment in comments:
        key = text_digest(comment.kind, comment.body)
        count = seen.get(key, 0) + 1
        seen[key] = count
        out.append(Comment(key=key if count == 1 else f"{key}#{count}", body=comment.body,
                           author=comment.author, created=comment.created,
                           visibility=comment.visibility, kind=comment.kind))
    return tuple(out)


def clean_name(name: str) -> str:
    """An attachment name without the trailing newlines GGUS sometimes stores (d) 9."""
    return name.rstrip("\r\n").strip() or "attachment"


def content_type(name: str) -> str:
    """A content type guessed from the file name (GGUS stores none)."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"
