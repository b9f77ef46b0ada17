"""The GGUS mail corpus end to end: every mail ends as the manifest says, on both databases.

Mails are delivered one by one, in the manifest's order, into a Maildir read by the real
exchange writing to the Footprints emulator. Bad mails are quarantined with a reason that
names the problem while the good mails around them are applied; auto-replies and bounces
are ignored; a re-delivered mail is a no-op; the stale snapshot never regresses status.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.fixtures.ggus.corpus import load_corpus
from tests.support.databases import make_pg_database, make_sqlite_url
from tests.support.exchange import Rig
from ticketbridge.sandbox.footprints import FootprintsSandbox

CORPUS = load_corpus()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def outcomes(request, tmp_path_factory):
    """The corpus run once per database; the tests below each check one property of it."""
    root = tmp_path_factory.mktemp(f"corpus-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = make_sqlite_url(root)
        else:
            url = stack.enter_context(make_pg_database())
        fp = stack.enter_context(FootprintsSandbox())
        rig = Rig(root, url, fp)
        stack.callback(rig.close)
        results = []
        for entry, raw in CORPUS:
            seen = {e.id for e in rig.app.store.list_inbox(limit=1000)}
            rig.deliver(raw)
            fresh = [e for e in rig.app.store.list_inbox(limit=1000) if e.id not in seen]
            results.append((entry, fresh))
        yield rig, fp, results


def test_every_mail_ends_as_the_manifest_says(outcomes):
    _, _, results = outcomes
    assert len(results) >= 30
    for entry, fresh in results:
        label = f"{entry['file']} ({entry['note'] if entry.get('note') else entry['expect']})"
        if entry["expect"] == "duplicate":
            assert fresh == [], f"{label}: a re-delivered mail must be a no-op"
            continue
        (stored,) = fresh
        if entry["expect"] == "applied":
            assert stored.state in ("applied", "skipped"), f"{label}: {stored.reason}"
        else:
            assert stored.state == entry["expect"], f"{label}: {stored.state} {stored.reason}"
            assert entry["reason"].lower() in (stored.reason or "").lower(), label


def test_bad_mails_are_listed_in_quarantine_with_reasons(outcomes):
    rig, _, results = outcomes
    quarantined = rig.app.store.list_quarantine()
    expected = [e for e, _ in results if e["expect"] == "quarantined"]
    assert len(quarantined) == len(expected) >= 10
    assert all(q.reason for q in quarantined)


def test_no_job_is_left_waiting_or_dead(outcomes):
    rig, _, _ = outcomes
    assert rig.app.store.list_jobs(states=["pending", "running", "retrying", "dead"]) == []


def test_one_footprints_ticket_per_ggus_ticket(outcomes):
    _, fp, results = outcomes
    applied = {e["ticket"] for e, _ in results if e["expect"] == "applied"}
    numbers = [t.field("Originating Ticket Number") for t in fp.tickets()]
    assert sorted(numbers) == sorted(applied)


def test_stale_snapshot_left_the_solved_ticket_closed(outcomes):
    _, fp, results = outcomes
    (stale,) = [e for e, _ in results if "stale" in e["file"]]
    (issue,) = fp.find(stale["ticket"])
    assert issue.status == "Closed"


def test_internal_diaries_never_reach_public_entries(outcomes):
    _, fp, _ = outcomes
    for issue in fp.tickets():
        public = "\n".join(d.data for d in issue.descriptions if not d.internal)
        assert "[Internal Diary]" not in public
