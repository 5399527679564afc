"""Sequences: send_at parsing, local times, DST, send window, deadlines, ledger scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from launchkit import sequences
from launchkit.errors import AlreadyExists, InputError, InvalidTransition, NotFound
from launchkit.launches import create_launch, update_launch
from launchkit.models import (
    Email,
    Send,
    SendStatus,
    SequenceStatus,
    Subscriber,
    SubscriberTag,
    Suppression,
)
from launchkit.sequences.timing import Window, apply_window, due_time, is_stale, parse_send_at

PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
WINDOW = Window.parse("08:00-21:00")
ALL_DAY = Window.parse("00:00-24:00")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- the send_at grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "milestone", "offset", "days", "clock"),
    [
        ("cart_close -3h", "cart_close", timedelta(hours=-3), 0, None),
        ("cart_open +0h", "cart_open", timedelta(0), 0, None),
        ("cart_close -24h", "cart_close", timedelta(hours=-24), 0, None),
        ("prelaunch_start +2d 09:00", "prelaunch_start", timedelta(0), 2, time(9, 0)),
        ("cart_open +90m", "cart_open", timedelta(minutes=90), 0, None),
        ("signup +1d 7:30", "signup", timedelta(0), 1, time(7, 30)),
    ],
)
def test_parse_send_at(text, milestone, offset, days, clock):
    spec = parse_send_at(text)
    assert (spec.milestone, spec.offset, spec.days, spec.clock) == (milestone, offset, days, clock)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cart_close 3h", 'send_at "cart_close 3h" must look like'),
        ("launch_day +1d", 'send_at milestone "launch_day" must be one of'),
        ("cart_open +1d 25:00", 'send_at time "25:00" is not valid'),
        ("", 'send_at "" must look like'),
    ],
)
def test_parse_send_at_errors_name_the_file(text, message):
    with pytest.raises(InputError) as err:
        parse_send_at(text, where="emails/launch-fr/04-cart-open.md")
    assert str(err.value).startswith("emails/launch-fr/04-cart-open.md: ")
    assert message in str(err.value)


def test_deadline_only_for_negative_cart_close_offsets():
    assert parse_send_at("cart_close -3h").has_deadline
    assert parse_send_at("cart_close -1d 18:00").has_deadline
    assert not parse_send_at("cart_close +12h").has_deadline
    assert not parse_send_at("cart_open -1h").has_deadline


# --- resolving times --------------------------------------------------------------------------


def marks(**kw: datetime) -> dict[str, datetime | None]:
    base = {
        "prelaunch_start": utc(2026, 11, 24, 8, 0),
        "cart_open": utc(2026, 12, 1, 8, 0),
        "cart_close": utc(2026, 12, 8, 22, 59),  # 23:59 Paris
    }
    base.update(kw)
    return base


def resolve(text, ms, *, sub=None, local=False, window=ALL_DAY):
    return due_time(
        parse_send_at(text), ms, workspace_tz=PARIS, subscriber_tz=sub, local=local, window=window
    )


def test_offsets_in_hours_are_elapsed_time():
    assert resolve("cart_close -3h", marks()) == utc(2026, 12, 8, 19, 59)
    assert resolve("cart_open +0h", marks()) == utc(2026, 12, 1, 8, 0)


def test_day_offset_then_wall_clock_time_in_workspace_zone():
    # prelaunch 2026-11-24 09:00 Paris (CET, UTC+1) -> +2d at 09:00 Paris = 08:00 UTC
    assert resolve("prelaunch_start +2d 09:00", marks()) == utc(2026, 11, 26, 8, 0)


def test_dst_spring_forward_paris():
    # Paris moves 02:00 -> 03:00 on 2026-03-29.
    ms = marks(prelaunch_start=utc(2026, 3, 27, 8, 0))
    assert resolve("prelaunch_start +2d 09:00", ms) == utc(2026, 3, 29, 7, 0)  # 09:00 CEST
    assert resolve("prelaunch_start +1d 09:00", ms) == utc(2026, 3, 28, 8, 0)  # 09:00 CET
    # a wall-clock time that does not exist that night moves forward by the gap
    assert resolve("prelaunch_start +2d 02:30", ms) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    # calendar days keep the wall-clock time; hours are elapsed time
    assert resolve("prelaunch_start +2d", ms) == utc(2026, 3, 29, 7, 0)
    assert resolve("prelaunch_start +48h", ms) == utc(2026, 3, 29, 8, 0)


def test_dst_fall_back_paris():
    # Paris moves 03:00 -> 02:00 on 2026-10-25.
    ms = marks(prelaunch_start=utc(2026, 10, 24, 7, 0))  # 09:00 CEST
    assert resolve("prelaunch_start +1d 09:00", ms) == utc(2026, 10, 25, 8, 0)  # 09:00 CET
    assert resolve("prelaunch_start +1d", ms) == utc(2026, 10, 25, 8, 0)
    assert resolve("prelaunch_start +24h", ms) == utc(2026, 10, 25, 7, 0)  # 08:00 CET
    # the repeated hour resolves to its first occurrence (CEST)
    assert resolve("prelaunch_start +1d 02:30", ms) == utc(2026, 10, 25, 0, 30)


def test_local_time_in_three_zones():
    ms = marks()
    text = "prelaunch_start +2d 09:00"
    assert resolve(text, ms, sub=PARIS, local=True) == utc(2026, 11, 26, 8, 0)
    assert resolve(text, ms, sub=NY, local=True) == utc(2026, 11, 26, 14, 0)
    assert resolve(text, ms, sub=TOKYO, local=True) == utc(2026, 11, 26, 0, 0)
    # without local: true every subscriber gets the workspace time
    assert resolve(text, ms, sub=TOKYO, local=False) == utc(2026, 11, 26, 8, 0)


def test_window_moves_quiet_hours_to_next_opening():
    # 22:30 Paris -> next day 08:00 Paris
    assert apply_window(utc(2026, 12, 2, 21, 30), PARIS, WINDOW) == utc(2026, 12, 3, 7, 0)
    # 06:00 Paris -> same day 08:00
    assert apply_window(utc(2026, 12, 2, 5, 0), PARIS, WINDOW) == utc(2026, 12, 2, 7, 0)
    # inside the window: unchanged
    assert apply_window(utc(2026, 12, 2, 12, 0), PARIS, WINDOW) == utc(2026, 12, 2, 12, 0)
    # window in the subscriber's zone: 09:00 Paris is 03:00 in New York -> 08:00 New York
    assert apply_window(utc(2026, 12, 2, 8, 0), NY, WINDOW) == utc(2026, 12, 2, 13, 0)


def test_window_never_pushes_past_the_deadline():
    ms = marks(cart_close=utc(2026, 12, 8, 22, 59))  # 23:59 Paris
    # -3h = 20:59 Paris: inside the window
    assert resolve("cart_close -3h", ms, window=WINDOW) == utc(2026, 12, 8, 19, 59)
    # -1h = 22:59 Paris: quiet hours, next opening is after the close -> last window minute
    assert resolve("cart_close -1h", ms, window=WINDOW) == utc(2026, 12, 8, 19, 59)
    # for a Tokyo subscriber 20:59 Paris is 04:59 in Tokyo: the latest window before the
    # deadline in Tokyo ends at 20:59 Tokyo = 12:59 Paris
    assert resolve("cart_close -3h", ms, sub=TOKYO, window=WINDOW) == utc(2026, 12, 8, 11, 59)
    # not a deadline email: moved to the next morning
    assert resolve("cart_close +1h", ms, window=WINDOW) == utc(2026, 12, 9, 7, 0)


def test_stale():
    due = utc(2026, 12, 1, 8, 0)
    assert not is_stale(due, due + timedelta(hours=12), timedelta(hours=12))
    assert is_stale(due, due + timedelta(hours=12, seconds=1), timedelta(hours=12))


# --- scheduling against a database ------------------------------------------------------------


def add_subscribers(session, now, specs):
    """specs: list of (email, timezone, tags, status)."""
    subs = []
    for email, zone, tags, status in specs:
        sub = Subscriber(
            email=email,
            first_name=email.split("@")[0].title(),
            timezone=zone,
            status=status,
            created_at=now,
            updated_at=now,
        )
        session.add(sub)
        session.flush()
        for tag in tags:
            session.add(SubscriberTag(subscriber_id=sub.id, tag=tag))
        subs.append(sub)
    session.flush()
    return subs


def make_launch(session, now, slug="spring"):
    return create_launch(
        session,
        slug,
        product="Atelier Photo",
        currency="EUR",
        now=now,
        prelaunch_start=utc(2026, 11, 24, 8, 0),
        cart_open=utc(2026, 12, 1, 8, 0),
        cart_close=utc(2026, 12, 8, 22, 59),
    )


@pytest.fixture
def world(settings, sessions, now):
    with sessions.begin() as session:
        make_launch(session, now)
        add_subscribers(
            session,
            now,
            [
                ("ana@example.com", "Europe/Paris", [], "active"),
                ("bob@example.com", "America/New_York", ["fr"], "active"),
                ("chi@example.com", "Asia/Tokyo", ["buyer"], "active"),
                ("dan@example.com", None, [], "active"),
                ("eve@example.com", "Not/AZone", [], "active"),
                ("gone@example.com", None, [], "unsubscribed"),
                ("supp@example.com", None, [], "active"),
            ],
        )
        session.add(Suppression(email="supp@example.com", reason="manual", created_at=now))
        sequences.attach_sequence(session, settings, "spring", "launch-fr", now=now)
    return settings


def send_rows(session):
    query = (
        select(Email.step, Subscriber.email, Send.due_at, Send.status)
        .join(Email, Email.id == Send.email_id)
        .join(Subscriber, Subscriber.id == Send.subscriber_id)
    )
    return {(step, email): (due, status) for step, email, due, status in session.execute(query)}


def test_attach_and_schedule_builds_the_ledger(world, sessions):
    with sessions.begin() as session:
        launch = sequences.launch_sequences(session, _launch(session))[0]
        emails = sequences.sequence_emails(session, launch)
        assert [e.step for e in emails][:2] == ["01-prelaunch-1", "02-prelaunch-2"]
        assert len(emails) == 10
        result = sequences.schedule_launch(session, world, _launch(session))
        assert result.added == 10 * 5  # 5 eligible: not unsubscribed, not suppressed
    with sessions.begin() as session:
        rows = send_rows(session)
        assert {email for _, email in rows} == {
            "ana@example.com",
            "bob@example.com",
            "chi@example.com",
            "dan@example.com",
            "eve@example.com",
        }
        # local: true, 09:00 in each zone; unknown zone -> workspace zone
        first = "01-prelaunch-1"
        assert rows[(first, "ana@example.com")][0] == utc(2026, 11, 24, 8, 0)
        assert rows[(first, "bob@example.com")][0] == utc(2026, 11, 24, 14, 0)
        assert rows[(first, "chi@example.com")][0] == utc(2026, 11, 24, 0, 0)
        assert rows[(first, "dan@example.com")][0] == utc(2026, 11, 24, 8, 0)
        assert rows[(first, "eve@example.com")][0] == utc(2026, 11, 24, 8, 0)
        assert all(status == SendStatus.QUEUED for _, status in rows.values())


def _launch(session):
    from launchkit.launches import get_launch

    return get_launch(session, "spring")


def test_scheduling_is_idempotent_and_adds_late_joiners(world, sessions, now):
    with sessions.begin() as session:
        sequences.schedule_launch(session, world, _launch(session))
    with sessions.begin() as session:
        again = sequences.schedule_launch(session, world, _launch(session))
        assert (again.added, again.moved) == (0, 0)
        add_subscribers(session, now, [("late@example.com", "Asia/Tokyo", [], "active")])
    with sessions.begin() as session:
        late = sequences.schedule_launch(session, world, _launch(session))
        assert late.added == 10
        assert session.scalar(select(func.count(Send.id))) == 60


def test_moving_cart_close_moves_unsent_emails_only(world, sessions, now):
    with sessions.begin() as session:
        sequences.schedule_launch(session, world, _launch(session))
        sent = session.scalars(select(Send).join(Email).where(Email.step == "09-close-3h")).first()
        sent.status = SendStatus.SENT
        sent_due = sent.due_at
    with sessions.begin() as session:
        update_launch(session, "spring", now=now, cart_close=utc(2026, 12, 9, 22, 59), force=True)
        result = sequences.reschedule_launch(session, world, "spring")
        assert result.moved > 0
    with sessions.begin() as session:
        rows = session.execute(
            select(Send.status, Send.due_at, Email.deadline_at)
            .join(Email)
            .where(Email.step == "09-close-3h")
        ).all()
        moved = [due for status, due, _ in rows if status == SendStatus.QUEUED]
        kept = [due for status, due, _ in rows if status == SendStatus.SENT]
        assert kept == [sent_due]
        assert utc(2026, 12, 9, 19, 59) in moved
        assert {deadline for *_, deadline in rows} == {utc(2026, 12, 9, 22, 59)}


def test_segment_on_attach_and_errors(settings, sessions, now):
    with sessions.begin() as session:
        make_launch(session, now)
        add_subscribers(
            session,
            now,
            [("a@example.com", None, ["fr"], "active"), ("b@example.com", None, [], "active")],
        )
        sequences.attach_sequence(
            session, settings, "spring", "launch-fr", now=now, segment="tag:fr"
        )
        with pytest.raises(AlreadyExists, match='Sequence "launch-fr" is already attached'):
            sequences.attach_sequence(session, settings, "spring", "launch-fr", now=now)
        with pytest.raises(NotFound, match="does not exist"):
            sequences.attach_sequence(session, settings, "spring", "nope", now=now)
        with pytest.raises(InputError, match="Segment"):
            sequences.attach_sequence(
                session, settings, "spring", "launch-en", now=now, segment="tag:("
            )
        result = sequences.schedule_launch(session, settings, _launch(session))
        assert result.added == 10


def test_bad_send_at_in_a_file_is_named(settings, sessions, now):
    folder = settings.emails_dir / "broken"
    folder.mkdir()
    (folder / "01-x.md").write_text('---\nsubject: "Hi"\nsend_at: "cart_open plus 1"\n---\nHi\n')
    with sessions.begin() as session:
        make_launch(session, now)
        with pytest.raises(InputError) as err:
            sequences.attach_sequence(session, settings, "spring", "broken", now=now)
    assert str(err.value).startswith(str(folder / "01-x.md") + ": send_at")


def test_status_transitions(world, sessions):
    with sessions.begin() as session:
        seq = sequences.launch_sequences(session, _launch(session))[0]
        sequences.set_status(session, seq, SequenceStatus.PAUSED)
        with pytest.raises(InvalidTransition, match="is paused and cannot become running"):
            sequences.set_status(session, seq, SequenceStatus.RUNNING)
        assert sequences.resume_sequences(session, "spring") == ["launch-fr"]
        assert seq.status == SequenceStatus.ACTIVE
        sequences.set_status(session, seq, SequenceStatus.CANCELLED)
        with pytest.raises(InvalidTransition, match="is cancelled and cannot become active"):
            sequences.set_status(session, seq, SequenceStatus.ACTIVE)
