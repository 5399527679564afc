"""Property (issue #14): whatever order a purchase's signed events arrive in, and however many
are delivered again, the final state is the same: orders, payments, refunds, the subscriber
link, tags, and the emails then due. Pay in full, a plan, a plan with a failed instalment that
recovers, refunds (API-style with the refunds list, Dashboard-style without), a dispute; and a
membership's events (issue #16): renewals, dunning, trial, plan switches both ways, cancel at
period end (undone, asked again) then deleted, the guarantee refund, a refund deleted days later;
on SQLite and PostgreSQL, through the real ``handle_event``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from launchkit import checkout
from launchkit.models import (
    Launch,
    Membership,
    MembershipEvent,
    Order,
    Payment,
    Refund,
    StripeEvent,
    SubscriberTag,
)
from launchkit.stripe_events import Member, Purchase, charge_refunded
from tests.fixtures.stripe import create_offer, create_subscriber
from tests.test_checkout_events import Outbox

DAY = 86400


def _refund_listed(deal: Purchase, created: int) -> dict:
    event = deal.refunded(created)
    event["data"]["object"]["refunds"] = {
        "object": "list",
        "data": [{"id": f"re_{deal.payment_intent}", "object": "refund", "amount": deal.amount,
                  "currency": "eur", "created": created - 5, "status": "succeeded"}],
    }  # fmt: skip
    return event


def scenario(name: str, meta: dict[str, dict[str, str]], t: int) -> list[dict]:
    """The events of one purchase, in the order Stripe would normally send them."""
    if name in ("full", "refund_api", "refund_dashboard", "dispute"):
        deal = Purchase(meta["full"], "Camille@Example.FR", 49700, "EUR")
        events = [deal.paid(t + 1), deal.completed(t + 2)]
        if name == "refund_api":
            events.append(_refund_listed(deal, t + 5 * DAY))
        if name == "refund_dashboard":
            events += [deal.refunded(t + 4 * DAY, 10000), deal.refunded(t + 5 * DAY)]
        if name == "dispute":
            events.append(deal.disputed(t + 6 * DAY))
        return events
    deal = Purchase(meta["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    events = [deal.invoice(1, t + 1), deal.completed(t + 2), deal.invoice(2, t + 30 * DAY)]
    if name == "plan_recovered":
        events[2:] = [deal.invoice(2, t + 30 * DAY, paid=False), deal.invoice(2, t + 33 * DAY)]
    return [*events, deal.invoice(3, t + 60 * DAY), deal.cancelled(t + 60 * DAY + 10)]


def _reset(sessions) -> None:
    with sessions.begin() as s:
        for model in (
            MembershipEvent,
            Membership,
            Refund,
            Payment,
            Order,
            StripeEvent,
            SubscriberTag,
        ):
            s.execute(delete(model))


def _run(sessions, settings_, events: list[dict], now) -> list[Any]:
    for index, event in enumerate(events):
        with sessions.begin() as s:
            checkout.handle_event(s, settings_, event, now=now + timedelta(seconds=index))
    outbox = Outbox()
    with sessions.begin() as s:
        checkout.send_notifications(s, settings_, outbox, now=now + timedelta(days=90))
    return _state(sessions, outbox)


def _state(sessions, outbox: Outbox) -> list[Any]:
    order_fields = (
        "email", "subscriber_id", "source", "status", "plan_instalments", "instalments_paid",
        "instalments_failed", "total_cents", "paid_cents", "refunded_cents", "fee_cents", "access",
        "currency", "stripe_checkout_session_id", "stripe_payment_intent_id",
        "stripe_subscription_id", "created_at", "paid_at", "refunded_at", "disputed_at",
        "defaulted_at", "subscription_cancelled_at",
    )  # fmt: skip
    payment_fields = (
        "stripe_id", "stripe_payment_intent_id", "instalment_number", "amount_cents", "status",
        "recovered", "refunded_cents", "fee_cents", "occurred_at",
    )  # fmt: skip
    refund_fields = ("idempotency_key", "stripe_refund_id", "amount_cents", "status", "refunded_at")
    membership_fields = (
        "stripe_subscription_id", "interval", "amount_cents", "currency", "status",
        "cancel_at_period_end", "started_at", "trial_end", "paid_at", "current_period_end",
        "cancel_requested_at", "ended_at", "reminder_period_end",
    )  # fmt: skip
    fact_fields = ("key", "kind", "occurred_at", "status", "interval", "amount_cents",
                   "period_end", "cancel_at_period_end", "notified_at")  # fmt: skip
    with sessions.begin() as s:

        def rows(model: Any, fields: tuple[str, ...]) -> list[tuple]:
            found = s.scalars(select(model)).all()
            return sorted((tuple(getattr(r, f) for f in fields) for r in found), key=repr)

        tags = sorted(s.execute(select(SubscriberTag.subscriber_id, SubscriberTag.tag)).all())
        parked = len(checkout.parked_events(s))
        return [
            rows(Order, order_fields), rows(Payment, payment_fields),
            rows(Refund, refund_fields), tags, parked,
            rows(Membership, membership_fields), rows(MembershipEvent, fact_fields),
            sorted((m.to_email, m.subject) for m in outbox.sent),
        ]  # fmt: skip


@st.composite
def deliveries(draw: Any, count: int) -> list[int]:
    """A permutation of ``range(count)`` with some events delivered again at random places."""
    order = draw(st.permutations(range(count)))
    again = draw(st.lists(st.integers(0, count - 1), max_size=count))
    for event in again:
        order.insert(draw(st.integers(0, len(order))), event)
    return order


SCENARIOS = ["full", "plan", "plan_recovered", "refund_api", "refund_dashboard", "dispute"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_any_order_and_redelivery_gives_the_same_state(sessions, settings, now, name):
    with sessions.begin() as s:
        offer = create_offer(s, now)
        subscriber_id = create_subscriber(s, now).id
        launch = s.get(Launch, offer.launch_id)
        meta = {
            "by_id": {
                "full": checkout.checkout_metadata(offer, launch, 1, subscriber_id, False),
                "plan": checkout.checkout_metadata(offer, launch, 3, subscriber_id, False),
            },
            "typed": {
                "full": checkout.checkout_metadata(offer, launch, 1, None, False),
                "plan": checkout.checkout_metadata(offer, launch, 3, None, False),
            },
        }
    t = int(now.timestamp())

    @hypothesis_settings(
        max_examples=20, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )  # fmt: skip
    @given(data=st.data(), link=st.sampled_from(["by_id", "typed"]))
    def check(data: Any, link: str) -> None:
        events = scenario(name, meta[link], t)
        _reset(sessions)
        expected = _run(sessions, settings_, events, now)
        assert expected[0][0][1] == subscriber_id  # linked, by id or by the typed address
        order = data.draw(deliveries(len(events)))
        _reset(sessions)
        assert _run(sessions, settings_, [events[i] for i in order], now) == expected, order

    settings_ = settings
    check()


def member_scenario(name: str, meta: dict[str, str], t: int) -> list[dict]:
    """The events of one membership, in the order Stripe would normally send them."""
    trial = 7 if name == "member_trial" else 0
    m = Member(meta, "camille@example.fr", 2900, "EUR", start=t, trial_days=trial)
    if name == "member_trial":
        return [
            m.completed(t + 1), m.invoice(0, t + 1), m.updated(t + 2, status="trialing", period=0),
            m.trial_will_end(t + 4 * DAY), m.invoice(1, t + 7 * DAY),
            m.updated(t + 10 * DAY, interval="year", amount=29000),
            m.renewed(2, m.period_end(1)),
        ]  # fmt: skip
    events = [m.completed(t + 1), m.invoice(1, t + 1), m.updated(t + 2)]
    if name == "member_renewals":
        return [
            *events, m.renewed(2, m.period_end(1)), m.invoice(2, m.period_end(1)),
            m.invoice(3, m.period_end(2)),
            m.updated(m.period_end(2) + DAY, cancel_at_period_end=True, period=3),
            m.cancelled(m.period_end(3)),
        ]  # fmt: skip
    if name == "member_dunning":
        end = m.period_end(1)
        return [
            *events, m.invoice(2, end, paid=False),
            m.invoice(2, end + 3 * DAY, paid=False, attempt=2),
            m.invoice(2, end + 5 * DAY), m.invoice(3, m.period_end(2), paid=False),
            m.updated(m.period_end(2) + 1, status="past_due", period=3),
            m.cancelled(m.period_end(2) + 20 * DAY),
        ]  # fmt: skip
    if name == "member_switches":
        # yearly -> monthly (contraction) -> yearly again, cancel at period end, undone, asked
        # again, then deleted at the period's end
        y = Member(meta, "camille@example.fr", 29000, "EUR", "year", start=t)
        end = y.period_end(1)
        return [
            y.completed(t + 1), y.invoice(1, t + 1), y.updated(t + 2),
            y.updated(t + 40 * DAY, interval="month", amount=2900),
            y.invoice(2, t + 40 * DAY, amount=2900),
            y.updated(t + 70 * DAY, interval="year", amount=29000),
            y.invoice(3, t + 70 * DAY),
            y.updated(t + 80 * DAY, cancel_at_period_end=True),
            y.updated(t + 90 * DAY, cancel_at_period_end=False),
            y.updated(t + 100 * DAY, cancel_at_period_end=True),
            y.cancelled(end),
        ]  # fmt: skip
    paid = events[1]["data"]["object"]["payments"]["data"][0]["payment"]["payment_intent"]
    refund = charge_refunded(created=t + 3 * DAY, payment_intent=paid, amount=2900,
                             amount_refunded=2900, currency="EUR")  # fmt: skip
    if name == "member_refund_late_delete":  # the creator cancels days after the refund
        return [*events, refund, m.cancelled(t + 6 * DAY)]
    return [*events, refund, m.cancelled(t + 3 * DAY + 60)]


MEMBER_SCENARIOS = [
    "member_renewals", "member_dunning", "member_trial", "member_guarantee", "member_switches",
    "member_refund_late_delete",
]  # fmt: skip


SETTLED = {  # status, cancel at period end, interval, cents, ended (seconds from t)
    "member_switches": ("ended", True, "year", 29000, 365 * DAY),
    "member_refund_late_delete": ("ended", False, "month", 2900, 3 * DAY),
}


@pytest.mark.parametrize("name", MEMBER_SCENARIOS)
def test_membership_events_in_any_order_give_the_same_state(sessions, settings, now, name):
    from tests.membership_data import create_membership_offer, member_metadata

    with sessions.begin() as s:
        offer = create_membership_offer(s, now, trial_days=7 if name == "member_trial" else 0)
        subscriber_id = create_subscriber(s, now).id
        meta = {
            "by_id": member_metadata(s, offer, "month", subscriber_id),
            "typed": member_metadata(s, offer, "month", None),
        }
    t = int(now.timestamp())

    @hypothesis_settings(
        max_examples=10 if name == "member_switches" else 20, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )  # fmt: skip
    @given(data=st.data(), link=st.sampled_from(["by_id", "typed"]))
    def check(data: Any, link: str) -> None:
        events = member_scenario(name, meta[link], t)
        _reset(sessions)
        expected = _run(sessions, settings_, events, now)
        assert expected[0][0][1] == subscriber_id
        assert expected[5] and expected[6]  # a membership and its facts
        if name in SETTLED:  # where every order of delivery ends: status, plan, end
            assert expected[5][0][4:6] + expected[5][0][1:3] == SETTLED[name][:4]
            assert expected[5][0][11] == now + timedelta(seconds=SETTLED[name][4])
        order = data.draw(deliveries(len(events)))
        _reset(sessions)
        assert _run(sessions, settings_, [events[i] for i in order], now) == expected, order

    settings_ = settings
    check()
