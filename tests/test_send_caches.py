"""The per-run shortcuts of the delivery engine keep its results: incremental schedule,
directly built tokens, render caches kept across runs, idempotent file outbox marks."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from launchkit import render, sequences
from launchkit.models import Send, Subscriber, SubscriberTag
from launchkit.sequences import incremental
from launchkit.sequences.fastrender import _value_class
from launchkit.tokens import Purpose, _serializer, make_token, read_token
from tests.test_sequences import _launch, add_subscribers, send_rows, utc, world  # noqa: F401


def _run_schedule(sessions, settings):
    with sessions.begin() as session:
        return sequences.schedule_launch(session, settings, _launch(session), skip_unchanged=True)


def test_incremental_schedule_matches_a_full_one(world, sessions, now):  # noqa: F811
    first = _run_schedule(sessions, world)
    assert first.added == 50
    assert _run_schedule(sessions, world).added == 0  # nothing changed: skipped
    # a late joiner (new row), a confirmed pending subscriber, and a tag change
    with sessions.begin() as session:
        add_subscribers(session, now, [("late@example.com", "Asia/Tokyo", [], "active")])
        add_subscribers(session, now, [("wait@example.com", None, [], "pending")])
    assert _run_schedule(sessions, world).added == 10
    with sessions.begin() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "wait@example.com")
            .values(status="active", updated_at=now + timedelta(minutes=1))
        )
    assert _run_schedule(sessions, world).added == 10
    # someone moves to another timezone: their queued rows move with them
    with sessions.begin() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "ana@example.com")
            .values(timezone="America/New_York", updated_at=now + timedelta(minutes=2))
        )
    moved = _run_schedule(sessions, world)
    assert moved.moved > 0
    with sessions.begin() as session:
        rows = send_rows(session)
        assert rows[("01-prelaunch-1", "ana@example.com")][0] == utc(2026, 11, 24, 14, 0)
        assert session.scalar(select(func.count(Send.id))) == 70
        # a full schedule finds nothing more to do
        full = sequences.schedule_launch(session, world, _launch(session))
        assert (full.added, full.moved) == (0, 0)


def test_incremental_schedule_sees_segment_tags_and_rollbacks(world, sessions, now, settings):  # noqa: F811
    with sessions.begin() as session:
        sequences.attach_sequence(
            session, settings, "spring", "launch-en", now=now, segment="tag:vip"
        )
    assert _run_schedule(sessions, world).added == 50  # nobody is tagged vip yet
    with sessions.begin() as session:
        dan = session.scalar(select(Subscriber.id).where(Subscriber.email == "dan@example.com"))
        session.add(SubscriberTag(subscriber_id=dan, tag="vip"))  # no updated_at change
    assert _run_schedule(sessions, world).added == 10
    # a schedule whose transaction rolled back is not remembered
    with sessions.begin() as session:
        add_subscribers(session, now, [("x@example.com", None, ["vip"], "active")])
    try:
        with sessions.begin() as session:
            sequences.schedule_launch(session, world, _launch(session), skip_unchanged=True)
            raise RuntimeError("preflight refused")
    except RuntimeError:
        pass
    assert _run_schedule(sessions, world).added == 20


def test_decide_forces_a_full_add_now_and_then():
    probe = incremental.Probe({}, (), (1, None), 0, (), (0, 0), (0, 0))
    later = incremental.Probe({}, (), (2, None), 0, (), (0, 0), (0, 0))
    assert incremental.decide(("i", probe, 0), "i", probe).skip
    assert incremental.decide(("i", probe, 0), "i", later).since == probe
    last = ("i", probe, incremental.FULL_EVERY - 1)
    assert incremental.decide(last, "i", later).since is None
    assert incremental.decide(("i", probe, 0), "other", probe) == incremental.Work()


def test_tokens_are_what_itsdangerous_makes(settings):
    for purpose in Purpose:
        for payload in ({"s": 5}, {"s": 123456, "e": 7}, {"t": "é" * 60}):
            for _ in range(3):  # the same second
                ours = make_token(settings, purpose, payload)
                theirs = _serializer(settings, purpose).dumps(payload)
                if ours == theirs:
                    break
            assert ours == theirs
            assert read_token(settings, purpose, ours) == payload


def test_value_classes():
    plain = {"first_name": "Camille", "last_name": "Dupont", "email": "c.d@example.com"}
    extra = {**plain, "email": "jean_dupont@example.com", "last_name": "O'Brien"}
    magnet = {**plain, "magnet_title": "Checklist : réussir son lancement"}
    assert _value_class(plain) == 0
    assert _value_class(extra) == 1
    assert _value_class(magnet) == 1
    assert _value_class({**plain, "first_name": 'Jo "the" <b>'}) is None


def test_shared_environment_is_kept_until_a_template_changes(settings):
    first = render.shared_environment(settings)
    assert render.shared_environment(settings) is first
    base = settings.emails_dir / "base.html"
    if not base.exists():
        base.write_text(
            (render.starter_dir("emails") / "base.html").read_text(encoding="utf-8"),
            encoding="utf-8",
        )
    else:
        base.write_text(base.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert render.shared_environment(settings) is not first
