"""Real mail servers on loopback for the tests: Dovecot (IMAP, POP3, LMTP) and aiosmtpd.

Fixtures:

* ``dovecot`` (session): one Dovecot for the whole run, yields :class:`Dovecot`.
* ``mail_account`` (function): a fresh user on the session Dovecot, yields
  :class:`MailAccount` (its own empty mailbox, so tests do not see each other's mail).
* ``private_dovecot`` (function): a Dovecot of its own that a test may stop, restart or
  reconfigure, yields :class:`Dovecot`.
* ``smtp_sink`` (function): an aiosmtpd SMTP server that keeps every message it
  receives, yields :class:`SmtpSink`.

Mail is delivered with :meth:`Dovecot.deliver`, through LMTP: the same delivery path an
MTA uses, so IMAP IDLE sees it as real new mail.

Dovecot is installed by ``scripts/install-test-peers.sh`` (the project's test command
runs it). Without it the fixtures fail -- they never skip, so a green run always means
the mail tests ran.

The recipe is docs peers.md §6 / Appendix B: passwd-file users, a static userdb with
uid 65534, ``auth_username_format = %Ln`` (so ``user@domain`` over LMTP is the IMAP user
``user``) and ``service anvil { chroot = }``. As root, Dovecot's auth process reads the
users file as the ``dovecot`` user and the mail processes run as uid 65534, so the base
directory is world-traversable and the mail directory belongs to 65534. As another user
Dovecot runs every process as that user instead.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
MAIL_DOMAIN = "peers.test"

#: Users every Dovecot starts with (name -> password).
DEFAULT_USERS = {"gateway": "gatewaypass", "ggus": "ggusPass"}
#: Spare accounts ``user1`` ... created with the server, handed out by ``mail_account``
#: (adding users later works too, but Dovecot notices a changed passwd-file only
#: about once a second).
SPARE_ACCOUNTS = 200

_INSTALL_HINT = (
    "Dovecot is not installed ({path} is missing). The mail tests need a real Dovecot: "
    "run the project's test command, which installs the test peers, or run "
    "`scripts/install-test-peers.sh` as root."
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 10.0) -> bool:
    """True once 127.0.0.1:``port`` accepts connections, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


@dataclass
class Dovecot:
    """A Dovecot instance in its own directory, listening on 127.0.0.1 only."""

    root: Path
    imap_port: int = field(default_factory=free_port)
    pop3_port: int = field(default_factory=free_port)
    lmtp_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    users: dict[str, str] = field(
        default_factory=lambda: (
            DEFAULT_USERS | {f"user{i}": f"pw-user{i}" for i in range(1, SPARE_ACCOUNTS + 1)}
        )
    )
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    def maildir(self, user: str) -> Path:
        """The Maildir of ``user``'s INBOX (exists after the first delivery or login)."""
        return self.mail_root / user / "Maildir"

    # -- lifecycle ---------------------------------------------------------------------

    def write_config(self) -> None:
        as_root = os.geteuid() == 0
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        (self.root / "state").mkdir(exist_ok=True)
        self.mail_root.mkdir(exist_ok=True)
        if as_root:
            # auth runs as "dovecot" and must read the users file; mail runs as 65534.
            self.root.chmod(0o755)
            os.chown(self.mail_root, 65534, 65534)
            uid = gid = 65534
            run_as = ""
        else:
            uid, gid = os.getuid(), os.getgid()
            me = getpass.getuser()
            run_as = (
                f"default_login_user = {me}\ndefault_internal_user = {me}\n"
                f"default_internal_group = {me}\n"
            )
        self._write_users()
        r = self.root
        self.config.write_text(
            f"""base_dir = {r}/run
state_dir = {r}/state
instance_name = tb-{r.name}
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
log_path = {self.log}
mail_location = maildir:{self.mail_root}/%n/Maildir
pop3_uidl_format = %08Xu%08Xv
{run_as}passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_root}/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
"""
        )

    def _write_users(self) -> None:
        lines = "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items())
        tmp = self.root / "users.tmp"
        tmp.write_text(lines)
        tmp.chmod(0o644)
        tmp.replace(self.root / "users")  # atomic: the auth process never reads half

    def start(self) -> None:
        """Start Dovecot in the foreground of a new session; wait until every port accepts."""
        if not Path(DOVECOT).exists():
            pytest.fail(_INSTALL_HINT.format(path=DOVECOT), pytrace=False)
        if not self.config.exists():
            self.write_config()
        with open(self.root / "dovecot.stderr", "ab") as stderr:
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        for port in (self.imap_port, self.pop3_port, self.lmtp_port):
            if not wait_for_port(port) or self.process.poll() is not None:
                self.stop()
                pytest.fail(f"Dovecot did not start on 127.0.0.1:{port}:\n{self.diagnostics()}")

    def stop(self) -> None:
        """Stop Dovecot and all its processes (they share its session)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Dovecot's children leave when the master goes; wait until the ports are free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and wait_for_port(self.imap_port, timeout=0.05):
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def diagnostics(self) -> str:
        parts = []
        for f in (self.root / "dovecot.stderr", self.log):
            if f.exists():
                parts.append(f"--- {f.name} ---\n" + "\n".join(f.read_text().splitlines()[-30:]))
        return "\n".join(parts)

    # -- users and mail ----------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add a user, and wait until Dovecot knows it.

        Dovecot re-reads a changed passwd-file, but looks at it at most once a second.
        """
        self.users[name] = password
        self._write_users()
        deadline = time.monotonic() + 10
        while True:
            found = subprocess.run(
                [DOVEADM, "-c", str(self.config), "user", name],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if found.returncode == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"Dovecot does not know the new user {name}:\n{self.diagnostics()}")
            time.sleep(0.1)

    def address(self, user: str) -> str:
        return f"{user}@{MAIL_DOMAIN}"

    def deliver(self, user: str, raw: bytes, *, sender: str = "ggus@ggus.test") -> None:
        """Deliver ``raw`` to ``user``'s INBOX through LMTP (real delivery)."""
        deliver_lmtp(self.host, self.lmtp_port, sender, self.address(user), raw)

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c <our config> args...``; raises if it fails."""
        return subprocess.run(
            [DOVEADM, "-c", str(self.config), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def kick(self, user: str) -> None:
        """Disconnect every session of ``user`` (server side)."""
        # Exit code 68 means "nobody to kick"; that is an error for the test that asks.
        self.doveadm("kick", user)

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    def status(self, user: str, folder: str = "INBOX") -> dict[str, int]:
        """``doveadm mailbox status``: messages, unseen, uidvalidity, uidnext."""
        out = self.doveadm(
            "mailbox", "status", "-u", user, "messages unseen uidvalidity uidnext", folder
        ).stdout
        pairs = (item.split("=", 1) for item in out.split()[1:])
        return {k: int(v) for k, v in pairs}


def deliver_lmtp(host: str, port: int, sender: str, recipient: str, raw: bytes) -> None:
    """Deliver one message over LMTP; raises if the recipient is refused."""
    with smtplib.LMTP(host, port, timeout=10) as lmtp:
        refused = lmtp.sendmail(sender, [recipient], raw)
    if refused:
        raise AssertionError(f"LMTP refused {recipient}: {refused}")


def _new_root(prefix: str) -> Path:
    # Not pytest's tmp_path: its parents are mode 0700 and Dovecot's unprivileged
    # processes must reach the files. Short, too: unix socket paths are limited.
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextlib.contextmanager
def running_dovecot(prefix: str = "tb-dovecot-") -> Iterator[Dovecot]:
    """A started Dovecot in a fresh directory; stopped and removed afterwards."""
    if not Path(DOVECOT).exists():
        pytest.fail(_INSTALL_HINT.format(path=DOVECOT), pytrace=False)
    server = Dovecot(_new_root(prefix))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One real Dovecot (IMAP, POP3, LMTP on free 127.0.0.1 ports) for the session."""
    with running_dovecot() as server:
        yield server


@pytest.fixture
def private_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of the test's own: it may stop, restart or kick it freely."""
    with running_dovecot("tb-dovecot-p-") as server:
        yield server


@dataclass(frozen=True)
class MailAccount:
    """A user with an empty mailbox on a running Dovecot."""

    server: Dovecot
    user: str
    password: str

    @property
    def address(self) -> str:
        return self.server.address(self.user)

    def deliver(self, raw: bytes) -> None:
        self.server.deliver(self.user, raw)


_account_numbers = itertools.count(1)


def _new_account(dovecot: Dovecot) -> MailAccount:
    user = f"user{next(_account_numbers)}"
    password = f"pw-{user}"
    if dovecot.users.get(user) != password:
        dovecot.add_user(user, password)
    return MailAccount(dovecot, user, password)


@pytest.fixture
def mail_account(dovecot: Dovecot) -> MailAccount:
    """A fresh user on the session Dovecot, e.g. ``user3`` / ``pw-user3``."""
    return _new_account(dovecot)


@pytest.fixture
def new_mail_account(dovecot: Dovecot) -> Callable[[], MailAccount]:
    """A factory of fresh users, for tests that need several mailboxes."""
    return lambda: _new_account(dovecot)


# -- SMTP sink ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class _Collector:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
        with self._sink._changed:
            self._sink.messages.append(mail)
            self._sink._changed.notify_all()
        return "250 OK"


@dataclass
class SmtpSink:
    """An SMTP server on 127.0.0.1 that accepts everything and keeps it in ``messages``."""

    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[ReceivedMail]:
        """The messages once there are at least ``count``; fails the test after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout):
                pytest.fail(
                    f"expected {count} mail(s) within {timeout} s, got {len(self.messages)}"
                )
            return list(self.messages)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A running aiosmtpd server capturing every message (for tests of outgoing mail)."""
    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(_Collector(sink), hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# -- a notification relay for two-way exchanges ------------------------------------------


class LmtpRelay:
    """A real SMTP server handing each mail to Dovecot over LMTP, as an MTA would: mails
    for the reverse TX agent (``tx+...``) into the home side's mailbox, every other mail
    into GGUS' mailbox. ``lose_ggus_mail`` drops GGUS' mails, for lost-trigger tests."""

    def __init__(self, ggus_box: MailAccount, goc_box: MailAccount) -> None:
        self.boxes = {"ggus": ggus_box, "goc": goc_box}
        self.lose_ggus_mail = False
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            side = "goc" if rcpt.startswith("tx+") else "ggus"
            if side == "ggus" and self.lose_ggus_mail:
                continue
            self.boxes[side].deliver(envelope.content)
        return "250 OK"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.controller.port)

    def __enter__(self) -> LmtpRelay:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
