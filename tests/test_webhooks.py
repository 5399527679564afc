"""The Stripe webhook and the sales page: signatures, replays, events in any order, plans that
stop after exactly N payments (with localstripe's own signed delivery), refunds mid-plan,
disputes, failed instalments and the emails they trigger (real SMTP sink)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.header import decode_header, make_header
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from sqlalchemy import func, select
from starlette.testclient import TestClient

from launchkit import checkout, mailer, tokens
from launchkit.clock import utcnow
from launchkit.models import (
    Launch,
    Order,
    OrderStatus,
    Payment,
    StripeEvent,
    SubscriberTag,
    WebEvent,
)
from launchkit.stripe_events import Purchase, encode, sign_payload
from launchkit.web import create_app
from tests.conftest import free_port
from tests.fixtures.stripe import (
    WEBHOOK_SECRET,
    create_offer,
    create_subscriber,
    real_subscription,
)
from tests.test_checkout import RecordingClient
from tests.test_web import csrf_of


@pytest.fixture
def shop(sessions, stripe_settings, now) -> dict[str, Any]:
    """An open cart with offer "cours" and one subscriber; metadata for full and 3x plans."""
    with sessions.begin() as s:
        offer = create_offer(s, now)
        subscriber = create_subscriber(s, now)
        launch = s.get(Launch, offer.launch_id)
        full = checkout.checkout_metadata(offer, launch, 1, subscriber.id, False)
        plan = checkout.checkout_metadata(offer, launch, 3, subscriber.id, False)
        return {"full": full, "plan": plan, "subscriber_id": subscriber.id}


@pytest.fixture
def web(stripe_settings, now) -> Iterator[TestClient]:
    app = create_app(stripe_settings, clock=lambda: now)
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=RecordingClient())
    with TestClient(app) as client:
        yield client


def post(web: TestClient, event: dict, *, ts: int, secret: str = WEBHOOK_SECRET) -> httpx.Response:
    body = encode(event)
    headers = {
        "Stripe-Signature": sign_payload(body, secret, ts),
        "Content-Type": "application/json",
    }
    return web.post("/stripe/webhook", content=body, headers=headers)


def snapshot(sessions) -> list[tuple]:
    """The final state that must not depend on the order events arrived in."""
    with sessions.begin() as s:
        orders = s.scalars(select(Order).order_by(Order.email)).all()
        tags = sorted(s.execute(select(SubscriberTag.subscriber_id, SubscriberTag.tag)).all())
        state = [
            (o.email, o.status, o.plan_instalments, o.instalments_paid, o.paid_cents,
             o.refunded_cents, o.access, o.source)
            for o in orders
        ]  # fmt: skip
        payments = s.scalar(select(func.count(Payment.id)))
        parked = s.scalar(select(func.count()).where(StripeEvent.status == "parked"))
        return [*state, ("tags", tuple(tags)), ("payments", payments), ("parked", parked)]


# --- signatures -----------------------------------------------------------------------------


def test_bad_signatures_are_refused_with_no_side_effect(web, sessions, shop, now):
    ts = int(now.timestamp())
    event = Purchase(shop["full"], "camille@example.fr", 49700, "EUR").completed(ts)
    body = encode(event)
    good = sign_payload(body, WEBHOOK_SECRET, ts)
    cases = {
        "changed byte": (body.replace(b"49700", b"49701"), good),
        "wrong secret": (body, sign_payload(body, "whsec_other", ts)),
        "missing header": (body, None),
        "garbage header": (body, "t=abc,v1=zz"),
        "stale": (body, sign_payload(body, WEBHOOK_SECRET, ts - 301)),
        "far future": (body, sign_payload(body, WEBHOOK_SECRET, ts + 301)),
    }
    for name, (content, header) in cases.items():
        headers = {"Stripe-Signature": header} if header else {}
        response = web.post("/stripe/webhook", content=content, headers=headers)
        assert response.status_code == 400, name
    with sessions.begin() as s:
        assert s.scalar(select(func.count(StripeEvent.id))) == 0
        assert s.scalar(select(func.count(Order.id))) == 0
    assert post(web, event, ts=ts - 299).status_code == 200
    assert snapshot(sessions)[0][1] == OrderStatus.PAID


def test_replayed_event_makes_one_order(web, sessions, shop, now):
    ts = int(now.timestamp())
    event = Purchase(shop["full"], "camille@example.fr", 49700, "EUR").completed(ts)
    outcomes = [post(web, event, ts=ts).json()["outcome"] for _ in range(5)]
    assert outcomes == ["applied"] + ["duplicate"] * 4
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Order.id))) == 1
        assert s.scalar(select(func.count(Payment.id))) == 1


# --- events in any order --------------------------------------------------------------------


def _plan_events(shop: dict, ts: int) -> list[dict]:
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    return [
        deal.completed(ts),
        deal.invoice(1, ts),
        deal.invoice(2, ts + 1),
        deal.invoice(3, ts + 2),
    ]


def _deliver(sessions, settings, events: list[dict], now) -> list[str]:
    outcomes = []
    for event in events:
        with sessions.begin() as s:
            outcomes.append(checkout.handle_event(s, settings, event, now=now))
    return outcomes


def _reset(sessions) -> None:
    with sessions.begin() as s:
        for model in (Payment, Order, StripeEvent, SubscriberTag):
            s.query(model).delete()


def test_same_final_state_whatever_the_order(sessions, stripe_settings, shop, now):
    ts = int(now.timestamp())
    pay = Purchase(shop["full"], "a@example.fr", 49700, "EUR")
    refunded = Purchase(shop["full"], "b@example.fr", 49700, "EUR")
    disputed = Purchase(shop["full"], "c@example.fr", 49700, "EUR")
    plan = _plan_events(shop, ts)
    in_order = [
        pay.completed(ts), refunded.completed(ts), refunded.refunded(ts + 5),
        disputed.completed(ts), disputed.disputed(ts + 5), *plan,
    ]  # fmt: skip
    scrambled = [
        plan[3], disputed.disputed(ts + 5), refunded.refunded(ts + 5), plan[1],
        pay.completed(ts), disputed.completed(ts), plan[0], refunded.completed(ts), plan[2],
    ]  # fmt: skip
    _deliver(sessions, stripe_settings, in_order, now)
    expected = snapshot(sessions)
    _reset(sessions)
    outcomes = _deliver(sessions, stripe_settings, scrambled, now)
    assert "parked" in outcomes  # the dispute came before the payment it disputes
    assert snapshot(sessions) == expected
    statuses = {row[0]: row[1] for row in expected if "@" in str(row[0])}
    assert statuses == {
        "a@example.fr": "paid", "b@example.fr": "refunded", "c@example.fr": "disputed",
        "camille@example.fr": "completed_plan",
    }  # fmt: skip


def test_invoice_paid_and_payment_succeeded_count_once(sessions, stripe_settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    paid = deal.invoice(1, ts)
    succeeded = {**paid, "id": paid["id"] + "b", "type": "invoice.payment_succeeded"}
    _deliver(sessions, stripe_settings, [paid, succeeded, deal.completed(ts)], now)
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.instalments_paid, order.status, order.access) == (1, "active_plan", True)


# --- failed instalments, dunning, default ---------------------------------------------------


def test_failed_instalments_dunning_then_defaulted(sessions, stripe_settings, shop, now, smtp_sink):
    settings = dataclasses.replace(stripe_settings, sender_email="hello@atelier.fr")
    messenger = mailer.SMTPMessenger(smtp_sink.url)
    ts = int(now.timestamp())
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    events = [deal.completed(ts), deal.invoice(1, ts)] + [
        deal.invoice(2, ts + 10 * n, paid=False, attempt=n) for n in (1, 2, 3)
    ]
    for event in events[:3]:
        with sessions.begin() as s:
            checkout.handle_event(s, settings, event, now=now, messenger=messenger)
    with sessions.begin() as s:
        (failing,) = checkout.list_orders(s, "spring", failing=True)
        assert (failing.status, failing.instalments_failed) == ("active_plan", 1)
    for event in events[3:] + events:  # more failures, then every event again
        with sessions.begin() as s:
            checkout.handle_event(s, settings, event, now=now, messenger=messenger)
    messenger.close()
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.status, order.access, order.instalments_failed) == ("defaulted", False, 3)
        assert [o.id for o in checkout.list_orders(s, failing=True)] == [order.id]
    subjects = sorted(str(make_header(decode_header(m["Subject"]))) for m in smtp_sink.messages)
    assert subjects == ["Bienvenue dans Cours photo !"] + ["Problème de paiement : Cours photo"] * 3
    assert all(m["To"].endswith("<camille@example.fr>") for m in smtp_sink.messages)
    ids = {m["Message-ID"] for m in smtp_sink.messages}
    assert len(ids) == 4  # one receipt, one dunning per failed attempt, each sent once
    dunning = [m for m in smtp_sink.messages if "UHJvYmz" in str(m["Subject"])][0]
    text = dunning.get_payload(0).get_payload(decode=True).decode()
    assert "177,00" in text and "https://invoice.stripe.com/i/" in text


def test_subscription_deleted_mid_plan_is_a_default(sessions, stripe_settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    _deliver(
        sessions,
        stripe_settings,
        [deal.completed(ts), deal.invoice(1, ts), deal.cancelled(ts + 9)],
        now,
    )
    with sessions.begin() as s:
        assert s.scalars(select(Order)).one().status == OrderStatus.DEFAULTED


# --- plans against localstripe --------------------------------------------------------------


def test_refund_mid_plan_cancels_the_subscription(sessions, stripe_settings, shop, now):
    client = checkout.make_client(stripe_settings)
    sub = real_subscription(client, 17700, shop["plan"], "camille@example.fr")
    invoice = client.v1.invoices.retrieve(sub.latest_invoice).to_dict()
    ts = int(now.timestamp())
    deal = Purchase(
        shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3, subscription=sub.id
    )
    events = [
        deal.completed(ts),
        {"id": "evt_ls_1", "type": "invoice.payment_succeeded", "data": {"object": invoice}},
    ]
    _deliver(sessions, stripe_settings, events, now)
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.status, order.instalments_paid) == ("active_plan", 1)
        refund = checkout.refund_order(s, client, order.id, now=now + timedelta(days=3))
        assert refund.amount_cents == 17700
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.status, order.access, order.refunded_cents) == ("refunded", False, 17700)
        assert order.subscription_cancelled_at is not None


class Server:
    """The launchkit web app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_plan_stops_after_exactly_three_payments_end_to_end(
    sessions, stripe_settings, localstripe, smtp_sink
):
    """localstripe delivers its own signed invoice.payment_succeeded events to the app."""
    real_now = utcnow()
    settings = dataclasses.replace(
        stripe_settings, sender_email="hello@atelier.fr", email_backend="smtp",
        smtp_url=smtp_sink.url,
    )  # fmt: skip
    with sessions.begin() as s:
        offer = create_offer(s, real_now)
        subscriber = create_subscriber(s, real_now)
        meta = checkout.checkout_metadata(
            offer, s.get(Launch, offer.launch_id), 3, subscriber.id, False
        )
    client = checkout.make_client(settings)

    def order() -> Order | None:
        with sessions.begin() as s:
            found = s.scalars(select(Order)).one_or_none()
            if found is not None:
                s.expunge(found)
            return found

    time.sleep(1.2)  # let localstripe's delayed deliveries from earlier tests go nowhere first
    with Server(create_app(settings)) as base:
        hook = {"url": f"{base}/stripe/webhook", "secret": WEBHOOK_SECRET}
        httpx.post(f"{localstripe}/_config/webhooks/launchkit", data=hook).raise_for_status()
        sub = real_subscription(client, 17700, meta, "camille@example.fr")
        deal = Purchase(
            meta, "camille@example.fr", 17700, "EUR", instalments=3, subscription=sub.id
        )
        body = encode(deal.completed(int(time.time())))
        headers = {"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET, int(time.time()))}
        assert (
            httpx.post(f"{base}/stripe/webhook", content=body, headers=headers).status_code == 200
        )
        wait_for(lambda: (o := order()) is not None and o.instalments_paid == 1, "1st instalment")
        for number in (2, 3):
            invoice = client.v1.invoices.create(
                params={"customer": sub.customer, "subscription": sub.id}
            )
            client.v1.invoices.pay(invoice.id)
            wait_for(lambda n=number: order().instalments_paid == n, f"instalment {number}")
        wait_for(lambda: order().subscription_cancelled_at is not None, "the cancellation")
        assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
        with pytest.raises(stripe.InvalidRequestError):  # no 4th invoice on a cancelled plan
            client.v1.invoices.create(params={"customer": sub.customer, "subscription": sub.id})
        invoices = client.v1.invoices.list(params={"customer": sub.customer}).data
        assert sorted(i.status for i in invoices) == ["paid"] * 3
        final = order()
        assert (final.status, final.instalments_paid, final.paid_cents) == (
            "completed_plan",
            3,
            53100,
        )
        assert final.access
        wait_for(lambda: len(smtp_sink.messages) >= 1, "the receipt")
        time.sleep(1.5)  # localstripe's customer.subscription.deleted arrives ~1 s later
    with sessions.begin() as s:
        types = set(s.scalars(select(StripeEvent.type)))
        assert {"invoice.payment_succeeded", "checkout.session.completed"} <= types
        assert s.scalars(select(Order)).one().status == "completed_plan"
    assert len(smtp_sink.messages) == 1  # exactly one receipt for the order


# --- the sales page -------------------------------------------------------------------------


def test_sales_page_shows_plans_deadline_and_prefill(web, sessions, stripe_settings, shop):
    token = tokens.make_token(
        stripe_settings, tokens.Purpose.CHECKOUT, {"s": shop["subscriber_id"]}
    )
    page = web.get(f"/buy/cours?t={token}")
    assert page.status_code == 200
    html = page.text
    assert (
        "Cours photo" in html and "497,00\xa0€" in html and "3 mensualités de 177,00\xa0€" in html
    )
    assert "531,00\xa0€ au total" in html and "Workbook" in html and "30 jours" in html
    assert 'value="camille@example.fr"' in html and "25 novembre 2026" in html
    assert "lk-countdown" in html
    assert web.get("/buy/nothing").status_code == 404
    with sessions.begin() as s:
        events = s.execute(select(WebEvent.kind, WebEvent.subscriber_id)).all()
        assert events == [("sales_view", shop["subscriber_id"])]


def test_buy_redirects_to_stripe_checkout(web, sessions, shop):
    http: RecordingClient = web.app.state.stripe_client._requestor._client  # type: ignore[attr-defined]
    csrf = {"csrf_token": csrf_of(web.get("/buy/cours").text)}  # the sales page's form token
    response = web.post(
        "/buy/cours?plan=3", data={"email": "new@example.fr", **csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "https://checkout.stripe.com/c/pay/cs_test_123"
    fields = http.requests[-1][3]
    assert (fields["mode"], fields["customer_email"]) == ("subscription", "new@example.fr")
    bad = web.post("/buy/cours", data={"plan": "7", **csrf}, follow_redirects=False)
    assert bad.status_code == 400
    with sessions.begin() as s:
        assert sorted(s.scalars(select(WebEvent.kind))) == ["checkout_start", "sales_view"]


@pytest.mark.parametrize("shift, text", [(-2, "pas encore ouvertes"), (6, "sont fermées")])
def test_closed_cart_says_so_and_creates_no_session(stripe_settings, shop, now, shift, text):
    app = create_app(stripe_settings, clock=lambda: now + timedelta(days=shift))
    http = RecordingClient()
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=http)
    with TestClient(app) as web:
        page = web.get("/buy/cours")
        assert page.status_code == 403 and text in page.text
        response = web.post("/buy/cours", data={"plan": "full"}, follow_redirects=False)
        assert response.status_code == 403 and text in response.text
    assert http.requests == []


def test_concurrent_deliveries_of_one_event_apply_once(sessions, stripe_settings, shop, now):
    """10 simultaneous deliveries of the same event over real HTTP: one order, one payment."""
    from concurrent.futures import ThreadPoolExecutor

    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    real_ts = int(time.time())
    event = deal.completed(real_ts)
    body = encode(event)
    with Server(create_app(stripe_settings)) as base:

        def deliver(_: int) -> int:
            headers = {"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET, real_ts)}
            return httpx.post(
                f"{base}/stripe/webhook", content=body, headers=headers, timeout=30
            ).status_code

        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(deliver, range(10)))
    assert codes == [200] * 10
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Order.id))) == 1
        assert s.scalar(select(func.count(Payment.id))) == 1
        assert s.scalar(select(func.count(StripeEvent.id))) == 1
