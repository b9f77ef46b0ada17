"""Benchmark: linked tickets changed on both sides, for each GGUS generation.

For each GGUS generation (``ggus-mail``, ``ggus-soap``, ``ggus-rest``) on a fresh store
(SQLite by default) and fresh emulators, each in its own process (``python -m ticketbridge
sandbox ggus|footprints``, notifications mailed through ``--smarthost`` to a relay in this
process that files them into the Maildirs the exchange reads: the OSG support unit's list
and Footprints' reverse TX agent):

1. set-up: a Footprints agent opens N tickets through the email interface and the operator
   pushes each to GGUS (``send --new``); TPM routes each to OSG. With ``ggus-mail`` GGUS is
   written by mail submission, which carries only public text and no ticket id back, so a
   push by mail cannot be linked automatically: the operator links each pair with
   ``send --update GGUS-ID`` (the id read from GGUS, as the operator would);
2. two rounds of user changes, each one change on each side of every linked ticket: a
   GGUS supporter's public diary entry and a Footprints agent's update (a mail to the
   email interface). Round "burst" makes all 2N changes as fast as the two feeders can
   (throughput); round "paced" offers them at ``--rate`` changes/s (latency).

The exchange is ``ticketbridge.runtime.app.App`` running continuously (``App.run``) in a
thread of this process, its Maildirs polled every 20 ms. The supporter works in the GGUS
emulator's web console: the emulator's engine (``GgusSandbox.add_diary``) on the
emulator's database, beside the emulator process that serves mail, SOAP and REST; its
notification goes through the same relay.

Latency of a change: from the moment the user's change starts (the supporter's call, the
agent's SMTP transaction) to the moment the exchange's write of it is visible in the other
emulator's database (polled every 10 ms, so figures carry up to 10 ms of polling).
exchanges/s: 2N divided by the time from the first change to the last write.
Writes per user change: GGUS history rows and Footprints description entries counted
before and after a round (after everything has settled, echoes included), minus the users'
own changes, divided by the number of user changes; anything but exactly 1.00 is flagged
and the exit status is 1.

    python bench/roundtrip.py                       # N = 200, every generation
    python bench/roundtrip.py -n 50 --kinds ggus-soap --rate 20
    python bench/roundtrip.py --database postgresql://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import io
import json
import re
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from ticketbridge.config import parse_config
from ticketbridge.model import TicketRef
from ticketbridge.runtime.app import App
from ticketbridge.sandbox.ggus import DEFAULT_UNITS, GgusSandbox
from ticketbridge.sandbox.relay import MaildirRelay
from ticketbridge.service import send

KINDS = ("ggus-mail", "ggus-soap", "ggus-rest")
REVERSE_AGENT = "tx+fp71_ggus2@goc.example.org"
FP_INCOMING = "fp-incoming@goc.example.org"
AGENT = "Pat Agent <pat.agent@goc.example.org>"

GGUS_HELPDESK = {
    "ggus-mail": """
  ggus:
    kind: ggus-mail
    helpdesk_address: helpdesk@ggus.example.org
    sender: osg-tx@goc.example.org
    smtp_port: {ggus_smtp}""",
    "ggus-soap": """
  ggus:
    kind: ggus-soap
    url: "http://127.0.0.1:{ggus_http}"
    ars_server: train-ars
    user: osg_tx
    password: demo""",
    "ggus-rest": """
  ggus:
    kind: ggus-rest
    url: "http://127.0.0.1:{ggus_http}"
    token: demo-token""",
}

CONFIG = """\
database: "{database}"
helpdesks:{ggus}
  goc:
    kind: footprints-mail
    incoming_address: {fp_incoming}
    sender: osg-tx@goc.example.org
    smtp_port: {fp_smtp}
    soap_url: "http://127.0.0.1:{fp_http}/MRcgi/MRWebServices.pl"
    user: goctx
    password: demo
receivers:
  ggus-notifications:
    helpdesk: ggus
    mailbox: {{kind: maildir, path: "{root}/ggus", poll_interval: 0.02}}
  goc-notifications:
    helpdesk: goc
    mailbox: {{kind: maildir, path: "{root}/goc", poll_interval: 0.02}}
exchanges:
  ggus-goc: {{source: ggus, target: goc}}
worker: {{threads: {threads}, idle_poll: 0.05, base_delay: 0.5}}
"""

MARK = re.compile(r"RT(\d+)([GF])(\d+)X")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """``python -m ticketbridge sandbox KIND`` in its own process."""

    def __init__(self, kind: str, db: Path, smarthost: tuple[str, int]) -> None:
        self.smtp, self.http = free_port(), free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ticketbridge",
                "sandbox",
                kind,
                "--db",
                str(db),
                "--smtp-port",
                str(self.smtp),
                "--http-port",
                str(self.http),
                "--smarthost",
                f"{smarthost[0]}:{smarthost[1]}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        for port in (self.smtp, self.http):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"the {kind} emulator did not start") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to an emulator's database (it stays the emulator's)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Round:
    """What one round of 2N user changes gave."""

    name: str
    n: int
    started: dict[tuple[str, int], float] = field(default_factory=dict)
    arrived: dict[tuple[str, int], float] = field(default_factory=dict)
    copies: dict[tuple[str, int], int] = field(default_factory=dict)
    ggus_rows: int = 0  # history rows added during the round (users' and ours)
    home_entries: int = 0  # description entries added during the round
    seconds: float = 0.0
    feeding: float = 0.0  # how long the two feeders took to make every change

    def latencies(self, side: str) -> list[float]:
        return [
            self.arrived[k] - self.started[k]
            for k in self.started
            if k[0] == side and k in self.arrived
        ]

    @property
    def writes_to_home(self) -> int:
        return self.home_entries - self.n  # minus the agents' own entries

    @property
    def writes_to_ggus(self) -> int:
        return self.ggus_rows - self.n  # minus the supporters' own diary entries

    @property
    def writes_per_change(self) -> float:
        return (self.writes_to_home + self.writes_to_ggus) / (2 * self.n)


class World:
    """Relay, both emulators, the exchange and the users, for one GGUS generation."""

    def __init__(self, kind: str, root: Path, database: str | None, threads: int) -> None:
        self.kind, self.root = kind, root
        self.relay = MaildirRelay(
            {DEFAULT_UNITS["OSG"]: root / "ggus", REVERSE_AGENT: root / "goc"},
            default=root / "other",  # TPM's list and the rest: not the exchange's mailboxes
        ).start()
        self.ggus = Emulator("ggus", root / "ggus.sqlite3", self.relay.address)
        self.fp = Emulator("footprints", root / "fp.sqlite3", self.relay.address)
        # The supporters' console: the emulator's engine on the emulator's database.
        self.console = GgusSandbox(db_path=root / "ggus.sqlite3", smarthost=self.relay.address)
        self.ggus_db = reader(root / "ggus.sqlite3")
        self.fp_db = reader(root / "fp.sqlite3")
        url = database or f"sqlite:///{root / 'ticketbridge.sqlite3'}"
        self.settings = parse_config(
            CONFIG.format(
                database=url,
                ggus=GGUS_HELPDESK[kind].format(ggus_smtp=self.ggus.smtp, ggus_http=self.ggus.http),
                fp_incoming=FP_INCOMING,
                fp_smtp=self.fp.smtp,
                fp_http=self.fp.http,
                root=root,
                threads=threads,
            )
        )
        self.app = App(self.settings)
        self.runner = threading.Thread(target=self.app.run, daemon=True)
        self.runner.start()
        self.pairs: list[tuple[int, int, str]] = []  # (mrid, GGUS id, title)

    def close(self) -> None:
        self.app.stop()
        self.runner.join(timeout=30)
        self.app.close()
        self.console.close()
        self.ggus_db.close()
        self.fp_db.close()
        self.fp.stop()
        self.ggus.stop()
        self.relay.stop()

    # -- the users -----------------------------------------------------------------------

    def agent_session(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.fp.smtp, timeout=60)

    @staticmethod
    def agent_mail(smtp: smtplib.SMTP, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = AGENT
        msg["To"] = FP_INCOMING
        msg["Subject"] = subject
        msg.set_content(body)
        smtp.send_message(msg)

    def route(self, ggus_id: int) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ggus.http}/sandbox/route",
            data=json.dumps({"ticket": ggus_id, "unit": "OSG"}).encode(),
            headers={"Authorization": "Token token=demo-token", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def push(self, mrid: int, *, update: str | None = None) -> None:
        send(
            self.app.store,
            self.settings,
            TicketRef("goc", str(mrid)),
            to="ggus",
            new=update is None,
            update=update,
            unit=None,
            now=datetime.now(UTC),
        )
        self.app.intake.wake.set()

    # -- observing -----------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        (rows,) = self.ggus_db.execute("SELECT COUNT(*) FROM history").fetchone()
        (entries,) = self.fp_db.execute("SELECT COUNT(*) FROM descriptions").fetchone()
        return int(rows), int(entries)

    def wait(self, what: str, condition: object, timeout: float = 300.0) -> None:
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def settle(self, quiet: float = 1.0) -> None:
        """Wait until no job is outstanding, the Maildirs are read and nothing moved for
        ``quiet`` seconds (so that echoes of the last writes have come and gone)."""
        last: tuple[int, int, int, int] | None = None
        since = time.monotonic()
        deadline = since + 300
        while time.monotonic() < deadline:
            unread = sum(1 for box in ("ggus", "goc") for _ in (self.root / box / "new").iterdir())
            state = (self.relay.total, *self.counts(), self.app.store.pending_count() + unread)
            if state != last:
                last, since = state, time.monotonic()
            elif state[3] == 0 and time.monotonic() - since >= quiet:
                return
            time.sleep(0.02)
        raise RuntimeError("the exchange did not settle within 300 s")

    # -- set-up --------------------------------------------------------------------------

    def setup(self, n: int) -> None:
        titles = [f"Roundtrip {i}: transfers to the SE time out" for i in range(n)]
        with self.agent_session() as smtp:
            for title in titles:
                self.agent_mail(smtp, title, "Transfers time out since 08:00.\npriority=3\n")
        by_title = {t: m for m, t in self.fp_db.execute("SELECT mrid, title FROM issues")}
        mrids = [by_title[t] for t in titles]
        for mrid in mrids:
            self.push(mrid)
        if self.kind == "ggus-mail":
            # A push by mail cannot be linked automatically: link each by send --update.
            def all_created() -> bool:
                rows = self.ggus_db.execute("SELECT request_id, short_description FROM tickets")
                self._ggus_by_title = {t: r for r, t in rows}
                return all(t in self._ggus_by_title for t in titles)

            self.wait("the GGUS tickets mailed by send --new", all_created)
            for mrid, title in zip(mrids, titles, strict=True):
                self.push(mrid, update=str(self._ggus_by_title[title]))
        store = self.app.store
        self.wait("every link", lambda: all(store.find_link_by_b("goc", str(m)) for m in mrids))
        for mrid, title in zip(mrids, titles, strict=True):
            link = store.find_link_by_b("goc", str(mrid))
            assert link is not None
            self.pairs.append((mrid, int(link.a_id), title))
        for _, ggus_id, _ in self.pairs:
            self.route(ggus_id)
        self.settle()
        states = {e.state for e in store.list_inbox(limit=100_000)}
        bad = states & {"dead", "quarantined", "received"}
        if bad:
            raise RuntimeError(f"set-up left inbox entries {sorted(bad)}")

    # -- a round -------------------------------------------------------------------------

    def round(self, number: int, name: str, rate: float) -> Round:
        result = Round(name, len(self.pairs))
        before = self.counts()
        (g_last,) = self.ggus_db.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()
        (f_last,) = self.fp_db.execute("SELECT COALESCE(MAX(id), 0) FROM descriptions").fetchone()
        done = threading.Event()

        def watch() -> None:
            nonlocal g_last, f_last
            while True:
                finished = done.is_set()
                now = time.perf_counter()
                for row_id, text in self.ggus_db.execute(
                    "SELECT id, public_diary FROM history WHERE id > ? ORDER BY id", (g_last,)
                ):
                    g_last = row_id
                    seen(text or "", "F", now)
                for row_id, text in self.fp_db.execute(
                    "SELECT id, data FROM descriptions WHERE id > ? ORDER BY id", (f_last,)
                ):
                    f_last = row_id
                    seen(text, "G", now)
                if finished:
                    return
                time.sleep(0.01)

        def seen(text: str, side: str, now: float) -> None:
            for found in MARK.finditer(text):
                if int(found.group(1)) == number and found.group(2) == side:
                    key = (side, int(found.group(3)))
                    result.arrived.setdefault(key, now)
                    result.copies[key] = result.copies.get(key, 0) + 1

        # Each side gets every other slot of the offered rate; rate 0: as fast as possible.
        start = time.perf_counter() + 0.1

        def due(i: int, offset: int) -> None:
            if rate > 0:
                time.sleep(max(0.0, start + (2 * i + offset) / rate - time.perf_counter()))

        def supporters() -> None:
            for i, (_, ggus_id, _) in enumerate(self.pairs):
                due(i, 0)
                result.started[("G", i)] = time.perf_counter()
                self.console.add_diary(
                    ggus_id,
                    f"Please check the SRM pool again (RT{number}G{i}X).",
                    author="G. Supporter",
                )

        def agents() -> None:
            with self.agent_session() as smtp:
                for i, (mrid, _, title) in enumerate(self.pairs):
                    due(i, 1)
                    result.started[("F", i)] = time.perf_counter()
                    self.agent_mail(
                        smtp,
                        f"Re: {title} ISSUE={mrid} PROJ=71",
                        f"Restarted the pool, please retry (RT{number}F{i}X).\n",
                    )

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        feeders = [threading.Thread(target=supporters), threading.Thread(target=agents)]
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join()
        result.feeding = time.perf_counter() - start
        expected = 2 * len(self.pairs)
        deadline = time.monotonic() + 300
        while len(result.arrived) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        result.seconds = max(result.arrived.values(), default=start) - min(result.started.values())
        self.settle()
        done.set()
        watcher.join()
        after = self.counts()
        result.ggus_rows, result.home_entries = after[0] - before[0], after[1] - before[1]
        return result


def report(kind: str, r: Round) -> bool:
    """Print one round; True when every change caused exactly one write."""
    n = r.n
    missing = 2 * n - len(r.arrived)
    rate = len(r.arrived) / r.seconds if r.seconds > 0 else float("nan")
    print(f"  round {r.name}: {2 * n} user changes ({n} per side)")
    print(
        f"    exchanges/s: {rate:.1f}  ({len(r.arrived)} changes copied in {r.seconds:.2f} s; "
        f"the users took {r.feeding:.2f} s to make them)"
    )
    for side, label in (("G", "GGUS -> Footprints"), ("F", "Footprints -> GGUS")):
        lat = r.latencies(side)
        if lat:
            print(
                f"    {label}: p50 {percentile(lat, 50) * 1000:.0f} ms, "
                f"p99 {percentile(lat, 99) * 1000:.0f} ms, "
                f"mean {statistics.mean(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
            )
    per_change = r.writes_per_change
    print(
        f"    writes per user change: {per_change:.2f}  (Footprints entries written "
        f"{r.writes_to_home} for {n} GGUS changes, GGUS history rows written "
        f"{r.writes_to_ggus} for {n} Footprints changes)"
    )
    duplicates = sum(1 for c in r.copies.values() if c > 1)
    ok = r.writes_to_home == n and r.writes_to_ggus == n and not missing and not duplicates
    if not ok:
        print(
            f"    !!! {kind} round {r.name}: writes per user change {per_change:.2f}, "
            f"expected exactly 1.00; {missing} change(s) never arrived, {duplicates} "
            "copied more than once !!!"
        )
    return ok


def run(kind: str, n: int, rate: float, database: str | None, threads: int) -> list[Round]:
    with tempfile.TemporaryDirectory(prefix=f"roundtrip-{kind}-") as tmp:
        world = World(kind, Path(tmp), database, threads)
        try:
            began = time.perf_counter()
            world.setup(n)
            print(f"  set-up: {n} linked tickets in {time.perf_counter() - began:.1f} s")
            return [world.round(1, "burst", 0.0), world.round(2, f"paced {rate:g}/s", rate)]
        finally:
            world.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=200, help="linked tickets")
    parser.add_argument(
        "--rate", type=float, default=5.0, help="offered user changes/s of the paced round"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="GGUS generations to run")
    parser.add_argument("--threads", type=int, default=2, help="worker threads")
    parser.add_argument("--database", help="store URL (default: a fresh SQLite file each)")
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown --kinds {sorted(unknown)}; known: {', '.join(KINDS)}")

    print(
        f"ticketbridge round-trip benchmark: {args.count} linked tickets, store "
        f"{args.database or 'SQLite'}, App.run in a thread ({args.threads} worker threads), "
        "emulators in their own processes"
    )
    ok = True
    summary = []
    for kind in kinds:
        print(f"{kind}:")
        for r in run(kind, args.count, args.rate, args.database, args.threads):
            ok = report(kind, r) and ok
            g, f = r.latencies("G"), r.latencies("F")
            summary.append(
                (
                    kind,
                    r.name,
                    len(r.arrived) / r.seconds if r.seconds > 0 else float("nan"),
                    percentile(g, 50) * 1000 if g else float("nan"),
                    percentile(g, 99) * 1000 if g else float("nan"),
                    percentile(f, 50) * 1000 if f else float("nan"),
                    percentile(f, 99) * 1000 if f else float("nan"),
                    r.writes_per_change,
                )
            )
    print()
    print(
        f"{'generation':<10} {'round':<12} {'exch/s':>7} {'G->F p50':>9} {'p99':>7} "
        f"{'F->G p50':>9} {'p99':>7} {'writes/change':>14}"
    )
    for kind, name, rate, g50, g99, f50, f99, wpc in summary:
        print(
            f"{kind:<10} {name:<12} {rate:7.1f} {g50:7.0f}ms {g99:5.0f}ms "
            f"{f50:7.0f}ms {f99:5.0f}ms {wpc:14.2f}"
        )
    if not ok:
        print("\n!!! some user changes did not cause exactly one write: see above !!!")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
