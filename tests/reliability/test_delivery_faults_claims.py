"""Delivery under faults, part 3 (issue 15, items 1 and 2): claims that live as long as their
owner, and at most two copies of any message whatever the drops.

Real peers only: an aiosmtpd relay (``tests/fixtures/smtp.py``) that answers slowly, or stores
a message and then resets the connection instead of answering 250; both databases through
``db_url``. The clocks are the real one (leases are real seconds) or a fake one moved to each
retry time.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import update

from launchkit import sequences
from launchkit.db import make_engine
from launchkit.errors import SendInProgress
from launchkit.models import Send
from launchkit.sequences import claims
from tests.fixtures.smtp import SmtpSink
from tests.sendkit import CART_OPEN, MINI, FakeClock, ledger, populate, tune, write_sequence

pytestmark = pytest.mark.reliability

SEND_AT = CART_OPEN + timedelta(minutes=5)


def _copies(sink: SmtpSink) -> dict[str, list[str]]:
    """Recipient -> the Message-IDs of every copy the relay stored."""
    out: dict[str, list[str]] = defaultdict(list)
    for message in sink.messages:
        out[message.rcpt_tos[0]].append(message["Message-ID"])
    return out


def _one_email(sessions, settings, count: int) -> None:
    """A launch whose sequence has one email, due at the cart opening, for ``count`` people."""
    write_sequence(settings, "one", {"01-open.md": MINI["01-open.md"]})
    populate(sessions, settings, count, now=CART_OPEN - timedelta(days=3), sequence="one")


def _first_rows(sessions) -> list[Send]:
    rows = ledger(sessions)
    first = min(r.email_id for r in rows)
    return [r for r in rows if r.email_id == first]


class RealClock:
    """Real time, starting at the send moment (leases and heartbeats use real seconds)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self):
        return SEND_AT + timedelta(seconds=time.monotonic() - self.origin)


def _send(engine, settings, clock, **options):
    return sequences.send_due(
        engine, settings, clock=clock, options=sequences.SendOptions(**options)
    )


# --- 1. a slow relay, batches longer than the lease, a second sender mid-run ------------------
def test_slow_relay_and_a_second_sender_mid_run_never_duplicate(
    settings, engine, sessions, db_url, smtp_sink
):
    """Each reply of the relay waits 0.5 s (MAIL, RCPT, end of DATA: ~1.5 s per message);
    batches of 4 take ~6 s against a lease of 2 s; a second sender starts 3 s into the run.

    PostgreSQL: the first sender's heartbeat renews its claims every 0.5 s, so the second
    sender takes none of them (it sends the rows nobody claimed): 0 duplicates, 0 lost.
    Without the heartbeat the second sender requeues the live claims at once. SQLite: the
    second sender is refused by the workspace lock; the first sends everything.
    """
    recipients = 8
    populate(sessions, settings, recipients, now=CART_OPEN - timedelta(days=3))
    smtp_sink.reply_delay = 0.5
    run_settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    lease = timedelta(seconds=2)
    clock = RealClock()
    reports: list[object] = []

    def first() -> None:
        reports.append(_send(engine, run_settings, clock, batch_size=4, lease=lease))

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(3)
    other = make_engine(db_url)
    try:
        if engine.dialect.name == "sqlite":
            with pytest.raises(SendInProgress):
                _send(other, run_settings, clock, batch_size=4, lease=lease)
            second = None
        else:
            second = _send(other, run_settings, clock, batch_size=4, lease=lease)
    finally:
        other.dispose()
    thread.join(120)
    copies = _copies(smtp_sink)
    duplicates = sum(len(ids) - 1 for ids in copies.values())
    rows = _first_rows(sessions)
    print(
        f"\n[{engine.dialect.name}] slow relay (0.5 s per reply), lease 2 s, batches of 4: "
        f"first sender sent {reports[0].sent}, second "  # type: ignore[attr-defined]
        f"{'refused (workspace lock)' if second is None else f'sent {second.sent}'}, "
        f"recovered {0 if second is None else second.recovered}; {len(copies)} distinct, "
        f"{recipients - len(copies)} lost, {duplicates} duplicates"
    )
    assert len(copies) == recipients and duplicates == 0
    assert {r.status for r in rows} == {"sent"}
    if second is not None:
        assert second.recovered == 0  # the live claims were never taken back
        assert second.sent >= 1  # it did send: the rows nobody had claimed
        assert reports[0].lost == 0  # type: ignore[attr-defined]


def test_marks_hold_only_for_the_owner_of_the_row(settings, engine, sessions, smtp_sink):
    """Rows taken over mid-batch (their ``claimed_by`` changed, as a second sender would after
    the owner's lease ran out) are neither pushed nor marked by the first owner."""
    populate(sessions, settings, 6, now=CART_OPEN - timedelta(days=3))
    smtp_sink.reply_delay = 0.3
    run_settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    reports: list[sequences.SendReport] = []
    thread = threading.Thread(
        target=lambda: reports.append(_send(engine, run_settings, RealClock(), batch_size=6))
    )
    thread.start()
    smtp_sink.wait_for(1, timeout=20)
    with sessions.begin() as session:  # another sender takes the rows not sent yet
        taken = session.execute(
            update(Send)
            .where(Send.status == "sending", Send.reason.is_(None))
            .values(claimed_by="other:1:taker:0")
        ).rowcount
    thread.join(60)
    report = reports[0]
    rows = _first_rows(sessions)
    print(
        f"\n[{engine.dialect.name}] {taken} rows taken over mid-batch: first owner sent "
        f"{report.sent}, reported {report.lost} lost, messages at the relay {smtp_sink.count}"
    )
    assert taken >= 1
    assert report.lost >= taken
    assert sum(r.claimed_by == "other:1:taker:0" and r.status == "sending" for r in rows) == taken
    assert smtp_sink.count == report.sent  # nothing pushed for the rows it no longer owned


# --- 2. drops between DATA and 250: at most two copies ----------------------------------------
def _send_until_settled(engine, settings, clock: FakeClock, runs: int = 12) -> list:
    reports = []
    for _ in range(runs):
        reports.append(_send(engine, settings, clock))
        if not reports[-1].later and not reports[-1].remaining:
            break
        clock.advance(hours=2)  # past every retry time
    return reports


def test_relay_that_stores_then_resets_on_half_the_transactions(
    settings, engine, sessions, smtp_sink
):
    """The relay stores each message, then (on a seeded half of the transactions) resets the
    connection instead of answering 250. Each such message is resent once with the same
    Message-ID; if the resend is dropped too the row is ``delivered_unconfirmed``, final."""
    recipients = 60
    _one_email(sessions, settings, recipients)
    rng = random.Random(15_2)
    smtp_sink.store_then_reset = lambda _rcpt: rng.random() < 0.5
    clock = FakeClock(SEND_AT)
    reports = _send_until_settled(engine, tune(settings, email_backend="smtp",
                                               smtp_url=smtp_sink.url), clock)  # fmt: skip
    copies = _copies(smtp_sink)
    rows = _first_rows(sessions)
    statuses = {r.status for r in rows}
    unconfirmed = sum(r.status == "delivered_unconfirmed" for r in rows)
    duplicates = sum(len(ids) - 1 for ids in copies.values())
    print(
        f"\n[{engine.dialect.name}] store-then-reset on half: {recipients} recipients, "
        f"{len(reports)} runs, {smtp_sink.count} messages stored, {len(copies)} distinct, "
        f"0 lost, {duplicates} duplicates, max copies {max(len(v) for v in copies.values())}, "
        f"{unconfirmed} delivered_unconfirmed, statuses {sorted(statuses)}"
    )
    assert len(copies) == recipients  # 0 lost
    assert max(len(ids) for ids in copies.values()) <= 2
    assert all(len(set(ids)) == 1 for ids in copies.values())  # a resend keeps its Message-ID
    assert statuses <= {"sent", "delivered_unconfirmed"}  # every row final, none failed
    assert unconfirmed >= 1 and duplicates >= 1
    assert sum(r.unconfirmed for r in reports) == unconfirmed


def test_relay_that_stores_then_resets_twice_on_the_same_message(
    settings, engine, sessions, smtp_sink
):
    """One recipient's message is stored then dropped every time: two copies, same Message-ID,
    then ``delivered_unconfirmed``, counted by ``send`` and the ledger, never sent again."""
    _one_email(sessions, settings, 3)
    target = "n00001@example.com"
    smtp_sink.store_then_reset = lambda rcpt: rcpt == target
    clock = FakeClock(SEND_AT)
    run_settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    reports = _send_until_settled(engine, run_settings, clock)
    for _ in range(2):  # later runs never try it again
        clock.advance(hours=3)
        reports.append(_send(engine, run_settings, clock))
    copies = _copies(smtp_sink)
    rows = {r.subscriber_id: r for r in _first_rows(sessions)}
    row = next(r for r in rows.values() if r.message_id == copies[target][0])
    with sessions.begin() as session:
        counts = sequences.ledger_counts(session, [row.email_id])[row.email_id]["counts"]
    print(
        f"\n[{engine.dialect.name}] dropped twice: {len(copies[target])} copies to {target} "
        f"(one Message-ID), row {row.status}, attempts {row.attempts}; others 1 copy each"
    )
    assert len(copies[target]) == 2 and len(set(copies[target])) == 1
    assert row.status == "delivered_unconfirmed" and row.attempts == 2
    assert row.reason.startswith(claims.UNCONFIRMED)
    assert all(len(ids) == 1 for rcpt, ids in copies.items() if rcpt != target)
    assert counts == {"sent": 2, "delivered_unconfirmed": 1}
    assert [r.unconfirmed for r in reports] == [0, 1, 0, 0]
    assert "1 delivered unconfirmed" in reports[1].summary()
    assert reports[1].problems() == []  # a final state, not a failure
