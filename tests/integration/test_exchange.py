"""The GGUS -> Footprints exchange against the real Footprints emulator, on both databases.

Each test builds the whole exchange (Maildir receiver, store, worker, Footprints
connector) over loopback SMTP and SOAP. Failure injection wraps the real connector.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.support.exchange import T0, Rig, diary, mail, ticket
from ticketbridge.connectors.footprints import FootprintsConnector
from ticketbridge.errors import RemoteUnavailable
from ticketbridge.model import (
    CreateTicket,
    Operation,
    Receipt,
    Visibility,
)
from ticketbridge.sandbox.footprints import FootprintsSandbox
from ticketbridge.store import Store


@pytest.fixture
def fp():
    with FootprintsSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def rig(tmp_path, store_url, fp):
    r = Rig(tmp_path, store_url, fp)
    yield r
    r.close()


def entries(issue, internal=None):
    return [d for d in issue.descriptions if internal is None or d.internal == internal]


def test_new_then_update_land_on_the_same_ticket(rig):
    rig.deliver(mail(ticket(), 1))
    (issue,) = rig.fp.tickets()
    assert issue.title == "CE rejects pilots"
    assert issue.status == "Engineering" and issue.priority == 4
    assert issue.field("Originating Ticket Number") == "40637"
    rig.deliver(
        mail(
            ticket(
                status="solved",
                priority="urgent",
                minutes=5,
                comments=[diary("Fixed the CRL", "solution")],
            ),
            2,
        )
    )
    (issue,) = rig.fp.tickets()
    assert issue.status == "Closed" and issue.priority == 3
    assert any("Fixed the CRL" in d.data for d in entries(issue, internal=False))
    link = rig.app.store.find_link("ggus-goc", "ggus", "40637")
    assert link.b_id == str(issue.mrid) and link.state == "active"
    assert rig.states() == ["applied", "applied"]


def test_same_snapshot_again_is_skipped_and_writes_nothing(rig):
    rig.deliver(mail(ticket(comments=[diary("a")]), 1))
    before = entries(rig.fp.tickets()[0])
    rig.deliver(mail(replace(ticket(comments=[diary("a")]), modified=T0 + timedelta(minutes=1)), 2))
    assert entries(rig.fp.tickets()[0]) == before
    assert rig.states() == ["applied", "skipped"]


def test_internal_diary_becomes_an_internal_entry_only(rig):
    rig.deliver(mail(ticket(), 1))
    secret = diary("admin phone 555", "internal diary", Visibility.INTERNAL)
    rig.deliver(mail(ticket(minutes=3, comments=[secret]), 2))
    (issue,) = rig.fp.tickets()
    assert any("admin phone 555" in d.data for d in entries(issue, internal=True))
    assert not any("admin phone 555" in d.data for d in entries(issue, internal=False))
    assert "admin phone 555" not in issue.title


def test_stale_snapshot_does_not_regress_status(rig):
    rig.deliver(mail(ticket(status="solved", minutes=30), 1))
    rig.deliver(mail(ticket(status="assigned", minutes=10, comments=[diary("late note")]), 2))
    (issue,) = rig.fp.tickets()
    assert issue.status == "Closed"
    assert any("late note" in d.data for d in issue.descriptions)


def test_lost_link_never_creates_a_second_ticket(tmp_path, store_url, fp):
    first = Rig(tmp_path / "a", store_url, fp)
    first.deliver(mail(ticket(comments=[diary("first words")]), 1))
    first.close()
    # A new, empty store: every link is lost. The same ticket updated again...
    second = Rig(tmp_path / "b", f"sqlite:///{tmp_path / 'empty.sqlite3'}", fp)
    try:
        # GGUS mails the same diary again (a status change shows the last entry)...
        second.deliver(
            mail(
                ticket(
                    status="in progress",
                    priority="urgent",
                    minutes=5,
                    comments=[diary("first words")],
                ),
                2,
            )
        )
        # ...and then a new one.
        second.deliver(
            mail(
                ticket(
                    status="in progress",
                    priority="urgent",
                    minutes=6,
                    comments=[diary("second words")],
                ),
                3,
            )
        )
        (issue,) = fp.tickets()  # still exactly one ticket
        assert issue.priority == 3
        texts = [d.data for d in issue.descriptions]
        assert sum("first words" in t for t in texts) == 1  # not copied twice
        assert sum("second words" in t for t in texts) == 1
        assert "adopt" in second.app.store.list_inbox()[1].reason
    finally:
        second.close()


class CrashAfterApply:
    """The real connector, but the answer is lost right after the remote applied an op."""

    def __init__(self, inner: FootprintsConnector, crashes: int = 1):
        self.inner, self.name, self.crashes = inner, inner.name, crashes

    def apply(self, op: Operation) -> Receipt:
        receipt = self.inner.apply(op)
        if self.crashes:
            self.crashes -= 1
            raise RemoteUnavailable("goc", "timed out after the remote applied the operation")
        return receipt

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_crash_between_create_and_commit_does_not_duplicate(rig):
    rig.app.executor.connectors = {"goc": CrashAfterApply(rig.app.connectors["goc"])}
    rig.maildir.add(mail(ticket(comments=[diary("hello")]), 1))
    rig.app.run_once()
    (job,) = rig.app.store.list_jobs()
    assert job.state == "retrying"
    rig.app.store.requeue(job.id)
    rig.app.worker.run_once()
    (issue,) = rig.fp.tickets()
    assert sum("hello" in d.data for d in issue.descriptions) == 1
    assert rig.app.store.find_link("ggus-goc", "ggus", "40637").b_id == str(issue.mrid)


def test_crash_after_update_mail_resends_the_same_message_once(rig):
    rig.deliver(mail(ticket(), 1))
    rig.app.executor.connectors = {"goc": CrashAfterApply(rig.app.connectors["goc"])}
    rig.maildir.add(mail(ticket(minutes=4, comments=[diary("only once")]), 2))
    rig.app.run_once()
    rig.app.store.requeue_dead()
    for job in rig.app.store.list_jobs(states=["retrying"]):
        rig.app.store.requeue(job.id)
    rig.app.worker.run_once()
    (issue,) = rig.fp.tickets()
    assert sum("only once" in d.data for d in issue.descriptions) == 1
    assert rig.states()[-1] == "applied"


class SwallowCreate:
    """A mail interface that accepts the create but never makes the ticket."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def apply(self, op):
        if isinstance(op, CreateTicket):
            return Receipt(ticket_id=None, detail="accepted, no id")
        return self.inner.apply(op)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_pending_create_waits_and_never_creates_twice(rig):
    rig.app.executor.connectors = {"goc": SwallowCreate(rig.app.connectors["goc"])}
    rig.deliver(mail(ticket(), 1))
    assert rig.fp.tickets() == []
    link = rig.app.store.find_link("ggus-goc", "ggus", "40637")
    assert link.state == "pending" and link.b_id is None
    rig.deliver(mail(ticket(minutes=5, status="in progress"), 2))
    assert rig.fp.tickets() == []  # no second create
    (waiting,) = rig.app.store.list_jobs(states=["retrying"])
    assert "has not appeared yet" in waiting.last_error


def test_pending_create_past_grace_becomes_a_dead_letter_with_reason(tmp_path, store_url, fp):
    r = Rig(tmp_path, store_url, fp, grace=0)
    try:
        r.app.executor.connectors = {"goc": SwallowCreate(r.app.connectors["goc"])}
        r.deliver(mail(ticket(), 1))
        r.deliver(mail(ticket(minutes=5), 2))
        (dead,) = r.app.store.list_jobs(states=["dead"])
        assert "never appeared" in dead.last_error
        assert fp.tickets() == []
    finally:
        r.close()


def test_ticket_that_originated_at_home_links_to_the_home_ticket(rig):
    # The home ticket exists in Footprints (created directly there by an operator).
    home = rig.app.connectors["goc"]
    home.apply(CreateTicket("goc", "", "CE down at MWT2", "Gatekeeper is down.", {}))
    (issue,) = rig.fp.tickets()
    echo = ticket(
        "91234",
        title=f"CE down at MWT2 ISSUE={issue.mrid} PROJ=71",
        GHD_Origin_ID=str(issue.mrid),
        GHD_Name="Open Science Grid FootPrints",
        comments=[diary("GGUS supporter: please check")],
    )
    rig.deliver(mail(echo, 1))
    (issue,) = rig.fp.tickets()  # no new ticket
    assert issue.title == "CE down at MWT2"
    assert any("please check" in d.data for d in issue.descriptions)
    link = rig.app.store.find_link("ggus-goc", "ggus", "91234")
    assert link.b_id == str(issue.mrid)
    assert "originated at home" in rig.app.store.list_inbox()[0].reason


def test_footprints_down_retries_then_applies_when_back(tmp_path, store_url):
    fp = FootprintsSandbox().start()
    ports = fp.smtp_port, fp.http_port
    r = Rig(tmp_path, store_url, fp)
    try:
        fp.stop()
        r.deliver(mail(ticket(), 1))
        (job,) = r.app.store.list_jobs()
        assert job.state == "retrying"
        assert "goc" in job.last_error
        assert r.states() == ["received"]
        fp2 = FootprintsSandbox(smtp_port=ports[0], http_port=ports[1]).start()
        try:
            r.app.store.requeue(job.id)
            r.app.run_once()
            assert r.states() == ["applied"]
            assert len(fp2.tickets()) == 1
        finally:
            fp2.stop()
    finally:
        r.close()


def test_timeline_shows_trigger_decision_operation_receipt(rig):
    rig.deliver(mail(ticket(), 1))
    kinds = [e.kind for e in rig.app.store.timeline("ggus", "40637")]
    for kind in ("trigger", "snapshot", "decision", "operation", "receipt"):
        assert kind in kinds
    assert kinds.index("trigger") < kinds.index("decision") < kinds.index("operation")


def test_store_survives_restart_with_links(tmp_path, store_url, fp):
    r = Rig(tmp_path, store_url, fp)
    r.deliver(mail(ticket(), 1))
    r.close()
    r2 = Rig(tmp_path, store_url, fp)
    try:
        r2.deliver(mail(ticket(minutes=3, priority="urgent"), 2))
        assert len(fp.tickets()) == 1 and fp.tickets()[0].priority == 3
        assert isinstance(r2.app.store, Store)
    finally:
        r2.close()


def test_lost_link_with_nothing_new_is_recorded_without_writing(tmp_path, store_url, fp):
    first = Rig(tmp_path / "a", store_url, fp)
    first.deliver(mail(ticket(comments=[diary("hello")]), 1))
    first.close()
    second = Rig(tmp_path / "b", f"sqlite:///{tmp_path / 'empty.sqlite3'}", fp)
    try:
        before = fp.tickets()[0].descriptions
        second.deliver(mail(ticket(minutes=2, comments=[diary("hello")]), 2))
        assert second.states() == ["skipped"]
        assert fp.tickets()[0].descriptions == before
        link = second.app.store.find_link("ggus-goc", "ggus", "40637")
        assert link.state == "active" and link.b_id == str(fp.tickets()[0].mrid)
        assert second.app.store.copied_keys(link.id, "ab", "comment") == {diary("hello").key}
    finally:
        second.close()
