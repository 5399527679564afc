"""`send --dry-run` counts exactly what the real run then does, on the same data (#17)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from launchkit import sequences
from launchkit.launches import get_launch
from launchkit.models import Send, SendStatus, Subscriber, SubscriberTag, Suppression
from tests.sendkit import CART_CLOSE, CART_OPEN, FakeClock, populate, status_counts, tune

BEFORE = CART_OPEN - timedelta(days=3)
FIELDS = ("due", "sent", "failed", "skipped", "recovered", "later", "remaining")


def run(engine, settings, clock, **options):
    return sequences.send_due(
        engine, settings, clock=clock, sleep=clock.sleep, options=sequences.SendOptions(**options)
    )


def counts(report) -> dict:
    data = report.as_dict()
    return {key: data[key] for key in FIELDS}


def dry_then_real(engine, settings, sessions, clock, **options):
    before = status_counts(sessions)
    dry = run(engine, settings, clock, dry_run=True, **options)
    assert status_counts(sessions) == before  # the dry run changed nothing
    real = run(engine, settings, clock, **options)
    assert counts(dry) == counts(real)
    return real


def _spoil(sessions, settings, ids, now):
    """Schedule, then unsubscribe one, suppress one, tag one buyer, and leave one row
    ``sending`` as a dead sender would."""
    with sessions.begin() as session:
        sequences.schedule_launch(session, settings, get_launch(session, "spring"))
        session.execute(
            update(Subscriber).where(Subscriber.id == ids[1]).values(status="unsubscribed")
        )
        session.add(Suppression(email="n00002@example.com", reason="complained", created_at=now))
        session.add(SubscriberTag(subscriber_id=ids[3], tag="buyer"))
        session.execute(
            update(Send)
            .where(Send.subscriber_id == ids[4])
            .values(status=SendStatus.SENDING, claimed_by="gone:1:dead:0", claimed_at=now)
        )


def test_dry_run_matches_the_real_run_with_skips_orphans_and_later(settings, engine, sessions):
    settings = tune(settings)
    ids = populate(sessions, settings, 8, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    _spoil(sessions, settings, ids, clock.now)
    real = dry_then_real(engine, settings, sessions, clock)
    assert counts(real) == {
        "due": 8, "sent": 6, "failed": 0, "skipped": {"unsubscribed": 1, "suppressed": 1},
        "recovered": 2, "later": 8, "remaining": 0,
    }  # fmt: skip
    clock.now = CART_CLOSE - timedelta(hours=2)  # the last call, skip_if tag:buyer
    real = dry_then_real(engine, settings, sessions, clock)
    assert real.skipped == {"skip_if": 1, "unsubscribed": 1, "suppressed": 1}
    assert (real.sent, real.later) == (5, 0)


def test_dry_run_matches_with_milestones_in_the_past(settings, engine, sessions):
    """The issue's case: the cart opened long ago; both runs say stale, and the same later."""
    settings = tune(settings, max_delay=timedelta(hours=12))
    populate(sessions, settings, 5, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(days=2))
    real = dry_then_real(engine, settings, sessions, clock)
    assert (real.due, real.sent, real.skipped, real.later) == (5, 0, {"stale": 5}, 5)


def test_dry_run_matches_with_a_limit(settings, engine, sessions):
    settings = tune(settings)
    populate(sessions, settings, 7, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    real = dry_then_real(engine, settings, sessions, clock, limit=3)
    assert (real.due, real.sent, real.remaining) == (7, 3, 4)


@pytest.mark.parametrize("dry", [True, False])
def test_cli_dry_run_summary_matches(cli, workspace_env, dry):
    """Through the CLI: the summary line of the dry run is the real one with "would send"."""
    from tests.sendkit import MINI

    ws = Path(workspace_env["LAUNCHKIT_HOME"])
    folder = ws / "emails" / "mini"
    folder.mkdir()
    for name, text in MINI.items():
        (folder / name).write_text(text, encoding="utf-8")
    assert cli(
        "launch", "create", "spring", "--product", "P", "--cart-open", "2026-12-01 10:00",
        "--cart-close", "2026-12-08 23:59",
    ).exit_code == 0  # fmt: skip
    csv = ws / "people.csv"
    csv.write_text("email\na@example.com\nb@example.com\nc@example.com\n")
    assert cli("audience", "import", str(csv)).exit_code == 0
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    now = "2026-12-03 10:00"  # the cart-open email is two days late: stale
    args = ["send", "--now", now] + (["--dry-run"] if dry else [])
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    verb = "would send" if dry else "sent"
    assert r.stdout.strip().startswith(
        f"{verb} 0, retry later 0, failed 0, bounced 0, skipped stale 3, remaining 0, not yet due 3"
    )
