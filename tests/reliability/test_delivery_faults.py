"""Delivery under faults: a real `launchkit send` process killed with SIGKILL, then resumed.

Size scales with ``LAUNCHKIT_TEST_SCALE`` (default 1.0 = 2,000 recipients and 10 kills, 3 of
them forced into the window between the server's 250 and the sender's commit). Full size
(issue 8): ``LAUNCHKIT_TEST_SCALE=5`` = 10,000 recipients, 50 kills.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from launchkit import sequences
from launchkit.db import make_engine
from launchkit.launches import create_launch, get_launch
from launchkit.models import Subscriber
from tests.sendkit import (
    CART_CLOSE,
    CART_OPEN,
    FakeClock,
    ledger,
    populate,
    status_counts,
    tune,
    write_sequence,
)

pytestmark = pytest.mark.reliability

SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1.0"))
ROOT = Path(__file__).resolve().parents[2]


def _message_ids(sink) -> Counter:
    counts: Counter = Counter()
    with sink._lock:
        records = list(sink._records)
    for raw, *_ in records:
        for line in raw.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                counts[line.split(b":", 1)[1].strip().decode()] += 1
                break
            if not line:
                break
    return counts


class Sender:
    """Runs `python -m launchkit send` against the workspace and the sink."""

    def __init__(self, env: dict[str, str], sink):
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHKIT_", "STRIPE_"))},
            **env,
            "LAUNCHKIT_SMTP_URL": sink.url,
            "LAUNCHKIT_EMAIL_BACKEND": "smtp",
        }
        self.now = (CART_OPEN + timedelta(minutes=5)).isoformat()

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "launchkit", "send", "--now", self.now],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


def _kill_in_window(sink, proc: subprocess.Popen, after: int) -> threading.Event:
    """SIGKILL the sender right after the sink stored its ``after``-th message of this run,
    before the 250 reaches it: delivered, never committed (the RFC 1047 window)."""
    done = threading.Event()
    original = sink._store
    seen = [0]

    def store(envelope, session):
        original(envelope, session)
        seen[0] += 1
        if seen[0] == after and not done.is_set():
            os.kill(proc.pid, signal.SIGKILL)
            done.set()
            sink._store = original

    sink._store = store
    return done


def test_sigkill_at_random_points_then_resume_delivers_each_email_once(
    settings, sessions, workspace_env, smtp_sink
):
    recipients = max(200, int(2000 * SCALE))
    kills_wanted = max(10, int(10 * SCALE))
    window_kills_wanted = max(3, kills_wanted // 3)
    populate(sessions, settings, recipients, now=CART_OPEN - timedelta(days=3))
    sender = Sender(workspace_env, smtp_sink)
    rng = random.Random(20261201)
    kills = window_kills = attempts = 0
    while (kills < kills_wanted or window_kills < window_kills_wanted) and attempts < 60:
        attempts += 1
        before = smtp_sink.count
        proc = sender.start()
        if window_kills < window_kills_wanted and attempts % 3 == 0:
            done = _kill_in_window(smtp_sink, proc, after=rng.randint(1, 40))
            proc.wait(timeout=120)
            if done.is_set():
                window_kills += 1
                kills += 1
            continue
        deadline = time.monotonic() + 60
        while smtp_sink.count == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # wait until this run is sending ...
        time.sleep(rng.uniform(0, 0.4))  # ... then kill it at a random moment
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            if smtp_sink.count > before:
                kills += 1
        if proc.returncode == 0:
            break  # finished before the kill: everything was sent
    for _ in range(5):  # resume until nothing is due (a killed PostgreSQL backend may linger)
        proc = sender.start()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        if status_counts(sessions).get("sending", 0) == 0 and b"remaining 0" in out:
            break
        time.sleep(0.5)
    ids = _message_ids(smtp_sink)
    all_rows = ledger(sessions)
    first_email = min(r.email_id for r in all_rows)
    rows = [r for r in all_rows if r.email_id == first_email]
    expected = {r.message_id for r in rows}
    duplicates = sum(n - 1 for n in ids.values())
    print(
        f"\n{recipients} recipients, {kills} kills ({window_kills} in the 250-to-commit window), "
        f"{len(ids)} distinct deliveries, {duplicates} duplicates"
    )
    assert kills >= kills_wanted and window_kills >= window_kills_wanted
    assert all(r.status == "sent" for r in rows)
    assert len(expected) == recipients and None not in expected
    assert set(ids) == expected  # 0 missing, nothing unexpected
    assert max(ids.values()) <= 2  # nobody gets 3 copies
    # a duplicate is the same Message-ID resent after a kill between the 250 and the commit;
    # each kill leaves at most one row in that window
    assert duplicates <= kills
    assert duplicates >= window_kills  # the forced window kills really were resent


def _smtp(settings, sink, **kw):

    return tune(settings, email_backend="smtp", smtp_url=sink.url, **kw)


def test_550_addresses_bounce_once_are_suppressed_and_never_mailed_again(
    settings, engine, sessions, smtp_sink
):

    recipients, refused = max(200, int(1000 * SCALE)), max(40, int(200 * SCALE))
    settings = _smtp(settings, smtp_sink, max_send_errors=10**6)
    populate(sessions, settings, recipients, now=CART_OPEN - timedelta(days=3))
    bad = {f"n{i:05d}@example.com" for i in range(0, recipients, recipients // refused)}
    for address in bad:
        smtp_sink.fail_rcpt[address] = (550, "5.1.1 No such user")
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    run = sequences.send_due
    first = run(engine, settings, clock=clock, sleep=clock.sleep)
    clock.now = CART_CLOSE - timedelta(hours=2)
    second = run(engine, settings, clock=clock, sleep=clock.sleep)
    assert (first.sent, first.bounced) == (recipients - len(bad), len(bad))
    assert second.sent == recipients - len(bad) and second.skipped == {"suppressed": len(bad)}
    bounced = [r for r in ledger(sessions) if r.status == "bounced"]
    assert len(bounced) == len(bad) and {r.attempts for r in bounced} == {1}
    delivered = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert not bad & set(delivered)
    assert set(delivered.values()) == {2}


def test_five_emails_across_dst_with_a_restart_midway(settings, sessions, db_url, smtp_sink):
    """Europe/Paris falls back on 2026-10-25: every email goes out within 60 s of its time."""

    files = {
        f"0{n}-step.md": f'---\nsubject: "Step {n}"\nsend_at: "{when}"\n---\n'
        + "Hello {{ first_name }}\n"
        for n, when in enumerate(
            ["cart_open +0h", "cart_open +1d 09:00", "cart_open +2d 09:00", "cart_open +50h",
             "cart_close -3h"], start=1
        )
    }  # fmt: skip

    write_sequence(settings, "dst", files)
    recipients = max(200, int(1000 * SCALE))
    settings = _smtp(settings, smtp_sink)

    opens = datetime(2026, 10, 24, 7, 0, tzinfo=UTC)  # 09:00 CEST, the day before the change
    with sessions.begin() as session:
        create_launch(
            session, "autumn", product="P", currency="EUR", now=opens - timedelta(days=5),
            cart_open=opens, cart_close=datetime(2026, 10, 28, 20, 0, tzinfo=UTC),
        )  # fmt: skip
        session.execute(
            insert(Subscriber),
            [
                {"email": f"d{i:05d}@example.com", "first_name": "D", "status": "active",
                 "created_at": opens, "updated_at": opens}
                for i in range(recipients)
            ],
        )  # fmt: skip
        sequences.attach_sequence(session, settings, "autumn", "dst", now=opens)
        sequences.schedule_launch(session, settings, get_launch(session, "autumn"))
    due_times = sorted({r.due_at for r in ledger(sessions)})
    # 09:00 CEST on the 24th, 09:00 CET on the 25th and 26th, 50 h after opening, close -3h
    assert [t.strftime("%d %H:%M") for t in due_times] == [
        "24 07:00",
        "25 08:00",
        "26 08:00",
        "26 09:00",
        "28 17:00",
    ]
    engine = make_engine(db_url)
    for index, due in enumerate(due_times):
        if index == 2:  # restart midway: a new process, a new engine
            engine.dispose()
            engine = make_engine(db_url)
        clock = FakeClock(due + timedelta(seconds=30))
        sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep)
    engine.dispose()
    rows = ledger(sessions)
    assert Counter(r.status for r in rows) == {"sent": 5 * recipients}
    assert all(timedelta(0) <= r.sent_at - r.due_at <= timedelta(seconds=60) for r in rows)
    ids = _message_ids(smtp_sink)
    assert len(ids) == 5 * recipients and max(ids.values()) == 1
