"""The configuration loader: the example validates, every problem is reported at once with
its ``file:line (dotted.path)``, YAML 1.2 rules, and paths relative to the file's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbridge.config import Settings, load_config, parse_config
from ticketbridge.connectors.footprints import FootprintsSettings
from ticketbridge.connectors.ggus.settings import GgusMailSettings
from ticketbridge.errors import ConfigError, Problem
from ticketbridge.runtime.receivers.settings import ImapSettings, MaildirSettings, MboxSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "osg-ggus.yaml"

GOOD = """\
database: sqlite:///ticketbridge.sqlite3
helpdesks:
  ggus: {kind: ggus-mail}
  goc:
    kind: footprints-mail
    incoming_address: fp-incoming@goc.example.org
    sender: osg-tx@goc.example.org
    soap_url: https://fp.goc.example.org/MRcgi/MRWebServices.pl
    user: goctx
    password: secret
receivers:
  ggus-mail:
    helpdesk: ggus
    mailbox: {kind: maildir, path: mail/ggus}
exchanges:
  ggus-goc: {source: ggus, target: goc}
"""


def problems_of(text: str, tmp_path: Path, name: str = "ticketbridge.yaml") -> list[Problem]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def where(problems: list[Problem]) -> list[tuple[int | None, str | None]]:
    return [(p.line, p.path) for p in problems]


# --- the example --------------------------------------------------------------------------


def test_the_example_validates() -> None:
    settings = load_config(EXAMPLE)
    assert set(settings.helpdesks) == {"ggus", "goc"}
    assert isinstance(settings.helpdesks["ggus"], GgusMailSettings)
    goc = settings.helpdesks["goc"]
    assert isinstance(goc, FootprintsSettings)
    assert goc.project == 71 and goc.incoming_address == "fp-incoming@goc.example.org"
    assert goc.password.get_secret_value() == "change-me"
    mailbox = settings.receivers["ggus-notifications"].mailbox
    assert isinstance(mailbox, ImapSettings)
    assert (mailbox.port, mailbox.tls, mailbox.move_to, mailbox.idle) == (
        993,
        "ssl",
        "Processed",
        True,
    )
    exchange = settings.exchanges["ggus-goc"]
    assert (exchange.source, exchange.target) == ("ggus", "goc")
    assert exchange.assignees == ["TX_FP71_GGUS2", "OSG GOC Support Team"]
    assert settings.worker.max_attempts == 8
    # The relative SQLite file lives next to the example, wherever the command runs.
    assert settings.database_url() == f"sqlite:///{EXAMPLE.parent / 'ticketbridge.sqlite3'}"


def test_an_empty_file_is_the_defaults() -> None:
    settings = parse_config("# nothing yet\n")
    assert settings == Settings()
    assert settings.database == "sqlite:///ticketbridge.sqlite3"
    assert (settings.helpdesks, settings.receivers, settings.exchanges) == ({}, {}, {})


# --- every problem at once ----------------------------------------------------------------

EVERYTHING_WRONG = """\
database: mysql://tb@db.example.org/tb
helpdesks:
  ggus:
    kind: ggus-mail
    max_mesage_bytes: 1000
  goc:
    kind: footprints-mail
    incoming_address: fp-incoming@goc.example.org
    sender: osg-tx@goc.example.org
    smtp_port: twenty-five
    soap_url: https://fp.goc.example.org/MRcgi/MRWebServices.pl
    user: goctx
    password: secret
  rt:
    kind: request-tracker
receivers:
  ggus-notifications:
    helpdesk: gus
    mailbox:
      kind: maildir
      path: mail/ggus
      poll_interval: often
exchanges:
  ggus-goc:
    source: ggus
    target: footprint
  goc-ggus:
    source: goc
    target: ggus
worker:
  max_attempts: 0
"""


def test_every_problem_is_reported_at_once_with_line_and_path(tmp_path: Path) -> None:
    problems = problems_of(EVERYTHING_WRONG, tmp_path)
    assert where(problems) == [
        (1, "database"),  # a bad database URL
        (5, "helpdesks.ggus.max_mesage_bytes"),  # a misspelt key
        (10, "helpdesks.goc.smtp_port"),  # a wrong type
        (15, "helpdesks.rt.kind"),  # an unknown kind
        (18, "receivers.ggus-notifications.helpdesk"),  # an unknown helpdesk (receiver)
        (22, "receivers.ggus-notifications.mailbox.poll_interval"),  # a wrong type, nested
        (26, "exchanges.ggus-goc.target"),  # an unknown helpdesk (exchange)
        (27, "exchanges.goc-ggus"),  # an unsupported pair
        (31, "worker.max_attempts"),  # out of range
    ]
    messages = [p.message for p in problems]
    assert "mysql://tb@db.example.org/tb" in messages[0]
    assert "sqlite:///" in messages[0] and "postgresql://" in messages[0]
    assert "unknown key" in messages[1]
    assert "integer" in messages[2]
    assert "'request-tracker'" in messages[3] and "'footprints-mail'" in messages[3]
    assert "unknown helpdesk 'gus'" in messages[4] and "ggus, goc, rt" in messages[4]
    assert "number" in messages[5]
    assert "unknown helpdesk 'footprint'" in messages[6]
    assert "footprints-mail to ggus-mail" in messages[7]
    assert "ggus-mail -> footprints-mail" in messages[7]
    assert "greater than or equal to 1" in messages[8]
    path = str(tmp_path / "ticketbridge.yaml")
    assert all(p.file == path for p in problems)
    # As printed by check-config: file:line (dotted.path): message
    assert str(problems[4]) == (
        f"{path}:18 (receivers.ggus-notifications.helpdesk): "
        "unknown helpdesk 'gus' (helpdesks: ggus, goc, rt)"
    )


def test_missing_required_keys_are_named_at_their_section(tmp_path: Path) -> None:
    text = """\
helpdesks:
  goc:
    kind: footprints-mail
    incoming_address: fp-incoming@goc.example.org
    user: goctx
receivers:
  in:
    mailbox: {kind: maildir, path: mail}
"""
    problems = problems_of(text, tmp_path)
    assert where(problems) == [
        (2, "helpdesks.goc.sender"),
        (2, "helpdesks.goc.soap_url"),
        (2, "helpdesks.goc.password"),
        (7, "receivers.in.helpdesk"),
    ]
    assert {p.message for p in problems} == {"required key is missing"}


def test_a_section_without_kind_says_so(tmp_path: Path) -> None:
    text = "helpdesks:\n  ggus:\n    ticket_url: x\n"
    (problem,) = problems_of(text, tmp_path)
    assert (problem.line, problem.path) == (2, "helpdesks.ggus.kind")
    assert "missing" in problem.message


def test_a_helpdesk_can_be_the_source_of_one_exchange(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  ggus-goc: {source: ggus, target: goc}\n",
        "  ggus-goc: {source: ggus, target: goc}\n  ggus-goc-2: {source: ggus, target: goc}\n",
    )
    (problem,) = problems_of(text, tmp_path)
    assert (problem.line, problem.path) == (17, "exchanges.ggus-goc-2.source")
    assert "already the source of exchange 'ggus-goc'" in problem.message


def test_schema_and_cross_reference_problems_come_together(tmp_path: Path) -> None:
    """A cross-reference problem is not hidden behind a schema problem elsewhere."""
    text = GOOD.replace("helpdesk: ggus", "helpdesk: nobody").replace(
        "user: goctx", "user: goctx\n    colour: blue"
    )
    problems = problems_of(text, tmp_path)
    assert where(problems) == [(10, "helpdesks.goc.colour"), (14, "receivers.ggus-mail.helpdesk")]


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("mysql://tb@db/tb", "must be a sqlite:/// or postgresql:// URL"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("postgresql://tb@db.example.org:port/tb", "not a database URL"),
        ("postgresql:nothing", "not a database URL"),
    ],
)
def test_a_bad_database_url_is_refused(tmp_path: Path, database: str, expected: str) -> None:
    (problem,) = problems_of(f'# the store\ndatabase: "{database}"\n', tmp_path)
    assert (problem.line, problem.path) == (2, "database")
    assert expected in problem.message


@pytest.mark.parametrize(
    "database",
    [
        "sqlite:///relative.sqlite3",
        "sqlite:////var/lib/ticketbridge/tb.sqlite3",
        "postgresql://ticketbridge@db.example.org/ticketbridge",
        "postgresql+psycopg://ticketbridge@db.example.org:5433/ticketbridge",
    ],
)
def test_good_database_urls_are_accepted(database: str) -> None:
    assert parse_config(f"database: {database}\n").database == database


def test_base_dir_cannot_be_set_by_the_file(tmp_path: Path) -> None:
    (problem,) = problems_of("database: sqlite:///x.db\nbase_dir: /etc\n", tmp_path)
    assert (problem.line, problem.path, problem.message) == (2, "base_dir", "unknown key")


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems_of("- ggus\n- goc\n", tmp_path)
    assert problem.line == 1
    assert "mapping" in problem.message


def test_an_unreadable_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml")
    (problem,) = caught.value.problems
    assert problem.file == str(tmp_path / "missing.yaml")
    assert "cannot read configuration" in problem.message


# --- YAML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("helpdesks:\n  ggus: {kind: ggus-mail\nreceivers: {}\n", 3, "expected ',' or '}'"),
        ("database: sqlite:///a.db\nworker: {}\ndatabase: sqlite:///b.db\n", 3, "duplicate key"),
        ("helpdesks:\n  ggus:\n\tkind: ggus-mail\n", 3, "'\\t'"),
        ("exchanges:\n  a: [ggus, goc\n", 3, "expected ',' or ']'"),
    ],
    ids=["unclosed-flow-mapping", "duplicate-key", "tab-indent", "unclosed-flow-sequence"],
)
def test_invalid_yaml_is_one_problem_with_its_line(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    (problem,) = problems_of(text, tmp_path, "broken.yaml")
    assert problem.file == str(tmp_path / "broken.yaml")
    assert problem.line == line
    assert problem.message.startswith("not valid YAML: ")
    assert expected in problem.message
    assert "\n" not in str(problem)  # one line each, as check-config prints them


def test_yaml_1_2_no_and_on_stay_strings() -> None:
    text = GOOD.replace("password: secret", "password: no").replace(
        "  ggus-goc: {source: ggus, target: goc}",
        "  ggus-goc:\n    source: ggus\n    target: goc\n    next_action: on\n"
        "    ticket_type: off\n    assignees: [yes, no, y, n]",
    )
    settings = parse_config(text)
    goc = settings.helpdesks["goc"]
    assert isinstance(goc, FootprintsSettings)
    assert goc.password.get_secret_value() == "no"
    exchange = settings.exchanges["ggus-goc"]
    assert exchange.next_action == "on"
    assert exchange.ticket_type == "off"
    assert exchange.assignees == ["yes", "no", "y", "n"]


def test_yaml_1_2_true_and_false_are_booleans() -> None:
    text = "receivers:\n  r: {helpdesk: h, mailbox: {kind: mbox, path: m, delete_after: true}}\n"
    with pytest.raises(ConfigError):  # helpdesk h is unknown, but the schema accepted it
        parse_config(text)
    text = "helpdesks: {h: {kind: ggus-mail}}\n" + text
    mailbox = parse_config(text).receivers["r"].mailbox
    assert isinstance(mailbox, MboxSettings) and mailbox.delete_after is True


# --- relative paths -----------------------------------------------------------------------


def test_relative_paths_are_resolved_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "ticketbridge"
    folder.mkdir(parents=True)
    (folder / "ticketbridge.yaml").write_text(
        GOOD.replace("sqlite:///ticketbridge.sqlite3", "sqlite:///state/tb.sqlite3"),
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_config(Path("..") / "etc" / "ticketbridge" / "ticketbridge.yaml")
    assert settings.database_url() == f"sqlite:///{folder / 'state' / 'tb.sqlite3'}"
    mailbox = settings.resolve_paths(settings.receivers["ggus-mail"].mailbox)
    assert isinstance(mailbox, MaildirSettings)
    assert mailbox.path == folder / "mail" / "ggus"


def test_absolute_paths_and_server_urls_are_kept(tmp_path: Path) -> None:
    text = GOOD.replace(
        "sqlite:///ticketbridge.sqlite3", f"sqlite:///{tmp_path / 'abs.sqlite3'}"
    ).replace("path: mail/ggus", f"path: {tmp_path / 'Maildir'}")
    settings = parse_config(text, base_dir=Path("/somewhere/else"))
    assert settings.database_url() == f"sqlite:///{tmp_path / 'abs.sqlite3'}"
    mailbox = settings.resolve_paths(settings.receivers["ggus-mail"].mailbox)
    assert isinstance(mailbox, MaildirSettings) and mailbox.path == tmp_path / "Maildir"
    pg = parse_config("database: postgresql://tb@db.example.org/tb\n", base_dir=tmp_path)
    assert pg.database_url() == "postgresql://tb@db.example.org/tb"


def test_an_mbox_path_is_resolved_too(tmp_path: Path) -> None:
    text = "helpdesks: {ggus: {kind: ggus-mail}}\nreceivers:\n  r:\n    helpdesk: ggus\n"
    text += "    mailbox: {kind: mbox, path: spool/ggus.mbox}\n"
    settings = parse_config(text, base_dir=tmp_path)
    mailbox = settings.resolve_paths(settings.receivers["r"].mailbox)
    assert isinstance(mailbox, MboxSettings)
    assert mailbox.path == tmp_path / "spool" / "ggus.mbox"
