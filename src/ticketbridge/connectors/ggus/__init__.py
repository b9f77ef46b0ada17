"""GGUS as a target helpdesk, by three kinds of connector (docs/connectors/ggus.md):

* ``ggus-soap``  :class:`GgusSoapConnector`, the Remedy-era SOAP web services;
* ``ggus-rest``  :class:`GgusRestConnector`, the Zammad-era REST API v1 (also a poll source);
* ``ggus-mail``  :class:`GgusMailConnector`, mail submission.

Each has a settings model (:mod:`ticketbridge.connectors.ggus.settings`) and one error
translator per transport; all three satisfy ``connectors.base.TargetConnector``.
"""

from ticketbridge.connectors.ggus.mail import GgusMailConnector
from ticketbridge.connectors.ggus.rest import GgusRestConnector
from ticketbridge.connectors.ggus.settings import (
    GgusMailSettings,
    GgusRestSettings,
    GgusSoapSettings,
)
from ticketbridge.connectors.ggus.soap import GgusSoapConnector

__all__ = [
    "GgusMailConnector",
    "GgusMailSettings",
    "GgusRestConnector",
    "GgusRestSettings",
    "GgusSoapConnector",
    "GgusSoapSettings",
]
