"""Property (issue #14): whatever order a purchase's signed events arrive in, and however many
are delivered again, the final state is the same: orders, payments, refunds, the subscriber
link, tags, and the emails then due. Pay in full, a plan, a plan with a failed instalment that
recovers, refunds (API-style with the refunds list, Dashboard-style without), a dispute; on
SQLite and PostgreSQL, through the real ``handle_event``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from launchkit import checkout
from launchkit.models import Launch, Order, Payment, Refund, StripeEvent, SubscriberTag
from launchkit.stripe_events import Purchase
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
        for model in (Refund, Payment, Order, StripeEvent, SubscriberTag):
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
    with sessions.begin() as s:

        def rows(model: Any, fields: tuple[str, ...]) -> list[tuple]:
            found = s.scalars(select(model)).all()
            return sorted((tuple(getattr(r, f) for f in fields) for r in found), key=repr)

        tags = sorted(s.execute(select(SubscriberTag.subscriber_id, SubscriberTag.tag)).all())
        parked = len(checkout.parked_events(s))
        return [
            rows(Order, order_fields), rows(Payment, payment_fields),
            rows(Refund, refund_fields), tags, parked,
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
