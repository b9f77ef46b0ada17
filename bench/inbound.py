"""Benchmark: GGUS mails from a Maildir through the exchange into the Footprints emulator.

Two measurements, each on a fresh store (SQLite by default) and a fresh emulator running
in its own process (``ticketbridge sandbox footprints``), so the figures are the
exchange's own:

1. throughput: N mails (default 10,000: half creates, half updates of the same tickets)
   are put in the Maildir first, then one ``run --once`` pass drains them; mails/s is
   N divided by the drain time;
2. latency at an offered load (default 10 mails/s for 30 s): a feeder delivers mails into
   the Maildir at that rate while ``ticketbridge run`` is running; latency is the time
   from the mail's arrival in the Maildir to the Footprints write (the emulator answers
   the SMTP transaction only after it has written the ticket).

The seed's model (one pass every five minutes) is computed for the same arrivals as the
latency baseline: each mail waits for the next pass, then for its turn in that pass at
the measured throughput. Peak RSS is the exchange process's (the emulator is separate).

    python bench/inbound.py                 # full run
    python bench/inbound.py -n 2000 --rate 10 --seconds 20
    python bench/inbound.py --database postgresql://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import mailbox
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ticketbridge.codecs import ggus_mail
from ticketbridge.config import parse_config
from ticketbridge.model import Comment, Contact, Ticket, TicketRef, text_digest
from ticketbridge.runtime.app import App
from ticketbridge.store import Job

CONFIG = """\
database: "{database}"
helpdesks:
  ggus: {{kind: ggus-mail}}
  goc:
    kind: footprints-mail
    incoming_address: fp-incoming@goc.example.org
    sender: osg-tx@goc.example.org
    smtp_port: {smtp}
    soap_url: "http://127.0.0.1:{http}/MRcgi/MRWebServices.pl"
    user: goctx
    password: demo
receivers:
  ggus:
    helpdesk: ggus
    mailbox: {{kind: maildir, path: "{maildir}", poll_interval: {poll}}}
exchanges:
  ggus-goc: {{source: ggus, target: goc}}
worker: {{idle_poll: 0.05}}
"""

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mails(n: int, first_id: int) -> list[bytes]:
    """n GGUS mails: n/2 new tickets, then one update (a public diary) for each."""
    tickets = max(1, n // 2)
    out = []
    for kind in ("new", "update"):
        for i in range(tickets):
            if len(out) == n:
                break
            gid = str(first_id + i)
            minutes = 0 if kind == "new" else 30
            comments = ()
            if kind == "update":
                body = f"Looked at it, restarting the service ({gid})."
                comments = (Comment(text_digest("public diary", body), body, kind="public diary"),)
            ticket = Ticket(
                ref=TicketRef("ggus", gid),
                title=f"Benchmark ticket {gid}",
                description="Transfers fail with SRM timeout.",
                status="assigned" if kind == "new" else "in progress",
                priority="urgent",
                submitter=Contact("Bench User", "bench@example.org"),
                fields={
                    "GHD_Request-ID": gid,
                    "GHD_Responsible_Unit": "OSG",
                    "GHD_Last_Modifier": "Bench User",
                },
                comments=comments,
                modified=T0 + timedelta(minutes=minutes),
            )
            out.append(
                ggus_mail.encode(
                    ticket,
                    to="osg-tx@goc.example.org",
                    sender="helpdesk@ggus.example.org",
                    date=T0 + timedelta(minutes=minutes),
                    message_id=f"<bench-{kind}-{gid}@ggus.example.org>",
                )
            )
    return out


class Emulator:
    """The Footprints emulator in its own process."""

    def __init__(self, root: Path) -> None:
        self.smtp, self.http = free_port(), free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ticketbridge",
                "sandbox",
                "footprints",
                "--db",
                str(root / "fp.sqlite3"),
                "--smtp-port",
                str(self.smtp),
                "--http-port",
                str(self.http),
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
                    if time.monotonic() > deadline:
                        raise RuntimeError("Footprints emulator did not start") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def build(root: Path, database: str | None, poll: float) -> tuple[App, mailbox.Maildir, Emulator]:
    emulator = Emulator(root)
    maildir = mailbox.Maildir(root / "maildir", create=True)
    url = database or f"sqlite:///{root / 'ticketbridge.sqlite3'}"
    settings = parse_config(
        CONFIG.format(
            database=url,
            smtp=emulator.smtp,
            http=emulator.http,
            maildir=root / "maildir",
            poll=poll,
        )
    )
    return App(settings), maildir, emulator


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def throughput(n: int, database: str | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        app, maildir, emulator = build(Path(tmp), database, 1.0)
        try:
            for raw in mails(n, 500_000):
                maildir.add(raw)
            start = time.perf_counter()
            received, ran = app.run_once()
            elapsed = time.perf_counter() - start
            states = {e.state for e in app.store.list_inbox(limit=n)}
            print(
                f"  drained {received} mails ({ran} jobs) in {elapsed:.1f} s; "
                f"inbox states: {sorted(states)}"
            )
            return n / elapsed
        finally:
            app.close()
            emulator.stop()


def latency(rate: float, seconds: float, database: str | None) -> tuple[list[float], list[float]]:
    """Latencies (s) at ``rate`` mails/s, and the arrival offsets (s) of those mails."""
    n = int(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        app, maildir, emulator = build(Path(tmp), database, 0.02)
        arrived: dict[str, float] = {}
        done: dict[str, float] = {}
        by_inbox: dict[int, str] = {}

        def report(job: Job, outcome: object, reason: str) -> None:
            if job.inbox_id is not None:
                mid = by_inbox.get(job.inbox_id) or app.store.inbox_entry(job.inbox_id).message_id
                done[mid] = time.perf_counter()

        for worker in app.workers:
            worker.report = report
        runner = threading.Thread(target=app.run, daemon=True)
        runner.start()
        try:
            start = time.perf_counter()
            for i, raw in enumerate(mails(n, 600_000)):
                due = start + i / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                mid = ggus_mail.decode(raw).message_id
                arrived[mid] = time.perf_counter()
                maildir.add(raw)
            deadline = time.perf_counter() + 60
            while len(done) < n and time.perf_counter() < deadline:
                time.sleep(0.05)
        finally:
            app.stop()
            runner.join(timeout=30)
            app.close()
            emulator.stop()
    lat = [done[m] - arrived[m] for m in arrived if m in done]
    if len(lat) < n:
        print(f"  WARNING: only {len(lat)} of {n} mails reached Footprints within 60 s")
    offsets = sorted(t - min(arrived.values()) for t in arrived.values())
    return lat, offsets


def seed_model(offsets: list[float], per_mail: float, period: float = 300.0) -> list[float]:
    """Latency of the 2006 cron model for the same arrivals (random phase of the cron)."""
    rng = random.Random(2006)
    phase = rng.uniform(0, period)
    out = []
    queue_pos: dict[int, int] = {}
    for t in offsets:
        tick = int((t - phase) // period) + 1
        pos = queue_pos.get(tick, 0)
        queue_pos[tick] = pos + 1
        out.append(phase + tick * period - t + (pos + 1) * per_mail)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0, help="offered load, mails/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the latency run")
    parser.add_argument("--database", help="store URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    print(
        f"ticketbridge inbound benchmark: {args.count} mails, store "
        f"{'SQLite' if not args.database else args.database}"
    )
    print("1. throughput (Maildir pre-filled, one pass)")
    rate = throughput(args.count, args.database)
    print(f"  throughput: {rate:.0f} mails/s   (target >= 200)")
    print(f"2. latency at {args.rate:g} mails/s offered for {args.seconds:g} s")
    lat, offsets = latency(args.rate, args.seconds, args.database)
    p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
    print(
        f"  ticketbridge: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(lat) * 1000:.0f} ms "
        f"(targets p50 < 200 ms, p99 < 1000 ms)"
    )
    seed = seed_model(offsets, 1 / rate)
    s50, s99 = percentile(seed, 50) * 1000, percentile(seed, 99) * 1000
    print(f"  seed model (5-minute cron): p50 {s50 / 1000:.0f} s, p99 {s99 / 1000:.0f} s")
    print(f"  ratio seed/ticketbridge: p50 {s50 / p50:.0f}x, p99 {s99 / p99:.0f}x")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"3. peak RSS of the exchange process: {rss:.0f} MB")
    print(f"  mean latency {statistics.mean(lat) * 1000:.0f} ms over {len(lat)} mails")


if __name__ == "__main__":
    main()
