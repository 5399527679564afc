"""Memberships (issue #16): offers, the Checkout Session adapter, the lifecycle from Stripe's
events (renewals, failures, trial, cancel at period end, plan switch, end), the guarantee,
on SQLite and PostgreSQL through the real ``handle_event``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from launchkit import checkout, memberships
from launchkit.errors import InputError
from launchkit.memberships import membership_entitled
from launchkit.models import Membership, MembershipEvent, Order
from launchkit.stripe_events import Member
from tests.fixtures.stripe import create_subscriber
from tests.membership_data import create_membership_offer, member_metadata

DAY = 86400


def _apply(sessions, settings, events: list[dict], now) -> list[str]:
    outcomes = []
    for index, event in enumerate(events):
        with sessions.begin() as s:
            outcomes.append(
                checkout.handle_event(s, settings, event, now=now + timedelta(seconds=index))
            )
    return outcomes


def _member(sessions, now, interval="month", trial_days=0, **kw: Any) -> Member:
    with sessions.begin() as s:
        offer = create_membership_offer(s, now, trial_days=trial_days, **kw)
        sub = create_subscriber(s, now).id
        meta = member_metadata(s, offer, interval, sub)
    amount = 2900 if interval == "month" else 29000
    t = int(now.timestamp())
    return Member(meta, "camille@example.fr", amount, "EUR", interval, start=t,
                  trial_days=trial_days)  # fmt: skip


def _membership(sessions) -> Membership:
    with sessions.begin() as s:
        m = s.scalars(select(Membership)).one()
        s.expunge(m)
        return m


def test_parse_membership_and_bad_input():
    assert memberships.parse_membership("monthly:29") == ("month", 2900)
    assert memberships.parse_membership("Yearly:290.50") == ("year", 29050)
    for bad in ("weekly:3", "monthly", "monthly:-1", "yearly:abc"):
        with pytest.raises(InputError, match="--membership"):
            memberships.parse_membership(bad)


def test_membership_offer_refuses_duplicates_and_stray_founding(session, now):
    create_membership_offer(session, now)
    with pytest.raises(InputError, match="once"):
        memberships.add_membership_offer(
            session, "club", "other", product="x", currency="EUR",
            prices=[("month", 100), ("month", 200)], now=now,
        )  # fmt: skip
    with pytest.raises(InputError, match="--founding-price yearly"):
        memberships.add_membership_offer(
            session, "club", "third", product="x", currency="EUR", prices=[("month", 100)],
            founding=[("year", 50)], now=now,
        )  # fmt: skip


def test_join_renew_fail_recover_cancel_at_period_end_then_end(sessions, settings, now):
    m = _member(sessions, now)
    t = m.start
    events = [m.completed(t + 1), m.invoice(1, t + 1), m.updated(t + 2)]
    _apply(sessions, settings, events, now)
    got = _membership(sessions)
    assert (got.status, got.interval, got.amount_cents) == ("active", "month", 2900)
    assert got.paid_at.timestamp() == t + 1 and membership_entitled(got)
    assert got.current_period_end.timestamp() == m.period_end(1)
    _apply(sessions, settings, [m.invoice(2, t + 30 * DAY, paid=False)], now)
    assert _membership(sessions).status == "past_due"
    assert membership_entitled(_membership(sessions))  # Stripe still retrying: grace
    _apply(sessions, settings, [m.renewed(2, t + 33 * DAY)], now)
    assert _membership(sessions).status == "active"
    cancel = m.updated(t + 40 * DAY, cancel_at_period_end=True, period=2)
    _apply(sessions, settings, [cancel], now)
    got = _membership(sessions)
    assert got.status == "cancelling" and membership_entitled(got)
    assert got.cancel_requested_at.timestamp() == t + 40 * DAY
    _apply(sessions, settings, [m.cancelled(m.period_end(2))], now)
    got = _membership(sessions)
    assert got.status == "ended" and not membership_entitled(got)
    assert got.ended_at.timestamp() == m.period_end(2)
    with sessions.begin() as s:
        kinds = [e.kind for e in s.scalars(select(MembershipEvent).order_by("occurred_at"))]
        order = s.scalars(select(Order)).one()
        assert (order.paid_cents, order.instalments_paid, order.status) == (5800, 2, "paid")
    assert kinds == ["joined", "paid", "snapshot", "failed", "paid", "snapshot", "ended"]


def test_redelivery_changes_nothing(sessions, settings, now):
    m = _member(sessions, now)
    events = [m.completed(m.start + 1), m.invoice(1, m.start + 1)]
    assert _apply(sessions, settings, events + events, now)[2:] == ["duplicate", "duplicate"]
    # the same invoice reported under its other name counts once
    _apply(sessions, settings, [m.renewed(1, m.start + 1)], now)
    with sessions.begin() as s:
        assert s.scalars(select(Order)).one().paid_cents == 2900
        assert len(s.scalars(select(MembershipEvent)).all()) == 2


def test_trial_then_conversion(sessions, settings, now):
    m = _member(sessions, now, trial_days=7)
    t = m.start
    _apply(sessions, settings, [m.completed(t + 1), m.invoice(0, t + 1)], now)
    got = _membership(sessions)
    assert got.status == "trialing" and got.paid_at is None and membership_entitled(got)
    assert got.trial_end.timestamp() == t + 1 + 7 * DAY
    _apply(sessions, settings, [m.trial_will_end(t + 4 * DAY)], now)
    got = _membership(sessions)
    assert got.status == "trialing" and got.trial_end.timestamp() == t + 7 * DAY
    _apply(sessions, settings, [m.invoice(1, t + 7 * DAY)], now)
    got = _membership(sessions)
    assert got.status == "active" and got.paid_at.timestamp() == t + 7 * DAY


def test_trial_ends_unpaid(sessions, settings, now):
    m = _member(sessions, now, trial_days=7)
    t = m.start
    events = [m.completed(t + 1), m.invoice(1, t + 7 * DAY, paid=False), m.cancelled(t + 8 * DAY)]
    _apply(sessions, settings, events, now)
    got = _membership(sessions)
    assert got.status == "ended" and got.paid_at is None


def test_plan_switch_monthly_to_yearly(sessions, settings, now):
    m = _member(sessions, now)
    t = m.start
    _apply(sessions, settings, [m.completed(t + 1), m.invoice(1, t + 1)], now)
    switch = m.updated(t + 10 * DAY, interval="year", amount=29000)
    _apply(sessions, settings, [switch], now)
    got = _membership(sessions)
    assert (got.interval, got.amount_cents, got.status) == ("year", 29000, "active")


def test_founding_price_is_charged_and_kept(sessions, settings, now):
    m = _member(sessions, now, founding=[("month", 1900)])
    _apply(sessions, settings, [m.completed(m.start + 1)], now)
    assert _membership(sessions).amount_cents == 1900


def test_guarantee_refund_ends_the_membership(sessions, settings, now):
    m = _member(sessions, now)
    t = m.start
    paid = m.invoice(1, t + 1)
    pi = paid["data"]["object"]["payments"]["data"][0]["payment"]["payment_intent"]
    from launchkit.stripe_events import charge_refunded

    refund = charge_refunded(created=t + 3 * DAY, payment_intent=pi, amount=2900,
                             amount_refunded=2900, currency="EUR")  # fmt: skip
    _apply(sessions, settings, [m.completed(t + 1), paid, refund], now)
    got = _membership(sessions)
    assert got.status == "ended" and got.ended_at.timestamp() == t + 3 * DAY
    with sessions.begin() as s:
        assert s.scalars(select(Order)).one().status == "refunded"


def test_subscription_update_before_anything_creates_the_membership(sessions, settings, now):
    m = _member(sessions, now)
    outcomes = _apply(sessions, settings, [m.updated(m.start + 2)], now)
    assert outcomes == ["applied"]
    assert _membership(sessions).status == "active"


def test_unknown_subscription_update_is_ignored(sessions, settings, now):
    m = _member(sessions, now)
    m.metadata = {}
    assert _apply(sessions, settings, [m.updated(m.start + 2)], now) == ["ignored"]


# --- emails -----------------------------------------------------------------------------------


def _emails(sessions, settings, now, **kw) -> list[Any]:
    from tests.test_checkout_events import Outbox

    outbox = Outbox()
    with sessions.begin() as s:
        checkout.send_notifications(s, settings, outbox, now=now, **kw)
    return outbox.sent


def test_emails_welcome_failed_renewal_cancelled_win_back_once_each(sessions, settings, now):
    m = _member(sessions, now)
    t = m.start
    _apply(sessions, settings, [m.completed(t + 1), m.invoice(1, t + 1)], now)
    first = _emails(sessions, settings, now)
    assert sorted(e.subject for e in first) == [
        "Bienvenue dans Club photo\u202f!",  # the receipt of the first payment
        "Votre adhésion Club photo a commencé",
    ]
    failures = [m.invoice(2, t + 30 * DAY, paid=False),
                m.invoice(2, t + 33 * DAY, paid=False, attempt=2)]  # fmt: skip
    _apply(sessions, settings, failures, now)
    failed = _emails(sessions, settings, now)
    assert [e.subject for e in failed] == ["Souci de paiement\xa0: Club photo"] * 2
    assert all("https://invoice.stripe.com/i/" in e.text for e in failed)
    assert _emails(sessions, settings, now) == []  # once each
    cancel = m.updated(t + 35 * DAY, cancel_at_period_end=True, period=2)
    _apply(sessions, settings, [m.renewed(2, t + 34 * DAY), cancel], now)
    sent = _emails(sessions, settings, now)
    assert [e.subject for e in sent] == ["Votre adhésion Club photo est résiliée"]
    assert m_date(m.period_end(2)) in sent[0].text
    _apply(sessions, settings, [m.cancelled(m.period_end(2))], now)
    sent = _emails(sessions, settings, now)
    assert [e.subject for e in sent] == ["La porte reste ouverte si vous voulez revenir"]
    assert _emails(sessions, settings, now) == []


def m_date(ts: int, language: str = "fr") -> str:
    """How membership emails write a day: in words, in the workspace's timezone (Paris)."""
    from datetime import UTC, datetime

    from launchkit.render.french import format_date

    return format_date(datetime.fromtimestamp(ts, UTC), language, "Europe/Paris")


def test_failed_renewal_paid_since_sends_nothing(sessions, settings, now):
    m = _member(sessions, now)
    t = m.start
    events = [m.completed(t + 1), m.invoice(1, t + 1), m.invoice(2, t + 30 * DAY, paid=False),
              m.invoice(2, t + 31 * DAY)]  # fmt: skip
    _apply(sessions, settings, events, now)
    sent = sorted(e.subject for e in _emails(sessions, settings, now))
    assert sent == ["Bienvenue dans Club photo\u202f!", "Votre adhésion Club photo a commencé"]


def test_trial_ending_email_in_english_for_an_english_buyer(sessions, settings, now):
    m = _member(sessions, now, trial_days=7)
    m.metadata["language"] = "en"
    with sessions.begin() as s:
        from launchkit.models import Subscriber

        s.scalars(select(Subscriber)).one().language = "en"
    _apply(sessions, settings, [m.completed(m.start + 1), m.trial_will_end(m.start + 4 * DAY)], now)
    subjects = sorted(e.subject for e in _emails(sessions, settings, now))
    assert subjects == [
        "Your Club photo membership has started",
        f"Your Club photo trial ends on {m_date(m.start + 7 * DAY, 'en')}",
    ]


def test_yearly_renewal_reminder_days_before(sessions, settings, now):
    m = _member(sessions, now, interval="year")
    t = m.start
    _apply(sessions, settings, [m.completed(t + 1), m.invoice(1, t + 1)], now)
    _emails(sessions, settings, now)  # welcome
    end = m.period_end(1)
    early = now + timedelta(seconds=end - t) - timedelta(days=15)
    assert _emails(sessions, settings, early) == []
    soon = early + timedelta(days=2)
    sent = _emails(sessions, settings, soon)
    assert [e.subject for e in sent] == [
        f"Votre adhésion Club photo se renouvelle le {m_date(end)}"
    ]
    assert _emails(sessions, settings, soon + timedelta(days=1)) == []
    assert _membership(sessions).reminder_period_end.timestamp() == end
    # the next year's renewal gets its own reminder
    _apply(sessions, settings, [m.invoice(2, end)], now)
    later = now + timedelta(seconds=m.period_end(2) - t) - timedelta(days=3)
    assert len(_emails(sessions, settings, later)) == 1


@pytest.mark.parametrize("days", [None, 30])
def test_renewal_reminder_days_setting_moves_the_reminder(
    sessions, workspace_env, smtp_sink, now, days
):
    """``memberships.renewal_reminder_days`` in launchkit.toml (default 14) decides the day the
    reminder of a yearly renewal goes out: delivered to a real SMTP server, dated when sent."""
    import email.utils
    from email.header import decode_header, make_header
    from pathlib import Path

    from launchkit import mailer
    from launchkit.config import load_settings

    workspace = Path(workspace_env["LAUNCHKIT_HOME"])
    if days is not None:
        with (workspace / "launchkit.toml").open("a") as fh:
            fh.write(f"\n[memberships]\nrenewal_reminder_days = {days}\n")
    smtp = {"LAUNCHKIT_EMAIL_BACKEND": "smtp", "LAUNCHKIT_SMTP_URL": smtp_sink.url}
    settings = load_settings(workspace, env={**workspace_env, **smtp})
    lead = timedelta(days=days or 14)
    assert settings.renewal_reminder_days == lead.days
    m = _member(sessions, now, interval="year")
    _apply(sessions, settings, [m.completed(m.start + 1), m.invoice(1, m.start + 1)], now)
    renewal = now + timedelta(seconds=m.period_end(1) - m.start)

    def reminders_sent_at(moment):
        seen = smtp_sink.count
        messenger = mailer.messenger_from_settings(settings)
        try:
            with sessions.begin() as s:
                checkout.send_notifications(s, settings, messenger, now=moment)
        finally:
            messenger.close()
        subjects = [(str(make_header(decode_header(msg["Subject"]))), msg["Date"])
                    for msg in smtp_sink.messages[seen:]]  # fmt: skip
        return [(subject, date) for subject, date in subjects if "renouvelle" in subject]

    assert reminders_sent_at(now) == [] and smtp_sink.count == 2  # receipt, welcome
    assert reminders_sent_at(renewal - lead - timedelta(hours=1)) == []
    due = renewal - lead + timedelta(hours=1)
    [(subject, date)] = reminders_sent_at(due)
    assert subject == f"Votre adhésion Club photo se renouvelle le {m_date(m.period_end(1))}"
    assert email.utils.parsedate_to_datetime(date) == due
    assert reminders_sent_at(renewal - timedelta(days=1)) == []  # once


def test_renewal_reminder_days_must_be_a_number_of_days(workspace_env):
    from pathlib import Path

    from launchkit.config import load_settings
    from launchkit.errors import ConfigError

    workspace = Path(workspace_env["LAUNCHKIT_HOME"])
    with (workspace / "launchkit.toml").open("a") as fh:
        fh.write('\n[memberships]\nrenewal_reminder_days = "two weeks"\n')
    with pytest.raises(ConfigError, match=r'renewal_reminder_days "two weeks" must be a whole'):
        load_settings(workspace, env=workspace_env)


# --- CLI --------------------------------------------------------------------------------------


def test_cli_offer_add_membership(cli, now):
    import json

    r = cli("launch", "create", "club", "--product", "Club photo", "--cart-open",
            "2026-12-01 09:00", "--cart-close", "2026-12-08 09:00")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = cli("offer", "add", "club", "club-offer", "--product", "Club photo",
            "--membership", "monthly:29", "--membership", "yearly:290", "--trial-days", "7",
            "--guarantee-days", "14", "--founding-price", "monthly:19")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "monthly 29,00" in r.stdout and "yearly 290,00" in r.stdout
    listed = json.loads(cli("offer", "list", "--json").stdout)
    assert listed[0]["membership"] == {
        "trial_days": 7,
        "prices": [
            {"interval": "month", "cents": 2900, "founding_cents": 1900},
            {"interval": "year", "cents": 29000, "founding_cents": None},
        ],
    }
    assert listed[0]["guarantee_days"] == 14


@pytest.mark.parametrize(
    "args, message",
    [
        (["--membership", "weekly:3"], '--membership "weekly:3" must look like'),
        (["--membership", "monthly:29", "--price", "97"], "do not go with --membership"),
        (["--founding-price", "monthly:19"], "--founding-price needs --membership"),
        ([], "--price is required"),
    ],
)
def test_cli_offer_add_membership_errors(cli, args, message):
    cli("launch", "create", "club", "--product", "Club", "--cart-open", "2026-12-01 09:00",
        "--cart-close", "2026-12-08 09:00")  # fmt: skip
    r = cli("offer", "add", "club", "x", "--product", "Club", *args)
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_access_follows_the_membership_not_the_paid_order(sessions, settings, now):
    from launchkit import access
    from launchkit.models import AccessGrant

    m = _member(sessions, now)
    with sessions.begin() as s:
        access.add_product(
            s, settings, "club-videos", title="Vidéos", url="https://example.com/v", now=now
        )
        access.grant_product(s, "club-offer", "club-videos", now=now)
    t = m.start

    def active() -> list[bool]:
        with sessions.begin() as s:
            return list(s.scalars(select(AccessGrant.active)))

    _apply(sessions, settings, [m.completed(t + 1), m.invoice(1, t + 1)], now)
    assert active() == [True]
    cancel = m.updated(t + 40 * DAY, cancel_at_period_end=True, period=1)
    _apply(sessions, settings, [cancel], now)
    assert active() == [True]  # cancelling: access until the paid period ends
    _apply(sessions, settings, [m.cancelled(m.period_end(1))], now)
    with sessions.begin() as s:
        assert s.scalars(select(Order.status)).one() == "paid"  # the order stays paid...
    assert active() == [False]  # ...but the ended membership no longer gives access


def test_membership_access_webhooks_reach_a_real_receiver_through_a_failure(
    sessions, settings, now, tmp_path
):
    """A member's access.granted (first payment) and access.revoked (the end of a cancelled
    period) go through the webhook outbox to a real HTTP receiver in its own process: refused
    with 500 first, then delivered; the same id and body on the retry, every signature valid."""
    import json

    from launchkit import access, hooks
    from tests.conftest import free_port
    from tests.test_hooks import Clock, Receiver, statuses, verify

    port = free_port()
    m = _member(sessions, now)
    with sessions.begin() as s:
        hook = hooks.add_hook(
            s, f"http://127.0.0.1:{port}/in", ["access.granted", "access.revoked"], now=now
        )
        secret = hook.secret
        access.add_product(
            s, settings, "club-videos", title="Vidéos", url="https://example.com/v", now=now
        )
        access.grant_product(s, "club-offer", "club-videos", now=now)
    t = m.start
    cancel = m.updated(t + 10 * DAY, cancel_at_period_end=True, period=1)
    events = [m.completed(t + 1), m.invoice(1, t + 1), cancel, m.cancelled(m.period_end(1))]
    _apply(sessions, settings, events + events, now)  # redelivered: nothing more
    ids = set(statuses(sessions))
    assert len(ids) == 2
    clock = Clock(now + timedelta(days=40))
    receiver = Receiver(tmp_path, port, secret)
    try:
        receiver.start("fail")
        assert len(hooks.deliver_due(sessions, clock=clock, timeout=5).retrying) == 2
        receiver.start("ok")
        clock.advance(timedelta(minutes=6))
        assert sorted(hooks.deliver_due(sessions, clock=clock, timeout=5).delivered) == sorted(ids)
        clock.advance(timedelta(days=1))
        assert hooks.deliver_due(sessions, clock=clock).delivered == []
    finally:
        receiver.stop()
    got = receiver.received()
    assert len(got) == 4 and {r["id"] for r in got} == ids
    for r in got:
        headers = {"webhook-id": r["id"], "webhook-timestamp": r["ts"],
                   "webhook-signature": r["sig"]}  # fmt: skip
        assert r["ok"] and verify(secret, headers, r["body"].encode())
    bodies = {r["id"]: set() for r in got}
    for r in got:
        bodies[r["id"]].add(r["body"])
    assert all(len(b) == 1 for b in bodies.values())  # the same bytes on the retry
    kinds = sorted(json.loads(next(iter(b)))["type"] for b in bodies.values())
    assert kinds == ["access.granted", "access.revoked"]
