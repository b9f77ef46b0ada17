"""The ``ticketbridge`` command, in-process through :func:`ticketbridge.cli.main` and as the
installed console script, against the real Footprints emulator on both databases.

Mails are GGUS fixtures dropped into a Maildir; each listing is read once as a table (for
people) and once with ``--json`` (parsed, for scripts).
"""

from __future__ import annotations

import json
import mailbox
import os
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.cli import main
from ticketbridge.sandbox.footprints import FootprintsSandbox

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ggus"
EXAMPLE = ROOT / "examples" / "osg-ggus.yaml"

NEW = "ggus-40637-new.eml"
UPDATE = "ggus-40637-update.eml"
SPAM = "04-spam.eml"
XXE = "08-41901-xxe-file.eml"

#: Bounded waits for the continuous run (never a timing assertion: only a give-up time).
WAIT = 60.0

CONFIG = """\
database: "{database}"
helpdesks:
  ggus: {{kind: ggus-mail}}
  goc:
    kind: footprints-mail
    incoming_address: {incoming}
    sender: osg-tx@goc.example.org
    smtp_host: 127.0.0.1
    smtp_port: {smtp}
    soap_url: "{soap}"
    user: {user}
    password: "{password}"
    timeout: 10
receivers:
  ggus-mail:
    helpdesk: ggus
    mailbox: {{kind: maildir, path: mail/ggus, poll_interval: 0.2}}
exchanges:
  ggus-goc: {{source: ggus, target: goc}}
worker: {{base_delay: 0.05, idle_poll: 0.2}}
"""

BROKEN = """\
database: mysql://tb@db.example.org/tb
helpdesks:
  ggus:
    kind: ggus-mail
    max_mesage_bytes: 1000
  goc:
    kind: footprints
receivers:
  ggus-mail:
    helpdesk: gus
    mailbox: {kind: maildir, path: mail}
exchanges:
  ggus-goc: {source: ggus, target: nowhere}
"""

#: (line, dotted path) of every problem in BROKEN, in file order.
BROKEN_PROBLEMS = [
    (1, "database"),
    (5, "helpdesks.ggus.max_mesage_bytes"),
    (7, "helpdesks.goc.kind"),
    (10, "receivers.ggus-mail.helpdesk"),
    (13, "exchanges.ggus-goc.target"),
]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``ticketbridge ARGS...`` in this process; returns exit code, stdout, stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def fp() -> Iterator[FootprintsSandbox]:
    with FootprintsSandbox() as sandbox:
        yield sandbox


def script() -> str:
    """The installed ``ticketbridge`` console script of this environment."""
    path = Path(sysconfig.get_path("scripts")) / "ticketbridge"
    assert path.exists(), f"the console script is not installed at {path}"
    return str(path)


def write_config(root: Path, database: str, fp: FootprintsSandbox) -> Path:
    """A configuration in ``root`` reading the Maildir ``root/mail/ggus`` (a relative path)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ticketbridge.yaml"
    path.write_text(
        CONFIG.format(
            database=database,
            incoming=fp.incoming_address,
            smtp=fp.smtp_port,
            soap=fp.soap_url,
            user=fp.user,
            password=fp.password,
        ),
        encoding="utf-8",
    )
    return path


def maildir(root: Path) -> mailbox.Maildir:
    (root / "mail").mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(root / "mail" / "ggus", create=True)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- check-config -------------------------------------------------------------------------


def test_check_config_ok(cli: Cli) -> None:
    result = cli("check-config", "-c", str(EXAMPLE))
    assert result.code == 0, result.err
    assert result.out.startswith(f"{EXAMPLE}: ok (2 helpdesks, 1 receivers, 1 exchanges;")
    assert f"sqlite:///{EXAMPLE.parent / 'ticketbridge.sqlite3'}" in result.out
    assert result.err == ""


def test_check_config_reads_ticketbridge_config_from_the_environment(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETBRIDGE_CONFIG", str(EXAMPLE))
    result = cli("check-config")
    assert result.code == 0 and f"{EXAMPLE}: ok" in result.out


def test_check_config_prints_every_problem_with_file_and_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = cli("check-config", "-c", str(path))
    assert result.code == 2
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[0] == f"configuration has {len(BROKEN_PROBLEMS)} problem(s):"
    for (line, dotted), printed in zip(BROKEN_PROBLEMS, lines[1:], strict=True):
        assert printed.startswith(f"  {path}:{line} ({dotted}): "), printed
    assert "unknown helpdesk 'gus'" in lines[4]
    assert "unknown kind 'footprints'" in lines[3]


def test_check_config_of_a_missing_file_names_it(cli: Cli, tmp_path: Path) -> None:
    result = cli("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert result.code == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read configuration" in result.err


def test_the_console_script_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TICKETBRIDGE_CONFIG"}
    done = subprocess.run(
        [script(), "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    for line, dotted in BROKEN_PROBLEMS:
        assert f"{path}:{line} ({dotted}): " in done.stderr
    assert "Traceback" not in done.stderr


def test_a_usage_error_exits_2(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ticketbridge.yaml"
    config.write_text(EXAMPLE.read_text("utf-8"), encoding="utf-8")
    assert cli("replay", "not-a-number", "-c", str(config)).code == 2
    assert cli("links", "--no-such-option", "-c", str(config)).code == 2
    assert cli("no-such-command").code == 2
    bad_state = cli("inbox", "--state", "lost", "-c", str(config))
    assert bad_state.code == 2
    assert "unknown state 'lost': one of received, applied," in bad_state.err
    bad_job_state = cli("jobs", "--state", "done", "--state", "stuck", "-c", str(config))
    assert bad_job_state.code == 2
    assert "unknown state 'stuck': one of pending, running," in bad_job_state.err
    assert not (tmp_path / "ticketbridge.sqlite3").exists()  # refused before opening the store


# --- the operator's commands on a real exchange -------------------------------------------


def test_run_once_then_every_listing(
    cli: Cli, tmp_path: Path, store_url: str, fp: FootprintsSandbox
) -> None:
    config = str(write_config(tmp_path, store_url, fp))
    box = maildir(tmp_path)
    for name in (NEW, SPAM, XXE, UPDATE):
        box.add(fixture(name))

    # run --once: every mail is received and processed
    result = cli("run", "--once", "-c", config)
    assert result.code == 0, result.err
    assert result.out.strip() == "received 4 message(s), ran 4 job(s)"
    (issue,) = fp.tickets()
    assert issue.field("Originating Ticket Number") == "40637"
    target = f"goc:{issue.mrid}"

    # links
    links = cli("links", "-c", config, "--json")
    assert links.code == 0
    (link,) = links.json()
    assert link["exchange"] == "ggus-goc" and link["source"] == "ggus:40637"
    assert link["target"] == target and link["state"] == "active"
    assert set(link) == {
        "id",
        "exchange",
        "source",
        "target",
        "state",
        "source_modified",
        "updated_at",
    }
    table = cli("links", "-c", config)
    assert table.code == 0
    assert "ggus:40637" in table.out and target in table.out and "active" in table.out
    assert cli("links", "-c", config, "--helpdesk", "goc", "--json").json() == [link]
    assert cli("links", "-c", config, "--exchange", "other", "--json").json() == []
    assert cli("links", "-c", config, "--exchange", "other").out.strip() == "links: none"

    # inbox
    inbox = cli("inbox", "-c", config, "--json").json()
    by_message = {e["message_id"]: e for e in inbox}
    assert [e["state"] for e in inbox] == ["applied", "quarantined", "quarantined", "applied"]
    assert [e["id"] for e in inbox] == sorted((e["id"] for e in inbox), reverse=True)
    spam = by_message["<win-8d1c2@lottery.example.org>"]
    xxe = by_message["<20260301.41901.1@ggus.example.org>"]
    assert spam["ticket"] is None and "no GGUS <Ticket> XML" in spam["reason"]
    assert xxe["ticket"] == "ggus:41901" and xxe["reason"].startswith("UnsafeXML: ")
    assert "XXE" in xxe["reason"]
    assert set(xxe) == {"id", "source", "message_id", "received_at", "state", "ticket", "reason"}
    table = cli("inbox", "-c", config)
    assert table.code == 0 and "quarantined" in table.out and "applied" in table.out
    only = cli("inbox", "-c", config, "--state", "quarantined", "--json").json()
    assert sorted(e["id"] for e in only) == sorted([spam["id"], xxe["id"]])
    assert len(cli("inbox", "-c", config, "--limit", "1", "--json").json()) == 1

    # show
    shown = cli("show", "ggus:40637", "-c", config, "--json")
    assert shown.code == 0
    timeline = shown.json()
    assert timeline["ticket"] == "ggus:40637"
    assert timeline["link"]["target"] == target and timeline["link"]["state"] == "active"
    kinds = [e["kind"] for e in timeline["events"]]
    for kind in ("trigger", "snapshot", "decision", "operation", "receipt"):
        assert kind in kinds
    assert kinds.index("trigger") < kinds.index("decision") < kinds.index("operation")
    receipt = next(e for e in timeline["events"] if e["kind"] == "receipt")
    assert isinstance(receipt["detail"], dict)
    assert receipt["detail"]["ticket_id"] == str(issue.mrid)
    table = cli("show", "ggus:40637", "-c", config)
    assert table.code == 0
    assert f"ggus:40637 -> {target} [active]" in table.out
    assert "receipt" in table.out and "decision" in table.out

    # jobs: finished ones only when asked for
    assert cli("jobs", "-c", config, "--json").json() == []
    assert cli("jobs", "-c", config).out.strip() == "jobs: none"
    jobs = cli("jobs", "-c", config, "--state", "done", "--json").json()
    assert len(jobs) == 4 and {j["state"] for j in jobs} == {"done"}
    assert {j["inbox_id"] for j in jobs} == {e["id"] for e in inbox}
    assert set(jobs[0]) == {
        "id",
        "kind",
        "key",
        "state",
        "attempts",
        "not_before",
        "inbox_id",
        "last_error",
    }
    assert cli("jobs", "-c", config, "--state", "dead", "--json").json() == []
    table = cli("jobs", "-c", config, "--state", "done", "--state", "dead")
    assert table.code == 0 and "ggus:40637" in table.out and "done" in table.out

    # quarantine: the spam and the XXE attempt, each with its reason
    quarantined = cli("quarantine", "-c", config, "--json").json()
    reasons = {q["inbox_id"]: q["reason"] for q in quarantined}
    assert reasons == {spam["id"]: spam["reason"], xxe["id"]: xxe["reason"]}
    assert not any(q["released"] for q in quarantined)
    table = cli("quarantine", "-c", config)
    assert table.code == 0 and "UnsafeXML" in table.out and "MalformedMessage" in table.out

    # replay the XXE mail: queued again, no longer in quarantine...
    replayed = cli("replay", str(xxe["id"]), "-c", config)
    assert replayed.code == 0, replayed.err
    assert replayed.out.startswith(f"inbox {xxe['id']} queued again as job ")
    assert "(ggus:41901)" in replayed.out
    pending = cli("jobs", "-c", config, "--json").json()
    assert [(j["kind"], j["key"], j["state"], j["inbox_id"]) for j in pending] == [
        ("replay", "ggus:41901", "pending", xxe["id"])
    ]
    assert cli("jobs", "-c", config, "--state", "pending", "--json").json() == pending
    still = cli("quarantine", "-c", config, "--json").json()
    assert [q["inbox_id"] for q in still] == [spam["id"]]
    released = cli("quarantine", "-c", config, "--all", "--json").json()
    assert [q["released"] for q in released if q["inbox_id"] == xxe["id"]] == [True]

    # ...processed again by the next pass, and quarantined again for the same reason
    result = cli("run", "--once", "-c", config)
    assert result.out.strip() == "received 0 message(s), ran 1 job(s)"
    again = {q["inbox_id"]: q["reason"] for q in cli("quarantine", "-c", config, "--json").json()}
    assert again == reasons
    entry = next(e for e in cli("inbox", "-c", config, "--json").json() if e["id"] == xxe["id"])
    assert (entry["state"], entry["reason"]) == ("quarantined", xxe["reason"])
    assert len(fp.tickets()) == 1

    # replay --json
    data = cli("replay", str(spam["id"]), "-c", config, "--json").json()
    assert data["inbox_id"] == spam["id"] and data["key"] == f"inbox:{spam['id']}"
    (job,) = cli("jobs", "-c", config, "--json").json()
    assert (job["id"], job["kind"], job["state"]) == (data["job_id"], "replay", "pending")


def test_unknown_things_exit_non_zero_with_a_clear_message(
    cli: Cli, tmp_path: Path, store_url: str, fp: FootprintsSandbox
) -> None:
    config = str(write_config(tmp_path, store_url, fp))
    maildir(tmp_path).add(fixture(NEW))
    assert cli("run", "--once", "-c", config).code == 0

    unknown = cli("show", "ggus:99999", "-c", config)
    assert unknown.code == 1
    assert unknown.out == ""
    assert unknown.err.strip() == "error: nothing is known of ggus:99999"
    assert "Traceback" not in unknown.err

    typo = cli("show", "40637", "-c", config)
    assert typo.code == 2
    assert "expected HELPDESK:ID, got '40637'" in typo.err

    missing = cli("replay", "999", "-c", config)
    assert missing.code == 1
    assert "999" in missing.err and "Traceback" not in missing.err


# --- demo ---------------------------------------------------------------------------------


def test_demo_runs_to_completion_and_names_every_outcome(cli: Cli, tmp_path: Path) -> None:
    result = cli("demo", "--directory", str(tmp_path / "demo"))
    assert result.code == 0, result.err
    for outcome in ("applied", "ignored", "quarantined", "duplicate", "skipped"):
        assert outcome in result.out, outcome
    assert "XXE" in result.out
    # What the demo left behind is readable with the operator's commands.
    config = str(tmp_path / "demo" / "ticketbridge.yaml")
    links = cli("links", "-c", config, "--json").json()
    assert sorted(link["source"] for link in links) == ["ggus:40637", "ggus:40701"]
    assert {link["state"] for link in links} == {"active"}
    states = [e["state"] for e in cli("inbox", "-c", config, "--json").json()]
    assert states.count("quarantined") == 2 and states.count("ignored") == 1


# --- the daemon ---------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"ticketbridge run exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {WAIT:.0f} s waiting for {what}")
        time.sleep(0.1)


def test_run_picks_up_a_mail_while_running_and_stops_on_sigterm(
    cli: Cli, tmp_path: Path, store_url: str, fp: FootprintsSandbox
) -> None:
    config = write_config(tmp_path, store_url, fp)
    box = maildir(tmp_path)
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "TICKETBRIDGE_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("w", encoding="utf-8") as output:
        proc = subprocess.Popen(
            [script(), "run", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    try:
        wait_for(lambda: "ticketbridge running" in log.read_text("utf-8"), "start-up", proc)
        assert fp.tickets() == []
        box.add(fixture(NEW))
        wait_for(lambda: len(fp.tickets()) == 1, "the Footprints ticket", proc)
        (issue,) = fp.tickets()
        assert issue.field("Originating Ticket Number") == "40637"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text("utf-8")
    assert "Traceback" not in text, text
    (entry,) = cli("inbox", "-c", str(config), "--json").json()
    assert (entry["state"], entry["ticket"]) == ("applied", "ggus:40637")
    assert os.listdir(tmp_path / "mail" / "ggus" / "new") == []  # acknowledged
