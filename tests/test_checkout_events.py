"""Stripe events whatever their order and shape (issue #14, #15): orders linked to their
subscriber by metadata or by the address typed at checkout, refunds from the Dashboard with their
time and amount, ``paid_at`` when the money moved, fees captured or left unknown, over-collection
flagged; signature headers with one ``t=`` only, absurd values refused with nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from launchkit import checkout
from launchkit.models import Launch, Order, OrderStatus, Refund, StripeEvent, SubscriberTag
from launchkit.stripe_events import Purchase, encode, sign_payload
from launchkit.web import create_app
from tests.fixtures.stripe import WEBHOOK_SECRET, create_offer, create_subscriber


class Outbox:
    """A messenger that keeps what it is given (the receipts and dunning emails queued)."""

    name = "memory"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def push(self, msg: Any, raw: bytes, on_commit_point: Any = None) -> None:
        if on_commit_point is not None:
            on_commit_point()
        self.sent.append(msg)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def shop(sessions, now) -> dict[str, Any]:
    """Offer "cours" with an open cart, subscriber Camille, metadata with and without her id."""
    with sessions.begin() as s:
        offer = create_offer(s, now)
        subscriber = create_subscriber(s, now)
        launch = s.get(Launch, offer.launch_id)
        return {
            "full": checkout.checkout_metadata(offer, launch, 1, subscriber.id, False),
            "typed": checkout.checkout_metadata(offer, launch, 1, None, False),
            "plan": checkout.checkout_metadata(offer, launch, 3, None, False),
            "subscriber_id": subscriber.id,
        }


def deliver(sessions, settings, events, now, messenger=None, client=None) -> list[str]:
    outcomes = []
    for event in events:
        with sessions.begin() as s:
            outcomes.append(
                checkout.handle_event(
                    s, settings, event, now=now, messenger=messenger, client=client
                )
            )
    return outcomes


def one_order(sessions) -> Order:
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        s.expunge(order)
        return order


def tags(sessions, subscriber_id: int) -> set[str]:
    with sessions.begin() as s:
        return set(
            s.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == subscriber_id))
        )


def refunds(sessions) -> list[tuple[int, datetime | None, str]]:
    with sessions.begin() as s:
        rows = s.scalars(select(Refund).where(Refund.status == "succeeded").order_by(Refund.id))
        return sorted((r.amount_cents, r.refunded_at, r.status) for r in rows)


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# --- linking whatever the order ----------------------------------------------------------------


def test_payment_before_session_links_the_buyer_by_the_typed_address(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["typed"], "  Camille@EXAMPLE.fr ", 49700, "EUR")
    outbox = Outbox()
    deliver(sessions, settings, [deal.paid(ts)], now, messenger=outbox)
    order = one_order(sessions)
    assert (order.status, order.email, order.subscriber_id) == (OrderStatus.PAID, "", None)
    assert outbox.sent == []  # the receipt waits for an address instead of failing
    deliver(sessions, settings, [deal.completed(ts + 5)], now, messenger=outbox)
    order = one_order(sessions)
    assert (order.email, order.subscriber_id) == ("camille@example.fr", shop["subscriber_id"])
    assert order.source == "webinar"
    assert {"buyer", "buyer:spring"} <= tags(sessions, shop["subscriber_id"])
    assert [m.to_email for m in outbox.sent] == ["camille@example.fr"]


def test_invoice_before_session_links_by_metadata_id(sessions, settings, shop, now):
    ts = int(now.timestamp())
    plan = dict(shop["plan"], subscriber=str(shop["subscriber_id"]))
    deal = Purchase(plan, "other@example.org", 17700, "EUR", instalments=3)
    deliver(sessions, settings, [deal.invoice(1, ts), deal.completed(ts + 3)], now)
    order = one_order(sessions)
    assert order.subscriber_id == shop["subscriber_id"]  # the id wins over the typed address
    assert order.email == "other@example.org"
    assert "buyer" in tags(sessions, shop["subscriber_id"])


# --- paid_at -----------------------------------------------------------------------------------


def test_paid_at_is_when_the_money_moved_not_when_the_session_opened(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    completed = deal.completed(ts + 60)
    completed["data"]["object"]["created"] = ts - 3600  # opened an hour before paying
    deliver(sessions, settings, [completed], now)
    assert one_order(sessions).paid_at == at(ts + 60)
    deliver(sessions, settings, [deal.paid(ts + 50)], now)
    assert one_order(sessions).paid_at == at(ts + 50)  # the payment itself, whichever came first


# --- refunds from any source -------------------------------------------------------------------


def test_dashboard_refund_without_list_has_amount_and_time(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [deal.completed(ts)], now)
    deliver(sessions, settings, [deal.refunded(ts + 86400, amount_refunded=49700)], now)
    assert refunds(sessions) == [(49700, at(ts + 86400), "succeeded")]
    order = one_order(sessions)
    assert (order.status, order.refunded_cents, order.refunded_at) == (
        OrderStatus.REFUNDED, 49700, at(ts + 86400),
    )  # fmt: skip


@pytest.mark.parametrize("reverse", [False, True])
def test_two_partial_dashboard_refunds_in_any_order(sessions, settings, shop, now, reverse):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    first = deal.refunded(ts + 100, amount_refunded=10000)
    second = deal.refunded(ts + 200, amount_refunded=49700)
    events = [deal.completed(ts), first, second, first]
    if reverse:
        events = [second, deal.completed(ts), first, second]
    deliver(sessions, settings, events, now)
    assert refunds(sessions) == [
        (10000, at(ts + 100), "succeeded"),
        (39700, at(ts + 200), "succeeded"),
    ]


def test_refund_list_gives_each_refund_its_own_time(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    event = deal.refunded(ts + 500, amount_refunded=20000)
    event["data"]["object"]["refunds"] = {
        "object": "list",
        "data": [{"id": "re_1", "object": "refund", "amount": 20000, "currency": "eur",
                  "created": ts + 400, "status": "succeeded", "metadata": {}}],
    }  # fmt: skip
    deliver(sessions, settings, [deal.completed(ts), event, event], now)
    assert refunds(sessions) == [(20000, at(ts + 400), "succeeded")]


# --- signatures: one t= per header (#15 item 3) -------------------------------------------------


@pytest.fixture
def web(settings, now):
    import dataclasses

    signed = dataclasses.replace(settings, stripe_webhook_secret=WEBHOOK_SECRET, stripe_api_key="")
    with TestClient(create_app(signed, clock=lambda: now)) as client:
        yield client


def post(web: TestClient, body: bytes, header: str) -> httpx.Response:
    headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    return web.post("/stripe/webhook", content=body, headers=headers)


def nothing_written(sessions) -> bool:
    with sessions.begin() as s:
        counts = [s.scalar(select(func.count()).select_from(m)) for m in (StripeEvent, Order)]
        return counts == [0, 0]


def test_old_signature_with_a_fresh_t_appended_is_refused(web, sessions, shop, now):
    ts = int(now.timestamp())
    body = encode(Purchase(shop["full"], "camille@example.fr", 49700, "EUR").completed(ts))
    old = sign_payload(body, WEBHOOK_SECRET, ts - 86400)
    for header in (f"{old},t={ts}", f"t={ts},{old}", f"{old},t={ts - 86400}"):
        assert post(web, body, header).status_code == 400, header
    assert nothing_written(sessions)


def test_several_v1_for_a_secret_rotation_are_accepted(web, sessions, shop, now):
    ts = int(now.timestamp())
    body = encode(Purchase(shop["full"], "camille@example.fr", 49700, "EUR").completed(ts))
    good = sign_payload(body, WEBHOOK_SECRET, ts)
    other = sign_payload(body, "whsec_retired", ts).split(",")[1]
    assert post(web, body, f"{good},{other}").status_code == 200
    assert one_order(sessions).status == OrderStatus.PAID


# --- absurd values in a validly signed event (#15 item 14) ---------------------------------------


def _spoil(event: dict, path: str, value: Any) -> dict:
    target = event
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return event


SPOILED = {
    "created NaN": ("created", float("nan")),
    "created huge": ("created", 10**30),
    "amount 10**30": ("data.object.amount_total", 10**30),
    "amount negative": ("data.object.amount_total", -5),
    "amount as text": ("data.object.amount_total", "49700"),
    "amount float": ("data.object.amount_total", 497.5),
    "no object id": ("data.object.id", KeyError),
    "object id a number": ("data.object.id", 12),
    "no event id": ("id", KeyError),
    "metadata a list": ("data.object.metadata", ["launch"]),
    "payment intent a number": ("data.object.payment_intent", 7),
    "email a dict": ("data.object.customer_email", {"a": 1}),
    "data not a dict": ("data", "x"),
}


@pytest.mark.parametrize("case", sorted(SPOILED))
def test_absurd_values_are_a_400_with_nothing_written(web, sessions, shop, now, case):
    ts = int(now.timestamp())
    path, value = SPOILED[case]
    event = _spoil(
        Purchase(shop["full"], "camille@example.fr", 49700, "EUR").completed(ts), path, value
    )
    body = json.dumps(event).encode()  # NaN is written as NaN, as a hostile sender could
    response = post(web, body, sign_payload(body, WEBHOOK_SECRET, ts))
    assert response.status_code == 400, response.text
    assert nothing_written(sessions)


def test_absurd_values_refused_by_handle_event_too(sessions, settings, shop, now):
    event = Purchase(shop["full"], "camille@example.fr", 49700, "EUR").completed(
        int(now.timestamp())
    )
    event["data"]["object"]["amount_total"] = 10**30
    with pytest.raises(checkout.InvalidEvent), sessions.begin() as s:
        checkout.handle_event(s, settings, event, now=now)
    assert nothing_written(sessions)
