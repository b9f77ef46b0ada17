"""The ``ticketbridge`` command: thin commands over :mod:`ticketbridge.service`.

Every listing command prints a table for people and, with ``--json``, the same data for
scripts and monitoring. Errors from the error tree are printed as prose with what to do
next, and the command exits non-zero; nothing prints a traceback for an expected problem.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from cyclopts import App, Parameter
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ticketbridge import __version__, service
from ticketbridge.config import Settings, load_config
from ticketbridge.errors import ConfigError, TicketbridgeError
from ticketbridge.model import TicketRef
from ticketbridge.store import Store
from ticketbridge.store.schema import InboxState, JobState

DEFAULT_CONFIG = "ticketbridge.yaml"

#: What ``ticketbridge jobs`` lists without ``--state``: everything not finished.
UNFINISHED_JOBS = [s.value for s in JobState if s is not JobState.DONE]

app = App(
    name="ticketbridge", help="Exchange trouble tickets between helpdesks.", version=__version__
)
sandbox = App(name="sandbox", help="Run an emulator of a helpdesk that cannot run here.")
app.command(sandbox)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one problem, one line (grep)

ConfigOpt = Annotated[
    str | None,
    Parameter(
        name=["--config", "-c"],
        help=f"configuration file (default ${{TICKETBRIDGE_CONFIG}} or ./{DEFAULT_CONFIG})",
    ),
]
JsonOpt = Annotated[bool, Parameter(name="--json", negative="", help="print JSON")]


class UsageError(Exception):
    """A command line that cannot be carried out as typed (exit status 2)."""


def _config_path(config: str | None) -> Path:
    return Path(config or os.environ.get("TICKETBRIDGE_CONFIG") or DEFAULT_CONFIG)


def _settings(config: str | None) -> Settings:
    return load_config(_config_path(config))


def _check_states(states: Sequence[str], known: type[StrEnum]) -> None:
    """Refuse a --state that does not exist, naming the ones that do (exit status 2)."""
    names = [member.value for member in known]
    for state in states:
        if state not in names:
            raise UsageError(f"unknown state {state!r}: one of {', '.join(names)}")


@contextmanager
def _store(config: str | None) -> Iterator[Store]:
    store = Store.open(_settings(config).database_url())
    try:
        yield store
    finally:
        store.close()


def _print_json(data: Any) -> None:
    out.print_json(jsonlib.dumps(data, default=str))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    if not rows:
        out.print(f"{title}: none", markup=False)
        return
    table = Table(title=Text(title), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not str: values such as "[Ticket Origin]" must not be read as markup.
        table.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))
    out.print(table)


@app.command(name="check-config")
def check_config(*, config: ConfigOpt = None) -> int:
    """Validate the configuration file and report every problem at once."""
    path = _config_path(config)
    settings = load_config(path)
    out.print(
        f"{path}: ok ({len(settings.helpdesks)} helpdesks, {len(settings.receivers)} receivers, "
        f"{len(settings.exchanges)} exchanges; database {settings.database_url()})",
        markup=False,
    )
    return 0


@app.command
def run(*, config: ConfigOpt = None, once: bool = False, verbose: bool = False) -> int:
    """Run the exchange: continuously (IMAP IDLE or polling), or one pass with --once (cron)."""
    from ticketbridge.runtime.app import App as Exchange

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    exchange = Exchange(_settings(config))
    try:
        if once:
            received, ran = exchange.run_once()
            out.print(f"received {received} message(s), ran {ran} job(s)")
            return 0
        signal.signal(signal.SIGTERM, lambda *_: exchange.stop())
        out.print("ticketbridge running; Ctrl-C to stop")
        try:
            exchange.run()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        exchange.close()


@app.command
def links(
    *,
    config: ConfigOpt = None,
    exchange: str | None = None,
    helpdesk: str | None = None,
    json: JsonOpt = False,
) -> int:
    """List links: the same ticket known on both sides of an exchange."""
    with _store(config) as store:
        rows = service.links(store, exchange=exchange, helpdesk=helpdesk)
    if json:
        _print_json(rows)
    else:
        _table(rows, ["id", "exchange", "source", "target", "state", "source_modified"], "links")
    return 0


@app.command
def show(ticket: str, /, *, config: ConfigOpt = None, json: JsonOpt = False) -> int:
    """Show the timeline of one ticket (HELPDESK:ID): triggers, decisions, operations, receipts."""
    try:
        ref = TicketRef.parse(ticket)
    except ValueError as exc:
        raise UsageError(f"{exc}, e.g. ggus:40637") from None
    with _store(config) as store:
        data = service.timeline(store, ref)
    if json:
        _print_json(data)
        return 0
    link = data["link"]
    if link:
        out.print(
            f"link {link['id']} ({link['exchange']}): {link['source']} -> "
            f"{link['target'] or '(pending)'} [{link['state']}]",
            markup=False,
        )
    _table(data["events"], ["at", "ticket", "kind", "summary"], f"timeline of {ref}")
    return 0


@app.command
def quarantine(*, config: ConfigOpt = None, all: bool = False, json: JsonOpt = False) -> int:
    """List quarantined triggers with the reason each was refused (replay them after a fix)."""
    with _store(config) as store:
        rows = service.quarantine(store, include_released=all)
    if json:
        _print_json(rows)
    else:
        _table(rows, ["inbox_id", "source", "received_at", "reason"], "quarantine")
    return 0


@app.command
def inbox(
    *, config: ConfigOpt = None, state: str | None = None, limit: int = 100, json: JsonOpt = False
) -> int:
    """List received triggers and what became of each."""
    _check_states([state] if state else [], InboxState)
    with _store(config) as store:
        rows = service.inbox(store, state=state, limit=limit)
    if json:
        _print_json(rows)
    else:
        _table(rows, ["id", "source", "received_at", "state", "ticket", "reason"], "inbox")
    return 0


@app.command
def jobs(*, config: ConfigOpt = None, state: list[str] | None = None, json: JsonOpt = False) -> int:
    """List jobs (pending, running, retrying, dead) with attempts and last error.

    Finished jobs are left out unless asked for with ``--state done``.
    """
    _check_states(state or [], JobState)
    with _store(config) as store:
        rows = service.jobs(store, states=state or UNFINISHED_JOBS)
    if json:
        _print_json(rows)
    else:
        _table(rows, ["id", "kind", "key", "state", "attempts", "not_before", "last_error"], "jobs")
    return 0


@app.command
def replay(inbox_id: int, /, *, config: ConfigOpt = None, json: JsonOpt = False) -> int:
    """Queue a stored trigger again, e.g. after fixing what quarantined it."""
    with _store(config) as store:
        data = service.replay(store, inbox_id, now=datetime.now(UTC))
    if json:
        _print_json(data)
    else:
        out.print(
            f"inbox {data['inbox_id']} queued again as job {data['job_id']} ({data['key']}); "
            "it runs with the next `ticketbridge run`",
            markup=False,
        )
    return 0


@app.command
def send(
    ticket: str,
    /,
    *,
    to: str,
    new: bool = False,
    update: str | None = None,
    unit: str | None = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> int:
    """Push a home ticket (HELPDESK:ID) to GGUS: --new (to TPM or --unit) or --update GGUS-ID."""
    from ticketbridge.runtime.app import App as Exchange

    ref = TicketRef.parse(ticket)
    settings = _settings(config)
    exchange = Exchange(settings)
    try:
        data = service.send(
            exchange.store,
            settings,
            ref,
            to=to,
            new=new,
            update=update,
            unit=unit,
            now=datetime.now(UTC),
        )
        exchange.worker.run_once()
        entry = exchange.store.inbox_entry(data["inbox_id"])
        data.update(state=entry.state, reason=entry.reason)
    finally:
        exchange.close()
    if json:
        _print_json(data)
    else:
        out.print(f"{ticket} -> {to}: {data['state']}: {data['reason']}", markup=False)
    return 0 if data["state"] in ("applied", "received") else 1


@app.command
def demo(*, keep_running: bool = False, directory: str | None = None) -> int:
    """Run both emulators and the exchange: sample GGUS mails, then a push and replies both ways."""
    from ticketbridge.sandbox.demo import run_demo

    return run_demo(out, keep_running=keep_running, directory=directory)


@sandbox.command(name="footprints")
def sandbox_footprints(
    *,
    db: str = "footprints.sqlite3",
    smtp_port: int = 2525,
    http_port: int = 8088,
    project: int = 71,
    smarthost: str | None = None,
) -> int:
    """Run the Footprints emulator (email interface over SMTP, MRWebServices SOAP over HTTP)."""
    from ticketbridge.sandbox.footprints import serve

    relay = None
    if smarthost:
        host, _, port = smarthost.rpartition(":")
        relay = (host or "127.0.0.1", int(port))
    serve(db_path=db, smtp_port=smtp_port, http_port=http_port, project=project, smarthost=relay)
    return 0


@sandbox.command(name="ggus")
def sandbox_ggus(
    *,
    db: str = "ggus.sqlite3",
    smtp_port: int = 2526,
    http_port: int = 8089,
    smarthost: str | None = None,
) -> int:
    """Run the GGUS emulator (mail in, XML notifications out, Remedy SOAP, Zammad-style REST)."""
    from ticketbridge.sandbox.ggus import serve

    relay = None
    if smarthost:
        host, _, port = smarthost.rpartition(":")
        relay = (host or "127.0.0.1", int(port))
    serve(db_path=db, smtp_port=smtp_port, http_port=http_port, smarthost=relay)
    return 0


@sandbox.command(name="route")
def sandbox_route(
    ticket: int,
    unit: str,
    /,
    *,
    url: str = "http://127.0.0.1:8089",
    token: str = "demo-token",  # noqa: S107 (the emulator's documented training token)
) -> int:
    """TPM in the GGUS emulator: assign TICKET to support UNIT (which GGUS then notifies)."""
    import urllib.error
    import urllib.request

    body = jsonlib.dumps({"ticket": ticket, "unit": unit}).encode()
    request = urllib.request.Request(  # noqa: S310 (an operator-given emulator URL)
        url.rstrip("/") + "/sandbox/route",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token token={token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            data = jsonlib.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        err.print(
            f"error: the GGUS emulator refused: {exc.code} "
            f"{exc.read().decode(errors='replace')[:300]}",
            markup=False,
        )
        return 1
    except OSError as exc:
        err.print(f"error: cannot reach the GGUS emulator at {url}: {exc}", markup=False)
        return 1
    out.print(f"GGUS ticket {ticket} routed to {unit}: {data}", markup=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ticketbridge`` console script."""
    try:
        result = app(
            list(argv) if argv is not None else None,
            result_action="return_value",
            exit_on_error=False,
            print_error=True,
        )
    except UsageError as exc:
        err.print(f"[bold red]usage error:[/] {escape(str(exc))}")
        return 2
    except ConfigError as exc:
        err.print(f"[bold red]configuration has {len(exc.problems)} problem(s):[/]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False)
        return 2
    except TicketbridgeError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 1
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except Exception as exc:  # cyclopts parse errors were already printed
        if type(exc).__module__.startswith("cyclopts"):
            return 2
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
