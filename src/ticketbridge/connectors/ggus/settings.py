"""Settings of the three GGUS target connectors; docs/connectors/ggus.md lists them key by key.

Each model refuses unknown keys (``extra="forbid"``) and keeps secrets as ``SecretStr``.
"""

from __future__ import annotations

import urllib.parse
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["GgusMailSettings", "GgusRestSettings", "GgusSoapSettings"]

_TICKET_URL = "https://ggus.eu/?mode=ticket_info&ticket_id={id}"


def _http_url(value: str, key: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError(f"{key} must not carry a query or fragment")
    return value.rstrip("/")


class GgusSoapSettings(BaseModel):
    """GGUS (Remedy era) reached by its SOAP web services GGUS, GGUS_HISTORY, GGUS_ATTACH."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ggus-soap"]
    #: ``https://prod-ars.ggus.eu``: scheme, host and port of the AR System mid-tier.
    url: str
    #: The AR server named in ``?server=``: ``prod-ars`` or the training ``train-ars``.
    ars_server: str = "prod-ars"
    user: str
    password: SecretStr
    #: Our reverse assignee as GGUS knows it: GHD_Origin_SG of every ticket we create.
    origin_sg: str = "TX_FP71_GGUS2"
    #: The support unit a create goes to unless the operation names one (GGUS' first line).
    responsible_unit: str = "TPM"
    #: GHD_Last_Modifier when the operation names none.
    last_modifier: str = "ticketbridge"
    connect_timeout: float = Field(10, gt=0)
    read_timeout: float = Field(60, gt=0)
    #: Whether :meth:`fetch` downloads attachments (GetAttachIDs + GetOneAttachment).
    fetch_attachments: bool = True
    ticket_url: str = _TICKET_URL

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "url")


class GgusRestSettings(BaseModel):
    """GGUS (Zammad era) reached by the Zammad REST API v1 with an API token."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ggus-rest"]
    #: ``https://helpdesk.ggus.eu``; the API is under ``/api/v1``.
    url: str
    token: SecretStr
    #: The group (support unit) a create goes to unless the operation names one.
    group: str = "TPM"
    #: Our reverse assignee: the ``origin_sg`` attribute of every ticket we create.
    origin_sg: str = "TX_FP71_GGUS2"
    #: Page size of searches (``find_by_correlation``, ``changed_since``).
    page_size: int = Field(100, ge=1, le=500)
    #: Upper bound of pages one ``changed_since`` call reads (the rest waits for the next).
    max_pages: int = Field(100, ge=1)
    connect_timeout: float = Field(10, gt=0)
    read_timeout: float = Field(60, gt=0)
    fetch_attachments: bool = True
    ticket_url: str = _TICKET_URL
    #: Seconds between polls of ``updated_at`` (0: no polling; mail triggers only).
    poll_interval: float = Field(10, ge=0)
    #: Seconds re-read before the watermark on each poll (clock skew, late commits).
    poll_overlap: float = Field(60, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "url")


class GgusMailSettings(BaseModel):
    """GGUS reached by mail: its XML notification mails in, mail submission out.

    ``ticket_url`` and ``max_message_bytes`` serve the incoming side (the notification
    mails, decoded by :mod:`ticketbridge.codecs.ggus_mail`); the other keys the outgoing
    side. ``helpdesk_address`` and ``sender`` are needed only when the helpdesk is the
    *target* of an exchange.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ggus-mail"]
    ticket_url: str = _TICKET_URL
    max_message_bytes: int = Field(10_000_000, gt=0)
    #: GGUS' mail submission address, ``helpdesk@ggus.eu``.
    helpdesk_address: str | None = None
    #: Our From address. GGUS takes it as the submitter of a create; a reply from the
    #: ticket's submitter address moves ``waiting for reply`` to ``in progress``.
    sender: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, gt=0, lt=65536)
    #: SMTP AUTH account of the submission server, if it needs one.
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    timeout: float = Field(30, gt=0)

    @field_validator("helpdesk_address", "sender")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value:
            raise ValueError("must be a mail address")
        return value
