"""``ticketbridge demo``, part 2: Footprints -> GGUS and back over both emulators.

Checked twice: from what the command prints and leaves in its directory (as a user sees
it), and from the structured result of :func:`run_two_way` on emulators wired here.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from ticketbridge.cli import main
from ticketbridge.sandbox.demo import (
    REVERSE_AGENT,
    TWO_WAY_GGUS_BOX,
    TWO_WAY_HOME_BOX,
    run_two_way,
    two_way_app,
)
from ticketbridge.sandbox.footprints import FootprintsSandbox
from ticketbridge.sandbox.ggus import DEFAULT_UNITS, GgusSandbox
from ticketbridge.sandbox.relay import MaildirRelay

REPLY = "Please restart the gatekeeper; the CRLs are stale."
SOLUTION = "Restarted the gatekeeper; pilots run again."


def test_demo_prints_and_leaves_the_two_way_exchange(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "demo"
    assert main(["demo", "--directory", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Part 2: Footprints -> GGUS and back" in out
    assert "Two-way: every step as expected." in out
    assert "caused no write" in out

    assert main(["links", "-c", str(root / "two-way.yaml"), "--json"]) == 0
    (link,) = json.loads(capsys.readouterr().out)
    assert link["state"] == "active"
    ggus_id = int(link["source"].removeprefix("ggus:"))
    mrid = int(link["target"].removeprefix("goc:"))

    ggus = GgusSandbox(db_path=root / "ggus.sqlite3")
    fp = FootprintsSandbox(db_path=root / "footprints.sqlite3")
    try:
        ticket = ggus.ticket(ggus_id)
        assert (ticket.status, ticket.responsible_unit) == ("solved", "OSG")
        assert ticket.origin_id == str(mrid)
        assert SOLUTION in ticket.detailed_solution
        # created by us, routed by TPM, the supporter's reply, our resolution: no echo
        assert [(h.channel, h.action) for h in ggus.history(ggus_id)] == [
            ("soap", "created"),
            ("system", "routed"),
            ("supporter", "diary"),
            ("soap", "modified"),
        ]
        home = fp.ticket(mrid)
        assert home.status == "Resolved"  # not overwritten by GGUS' "solved" coming back
        texts = [d.data for d in home.descriptions]
        assert len(texts) == 3  # the agent's two entries and the one reply we copied
        assert sum(REPLY in t for t in texts) == 1
    finally:
        ggus.close()
        fp.close()

    assert main(["show", f"goc:{mrid}", "-c", str(root / "two-way.yaml"), "--json"]) == 0
    summaries = [e["summary"] for e in json.loads(capsys.readouterr().out)["events"]]
    assert any(s.startswith("create on ggus: 'CE down at MWT2'") for s in summaries)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[MaildirRelay, GgusSandbox, FootprintsSandbox]]:
    relay = MaildirRelay(
        {
            DEFAULT_UNITS["TPM"]: tmp_path / TWO_WAY_GGUS_BOX,
            DEFAULT_UNITS["OSG"]: tmp_path / TWO_WAY_GGUS_BOX,
            REVERSE_AGENT: tmp_path / TWO_WAY_HOME_BOX,
        },
        default=tmp_path / "other",
    ).start()
    ggus = GgusSandbox(smarthost=relay.address).start()
    fp = FootprintsSandbox(smarthost=relay.address).start()
    try:
        yield relay, ggus, fp
    finally:
        fp.close()
        ggus.close()
        relay.stop()


def test_each_change_causes_one_write_and_echoes_none(
    world: tuple[MaildirRelay, GgusSandbox, FootprintsSandbox], tmp_path: Path
) -> None:
    relay, ggus, fp = world
    app = two_way_app(tmp_path, ggus, fp)
    try:
        result = run_two_way(Console(file=io.StringIO(), width=200), app, ggus, fp)
    finally:
        app.close()
    assert result.ok
    writes = [(s.ggus_writes, s.home_writes) for s in result.steps]
    assert writes == [(0, 0), (1, 0), (0, 0), (0, 1), (1, 0)]
    # Every notification of our own writes came back and was skipped, not written.
    push, route, reply, resolve = result.steps[1:]
    assert push.triggers[0] == "send: applied"
    assert all("skipped" in t for t in push.triggers[1:] + route.triggers)
    assert reply.triggers[0] == "GGUS notification: applied"
    assert all("skipped" in t for t in reply.triggers[1:])
    assert resolve.triggers[0] == "Footprints notification: applied"
    assert all("skipped" in t for t in resolve.triggers[1:])
    assert len(push.triggers + route.triggers + reply.triggers + resolve.triggers) >= 7
    assert (result.ggus_status, result.ggus_unit, result.home_status) == (
        "solved",
        "OSG",
        "Resolved",
    )
    assert SOLUTION in result.ggus_solution and result.reply_copies == 1
    # The relay filed GGUS' notifications and Footprints' ones where the exchange reads.
    assert relay.delivered[tmp_path / TWO_WAY_GGUS_BOX] >= 4
    assert relay.delivered[tmp_path / TWO_WAY_HOME_BOX] >= 3
