"""Checkout domain against real databases and a real localstripe: offers, sync, the Checkout
Session adapter (request shape), purchases from signed events, refunds and their guarantee."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
import stripe
from sqlalchemy import func, select

from launchkit import checkout
from launchkit.errors import InputError, PaymentError
from launchkit.models import Launch, Offer, Order, OrderStatus, Refund, StripeEvent, SubscriberTag
from launchkit.stripe_events import Purchase
from tests.fixtures.stripe import create_offer, create_subscriber, real_payment


class RecordingClient(stripe.HTTPXClient):
    """Real HTTP to localstripe, except what a test scripts: Checkout Sessions are answered
    here (localstripe has none); ``cut`` makes chosen calls fail after (or instead of) sending."""

    def __init__(self, cut: dict[str, list[str]] | None = None):
        super().__init__(allow_sync_methods=True)
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.cut = cut or {}

    def request(self, method, url, headers, post_data=None, *, _usage=None):  # noqa: ANN001
        fields = dict(
            parse_qsl(post_data.decode() if isinstance(post_data, bytes) else post_data or "")
        )
        method = method.upper()
        self.requests.append((method, url, dict(headers or {}), fields))
        if url.endswith("/v1/checkout/sessions"):
            body = {
                "id": "cs_test_123",
                "object": "checkout.session",
                "url": "https://checkout.stripe.com/c/pay/cs_test_123",
            }
            return json.dumps(body), 200, {}
        plan = self.cut.get(f"{method} {url.split('/v1/', 1)[-1].split('?')[0]}", [])
        fault = plan.pop(0) if plan else None
        if fault == "429":
            body = {"error": {"type": "rate_limit_error", "message": "Too many requests"}}
            return json.dumps(body), 429, {}
        answer = super().request(method.lower(), url, headers, post_data)
        if fault == "cut":
            raise stripe.APIConnectionError("connection reset after the request was sent")
        return answer


def _posted(client: RecordingClient, path: str) -> list[dict[str, str]]:
    return [
        fields
        for method, url, _, fields in client.requests
        if method == "POST" and url.endswith(path)
    ]


def _order(sessions) -> Order:
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        s.expunge(order)
        return order


def _pay_in_full(sessions, settings, client, now, **purchase: Any) -> Purchase:
    """A real localstripe payment, then the checkout.session.completed Stripe would send."""
    with sessions.begin() as s:
        offer = s.scalars(select(Offer)).one()
        subscriber = create_subscriber(s, now)
        meta = checkout.checkout_metadata(
            offer, s.get(Launch, offer.launch_id), 1, subscriber.id, False
        )
    pi = real_payment(client, 49700, meta, "camille@example.fr")
    deal = Purchase(meta, "camille@example.fr", 49700, "EUR", payment_intent=pi, **purchase)
    with sessions.begin() as s:
        assert (
            checkout.handle_event(s, settings, deal.completed(int(now.timestamp())), now=now)
            == "applied"
        )
    return deal


# --- offers ---------------------------------------------------------------------------------


def test_money_and_plan_parsing():
    assert checkout.parse_money("497") == 49700
    assert checkout.parse_money("49,90") == 4990
    assert checkout.parse_plan("3x177") == (3, 17700)
    assert checkout.parse_bump("Workbook:27") == ("Workbook", 2700)
    assert checkout.format_money(49700, "EUR", "fr") == "497,00\xa0€"
    assert checkout.format_money(49700, "EUR", "en") == "€497.00"
    for bad in ("1x100", "3x", "x177", "3x1.001"):
        with pytest.raises(InputError, match="--plan"):
            checkout.parse_plan(bad)
    with pytest.raises(InputError, match="-5"):
        checkout.parse_money("-5")


def test_add_offer_with_plans_and_bump(session, now):
    offer = create_offer(session, now, plans=((6, 9200), (3, 17700)))
    assert [(p.instalments, p.instalment_cents) for p in offer.plans] == [(3, 17700), (6, 9200)]
    assert checkout.resolve_plan(offer, "full") == (1, 49700)
    assert checkout.resolve_plan(offer, "6") == (6, 9200)
    with pytest.raises(InputError, match='no plan "4"; choose one of: full, 3, 6'):
        checkout.resolve_plan(offer, "4")
    data = checkout.offer_as_dict(session, offer)
    assert data["bump"] == {"name": "Workbook", "cents": 2700} and data["launch"] == "spring"


def test_sync_offers_is_idempotent(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    with sessions.begin() as s:
        first = checkout.sync_offers(s, client, now=now)
    with sessions.begin() as s:
        s.scalars(select(Offer)).one().product = "Cours photo 2027"
        second = checkout.sync_offers(s, client, now=now)
    with sessions.begin() as s:
        third = checkout.sync_offers(s, client, now=now)
    assert [r["action"] for r in first + second + third] == ["created", "updated", "unchanged"]
    products = client.v1.products.list(params={"limit": 100}).data
    assert len(products) == 1 and products[0].name == "Cours photo 2027"
    assert products[0].metadata["launchkit_offer"] == "cours"
    assert first[0]["product"] == second[0]["product"] == third[0]["product"] == products[0].id


# --- the Checkout Session adapter: request shape -------------------------------------------


def test_checkout_session_request_pay_in_full(session, stripe_settings, now):
    offer = create_offer(session, now)
    offer.stripe_product_id = "prod_123"
    http = RecordingClient()
    client = checkout.make_client(stripe_settings, http_client=http)
    started = checkout.start_checkout(
        session, stripe_settings, client, "cours", plan="full", subscriber_id=7,
        email="camille@example.fr", bump=True, now=now,
    )  # fmt: skip
    assert started.url == "https://checkout.stripe.com/c/pay/cs_test_123"
    ((method, url, headers, fields),) = http.requests
    assert headers["Stripe-Version"] == checkout.STRIPE_API_VERSION == stripe.api_version
    assert headers["Idempotency-Key"]
    assert fields["mode"] == "payment"
    assert fields["line_items[0][price_data][unit_amount]"] == "49700"
    assert fields["line_items[0][price_data][currency]"] == "eur"
    assert fields["line_items[0][price_data][product]"] == "prod_123"
    assert "line_items[0][price_data][recurring][interval]" not in fields
    assert fields["line_items[1][price_data][unit_amount]"] == "2700"
    assert fields["line_items[1][price_data][product_data][name]"] == "Workbook"
    assert fields["customer_email"] == "camille@example.fr"
    assert fields["client_reference_id"] == "7"
    for key, value in {
        "launch": "spring",
        "offer": "cours",
        "plan": "full",
        "subscriber": "7",
    }.items():
        assert fields[f"metadata[{key}]"] == value
        assert fields[f"payment_intent_data[metadata][{key}]"] == value
    assert fields["success_url"].endswith("/buy/cours/thanks?session_id={CHECKOUT_SESSION_ID}")
    assert int(fields["expires_at"]) == int((now + timedelta(hours=1)).timestamp())


def test_checkout_session_request_plan_is_subscription(session, stripe_settings, now):
    create_offer(session, now)
    http = RecordingClient()
    client = checkout.make_client(stripe_settings, http_client=http)
    checkout.start_checkout(
        session, stripe_settings, client, "cours", plan="3", subscriber_id=None,
        email=None, bump=False, now=now,
    )  # fmt: skip
    fields = http.requests[0][3]
    assert fields["mode"] == "subscription"
    assert fields["line_items[0][price_data][unit_amount]"] == "17700"
    assert fields["line_items[0][price_data][recurring][interval]"] == "month"
    assert fields["line_items[0][price_data][product_data][name]"] == "Cours photo"
    assert fields["subscription_data[metadata][instalments]"] == "3"
    assert fields["subscription_data[metadata][plan]"] == "3"
    assert "customer_email" not in fields and "line_items[1][price_data][unit_amount]" not in fields


def test_no_session_outside_the_cart(session, stripe_settings, now):
    create_offer(session, now)
    http = RecordingClient()
    client = checkout.make_client(stripe_settings, http_client=http)
    late = now + timedelta(days=5) + stripe_settings.checkout_grace + timedelta(seconds=1)
    for moment, word in ((now - timedelta(days=2), "before"), (late, "closed")):
        with pytest.raises(checkout.CartClosed, match=word):
            checkout.start_checkout(
                session, stripe_settings, client, "cours", plan="full", subscriber_id=None,
                email=None, bump=False, now=moment,
            )  # fmt: skip
    in_grace = now + timedelta(days=5) + stripe_settings.checkout_grace
    checkout.start_checkout(
        session, stripe_settings, client, "cours", plan="full", subscriber_id=None,
        email=None, bump=False, now=in_grace,
    )  # fmt: skip
    assert len(http.requests) == 1


# --- purchase and refunds with a real localstripe -------------------------------------------


def test_pay_in_full_then_refund_within_guarantee(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    deal = _pay_in_full(sessions, stripe_settings, client, now)
    order = _order(sessions)
    assert (order.status, order.paid_cents, order.access, order.source) == (
        "paid",
        49700,
        True,
        "webinar",
    )
    with sessions.begin() as s:
        tags = set(s.scalars(select(SubscriberTag.tag)))
        assert tags == {"buyer", "buyer:spring"}
        refund = checkout.refund_order(
            s, client, order.id, now=now + timedelta(days=30), reason="not for me"
        )
        assert refund.status == "succeeded" and refund.amount_cents == 49700
    order = _order(sessions)
    assert (order.status, order.refunded_cents, order.access) == ("refunded", 49700, False)
    stripe_refunds = client.v1.refunds.list(params={"payment_intent": deal.payment_intent}).data
    assert [r.amount for r in stripe_refunds] == [49700]
    with sessions.begin() as s:
        assert set(s.scalars(select(SubscriberTag.tag))) == {"buyer", "buyer:spring", "refunded"}
        data = checkout.order_as_dict(s, s.get(Order, order.id))
        assert data["refunds"][0]["reason"] == "not for me"
        with pytest.raises(PaymentError, match="nothing left to refund"):
            checkout.refund_order(s, client, order.id, now=now)


def test_refund_one_second_after_the_window_is_refused(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    _pay_in_full(sessions, stripe_settings, client, now)
    order = _order(sessions)
    late = order.paid_at + timedelta(days=30, seconds=1)
    with (
        sessions.begin() as s,
        pytest.raises(
            PaymentError, match=r"guarantee window closed on 2026-12-20 11:00; use --force"
        ),
    ):
        checkout.refund_order(s, client, order.id, now=late, tz=stripe_settings.tz)
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Refund.id))) == 0
        refund = checkout.refund_order(s, client, order.id, now=late, force=True)
        assert refund.forced and refund.status == "succeeded"


def test_partial_refunds_cannot_exceed_the_charge(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    deal = _pay_in_full(sessions, stripe_settings, client, now)
    order = _order(sessions)
    with sessions.begin() as s:
        checkout.refund_order(s, client, order.id, now=now, amount_cents=5000)
    assert _order(sessions).status == OrderStatus.PAID  # a goodwill partial refund keeps access
    with sessions.begin() as s, pytest.raises(PaymentError, match=r"between 0.01 and 447.00 EUR"):
        checkout.refund_order(s, client, order.id, now=now, amount_cents=44701)
    with sessions.begin() as s:
        checkout.refund_order(s, client, order.id, now=now, amount_cents=44700)
    amounts = [
        r.amount
        for r in client.v1.refunds.list(params={"payment_intent": deal.payment_intent}).data
    ]
    assert sorted(amounts) == [5000, 44700]
    assert _order(sessions).status == OrderStatus.REFUNDED


def test_disputed_order_is_never_refunded(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    deal = _pay_in_full(sessions, stripe_settings, client, now)
    with sessions.begin() as s:
        checkout.handle_event(s, stripe_settings, deal.disputed(int(now.timestamp())), now=now)
    order = _order(sessions)
    assert (order.status, order.access) == ("disputed", False)
    with sessions.begin() as s, pytest.raises(PaymentError, match="is disputed"):
        checkout.refund_order(s, client, order.id, now=now)
    assert client.v1.refunds.list(params={"payment_intent": deal.payment_intent}).data == []


@pytest.mark.parametrize("fault", ["cut", "429"])
def test_refund_survives_cut_or_throttled_calls_without_double_refund(
    sessions, stripe_settings, now, fault
):
    plain = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    deal = _pay_in_full(sessions, stripe_settings, plain, now)
    order = _order(sessions)
    http = RecordingClient(cut={"POST refunds": [fault, fault, fault]})
    flaky = checkout.make_client(stripe_settings, http_client=http)
    with sessions.begin() as s:
        refund = checkout.refund_order(s, flaky, order.id, now=now)
        key = refund.idempotency_key
    keys = {fields["metadata[launchkit_refund]"] for fields in _posted(http, "/v1/refunds")}
    assert keys == {key}
    headers = [
        h["Idempotency-Key"]
        for m, u, h, _ in http.requests
        if u.endswith("/v1/refunds") and m == "POST"
    ]
    assert set(headers) == {key}
    with sessions.begin() as s:
        if refund.status == "requested":  # every attempt failed: the next call reuses the key
            refund = checkout.refund_order(s, plain, order.id, now=now)
        assert refund.status == "succeeded" and refund.idempotency_key == key
    stripe_refunds = plain.v1.refunds.list(params={"payment_intent": deal.payment_intent}).data
    assert [r.amount for r in stripe_refunds] == [49700]
    assert _order(sessions).refunded_cents == 49700


def test_refund_lost_by_a_crash_is_adopted_not_repeated(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        create_offer(s, now)
    deal = _pay_in_full(sessions, stripe_settings, client, now)
    order = _order(sessions)
    with pytest.raises(RuntimeError), sessions.begin() as s:
        checkout.refund_order(s, client, order.id, now=now)
        raise RuntimeError("killed before the commit")
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Refund.id))) == 0
        with pytest.raises(PaymentError, match="nothing left to refund"):
            checkout.refund_order(s, client, order.id, now=now)
    assert len(client.v1.refunds.list(params={"payment_intent": deal.payment_intent}).data) == 1
    assert _order(sessions).status == OrderStatus.REFUNDED


def test_handle_event_is_idempotent_and_counts_one_payment(sessions, stripe_settings, now):
    with sessions.begin() as s:
        offer = create_offer(s, now)
        meta = checkout.checkout_metadata(offer, s.get(Launch, offer.launch_id), 1, None, False)
    deal = Purchase(meta, "Alex@Example.com", 49700, "EUR")
    ts = int(now.timestamp())
    events = [deal.completed(ts), checkout_pi := _pi_succeeded(deal, ts)]
    del checkout_pi
    outcomes = []
    for event in events * 3:
        with sessions.begin() as s:
            outcomes.append(checkout.handle_event(s, stripe_settings, event, now=now))
    assert outcomes == ["applied", "applied"] + ["duplicate"] * 4
    order = _order(sessions)
    assert (order.instalments_paid, order.paid_cents, order.email) == (1, 49700, "alex@example.com")
    with sessions.begin() as s:
        assert s.scalar(select(func.count(StripeEvent.id))) == 2


def _pi_succeeded(deal: Purchase, ts: int) -> dict:
    from launchkit.stripe_events import payment_intent_succeeded

    return payment_intent_succeeded(
        created=ts, payment_intent=deal.payment_intent, amount=deal.amount,
        currency=deal.currency, metadata=deal.metadata,
    )  # fmt: skip
