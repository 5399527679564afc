"""The delivery engine against real databases, the file outbox and a real SMTP sink."""

from __future__ import annotations

import dataclasses
import email
import threading
from collections import Counter
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from launchkit import sequences
from launchkit.db import make_engine
from launchkit.errors import DeliveryError, SendInProgress
from launchkit.models import (
    LaunchSequence,
    Send,
    SendStatus,
    SequenceStatus,
    Subscriber,
    SubscriberTag,
    Suppression,
)
from launchkit.sequences.claims import workspace_send_lock
from launchkit.tokens import Purpose, read_token
from tests.sendkit import (
    CART_CLOSE,
    CART_OPEN,
    FakeClock,
    ledger,
    populate,
    status_counts,
    tune,
)

BEFORE = CART_OPEN - timedelta(days=3)


def run(engine, settings, clock, **options):
    return sequences.send_due(
        engine, settings, clock=clock, sleep=clock.sleep, options=sequences.SendOptions(**options)
    )


def smtp_settings(settings, sink, **kw):
    return tune(settings, email_backend="smtp", smtp_url=sink.url, **kw)


def message_ids(sink) -> Counter:
    return Counter(m["Message-ID"] for m in parsed(sink))


def parsed(sink):
    out = []
    for item in sink.messages:
        raw = getattr(item, "raw", None) or getattr(item, "original_content", None) or item
        if isinstance(raw, str):
            raw = raw.encode()
        out.append(email.message_from_bytes(raw, policy=policy.default))
    return out


# --- file backend: the ledger rules -----------------------------------------------------------


def test_sends_each_due_email_once_and_reruns_send_nothing(settings, engine, sessions):
    settings = tune(settings)
    populate(sessions, settings, 30, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    report = run(engine, settings, clock)
    assert (report.sent, report.due, report.remaining) == (30, 30, 0)
    assert report.later == 30  # the last call is not due yet
    outbox = list(Path(settings.outbox_dir).glob("*.eml"))
    assert len(outbox) == 30
    again = run(engine, settings, clock)
    assert (again.sent, again.due) == (0, 0)
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 30
    rows = [r for r in ledger(sessions) if r.status == SendStatus.SENT]
    assert len({r.message_id for r in rows}) == 30
    assert all(r.sent_at == clock.now for r in rows)


def test_skips_at_send_time(settings, engine, sessions, now):
    settings = tune(settings)
    ids = populate(sessions, settings, 6, now=BEFORE, tags={0: ["buyer"]})
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    with sessions.begin() as session:  # schedule, then things change before the send
        from launchkit.launches import get_launch

        sequences.schedule_launch(session, settings, get_launch(session, "spring"))
        session.execute(
            update(Subscriber).where(Subscriber.id == ids[1]).values(status="unsubscribed")
        )
        session.add(Suppression(email="n00002@example.com", reason="complained", created_at=now))
        session.add(SubscriberTag(subscriber_id=ids[3], tag="buyer"))
    report = run(engine, settings, clock)
    assert report.sent == 4
    assert report.skipped == {"unsubscribed": 1, "suppressed": 1}
    clock.now = CART_CLOSE - timedelta(hours=2)  # the last call (skip_if tag:buyer)
    report = run(engine, settings, clock)
    assert report.skipped == {"skip_if": 2, "unsubscribed": 1, "suppressed": 1}
    assert report.sent == 2
    reasons = Counter(r.reason for r in ledger(sessions) if r.status == SendStatus.SKIPPED)
    assert reasons == {"skip_if": 2, "unsubscribed": 2, "suppressed": 2}


def test_stale_and_deadline(settings, engine, sessions):
    settings = tune(settings, max_delay=timedelta(hours=12))
    populate(sessions, settings, 3, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(hours=13))  # cart-open email 13 h late: stale
    report = run(engine, settings, clock)
    assert report.skipped == {"stale": 3}
    settings = tune(settings, max_delay=timedelta(days=30))
    clock.now = CART_CLOSE + timedelta(minutes=1)  # "cart_close -3h": never after the close
    report = run(engine, settings, clock)
    assert report.skipped == {"deadline": 3}
    assert status_counts(sessions) == {"skipped": 6}


def test_dry_run_renders_and_changes_nothing(settings, engine, sessions):
    settings = tune(settings)
    populate(sessions, settings, 5, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    report = run(engine, settings, clock, dry_run=True)
    assert (report.sent, report.due, report.dry_run) == (5, 5, True)
    assert ledger(sessions) == []  # not even materialized
    assert list(Path(settings.outbox_dir).glob("*.eml")) == []


def test_limit(settings, engine, sessions):
    settings = tune(settings)
    populate(sessions, settings, 10, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    assert run(engine, settings, clock, limit=4).sent == 4
    assert run(engine, settings, clock, limit=4).sent == 4
    assert run(engine, settings, clock).sent == 2


def test_refuses_to_start_without_postal_address_or_unsubscribe_link(settings, engine, sessions):
    settings = tune(settings)
    populate(sessions, settings, 2, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    with pytest.raises(DeliveryError, match="postal_address is empty"):
        run(engine, dataclasses.replace(settings, postal_address=""), clock)
    page = Path(settings.emails_dir) / "mini" / "01-open.html"
    (Path(settings.emails_dir) / "mini" / "01-open.md").unlink()
    page.write_text(
        '---\nsubject: "Open"\nsend_at: "cart_open +0h"\n---\n'
        "<html><body><p>Hello {{ first_name }}</p></body></html>\n"
    )
    with pytest.raises(DeliveryError, match='Email "mini/01-open" has no unsubscribe link'):
        run(engine, settings, clock)
    assert status_counts(sessions).get("sent", 0) == 0


def test_sqlite_second_sender_is_refused(settings, engine, sessions, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL allows concurrent senders (see test_four_concurrent_senders)")
    settings = tune(settings)
    populate(sessions, settings, 2, now=BEFORE)
    with workspace_send_lock(settings):
        with pytest.raises(
            SendInProgress, match=r"Another `launchkit send` is running .*\(pid \d+\)"
        ):
            run(engine, settings, FakeClock(CART_OPEN + timedelta(minutes=5)))
    assert run(engine, settings, FakeClock(CART_OPEN + timedelta(minutes=5))).sent == 2


def test_rows_left_sending_by_a_dead_sender_are_resent_with_the_same_message_id(
    settings, engine, sessions
):
    settings = tune(settings)
    populate(sessions, settings, 4, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    run(engine, settings, clock, limit=2)
    first = {r.subscriber_id: r.message_id for r in ledger(sessions) if r.message_id}
    with sessions.begin() as session:  # a sender died after its 250 but before the commit
        session.execute(
            update(Send)
            .where(Send.message_id.is_not(None))
            .values(status=SendStatus.SENDING, claimed_by="gone:1:dead:0", claimed_at=clock.now)
        )
    report = run(engine, settings, clock)
    assert report.recovered == 2
    assert report.sent == 4
    again = {r.subscriber_id: r.message_id for r in ledger(sessions) if r.message_id}
    assert {k: again[k] for k in first} == first


def test_rate_limit_per_second_and_per_hour_across_restarts(settings, engine, sessions):
    settings = tune(settings, rate_per_hour=10)
    populate(sessions, settings, 25, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    start = clock.now
    assert run(engine, settings, clock, limit=6, rate_per_second=2).sent == 6
    assert sum(clock.slept) == pytest.approx(2.5)  # 6 messages at 2/s: 5 gaps of 0.5 s
    # restart: only 4 more fit in the rolling hour, the 11th waits for the first to expire
    report = run(engine, settings, clock, limit=5, rate_per_second=2)
    assert report.sent == 5
    sent_at = sorted(r.sent_at for r in ledger(sessions) if r.sent_at)
    assert sent_at[9] - sent_at[0] < timedelta(hours=1)
    assert sent_at[10] - sent_at[0] >= timedelta(hours=1)
    assert sent_at[0] >= start
    for i in range(len(sent_at)):  # never more than 10 in any rolling hour
        window = [t for t in sent_at if sent_at[i] <= t < sent_at[i] + timedelta(hours=1)]
        assert len(window) <= 10


# --- SMTP: real sink --------------------------------------------------------------------------


def test_smtp_messages_headers_parts_and_token(settings, engine, sessions, smtp_sink):
    settings = smtp_settings(settings, smtp_sink)
    populate(sessions, settings, 3, now=BEFORE)
    with sessions.begin() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "n00000@example.com")
            .values(first_name="Zoé 🎉", last_name="Dupont")
        )
    report = run(engine, settings, FakeClock(CART_OPEN + timedelta(minutes=5)))
    assert report.sent == 3
    smtp_sink.wait_for(3)
    messages = {m["To"].addresses[0].addr_spec: m for m in parsed(smtp_sink)}
    zoe = messages["n00000@example.com"]
    assert zoe["To"].addresses[0].display_name == "Zoé 🎉 Dupont"
    assert zoe["Subject"] == "Atelier Photo est ouvert"
    assert zoe["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert zoe["Precedence"] == "bulk"
    html = zoe.get_body(("html",)).get_content()
    text = zoe.get_body(("plain",)).get_content()
    assert "Bonjour Zoé 🎉" in text and "Zoé 🎉" in html
    assert settings.postal_address in text
    unsub = zoe["List-Unsubscribe"]
    url = unsub.split("<", 1)[1].split(">", 1)[0]
    assert url in html and url in text
    payload = read_token(settings, Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1])
    row = next(r for r in ledger(sessions) if r.message_id == zoe["Message-ID"])
    assert payload == {"s": row.subscriber_id, "e": row.email_id}
    assert "mailto:" in unsub


def test_4xx_retried_with_growing_backoff_then_failed(settings, engine, sessions, smtp_sink):
    settings = smtp_settings(settings, smtp_sink, max_attempts=3, max_send_errors=100)
    populate(sessions, settings, 2, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    smtp_sink.fail_next(100, 451)
    delays = []
    for _ in range(3):
        report = run(engine, settings, clock)
        rows = ledger(sessions)
        if rows[0].next_attempt_at and rows[0].status == SendStatus.QUEUED:
            delays.append(rows[0].next_attempt_at - clock.now)
            clock.now = rows[0].next_attempt_at
    assert delays == [timedelta(minutes=1), timedelta(minutes=2)]
    assert status_counts(sessions) == {"failed": 2, "queued": 2}  # + the not-yet-due last call
    assert [r.attempts for r in ledger(sessions) if r.status == SendStatus.FAILED] == [3, 3]
    assert report.failed == 2


def test_4xx_then_recovery_delivers_everything(settings, engine, sessions, smtp_sink):
    settings = smtp_settings(settings, smtp_sink, max_send_errors=100)
    populate(sessions, settings, 20, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    smtp_sink.fail_next(5, 421)
    for _ in range(5):
        run(engine, settings, clock)
        clock.advance(minutes=10)
    assert status_counts(sessions)["sent"] == 20
    ids = message_ids(smtp_sink)
    assert len(ids) == 20 and max(ids.values()) == 1


def test_5xx_bounces_and_suppresses(settings, engine, sessions, smtp_sink):
    settings = smtp_settings(settings, smtp_sink)
    populate(sessions, settings, 5, now=BEFORE)
    smtp_sink.fail_rcpt["n00001@example.com"] = (550, "5.1.1 No such user")
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    report = run(engine, settings, clock)
    assert (report.sent, report.bounced) == (4, 1)
    with sessions.begin() as session:
        assert (
            session.scalar(
                select(Suppression.reason).where(Suppression.email == "n00001@example.com")
            )
            == "bounced"
        )
        assert (
            session.scalar(
                select(Subscriber.status).where(Subscriber.email == "n00001@example.com")
            )
            == "bounced"
        )
    clock.now = CART_CLOSE - timedelta(hours=2)
    report = run(engine, settings, clock)
    assert report.sent == 4
    to = Counter(m["To"].addresses[0].addr_spec for m in parsed(smtp_sink))
    assert "n00001@example.com" not in to
    bounced = [r for r in ledger(sessions) if r.status == SendStatus.BOUNCED]
    assert len(bounced) == 1 and bounced[0].attempts == 1


def test_pauses_after_consecutive_failures_and_resumes_without_duplicates(
    settings, engine, sessions, smtp_sink
):
    settings = smtp_settings(settings, smtp_sink, max_send_errors=5, max_attempts=10)
    populate(sessions, settings, 30, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    run(engine, settings, clock, limit=10)
    smtp_sink.fail_next(5, 451)
    report = run(engine, settings, clock)
    assert report.paused == ["mini"]
    assert report.retried == 5
    with sessions.begin() as session:
        seq = session.scalar(select(LaunchSequence))
        assert (seq.status, seq.consecutive_failures) == (SequenceStatus.PAUSED, 5)
    assert run(engine, settings, clock).sent == 0  # paused: nothing goes out
    with sessions.begin() as session:
        assert sequences.resume_sequences(session, "spring") == ["mini"]
        assert session.scalar(select(LaunchSequence.consecutive_failures)) == 0
    clock.advance(minutes=5)
    run(engine, settings, clock)
    assert status_counts(sessions)["sent"] == 30
    ids = message_ids(smtp_sink)
    assert len(ids) == 30 and max(ids.values()) == 1


def test_four_concurrent_senders_postgresql(settings, sessions, db_url, smtp_sink):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one sender at a time (see test_sqlite_second_sender_is_refused)")
    settings = smtp_settings(settings, smtp_sink)
    populate(sessions, settings, 400, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    engines = [make_engine(db_url) for _ in range(4)]
    barrier = threading.Barrier(4)
    reports = []

    def sender(engine):
        barrier.wait()
        reports.append(run(engine, settings, clock, batch_size=20))

    threads = [threading.Thread(target=sender, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert sum(r.sent for r in reports) == 400
    smtp_sink.wait_for(400)
    ids = message_ids(smtp_sink)
    assert len(ids) == 400 and max(ids.values()) == 1
    assert status_counts(sessions) == {"sent": 400, "queued": 400}
    assert sum(1 for r in reports if r.sent) >= 2  # the work really was shared


def test_in_flight_rows_are_resent_once_then_delivered_unconfirmed(settings, engine, sessions):
    from launchkit.sequences import claims

    settings = tune(settings)
    populate(sessions, settings, 3, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    run(engine, settings, clock, limit=1)
    died_at = clock.now - timedelta(seconds=30)
    with sessions.begin() as session:
        queued = session.scalars(
            select(Send).where(Send.status == SendStatus.QUEUED).order_by(Send.id)
        ).all()
        for row, mark in zip(queued[:2], (claims.IN_FLIGHT, claims.IN_FLIGHT_AGAIN), strict=True):
            row.status, row.reason = SendStatus.SENDING, mark
            row.claimed_by, row.claimed_at = "gone:1:dead:0", died_at
            row.message_id = f"<m{row.id}@example.com>"
        once, twice = queued[0].id, queued[1].id
    report = run(engine, settings, clock)
    assert report.recovered == 2 and report.sent == 1
    rows = {r.id: r for r in ledger(sessions)}
    assert (rows[once].status, rows[once].reason) == ("sent", None)
    assert rows[once].message_id != f"<m{once}@example.com>"  # recomputed, deterministic
    assert (rows[twice].status, rows[twice].reason) == (
        "delivered_unconfirmed",
        claims.UNCONFIRMED,
    )
    assert rows[twice].sent_at == died_at
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 2  # never a third copy


def test_workers_share_one_run_postgresql(settings, engine, sessions, db_url, smtp_sink):
    if not db_url.startswith("postgresql"):
        pytest.skip("--workers needs PostgreSQL; SQLite runs one worker")
    settings = smtp_settings(settings, smtp_sink)
    populate(sessions, settings, 200, now=BEFORE)
    report = run(engine, settings, FakeClock(CART_OPEN + timedelta(minutes=5)), workers=4,
                 batch_size=10)  # fmt: skip
    assert report.sent == 200
    smtp_sink.wait_for(200)
    ids = message_ids(smtp_sink)
    assert len(ids) == 200 and max(ids.values()) == 1
    assert smtp_sink.connections >= 2
