"""Time-based membership emails sent on a schedule (issue #16): the renewal reminder before a
yearly renewal and the trial-ending email, due from stored facts and sent by ``launchkit send``
and ``launchkit run`` (cron), not only when a Stripe event comes in. Real aiosmtpd server, the
real CLI, SQLite and PostgreSQL."""

from __future__ import annotations

import email.utils
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import select

from launchkit import checkout, mailer
from launchkit.config import load_settings
from launchkit.db import make_engine, make_sessionmaker
from launchkit.memberships import reminders
from launchkit.models import Membership, MembershipEvent, Subscriber
from launchkit.stripe_events import Member
from tests.conftest import Cli
from tests.fixtures.stripe import create_subscriber
from tests.membership_data import create_membership_offer, member_metadata
from tests.test_memberships import m_date

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400


@pytest.fixture
def smtp_env(workspace_env, smtp_sink) -> dict[str, str]:
    return {**workspace_env, "LAUNCHKIT_EMAIL_BACKEND": "smtp", "LAUNCHKIT_SMTP_URL": smtp_sink.url}


def _join(sessions, settings, now, *, interval="year", trial_days=0, language=None) -> Member:
    """A member who paid at ``now`` (or started a trial); no event comes in after that."""
    with sessions.begin() as s:
        offer = create_membership_offer(s, now, trial_days=trial_days)
        subscriber = create_subscriber(s, now)
        if language:
            subscriber.language = language
        meta = member_metadata(s, offer, interval, subscriber.id)
    amount = 2900 if interval == "month" else 29000
    m = Member(meta, "camille@example.fr", amount, "EUR", interval, start=int(now.timestamp()),
               trial_days=trial_days)  # fmt: skip
    events = [m.completed(m.start + 1)]
    events += [m.invoice(1, m.start + 1)] if not trial_days else [m.updated(m.start + 2,
                                                                             status="trialing",
                                                                             period=0)]  # fmt: skip
    _apply(sessions, settings, events, now)
    return m


def _apply(sessions, settings, events, now) -> None:
    for index, event in enumerate(events):
        with sessions.begin() as s:
            checkout.handle_event(s, settings, event, now=now + timedelta(seconds=index))


def _at(m: Member, ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _local(settings, moment: datetime) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


def _send(env, settings, moment: datetime, *args: str):
    result = Cli(env)("send", "--now", _local(settings, moment), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["membership_reminders"]


def _headers(message) -> tuple[str, str, datetime, str]:
    subject = str(make_header(decode_header(message["Subject"])))
    return (
        message["To"],
        subject,
        email.utils.parsedate_to_datetime(message["Date"]),
        (message["Message-ID"]),
    )


@pytest.mark.parametrize("language", ["fr", "en"])
def test_send_reminds_a_yearly_member_once_before_renewal(
    sessions, settings, smtp_env, smtp_sink, now, language
):
    """No webhook in the 14 days before the renewal: ``launchkit send`` reminds the member,
    once, in their language, dated when sent; never before the lead time or after the date."""
    m = _join(sessions, settings, now, language=language)
    renewal = _at(m, m.period_end(1))
    lead = timedelta(days=settings.renewal_reminder_days)
    assert _send(smtp_env, settings, renewal - lead - timedelta(hours=1))["sent"] == 0
    due = renewal - lead + timedelta(hours=1)
    assert _send(smtp_env, settings, due)["sent"] == 1
    [message] = smtp_sink.wait_for(1)
    to, subject, date, message_id = _headers(message)
    assert email.utils.parseaddr(to) == ("Camille", "camille@example.fr")
    expected = {
        "fr": f"Votre adhésion Club photo se renouvelle le {m_date(m.period_end(1))}",
        "en": f"Your Club photo membership renews on {m_date(m.period_end(1), 'en')}",
    }
    assert subject == expected[language]
    assert timedelta(0) <= date - due.replace(second=0) < timedelta(minutes=2)
    key = f"email:reminder:{m.subscription}:{reminders.stamp(renewal)}"
    assert message_id == _message_id(sessions, settings, key)
    after = (due + timedelta(minutes=5), renewal - timedelta(hours=2), renewal + timedelta(hours=1))
    for later in after:
        assert _send(smtp_env, settings, later)["sent"] == 0
    assert smtp_sink.count == 1
    with sessions.begin() as s:
        row = s.scalars(select(MembershipEvent).where(MembershipEvent.key == key)).one()
        assert (row.kind, row.notified_at is not None) == ("email", True)


def test_next_renewal_gets_its_own_reminder_and_webhook_path_does_not_repeat(
    sessions, settings, smtp_env, smtp_sink, now
):
    m = _join(sessions, settings, now)
    renewal = _at(m, m.period_end(1))
    assert _send(smtp_env, settings, renewal - timedelta(days=3))["sent"] == 1
    # a webhook in the window afterwards: the webhook path finds the key taken
    from tests.test_checkout_events import Outbox

    outbox = Outbox()
    with sessions.begin() as s:
        checkout.send_notifications(s, settings, outbox, now=renewal - timedelta(days=2))
    assert [e.subject for e in outbox.sent if "renouvelle" in e.subject] == []
    _apply(sessions, settings, [m.invoice(2, m.period_end(1))], now)
    second = _at(m, m.period_end(2))
    assert _send(smtp_env, settings, second - timedelta(days=1))["sent"] == 1
    assert smtp_sink.count == 2


def test_two_concurrent_sends_send_once(sessions, settings, smtp_env, smtp_sink, now):
    """Two ``launchkit send`` processes at once (cron overlapping itself): one reminder."""
    m = _join(sessions, settings, now)
    due = _at(m, m.period_end(1)) - timedelta(days=10)
    env = {**os.environ, **smtp_env, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "launchkit", "send", "--now", _local(settings, due), "--json"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=120) for p in procs]
    sent = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode == 1:  # SQLite: one send at a time, the other is refused at once
            assert b"SQLite runs one sender at a time" in err, err
            continue
        assert proc.returncode == 0, err
        sent.append(json.loads(out)["membership_reminders"]["sent"])
    assert sum(sent) == 1
    smtp_sink.wait_for(1)
    assert smtp_sink.count == 1


def test_four_concurrent_passes_claim_once(sessions, settings, smtp_env, smtp_sink, now):
    """The claim itself under a race (SQLite's send lock out of the way): four passes started
    together on their own connections, one email."""
    import threading

    m = _join(sessions, settings, now)
    due = _at(m, m.period_end(1)) - timedelta(days=10)
    smtp_settings = load_settings(Path(smtp_env["LAUNCHKIT_HOME"]), env=smtp_env)
    barrier, results = threading.Barrier(4), []

    def one_pass() -> None:
        engine = make_engine(smtp_env["LAUNCHKIT_DATABASE_URL"])
        barrier.wait()
        try:
            results.append(reminders.send_due_reminders(engine, smtp_settings, now=due))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=one_pass) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and sorted(r.sent for r in results) == [0, 0, 0, 1]
    smtp_sink.wait_for(1)
    assert smtp_sink.count == 1


@pytest.mark.parametrize("case", ["cancelled", "monthly"])
def test_no_reminder_after_cancel_at_period_end_nor_for_monthly(
    sessions, settings, smtp_env, smtp_sink, now, case
):
    """Only yearly renewals are announced (the issue: "before a yearly renewal"); a member who
    cancelled at period end is not renewed, so there is nothing to announce."""
    m = _join(sessions, settings, now, interval="month" if case == "monthly" else "year")
    if case == "cancelled":
        _apply(sessions, settings, [m.updated(m.start + 60, cancel_at_period_end=True)], now)
        with sessions.begin() as s:
            assert s.scalars(select(Membership.status)).one() == "cancelling"
    renewal = _at(m, m.period_end(1))
    for moment in (renewal - timedelta(days=13), renewal - timedelta(days=2)):
        assert _send(smtp_env, settings, moment)["sent"] == 0
    assert smtp_sink.count == 0


@pytest.mark.parametrize("days", [14, 30])
def test_renewal_reminder_days_shifts_the_reminder(
    sessions, workspace_env, smtp_env, smtp_sink, now, days
):
    workspace = Path(workspace_env["LAUNCHKIT_HOME"])
    if days != 14:
        with (workspace / "launchkit.toml").open("a") as fh:
            fh.write(f"\n[memberships]\nrenewal_reminder_days = {days}\n")
    settings = load_settings(workspace, env=smtp_env)
    m = _join(sessions, settings, now)
    renewal = _at(m, m.period_end(1))
    twenty_days_before = renewal - timedelta(days=20)
    assert _send(smtp_env, settings, twenty_days_before)["sent"] == (1 if days == 30 else 0)
    assert _send(smtp_env, settings, renewal - timedelta(days=13))["sent"] == (
        0 if days == 30 else 1
    )
    assert smtp_sink.count == 1


def test_dry_run_lists_without_sending(sessions, settings, smtp_env, smtp_sink, now):
    m = _join(sessions, settings, now)
    due = _at(m, m.period_end(1)) - timedelta(days=5)
    listed = _send(smtp_env, settings, due, "--dry-run")
    assert listed["dry_run"] and listed["sent"] == 0
    assert [(r["email"], r["to"]) for r in listed["reminders"]] == [
        ("renewal-reminder", "camille@example.fr")
    ]
    result = Cli(smtp_env)("send", "--now", _local(settings, due), "--dry-run")
    assert "membership reminders: would send 1" in result.stdout
    assert "renewal-reminder to camille@example.fr" in result.stdout
    assert smtp_sink.count == 0
    with sessions.begin() as s:
        emails = select(MembershipEvent).where(MembershipEvent.kind.like("email%"))
        assert s.scalars(emails).all() == []
    assert _send(smtp_env, settings, due)["sent"] == 1


def test_crash_after_claim_is_resent_with_the_same_message_id(
    sessions, settings, smtp_env, smtp_sink, now
):
    """A run that died after its claim committed: nobody sends within the lease (it may still
    be alive), then the next run takes it over and sends once, with the same Message-ID."""
    m = _join(sessions, settings, now)
    due = _at(m, m.period_end(1)) - timedelta(days=5)
    engine = make_engine(smtp_env["LAUNCHKIT_DATABASE_URL"])
    with make_sessionmaker(engine).begin() as s:
        [item] = reminders.due_reminders(s, settings, now=due)
    assert reminders._claim(make_sessionmaker(engine), item, due, 14)  # then the run dies
    engine.dispose()
    assert _send(smtp_env, settings, due + timedelta(minutes=1))["sent"] == 0
    assert _send(smtp_env, settings, due + reminders.LEASE + timedelta(minutes=2))["sent"] == 1
    assert _send(smtp_env, settings, due + timedelta(hours=1))["sent"] == 0
    [message] = smtp_sink.wait_for(1)
    assert message["Message-ID"] == _message_id(sessions, settings, item.key)


def test_smtp_refusal_leaves_it_for_the_next_run(sessions, settings, smtp_env, smtp_sink, now):
    m = _join(sessions, settings, now)
    due = _at(m, m.period_end(1)) - timedelta(days=5)
    smtp_sink.fail_next(1, 451)
    report = _send(smtp_env, settings, due)
    assert (report["sent"], report["failed"]) == (0, 1)
    assert _send(smtp_env, settings, due + timedelta(minutes=1))["sent"] == 1
    assert smtp_sink.count == 1


def test_hard_bounce_suppresses_the_address_like_a_launch_email(
    sessions, settings, smtp_env, smtp_sink, now
):
    """The server answers 550 to the renewal reminder: recorded bounced, never retried, and the
    address goes on the suppression list with the subscriber marked bounced (status history
    at the bounce's time), exactly as a launch email's hard bounce does."""
    from launchkit.audience import is_suppressed
    from launchkit.models import (
        SubscriberStatus,
        SubscriberStatusChange,
        Suppression,
        SuppressionReason,
    )

    m = _join(sessions, settings, now)
    renewal = _at(m, m.period_end(1))
    due = renewal - timedelta(days=5)
    smtp_sink.fail_rcpt["camille@example.fr"] = (550, "5.1.1 No such user")
    report = _send(smtp_env, settings, due)
    assert (report["sent"], report["failed"]) == (0, 1)
    assert smtp_sink.count == 0
    key = f"email:reminder:{m.subscription}:{reminders.stamp(renewal)}"
    with sessions.begin() as s:
        row = s.scalars(select(MembershipEvent).where(MembershipEvent.key == key)).one()
        assert (row.kind, row.notified_at) == (reminders.BOUNCED, None)
        suppression = s.scalars(select(Suppression)).one()
        assert (suppression.email, suppression.reason) == (
            "camille@example.fr", SuppressionReason.BOUNCED,
        )  # fmt: skip
        assert "550" in (suppression.detail or "")
        subscriber = s.scalars(select(Subscriber)).one()
        assert subscriber.status == SubscriberStatus.BOUNCED
        change = s.scalars(
            select(SubscriberStatusChange).where(
                SubscriberStatusChange.subscriber_id == subscriber.id,
                SubscriberStatusChange.status == SubscriberStatus.BOUNCED,
            )
        ).one()
        at = change.changed_at
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        assert timedelta(0) <= at - due.replace(second=0, microsecond=0) < timedelta(minutes=1)
        assert is_suppressed(s, "camille@example.fr")
    smtp_sink.fail_rcpt.clear()
    assert _send(smtp_env, settings, due + reminders.LEASE + timedelta(minutes=2))["sent"] == 0
    assert smtp_sink.count == 0


def test_trial_ending_without_stripe_event(sessions, settings, smtp_env, smtp_sink, now):
    """Stripe's ``trial_will_end`` never came: the trial-ending email goes 3 days before, once;
    the event arriving afterwards sends nothing more."""
    m = _join(sessions, settings, now, trial_days=7)
    trial_end = _at(m, m.start + 7 * DAY)
    assert _send(smtp_env, settings, trial_end - timedelta(days=4))["sent"] == 0
    assert _send(smtp_env, settings, trial_end - timedelta(days=2))["sent"] == 1
    [message] = smtp_sink.wait_for(1)
    subject = _headers(message)[1]
    assert subject == f"Votre essai Club photo se termine le {m_date(m.start + 7 * DAY)}"
    from tests.test_checkout_events import Outbox

    outbox = Outbox()
    with sessions.begin() as s:
        checkout.handle_event(s, settings, m.trial_will_end(m.start + 5 * DAY), now=now,
                              messenger=outbox)  # fmt: skip
    assert [e.subject for e in outbox.sent if "essai" in e.subject] == []
    assert _send(smtp_env, settings, trial_end - timedelta(days=1))["sent"] == 0
    assert smtp_sink.count == 1


def test_run_tick_sends_due_reminders_long_after_the_launch(
    sessions, settings, smtp_env, smtp_sink, now
):
    """``launchkit run --tick`` (the cron line of the docs) reminds members on every run, even
    once the launch's own steps are all done a year earlier."""
    from tests.test_orchestrator import make_plan

    make_plan(settings.workspace)
    m = _join(sessions, settings, now)
    due = _at(m, m.period_end(1)) - timedelta(days=7)
    result = Cli(smtp_env)("run", "--dry-run", "--now", _local(settings, due), "--json")
    assert result.exit_code == 0, result.output
    [item] = [i for i in json.loads(result.stdout) if i["step"] == "membership_reminders"]
    assert item["status"] == "dry_run" and len(item["detail"]["reminders"]) == 1
    result = Cli(smtp_env)("run", "--tick", "--now", _local(settings, due))
    assert result.exit_code == 0, result.output
    assert "membership reminders: sent 1" in result.stdout
    result = Cli(smtp_env)("run", "--tick", "--now", _local(settings, due + timedelta(hours=1)))
    assert result.exit_code == 0 and "membership reminders" not in result.stdout
    subjects = [_headers(msg)[1] for msg in smtp_sink.messages]
    assert len([s for s in subjects if "se renouvelle" in s]) == 1


def _message_id(sessions, settings, key: str) -> str:
    """The Message-ID derived from the email's once-only key (RFC 1047: a resend is known)."""
    with sessions.begin() as s:
        subscriber_id = s.scalars(select(Subscriber.id)).one()
    domain = mailer.domain_of(mailer.sender_of(settings))
    return mailer.make_message_id("member-renewal-reminder", key, subscriber_id, domain)
