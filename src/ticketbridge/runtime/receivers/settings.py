"""Receiver settings: one pydantic model per kind, chosen by ``kind``.

``ReceiverSettings`` is the discriminated union the configuration schema embeds;
:func:`build_receiver` turns one validated value into a live :class:`Receiver`.
docs/receivers.md documents every field.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter

from ticketbridge.runtime.receivers.base import Receiver, StateStore

__all__ = [
    "ImapSettings",
    "MaildirSettings",
    "MboxSettings",
    "Pop3Settings",
    "ReceiverSettings",
    "TlsMode",
    "build_receiver",
    "parse_receiver_settings",
]

#: ``none``: plain text (loopback or trusted networks only); ``starttls``: upgrade the
#: plain connection (STLS / STARTTLS), refusing to go on if the server cannot;
#: ``ssl``: implicit TLS from the first byte (POP3S 995, IMAPS 993).
TlsMode = Literal["none", "starttls", "ssl"]


class _Strict(BaseModel):
    """Unknown keys are errors; a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MaildirSettings(_Strict):
    """A local Maildir (``tmp/``, ``new/``, ``cur/``), e.g. filled by the MTA."""

    kind: Literal["maildir"]
    #: The Maildir directory (the one holding ``tmp/``, ``new/``, ``cur/``).
    path: Path
    #: Another Maildir to move acknowledged messages into (relative paths are taken
    #: relative to ``path``; it is created when missing; same file system as ``path``).
    #: Unset: acknowledged messages stay, moved to ``cur/`` with the ``S`` flag.
    move_to: Path | None = None
    #: Seconds between scans.
    poll_interval: float = Field(5.0, gt=0)


class MboxSettings(_Strict):
    """A local mbox file, appended to by the MTA."""

    kind: Literal["mbox"]
    path: Path
    #: Remove acknowledged messages from the file (rewritten in place, under the lock).
    delete_after: bool = False
    poll_interval: float = Field(5.0, gt=0)


class _RemoteSettings(_Strict):
    host: str
    #: Default: 110/995 for POP3, 143/993 for IMAP, by ``tls``.
    port: int | None = Field(None, gt=0, lt=65536)
    user: str
    password: SecretStr
    tls: TlsMode = "ssl"
    #: PEM file of CA certificates to trust instead of the system store.
    ca_file: Path | None = None
    #: Socket timeout (connect, read) in seconds.
    timeout: float = Field(30.0, gt=0)
    poll_interval: float = Field(5.0, gt=0)


class Pop3Settings(_RemoteSettings):
    """A POP3 mailbox; messages are recognised by UIDL."""

    kind: Literal["pop3"]
    #: ``DELE`` each acknowledged message (committed by ``QUIT``).
    delete_after: bool = False


class ImapSettings(_RemoteSettings):
    """An IMAP folder, watched with IDLE when the server offers it."""

    kind: Literal["imap"]
    folder: str = "INBOX"
    #: Folder to move acknowledged messages into (created when missing). Unset: the
    #: message stays and gets the ``\\Seen`` flag.
    move_to: str | None = None
    #: Use IMAP IDLE (push) when the server offers it; otherwise poll every
    #: ``poll_interval`` seconds.
    idle: bool = True


ReceiverSettings = Annotated[
    MaildirSettings | MboxSettings | Pop3Settings | ImapSettings,
    Field(discriminator="kind"),
]

_adapter: TypeAdapter[MaildirSettings | MboxSettings | Pop3Settings | ImapSettings] = TypeAdapter(
    ReceiverSettings
)


def parse_receiver_settings(
    data: object,
) -> MaildirSettings | MboxSettings | Pop3Settings | ImapSettings:
    """Validate one receiver's settings (a mapping with ``kind``).

    Raises pydantic.ValidationError listing every problem.
    """
    return _adapter.validate_python(data)


def build_receiver(
    name: str,
    settings: MaildirSettings | MboxSettings | Pop3Settings | ImapSettings,
    state: StateStore,
    stop: threading.Event,
) -> Receiver:
    """A receiver for ``settings``. Nothing is connected or opened before the first poll."""
    # Imported here: each module pulls in its protocol library only when configured.
    if isinstance(settings, MaildirSettings):
        from ticketbridge.runtime.receivers.maildir import MaildirReceiver

        return MaildirReceiver(name, settings, stop=stop)
    if isinstance(settings, MboxSettings):
        from ticketbridge.runtime.receivers.mbox import MboxReceiver

        return MboxReceiver(name, settings, state=state, stop=stop)
    if isinstance(settings, Pop3Settings):
        from ticketbridge.runtime.receivers.pop3 import Pop3Receiver

        return Pop3Receiver(name, settings, state=state, stop=stop)
    from ticketbridge.runtime.receivers.imap import ImapReceiver

    return ImapReceiver(name, settings, state=state, stop=stop)
