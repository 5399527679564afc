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
from datetime import timedelta
from pathlib import Path

import pytest

from tests.sendkit import CART_OPEN, ledger, populate, status_counts

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
        target = before + rng.randint(1, max(2, recipients // kills_wanted // 2))
        deadline = time.monotonic() + 60
        while smtp_sink.count < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # kill at a random message count of this run
        time.sleep(rng.uniform(0, 0.02))  # anywhere: rendering, claiming, pushing, committing
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
    # each kill can leave at most one commit group (25 messages) in that window
    assert duplicates <= kills * 25
    assert duplicates >= window_kills  # the forced window kills really were resent
