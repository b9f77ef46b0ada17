"""What every connector offers the exchange, whatever its transport.

A connector *translates*: it turns operations into its helpdesk's wire format (through a
codec) and sends them, and it reads tickets back. It never decides what to send, never
retries, never sleeps and never reads the link store; errors leave it translated into
:mod:`ticketbridge.errors` (RemoteUnavailable, RemoteRejected, RemoteAuthFailed).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ticketbridge.model import Operation, Receipt, Ticket


@runtime_checkable
class TargetConnector(Protocol):
    """A helpdesk the exchange writes to."""

    name: str

    def apply(self, op: Operation) -> Receipt:
        """Carry out one operation and report what the remote answered.

        A create over a mail interface returns ``Receipt(ticket_id=None)`` when the new
        id is not known yet; the exchange then learns it with :meth:`find_by_correlation`.
        """
        ...

    def find_by_correlation(self, key: str) -> str | None:
        """The id of the ticket that carries our correlation key ``key``, if one exists.

        For Footprints this is a search by "Originating Ticket Number". It is what makes
        creates idempotent: a lost link never creates a second ticket.
        """
        ...

    def fetch(self, ticket_id: str) -> Ticket:
        """The current snapshot of one ticket (raises RemoteRejected if it does not exist)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
