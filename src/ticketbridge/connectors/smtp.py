"""A kept SMTP session, shared by the connectors that write by mail.

One session per worker thread is kept open between sends. A send on a kept session that
the server had already closed (a disconnect, a reset, or a 421 reply) is retried once on
a fresh session, but only when the failure happened before ``DATA`` was sent: after that
the server may have taken the mail, and a helpdesk mail interface does not deduplicate.
Timeouts are never retried: the server is there but slow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import smtplib
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from ticketbridge.errors import RemoteAuthFailed, RemoteError, RemoteRejected, RemoteUnavailable


class KeptSmtp(smtplib.SMTP):
    """An SMTP session that records whether the current send got as far as ``DATA``."""

    data_sent = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_sent = True
        return super().data(msg)


def is_stale(exc: BaseException) -> bool:
    """A kept session closed by the server: a disconnect, a reset, or a 421 reply."""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    return isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError)


class SmtpSession:
    """One thread's kept session; ``open`` makes a new, logged-in one when needed."""

    def __init__(self, open: Callable[[], KeptSmtp]) -> None:
        self._open = open
        self.smtp: KeptSmtp | None = None

    def send(
        self, msg: EmailMessage, *, sender: str, recipients: Sequence[str]
    ) -> dict[str, tuple[int, bytes]]:
        """Send ``msg``; retry once on a fresh session if the kept one had gone."""
        smtp = self.smtp
        reused = smtp is not None
        for _attempt in range(2):
            if smtp is None:
                smtp = self._open()
                self.smtp = smtp
            smtp.data_sent = False
            try:
                return smtp.send_message(msg, from_addr=sender, to_addrs=list(recipients))
            except (smtplib.SMTPException, OSError) as exc:
                self.drop()
                if not (reused and not smtp.data_sent and is_stale(exc)):
                    raise
                smtp, reused = None, False  # the kept session had gone: once more, fresh
        raise AssertionError("unreachable")  # pragma: no cover

    def drop(self) -> None:
        """Forget a broken session (no QUIT: its state is unknown)."""
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        """End the session politely."""
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()


def smtp_error(helpdesk: str, what: str, exc: smtplib.SMTPException) -> RemoteError:
    """One smtplib error as ticketbridge's error: refused credentials need an operator, a
    4xx reply or a dropped session may work later, any other refusal never will."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return RemoteAuthFailed(helpdesk, f"{what}: {_reply(exc)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return RemoteAuthFailed(
            helpdesk,
            f"{what}: the server offers no SMTP AUTH; remove the SMTP account from the "
            f"configuration or use a submission server that has it ({exc})",
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        text = "; ".join(
            f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items()
        )
        return _by_code(helpdesk, min(codes, default=550), f"{what}: {text}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(helpdesk, exc.smtp_code, f"{what}: {_reply(exc)}")
    return RemoteUnavailable(helpdesk, f"{what}: {exc}")  # disconnected, nothing accepted


def _by_code(helpdesk: str, code: int, message: str) -> RemoteError:
    if code in (530, 535):
        return RemoteAuthFailed(helpdesk, message)
    if 400 <= code < 500:
        return RemoteUnavailable(helpdesk, message)
    return RemoteRejected(helpdesk, message)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def stable_message_id(prefix: str, content: Mapping[str, object], domain: str) -> str:
    """A Message-ID derived from what a mail carries: the same operation sent again gets
    the same Message-ID, so a resend after a crash is recognisable."""
    digest = hashlib.sha256(
        json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
    ).hexdigest()[:32]
    return f"<{prefix}.{digest}@{domain}>"
