"""Mail receivers against real sources: files for Maildir and mbox, Dovecot for POP3/IMAP.

The common contract (every kind): each message reaches the sink once; a message the
sink refuses is not acknowledged and is offered again while the others are
acknowledged; a new receiver with the same state does not deliver again. Then the
behaviour of each kind.
"""

from __future__ import annotations

import copy
import email
import email.policy
import json
import logging
import mailbox
import os
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.support.mailservers import Dovecot, MailAccount
from ticketbridge.errors import RemoteAuthFailed, RemoteUnavailable
from ticketbridge.runtime.receivers import (
    Receiver,
    StateStore,
    build_receiver,
    parse_receiver_settings,
    run_until_stopped,
)
from ticketbridge.runtime.receivers.base import Backoff
from ticketbridge.runtime.receivers.imap import ImapReceiver
from ticketbridge.runtime.receivers.mbox import split_mbox
from ticketbridge.runtime.receivers.settings import ImapSettings

# -- test doubles: a real in-memory state store and a recording sink ----------------------


class MemoryState:
    """The StateStore protocol in memory; JSON round trip, as the real store does."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.saves = 0

    def receiver_state(self, name: str) -> dict[str, Any]:
        return json.loads(self.data.get(name, "{}"))  # type: ignore[no-any-return]

    def save_receiver_state(self, name: str, data: dict[str, Any]) -> None:
        self.data[name] = json.dumps(data)
        self.saves += 1


assert isinstance(MemoryState(), StateStore)


@dataclass
class RecordingSink:
    """Stores every message; refuses those whose Message-ID is in ``refuse``."""

    refuse: set[str] = field(default_factory=set)
    stored: list[tuple[str, str, bytes]] = field(default_factory=list)  # (message-id, id, raw)
    refused: list[str] = field(default_factory=list)

    def __call__(self, raw: bytes, source_id: str) -> None:
        mid = message_id(raw)
        if mid in self.refuse:
            self.refused.append(mid)
            raise RuntimeError(f"inbox refuses {mid}")
        self.stored.append((mid, source_id, raw))

    @property
    def ids(self) -> list[str]:
        return [mid for mid, _, _ in self.stored]


def message_id(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"])


def make_message(n: int, tag: str = "t") -> bytes:
    return (
        f"From: GGUS <ggus@ggus.test>\r\n"
        f"To: gateway@peers.test\r\n"
        f"Subject: GGUS-Ticket-ID: #{1000 + n} update {n}\r\n"
        f"Message-ID: <{tag}-{n}@ggus.test>\r\n"
        f"Date: Tue, 28 Nov 2023 09:00:{n % 60:02d} +0000\r\n"
        f"\r\n"
        f"<ticket><id>{1000 + n}</id><n>{n}</n></ticket>\r\n"
    ).encode()


def mid(n: int, tag: str = "t") -> str:
    return f"<{tag}-{n}@ggus.test>"


# -- sources: one adapter per kind, so the common contract runs against each ---------------


class Source:
    """A mail source a test can deliver to and build receivers for."""

    kind: str

    def deliver(self, raw: bytes) -> None:
        raise NotImplementedError

    def settings(self, **overrides: Any) -> dict[str, Any]:
        raise NotImplementedError

    def receiver(
        self, state: StateStore, stop: threading.Event | None = None, **overrides: Any
    ) -> Receiver:
        settings = parse_receiver_settings(self.settings(**overrides))
        return build_receiver(f"{self.kind}-rx", settings, state, stop or threading.Event())

    def close(self) -> None:
        pass


class MaildirSource(Source):
    kind = "maildir"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.box = mailbox.Maildir(root, create=True)
        self._n = 0

    def deliver(self, raw: bytes) -> None:
        # As an MTA does: write to tmp/, then rename into new/.
        self._n += 1
        name = f"{time.time_ns()}.M{self._n}P{os.getpid()}.test"
        tmp = self.root / "tmp" / name
        tmp.write_bytes(raw)
        os.rename(tmp, self.root / "new" / name)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {"kind": "maildir", "path": str(self.root), "poll_interval": 0.1, **overrides}


class MboxSource(Source):
    kind = "mbox"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def deliver(self, raw: bytes) -> None:
        box = mailbox.mbox(str(self.path))
        box.lock()
        try:
            box.add(raw)
            box.flush()
        finally:
            box.unlock()
            box.close()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {"kind": "mbox", "path": str(self.path), "poll_interval": 0.1, **overrides}


class Pop3Source(Source):
    kind = "pop3"

    def __init__(self, account: MailAccount) -> None:
        self.account = account

    def deliver(self, raw: bytes) -> None:
        self.account.deliver(raw)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        server = self.account.server
        return {
            "kind": "pop3",
            "host": server.host,
            "port": server.pop3_port,
            "user": self.account.user,
            "password": self.account.password,
            "tls": "none",
            "timeout": 10,
            "poll_interval": 0.1,
            **overrides,
        }


class ImapSource(Source):
    kind = "imap"

    def __init__(self, account: MailAccount) -> None:
        self.account = account
        self.receivers: list[Receiver] = []

    def deliver(self, raw: bytes) -> None:
        self.account.deliver(raw)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        server = self.account.server
        return {
            "kind": "imap",
            "host": server.host,
            "port": server.imap_port,
            "user": self.account.user,
            "password": self.account.password,
            "tls": "none",
            "timeout": 10,
            "poll_interval": 0.1,
            **overrides,
        }

    def receiver(
        self, state: StateStore, stop: threading.Event | None = None, **overrides: Any
    ) -> Receiver:
        rx = super().receiver(state, stop, **overrides)
        self.receivers.append(rx)
        return rx

    def close(self) -> None:
        for rx in self.receivers:
            rx.close()


@pytest.fixture(params=["maildir", "mbox", "pop3", "imap"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    kind = request.param
    src: Source
    if kind == "maildir":
        src = MaildirSource(tmp_path / "Maildir")
    elif kind == "mbox":
        src = MboxSource(tmp_path / "gateway.mbox")
    else:
        account: MailAccount = request.getfixturevalue("mail_account")
        src = Pop3Source(account) if kind == "pop3" else ImapSource(account)
    yield src
    src.close()


# -- the common contract ------------------------------------------------------------------


def test_each_message_is_received_once(source: Source) -> None:
    for n in range(5):
        source.deliver(make_message(n))
    rx = source.receiver(MemoryState())
    sink = RecordingSink()

    assert rx.poll(sink) == 5
    assert rx.poll(sink) == 0

    assert sorted(sink.ids) == sorted(mid(n) for n in range(5))
    assert len({sid for _, sid, _ in sink.stored}) == 5  # distinct source ids
    body = email.message_from_bytes(sink.stored[0][2], policy=email.policy.default)
    assert body["Subject"].startswith("GGUS-Ticket-ID: #")
    assert b"<ticket>" in sink.stored[0][2]


def test_new_mail_after_a_poll_is_received_by_the_next(source: Source) -> None:
    rx = source.receiver(MemoryState())
    sink = RecordingSink()
    assert rx.poll(sink) == 0
    source.deliver(make_message(1))
    source.deliver(make_message(2))
    assert rx.poll(sink) == 2
    source.deliver(make_message(3))
    assert rx.poll(sink) == 1
    assert sink.ids == [mid(1), mid(2), mid(3)]


def test_refused_message_is_not_acknowledged_and_offered_again(source: Source) -> None:
    for n in range(4):
        source.deliver(make_message(n))
    state = MemoryState()
    rx = source.receiver(state)
    sink = RecordingSink(refuse={mid(1)})

    assert rx.poll(sink) == 3  # the refused one does not stop those after it
    assert sink.ids == [mid(0), mid(2), mid(3)]
    assert rx.poll(sink) == 0  # still refused: offered again, others are not
    assert sink.refused == [mid(1), mid(1)]

    sink.refuse.clear()
    assert rx.poll(sink) == 1
    assert sink.ids[-1] == mid(1)
    assert rx.poll(sink) == 0
    assert sorted(sink.ids) == sorted(mid(n) for n in range(4))


def test_refused_message_survives_a_restart(source: Source) -> None:
    for n in range(3):
        source.deliver(make_message(n))
    state = MemoryState()
    first = source.receiver(state)
    sink = RecordingSink(refuse={mid(0)})
    assert first.poll(sink) == 2
    first.close()

    sink.refuse.clear()
    second = source.receiver(state)
    assert second.poll(sink) == 1
    assert sink.ids == [mid(1), mid(2), mid(0)]


def test_restart_does_not_deliver_again(source: Source) -> None:
    state = MemoryState()
    sink = RecordingSink()
    first = source.receiver(state)
    for n in range(3):
        source.deliver(make_message(n))
    assert first.poll(sink) == 3
    first.close()

    second = source.receiver(state)
    assert second.poll(sink) == 0
    source.deliver(make_message(3))
    assert second.poll(sink) == 1
    assert sink.ids == [mid(0), mid(1), mid(2), mid(3)]


def test_run_until_stopped_receives_and_stops(source: Source) -> None:
    stop = threading.Event()
    rx = source.receiver(MemoryState(), stop)
    got = threading.Event()
    sink = RecordingSink()

    def recording(raw: bytes, sid: str) -> None:
        sink(raw, sid)
        got.set()

    worker = threading.Thread(
        target=run_until_stopped, args=(rx, recording, stop), kwargs={"interval": 0.2}
    )
    worker.start()
    try:
        source.deliver(make_message(7))
        assert got.wait(20), "the running receiver did not hand the message over"
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive(), "the receiver loop did not stop"
    assert sink.ids == [mid(7)]


# -- Maildir --------------------------------------------------------------------------------


def test_maildir_acknowledges_by_moving_to_cur_with_seen_flag(tmp_path: Path) -> None:
    src = MaildirSource(tmp_path / "Maildir")
    src.deliver(make_message(1))
    src.deliver(make_message(2))
    rx = src.receiver(MemoryState())
    sink = RecordingSink(refuse={mid(2)})

    assert rx.poll(sink) == 1

    new = os.listdir(src.root / "new")
    cur = os.listdir(src.root / "cur")
    assert len(new) == 1  # the refused one is still waiting
    assert len(cur) == 1 and cur[0].endswith(":2,S")
    assert sink.stored[0][1] == cur[0].split(":")[0]  # source id = Maildir unique name


def test_maildir_never_reads_tmp(tmp_path: Path) -> None:
    src = MaildirSource(tmp_path / "Maildir")
    (src.root / "tmp" / "1700000000.partial.test").write_bytes(make_message(1)[:40])
    rx = src.receiver(MemoryState())
    assert rx.poll(RecordingSink()) == 0
    assert os.listdir(src.root / "tmp") == ["1700000000.partial.test"]


def test_maildir_reads_unseen_in_cur_and_keeps_other_flags(tmp_path: Path) -> None:
    src = MaildirSource(tmp_path / "Maildir")
    (src.root / "cur" / "1700000001.a.test:2,F").write_bytes(make_message(1))
    (src.root / "cur" / "1700000002.b.test:2,S").write_bytes(make_message(2))
    (src.root / "cur" / "1700000003.c.test:2,T").write_bytes(make_message(3))
    sink = RecordingSink()
    assert src.receiver(MemoryState()).poll(sink) == 1
    assert sink.ids == [mid(1)]
    assert sorted(os.listdir(src.root / "cur")) == [
        "1700000001.a.test:2,FS",
        "1700000002.b.test:2,S",
        "1700000003.c.test:2,T",
    ]


def test_maildir_move_to_done_folder(tmp_path: Path) -> None:
    src = MaildirSource(tmp_path / "Maildir")
    src.deliver(make_message(1))
    src.deliver(make_message(2))
    rx = src.receiver(MemoryState(), move_to=".Done")
    sink = RecordingSink(refuse={mid(2)})
    assert rx.poll(sink) == 1
    done = src.root / ".Done"
    assert [n.endswith(":2,S") for n in os.listdir(done / "cur")] == [True]
    assert len(os.listdir(src.root / "new")) == 1
    assert os.listdir(src.root / "cur") == []


def test_maildir_missing_directory_is_unavailable(tmp_path: Path) -> None:
    settings = parse_receiver_settings({"kind": "maildir", "path": str(tmp_path / "nowhere")})
    rx = build_receiver("md", settings, MemoryState(), threading.Event())
    with pytest.raises(RemoteUnavailable):
        rx.poll(RecordingSink())


# -- mbox -----------------------------------------------------------------------------------


def test_mbox_split_keeps_message_bytes() -> None:
    data = b"From a@b Tue Nov 28 09:00:00 2023\nSubject: one\n\nbody\n\nFrom c@d x\nSubject: two\n"
    first, second = split_mbox(data, 100)
    assert first.start == 100 and first.raw == b"Subject: one\n\nbody\n"
    assert second.start == 100 + data.index(b"From c@d") and second.raw == b"Subject: two\n"
    assert second.end == 100 + len(data)


def test_mbox_position_is_saved_after_each_message(tmp_path: Path) -> None:
    src = MboxSource(tmp_path / "in.mbox")
    for n in range(3):
        src.deliver(make_message(n))
    state = MemoryState()
    calls: list[dict[str, Any]] = []

    def sink(raw: bytes, sid: str) -> None:
        calls.append(copy.deepcopy(state.receiver_state("mbox-rx")))

    src.receiver(state).poll(sink)
    offsets = [c.get("offset", 0) for c in calls]
    assert offsets[0] == 0 and offsets[0] < offsets[1] < offsets[2]  # advanced per message
    assert state.receiver_state("mbox-rx")["offset"] == src.path.stat().st_size


def test_mbox_rotated_file_is_read_from_the_start(tmp_path: Path) -> None:
    src = MboxSource(tmp_path / "in.mbox")
    for n in range(3):
        src.deliver(make_message(n))
    state = MemoryState()
    sink = RecordingSink()
    assert src.receiver(state).poll(sink) == 3

    # logrotate: the old file moves away, the MTA creates a new one and appends.
    src.path.rename(tmp_path / "in.mbox.1")
    src.path.touch()
    src.deliver(make_message(10))
    assert src.receiver(state).poll(sink) == 1
    assert sink.ids[-1] == mid(10)


def test_mbox_truncated_file_is_read_from_the_start(tmp_path: Path) -> None:
    src = MboxSource(tmp_path / "in.mbox")
    for n in range(3):
        src.deliver(make_message(n))
    state = MemoryState()
    sink = RecordingSink()
    rx = src.receiver(state)
    assert rx.poll(sink) == 3
    with open(src.path, "r+b") as f:
        f.truncate(0)
    src.deliver(make_message(20))
    assert rx.poll(sink) == 1
    assert sink.ids[-1] == mid(20)


def test_mbox_locked_file_is_left_for_the_next_poll(tmp_path: Path) -> None:
    src = MboxSource(tmp_path / "in.mbox")
    src.deliver(make_message(1))
    rx = src.receiver(MemoryState())
    sink = RecordingSink()
    mta = mailbox.mbox(str(src.path))
    mta.lock()  # an MTA in the middle of appending
    try:
        assert rx.poll(sink) == 0
    finally:
        mta.unlock()
        mta.close()
    assert rx.poll(sink) == 1


def test_mbox_delete_after_removes_only_acknowledged(tmp_path: Path) -> None:
    src = MboxSource(tmp_path / "in.mbox")
    for n in range(3):
        src.deliver(make_message(n))
    inode = src.path.stat().st_ino
    state = MemoryState()
    rx = src.receiver(state, delete_after=True)
    sink = RecordingSink(refuse={mid(1)})

    assert rx.poll(sink) == 2
    left = mailbox.mbox(str(src.path))
    assert [m["Message-ID"] for m in left] == [mid(1)]
    left.close()
    assert src.path.stat().st_ino == inode  # rewritten in place

    src.deliver(make_message(3))
    sink.refuse.clear()
    assert rx.poll(sink) == 2
    assert src.path.stat().st_size == 0
    assert sorted(sink.ids) == sorted(mid(n) for n in range(4))


def test_mbox_missing_file_is_empty(tmp_path: Path) -> None:
    settings = parse_receiver_settings({"kind": "mbox", "path": str(tmp_path / "none.mbox")})
    rx = build_receiver("mb", settings, MemoryState(), threading.Event())
    assert rx.poll(RecordingSink()) == 0


# -- POP3 -----------------------------------------------------------------------------------


def test_pop3_delete_after(mail_account: MailAccount) -> None:
    src = Pop3Source(mail_account)
    for n in range(3):
        src.deliver(make_message(n))
    state = MemoryState()
    rx = src.receiver(state, delete_after=True)
    sink = RecordingSink(refuse={mid(2)})

    assert rx.poll(sink) == 2
    assert mail_account.server.status(mail_account.user)["messages"] == 1  # the refused one

    sink.refuse.clear()
    assert rx.poll(sink) == 1
    assert mail_account.server.status(mail_account.user)["messages"] == 0
    assert rx.poll(sink) == 0
    assert state.receiver_state("pop3-rx") == {"seen": []}  # pruned to what is on the server


def test_pop3_without_delete_keeps_mail_and_records_uidls(mail_account: MailAccount) -> None:
    src = Pop3Source(mail_account)
    src.deliver(make_message(1))
    state = MemoryState()
    sink = RecordingSink()
    assert src.receiver(state).poll(sink) == 1
    assert mail_account.server.status(mail_account.user)["messages"] == 1
    assert state.receiver_state("pop3-rx")["seen"] == [sink.stored[0][1]]


def test_pop3_wrong_password_is_auth_failure(mail_account: MailAccount) -> None:
    rx = Pop3Source(mail_account).receiver(MemoryState(), password="wrong")
    with pytest.raises(RemoteAuthFailed):
        rx.poll(RecordingSink())


def test_pop3_unreachable_server_is_unavailable(mail_account: MailAccount) -> None:
    from tests.support.mailservers import free_port

    rx = Pop3Source(mail_account).receiver(MemoryState(), port=free_port())
    with pytest.raises(RemoteUnavailable):
        rx.poll(RecordingSink())


def test_pop3_starttls_refused_without_stls(mail_account: MailAccount) -> None:
    # The test Dovecot has no TLS: the receiver must not fall back to a clear password.
    rx = Pop3Source(mail_account).receiver(MemoryState(), tls="starttls")
    with pytest.raises(RemoteAuthFailed, match="STLS"):
        rx.poll(RecordingSink())


def test_pop3_delete_after_removes_mail_acknowledged_earlier(mail_account: MailAccount) -> None:
    # A session that broke before QUIT kept its DELEs uncommitted: the messages are in
    # the seen list but still on the server. The next session deletes them, unoffered.
    src = Pop3Source(mail_account)
    for n in range(2):
        src.deliver(make_message(n))
    state = MemoryState()
    sink = RecordingSink()
    assert src.receiver(state).poll(sink) == 2
    assert mail_account.server.status(mail_account.user)["messages"] == 2

    assert src.receiver(state, delete_after=True).poll(sink) == 0
    assert mail_account.server.status(mail_account.user)["messages"] == 0
    assert len(sink.ids) == 2


class _NoUidlPop3(socketserver.StreamRequestHandler):
    """A POP3 server without UIDL (RFC 1939 makes it optional); mail in ``server.mail``."""

    server: _NoUidlServer

    def handle(self) -> None:
        self._send("+OK ready")
        deleted: set[int] = set()
        while line := self.rfile.readline():
            cmd, _, arg = line.decode().strip().partition(" ")
            cmd = cmd.upper()
            mail = self.server.mail
            if cmd in ("USER", "PASS", "NOOP"):
                self._send("+OK")
            elif cmd == "LIST":
                self._multi([f"{i} {len(m)}".encode() for i, m in enumerate(mail, 1)])
            elif cmd in ("RETR", "TOP"):
                msg = mail[int(arg.split()[0]) - 1]
                if cmd == "TOP":
                    msg = msg.split(b"\r\n\r\n", 1)[0] + b"\r\n"
                self._multi(msg.rstrip(b"\r\n").split(b"\r\n"))
            elif cmd == "DELE":
                deleted.add(int(arg))
                self._send("+OK")
            elif cmd == "QUIT":
                self.server.mail = [m for i, m in enumerate(mail, 1) if i not in deleted]
                self._send("+OK bye")
                return
            else:  # UIDL, CAPA, STLS ...
                self._send("-ERR unknown command")

    def _send(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def _multi(self, lines: list[bytes]) -> None:
        self.wfile.write(b"+OK\r\n")
        for line in lines:
            self.wfile.write((b"." + line if line.startswith(b".") else line) + b"\r\n")
        self.wfile.write(b".\r\n")


class _NoUidlServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    mail: list[bytes]


def test_pop3_without_uidl_recognises_messages_by_header_digest() -> None:
    with _NoUidlServer(("127.0.0.1", 0), _NoUidlPop3) as server:
        server.mail = [make_message(n) for n in range(3)]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            settings = parse_receiver_settings(
                {
                    "kind": "pop3",
                    "host": "127.0.0.1",
                    "port": server.server_address[1],
                    "user": "u",
                    "password": "p",
                    "tls": "none",
                    "timeout": 10,
                }
            )
            state = MemoryState()
            sink = RecordingSink(refuse={mid(1)})
            rx = build_receiver("legacy", settings, state, threading.Event())
            assert rx.poll(sink) == 2
            assert rx.poll(sink) == 0
            sink.refuse.clear()
            assert rx.poll(sink) == 1
            assert sink.ids == [mid(0), mid(2), mid(1)]
            assert all(sid.startswith("top:") for _, sid, _ in sink.stored)
        finally:
            server.shutdown()


# -- IMAP -----------------------------------------------------------------------------------


def imap_client(account: MailAccount) -> IMAPClient:
    client = IMAPClient(account.server.host, port=account.server.imap_port, ssl=False, timeout=10)
    client.login(account.user, account.password)
    return client


def imap_receiver(
    account: MailAccount,
    state: StateStore,
    stop: threading.Event | None = None,
    *,
    backoff: Backoff | None = None,
    **overrides: Any,
) -> ImapReceiver:
    settings = ImapSettings.model_validate(ImapSource(account).settings(**overrides))
    return ImapReceiver(
        "imap-rx", settings, state=state, stop=stop or threading.Event(), backoff=backoff
    )


@pytest.fixture
def receivers() -> Iterator[list[ImapReceiver]]:
    made: list[ImapReceiver] = []
    yield made
    for rx in made:
        rx.close()


def test_imap_acknowledges_with_seen_and_peeks(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    for n in range(3):
        mail_account.deliver(make_message(n))
    rx = imap_receiver(mail_account, MemoryState())
    receivers.append(rx)
    sink = RecordingSink(refuse={mid(1)})
    assert rx.poll(sink) == 2

    status = mail_account.server.status(mail_account.user)
    assert status["messages"] == 3
    assert status["unseen"] == 1  # only the refused one: the fetch did not mark it seen


def test_imap_message_marked_seen_by_a_person_is_still_received(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    rx = imap_receiver(mail_account, MemoryState())
    receivers.append(rx)
    sink = RecordingSink()
    assert rx.poll(sink) == 0  # position established
    mail_account.deliver(make_message(1))
    client = imap_client(mail_account)
    client.select_folder("INBOX")
    client.add_flags(client.search(["ALL"]), [b"\\Seen"])
    client.logout()
    assert rx.poll(sink) == 1


def test_imap_move_to_folder(mail_account: MailAccount, receivers: list[ImapReceiver]) -> None:
    for n in range(3):
        mail_account.deliver(make_message(n))
    rx = imap_receiver(mail_account, MemoryState(), move_to="Processed")
    receivers.append(rx)
    sink = RecordingSink(refuse={mid(0)})
    assert rx.poll(sink) == 2
    assert mail_account.server.status(mail_account.user)["messages"] == 1
    assert mail_account.server.status(mail_account.user, "Processed")["messages"] == 2

    sink.refuse.clear()
    assert rx.poll(sink) == 1
    assert mail_account.server.status(mail_account.user)["messages"] == 0
    assert mail_account.server.status(mail_account.user, "Processed")["messages"] == 3


def test_imap_idle_wait_returns_after_delivery(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    rx = imap_receiver(mail_account, MemoryState())
    receivers.append(rx)
    sink = RecordingSink()
    assert rx.poll(sink) == 0

    timer = threading.Timer(0.5, mail_account.deliver, args=(make_message(42),))
    timer.start()
    started = time.monotonic()
    rx.wait(20.0)
    waited = time.monotonic() - started
    timer.join()

    assert waited < 15.0, f"wait() did not return on new mail (took {waited:.1f} s of 20)"
    assert rx.poll(sink) == 1
    assert sink.ids == [mid(42)]


def test_imap_wait_without_mail_returns_at_timeout_and_on_stop(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    stop = threading.Event()
    rx = imap_receiver(mail_account, MemoryState(), stop)
    receivers.append(rx)
    assert rx.poll(RecordingSink()) == 0

    started = time.monotonic()
    rx.wait(0.5)
    assert time.monotonic() - started >= 0.5  # no mail: waited the whole timeout

    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    rx.wait(30.0)
    assert time.monotonic() - started < 20.0, "wait() ignored the stop event"
    assert rx.poll(RecordingSink()) == 0  # the connection is still usable after IDLE


def test_imap_wait_polls_when_idle_is_off(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    rx = imap_receiver(mail_account, MemoryState(), idle=False)
    receivers.append(rx)
    assert rx.poll(RecordingSink()) == 0
    mail_account.deliver(make_message(1))
    started = time.monotonic()
    rx.wait(1.0)
    assert time.monotonic() - started >= 1.0  # a plain sleep, not IDLE
    assert rx.poll(RecordingSink()) == 1


def test_imap_wrong_password_is_auth_failure(mail_account: MailAccount) -> None:
    rx = imap_receiver(mail_account, MemoryState(), password="wrong")
    with pytest.raises(RemoteAuthFailed):
        rx.poll(RecordingSink())


def test_imap_unreachable_server_is_unavailable_with_retry_after(
    mail_account: MailAccount,
) -> None:
    from tests.support.mailservers import free_port

    rx = imap_receiver(mail_account, MemoryState(), port=free_port())
    with pytest.raises(RemoteUnavailable):
        rx.poll(RecordingSink())
    with pytest.raises(RemoteUnavailable) as second:
        rx.poll(RecordingSink())  # within the back-off: not even tried
    assert second.value.retry_after is not None and second.value.retry_after > 0


def test_imap_starttls_refused_without_starttls(mail_account: MailAccount) -> None:
    rx = imap_receiver(mail_account, MemoryState(), tls="starttls")
    with pytest.raises(RemoteAuthFailed, match="STARTTLS"):
        rx.poll(RecordingSink())


def poll_until(
    rx: Receiver, sink: RecordingSink, done: Callable[[], bool], *, timeout: float = 30.0
) -> int:
    """Poll (and wait between polls) until ``done()``; returns how many polls failed."""
    failures = 0
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done after {timeout} s; got {sink.ids}"
        try:
            rx.poll(sink)
        except RemoteUnavailable:
            failures += 1
        if not done():
            rx.wait(0.5)
    return failures


def test_imap_recovers_after_server_side_kick_during_idle(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    rx = imap_receiver(mail_account, MemoryState(), backoff=Backoff(initial=0.2, maximum=1.0))
    receivers.append(rx)
    sink = RecordingSink()
    mail_account.deliver(make_message(1))
    assert rx.poll(sink) == 1

    kicker = threading.Timer(0.5, mail_account.server.kick, args=(mail_account.user,))
    kicker.start()
    started = time.monotonic()
    rx.wait(20.0)
    kicker.join()
    assert time.monotonic() - started < 15.0, "wait() did not notice the lost connection"
    assert not rx.is_connected

    mail_account.deliver(make_message(2))
    poll_until(rx, sink, lambda: len(sink.ids) == 2)
    assert rx.is_connected
    assert sink.ids == [mid(1), mid(2)]


def test_imap_recovers_after_server_restart_and_logs_once(
    private_dovecot: Dovecot,
    receivers: list[ImapReceiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ticketbridge.runtime.receivers")
    account = MailAccount(private_dovecot, "gateway", "gatewaypass")
    rx = imap_receiver(account, MemoryState(), backoff=Backoff(initial=0.2, maximum=1.0))
    receivers.append(rx)
    sink = RecordingSink()
    account.deliver(make_message(1))
    assert rx.poll(sink) == 1

    private_dovecot.stop()
    failures = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # several failed attempts while the server is down
        try:
            rx.poll(sink)
        except RemoteUnavailable:
            failures += 1
        rx.wait(0.3)
    assert failures >= 2

    private_dovecot.start()
    account.deliver(make_message(2))
    poll_until(rx, sink, lambda: len(sink.ids) == 2)
    assert sink.ids == [mid(1), mid(2)]

    downs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    ups = [r for r in caplog.records if "available again" in r.getMessage()]
    assert len(downs) == 1 and downs[0].levelno == logging.WARNING
    assert len(ups) == 1


def test_imap_uidvalidity_change_rescans_unacknowledged_only(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    state = MemoryState()
    first = imap_receiver(mail_account, state)
    receivers.append(first)
    sink = RecordingSink(refuse={mid(2)})
    for n in range(3):
        mail_account.deliver(make_message(n))
    assert first.poll(sink) == 2
    first.close()
    old = state.receiver_state("imap-rx")["uidvalidity"]

    mail_account.server.set_uidvalidity(mail_account.user, old + 1000)
    mail_account.deliver(make_message(3))

    sink.refuse.clear()
    second = imap_receiver(mail_account, state)
    receivers.append(second)
    assert second.poll(sink) == 2  # the refused one and the new one; not the acknowledged
    assert sink.ids == [mid(0), mid(1), mid(2), mid(3)]
    assert state.receiver_state("imap-rx")["uidvalidity"] == old + 1000
    assert second.poll(sink) == 0


def test_imap_first_poll_skips_mail_already_seen(
    mail_account: MailAccount, receivers: list[ImapReceiver]
) -> None:
    for n in range(2):
        mail_account.deliver(make_message(n))
    client = imap_client(mail_account)
    client.select_folder("INBOX")
    client.add_flags(client.search(["ALL"])[:1], [b"\\Seen"])
    client.logout()
    rx = imap_receiver(mail_account, MemoryState())
    receivers.append(rx)
    sink = RecordingSink()
    assert rx.poll(sink) == 1
    assert sink.ids == [mid(1)]


# -- settings -------------------------------------------------------------------------------


def test_settings_reject_unknown_keys_and_kinds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        parse_receiver_settings(
            {"kind": "imap", "host": "h", "user": "u", "password": "p", "folders": "INBOX"}
        )
    with pytest.raises(ValidationError):
        parse_receiver_settings({"kind": "nntp", "host": "h"})


def test_settings_hide_the_password() -> None:
    s = parse_receiver_settings({"kind": "pop3", "host": "h", "user": "u", "password": "secret"})
    assert "secret" not in repr(s)
    assert s.kind == "pop3" and s.tls == "ssl" and s.poll_interval == 5.0


# -- batches: one durable transaction for several messages ---------------------------------


@dataclass
class BatchRecordingSink(RecordingSink):
    """A BatchSink: a batch holding a refused message is refused as a whole."""

    batches: list[list[str]] = field(default_factory=list)

    def batch(self, messages: list[tuple[bytes, str]]) -> None:
        ids = [message_id(raw) for raw, _ in messages]
        if self.refuse & set(ids):
            raise RuntimeError("a message of the batch cannot be stored")
        self.batches.append(ids)
        for found, (raw, source_id) in zip(ids, messages, strict=True):
            self.stored.append((found, source_id, raw))


def test_maildir_hands_waiting_messages_over_as_one_batch(tmp_path: Path) -> None:
    src = MaildirSource(tmp_path / "Maildir")
    for n in range(5):
        src.deliver(make_message(n))
    sink = BatchRecordingSink()
    rx = src.receiver(MemoryState())
    assert rx.poll(sink) == 5
    assert sink.batches == [[mid(n) for n in range(5)]]
    assert rx.poll(sink) == 0  # all acknowledged


def test_a_refused_batch_is_handed_over_one_by_one(tmp_path: Path) -> None:
    src = MaildirSource(tmp_path / "Maildir")
    for n in range(4):
        src.deliver(make_message(n))
    sink = BatchRecordingSink(refuse={mid(2)})
    rx = src.receiver(MemoryState())
    assert rx.poll(sink) == 3  # the others are stored one at a time and acknowledged
    assert sink.batches == [] and sink.ids == [mid(0), mid(1), mid(3)]
    sink.refuse.clear()
    assert rx.poll(sink) == 1  # the refused one was not acknowledged
    assert sink.ids[-1] == mid(2)


def test_batches_are_bounded(tmp_path: Path) -> None:
    from ticketbridge.runtime.receivers.maildir import BATCH

    src = MaildirSource(tmp_path / "Maildir")
    for n in range(BATCH + 3):
        src.deliver(make_message(n))
    sink = BatchRecordingSink()
    assert src.receiver(MemoryState()).poll(sink) == BATCH + 3
    assert [len(b) for b in sink.batches] == [BATCH, 3]
