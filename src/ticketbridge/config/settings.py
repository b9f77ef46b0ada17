"""The configuration schema (pydantic v2). docs/configuration.md documents it key by key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ticketbridge.connectors.footprints import FootprintsSettings
from ticketbridge.connectors.ggus.settings import (
    GgusMailSettings,
    GgusRestSettings,
    GgusSoapSettings,
)
from ticketbridge.errors import StoreError
from ticketbridge.runtime.receivers.settings import (
    ImapSettings,
    MaildirSettings,
    MboxSettings,
    Pop3Settings,
    ReceiverSettings,
)
from ticketbridge.store.db import normalise_url

MailboxSettings = MaildirSettings | MboxSettings | Pop3Settings | ImapSettings

#: (source kind, target kind) pairs an exchange can run today.
SUPPORTED_PAIRS = frozenset(
    {(ggus, "footprints-mail") for ggus in ("ggus-mail", "ggus-soap", "ggus-rest")}
)

#: Every helpdesk ``kind`` the schema knows.
HELPDESK_KINDS = frozenset({"ggus-mail", "ggus-soap", "ggus-rest", "footprints-mail"})


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


HelpdeskSettings = Annotated[
    GgusMailSettings | GgusSoapSettings | GgusRestSettings | FootprintsSettings,
    Field(discriminator="kind"),
]


class ReceiverBinding(Strict):
    """A mailbox and the helpdesk whose mails arrive in it."""

    helpdesk: str
    mailbox: ReceiverSettings


class ExchangeSettings(Strict):
    """A pairing of two helpdesks: tickets of ``source`` are mirrored on ``target``."""

    source: str
    target: str
    assignees: list[str] = ["TX_FP71_GGUS2", "OSG GOC Support Team"]
    next_action: str = "TX Incoming"
    ticket_type: str = "Problem/Request"
    origin_sg: str = "TX_FP71_GGUS2"
    home_project: int = 71
    #: Also copy changes of linked tickets from ``target`` back to ``source``.
    two_way: bool = True
    #: The GGUS support unit a ticket pushed from home goes to (``send --unit`` overrides).
    responsible_unit: str = "TPM"
    #: Map Footprints priority 1 to GGUS ``top priority`` (reserved for ALARM tickets).
    allow_top_priority: bool = False


class WorkerSettings(Strict):
    """How jobs are run and retried."""

    lease_seconds: float = Field(60.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    base_delay: float = Field(2.0, gt=0)
    max_delay: float = Field(300.0, gt=0)
    pending_grace_seconds: float = Field(600.0, ge=0)
    idle_poll: float = Field(1.0, gt=0)
    threads: int = Field(2, ge=1, le=64)


class Settings(Strict):
    """The whole configuration file."""

    base_dir: str = "."
    database: str = "sqlite:///ticketbridge.sqlite3"
    helpdesks: dict[str, HelpdeskSettings] = {}
    receivers: dict[str, ReceiverBinding] = {}
    exchanges: dict[str, ExchangeSettings] = {}
    worker: WorkerSettings = WorkerSettings()

    @field_validator("database")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError(f"database must be a sqlite:/// or postgresql:// URL, not {value!r}")
        try:  # the same check Store.open makes, so check-config catches what run would hit
            normalise_url(value)
        except StoreError as exc:
            raise ValueError(str(exc)) from None
        except ValueError as exc:  # e.g. a port that is not a number
            raise ValueError(f"not a database URL: {value!r} ({exc})") from None
        return value

    def max_message_bytes(self, helpdesk: str) -> int:
        """The largest mail accepted from ``helpdesk``."""
        settings = self.helpdesks.get(helpdesk)
        if isinstance(settings, GgusMailSettings):
            return settings.max_message_bytes
        return GgusMailSettings.model_fields["max_message_bytes"].default  # type: ignore[no-any-return]

    def resolve_paths(self, mailbox: MailboxSettings) -> MailboxSettings:
        """``mailbox`` with a relative file path taken relative to the configuration file."""
        if isinstance(mailbox, MaildirSettings | MboxSettings) and not mailbox.path.is_absolute():
            return mailbox.model_copy(update={"path": Path(self.base_dir) / mailbox.path})
        return mailbox

    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against the config's folder."""
        prefix = "sqlite:///"
        if self.database.startswith(prefix) and not self.database.startswith(prefix + "/"):
            rel = self.database[len(prefix) :]
            if rel and rel != ":memory:":
                return prefix + str(Path(self.base_dir) / rel)
        return self.database
