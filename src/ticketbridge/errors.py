"""Every error ticketbridge raises, in one tree.

* TicketbridgeError          the root; the CLI turns any of these into prose
  * ConfigError              the operator must fix the configuration; ``.problems`` lists all
  * BadInput                 a trigger cannot be understood; it goes to quarantine
    * UnsafeXML              DTD, entities, oversize or too deep XML
    * MalformedMessage       a mail or XML document that cannot be decoded
    * InvalidValue           a value outside an enumeration or a field's limits
  * RemoteError              talking to a helpdesk failed; carries ``.helpdesk``
    * RemoteUnavailable      may work later (connection refused, timeout, 5xx); ``.retry_after``
    * RemoteRejected         will never work for this payload (validation, unknown ticket)
    * RemoteAuthFailed       will not work until an operator acts (credentials)
    * RemotePending          the remote has not confirmed a create yet; try again shortly
  * StoreError               the database refused or is unreachable
  * NotFound                 an operator asked for something that does not exist

Connectors translate their library's exceptions into this tree at the boundary; nothing
above a connector catches a library exception type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class TicketbridgeError(Exception):
    """Base class of every error ticketbridge raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration, with where it was found."""

    message: str
    file: str | None = None
    line: int | None = None
    path: str | None = None  # dotted key path inside the document, e.g. "helpdesks.goc.smtp"

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            where = f"{where} ({self.path})" if where else self.path
        return f"{where}: {self.message}" if where else self.message


class ConfigError(TicketbridgeError):
    """The configuration cannot be used; ``problems`` holds every problem found at once."""

    def __init__(self, problems: Sequence[Problem | str]) -> None:
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class BadInput(TicketbridgeError):
    """A trigger that cannot be processed as it is. It is quarantined with this reason."""


class UnsafeXML(BadInput):
    """XML refused by the hardened parser (DTD, entity, size or depth limit)."""


class MalformedMessage(BadInput):
    """A mail or document that cannot be decoded."""


class InvalidValue(BadInput):
    """A value outside an enumeration or a field limit."""


class RemoteError(TicketbridgeError):
    """Talking to a helpdesk failed."""

    def __init__(self, helpdesk: str, message: str) -> None:
        self.helpdesk = helpdesk
        super().__init__(f"{helpdesk}: {message}")


class RemoteUnavailable(RemoteError):
    """The helpdesk may accept the same request later (network, timeout, server error)."""

    def __init__(self, helpdesk: str, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(helpdesk, message)


class RemoteRejected(RemoteError):
    """The helpdesk will never accept this request as it is."""


class RemoteAuthFailed(RemoteError):
    """The helpdesk refused our credentials; an operator must act."""


class RemotePending(RemoteUnavailable):
    """A create was sent but the remote has not confirmed the new ticket's id yet."""


class StoreError(TicketbridgeError):
    """The database refused an operation or cannot be reached."""


class NotFound(TicketbridgeError):
    """An operator asked for an inbox entry, link or ticket that does not exist."""
