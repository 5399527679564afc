"""Stripe events whatever their order and shape (issue #14, #15): orders linked to their
subscriber by metadata or by the address typed at checkout, refunds from the Dashboard with their
time and amount, ``paid_at`` when the money moved, fees captured or left unknown, over-collection
flagged; signature headers with one ``t=`` only, absurd values refused with nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from launchkit import checkout
from launchkit.models import (
    Launch,
    Order,
    OrderStatus,
    Payment,
    Refund,
    StripeEvent,
    SubscriberTag,
)
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


# --- fees (#14): the balance transaction's fee, or unknown (NULL), never 0 ------------------------


def _fee_client(settings, stripe_sim):
    import dataclasses

    keyed = dataclasses.replace(settings, stripe_api_key="sk_test_sim")
    return checkout.make_client(keyed, http_client=stripe_sim)


def test_fees_read_from_the_balance_transaction(sessions, settings, shop, now):
    from launchkit.stripe_sim import SimulatedStripe, eu_card_fee

    sim = SimulatedStripe()
    client = _fee_client(settings, sim)
    ts = int(now.timestamp())
    full = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    plan = Purchase(shop["plan"], "paul@example.org", 17700, "EUR", instalments=3)
    sim.purchases += [full, plan]
    events = [full.completed(ts), full.paid(ts), plan.invoice(1, ts), plan.completed(ts)]
    deliver(sessions, settings, events, now, client=client)
    with sessions.begin() as s:
        fees = dict(s.execute(select(Order.email, Order.fee_cents)).all())
        assert eu_card_fee(49700) == 771  # 1.5% + 0.25 EUR
        assert fees == {"camille@example.fr": 771, "paul@example.org": eu_card_fee(17700)}
    charge_reads = [url for method, url in sim.seen if "/v1/charges/" in url]
    assert len(charge_reads) == 2 and all("expand" in url for url in charge_reads)


def test_unknown_fees_stay_null_never_zero(sessions, settings, shop, now):
    from launchkit.stripe_sim import SimulatedStripe

    ts = int(now.timestamp())
    known_nowhere = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [known_nowhere.paid(ts)], now)  # no key: nothing is fetched
    plan = Purchase(shop["plan"], "paul@example.org", 17700, "EUR", instalments=3)
    client = _fee_client(settings, SimulatedStripe())  # answers 404 for an unknown charge
    deliver(sessions, settings, [plan.invoice(1, ts)], now, client=client)
    with sessions.begin() as s:
        assert s.scalars(select(Order.fee_cents)).all() == [None, None]
        assert s.scalars(select(Payment.fee_cents)).all() == [None, None]


def test_cli_refund_then_its_event_without_list_is_one_refund(sessions, settings, shop, now):
    from launchkit.stripe_sim import SimulatedStripe

    client = _fee_client(settings, SimulatedStripe())
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [deal.completed(ts), deal.paid(ts)], now)
    with sessions.begin() as s:
        order_id = s.scalars(select(Order.id)).one()
        checkout.refund_order(s, client, order_id, now=now + timedelta(days=2))
    deliver(sessions, settings, [deal.refunded(ts + 2 * 86400 + 5)], now)
    assert refunds(sessions) == [(49700, now + timedelta(days=2), "succeeded")]
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Refund.id))) == 1


# --- over-collection (#14) -----------------------------------------------------------------------


def test_fourth_instalment_of_a_three_instalment_plan_is_flagged_and_refundable(
    sessions, settings, shop, now
):
    from launchkit.stripe_sim import SimulatedStripe

    ts = int(now.timestamp())
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    events = [deal.completed(ts)] + [deal.invoice(n, ts + n * 30 * 86400) for n in (1, 2, 3, 4)]
    deliver(sessions, settings, events, now)
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        shown = checkout.order_as_dict(s, order)
        assert (shown["status"], shown["paid_cents"]) == (OrderStatus.COMPLETED_PLAN, 4 * 17700)
        assert shown["over_collected_cents"] == 17700
        assert [p["instalment_number"] for p in shown["over_collected"]] == [4]
        assert [o.id for o in checkout.list_orders(s, failing=True)] == [order.id]
        extra = shown["over_collected"][0]["payment"]
        late = now + timedelta(days=400)  # long after the guarantee: still returned
        refund = checkout.refund_order(
            s, _fee_client(settings, SimulatedStripe()), order.id, now=late, payment=extra
        )
        assert (refund.amount_cents, refund.status, refund.forced) == (17700, "succeeded", False)
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert order.status == OrderStatus.COMPLETED_PLAN  # the plan itself is not refunded
        assert checkout.order_as_dict(s, order)["over_collected_cents"] == 0
        assert checkout.list_orders(s, failing=True) == []


def test_cli_orders_failing_shows_over_collection(cli, sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    events = [deal.invoice(n, ts + n * 30 * 86400) for n in (1, 2, 3, 4)]
    deliver(sessions, settings, events, now)
    answer = cli("orders", "--failing", "--json")
    assert answer.exit_code == 0, answer.output
    [shown] = json.loads(answer.output)
    assert shown["over_collected_cents"] == 17700
    assert shown["over_collected"][0]["payment"] == deal.invoices[3]
    table = cli("orders", "--failing")
    assert "over-collected" in table.output
    assert "--payment" in cli("refund", "--help").output


# --- the buyer's language (#14) ------------------------------------------------------------------


def _subject_language(msg: Any) -> str:
    return "en" if msg.subject.startswith("Welcome") else "fr"


def test_receipts_and_dunning_in_the_buyers_language(sessions, settings, shop, now):
    assert settings.language == "fr"
    ts = int(now.timestamp())
    with sessions.begin() as s:
        offer = checkout.get_offer(s, "cours")
        launch = s.get(Launch, offer.launch_id)
        english_page = checkout.checkout_metadata(offer, launch, 1, None, False, "en")
        english_subscriber = create_subscriber(s, now, "jo@example.org")
        english_subscriber.language = "en"
        jo = checkout.checkout_metadata(offer, launch, 3, english_subscriber.id, False)
    outbox = Outbox()
    by_page = Purchase(english_page, "sam@example.org", 49700, "EUR")
    by_locale = Purchase(shop["typed"], "lou@example.org", 49700, "EUR")
    locale_event = by_locale.completed(ts)
    locale_event["data"]["object"]["locale"] = "en-GB"
    french = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    plan = Purchase(jo, "jo@example.org", 17700, "EUR", instalments=3)
    events = [
        by_page.completed(ts), locale_event, french.completed(ts),
        plan.invoice(1, ts), plan.invoice(2, ts + 86400, paid=False),
    ]  # fmt: skip
    deliver(sessions, settings, events, now, messenger=outbox)
    sent = {(m.to_email, "dunning" if "Welcome" not in m.subject and "Bienvenue" not in m.subject
             else "receipt"): m for m in outbox.sent}  # fmt: skip
    assert _subject_language(sent["sam@example.org", "receipt"]) == "en"
    assert _subject_language(sent["lou@example.org", "receipt"]) == "en"
    assert _subject_language(sent["camille@example.fr", "receipt"]) == "fr"
    assert _subject_language(sent["jo@example.org", "receipt"]) == "en"
    dunning = sent["jo@example.org", "dunning"]
    english = (settings.emails_dir / "transactional-en" / "dunning.md").read_text()
    subject = english.split('subject: "', 1)[1].split('"', 1)[0].split("{{", 1)[0].strip()
    assert dunning.subject.startswith(subject), dunning.subject
    assert "separate email" not in sent["sam@example.org", "receipt"].text


def test_receipt_promises_no_separate_access_email():
    from pathlib import Path

    for language in ("en", "fr"):
        text = (Path("emails") / f"transactional-{language}" / "receipt.md").read_text()
        assert "separate email" not in text and "email séparé" not in text


def test_fee_of_a_real_localstripe_charge(sessions, stripe_settings, shop, now):
    """localstripe expands a charge's balance transaction (its fee is 0 there, a known fee)."""
    from launchkit.stripe_events import payment_intent_succeeded
    from tests.fixtures.stripe import real_payment

    client = checkout.make_client(stripe_settings)
    pi = real_payment(client, 49700, shop["full"], "camille@example.fr")
    charge = client.v1.payment_intents.retrieve(pi).to_dict()["latest_charge"]
    charge = charge["id"] if isinstance(charge, dict) else charge
    expanded = client.v1.charges.retrieve(charge, params={"expand": ["balance_transaction"]})
    fee = expanded.to_dict()["balance_transaction"]["fee"]
    event = payment_intent_succeeded(
        created=int(now.timestamp()), payment_intent=pi, amount=49700, currency="EUR",
        metadata=shop["full"],
    )  # fmt: skip
    event["data"]["object"]["latest_charge"] = charge
    deliver(sessions, stripe_settings, [event], now)  # the API key is set: the fee is read
    assert one_order(sessions).fee_cents == fee


def test_refund_without_list_or_amount_is_listed_from_stripe(sessions, settings, shop, now):
    from launchkit.stripe_sim import SimulatedStripe

    sim = SimulatedStripe()
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    sim.refunds.append(
        {"id": "re_dash", "object": "refund", "amount": 12000, "charge": deal.charge(),
         "payment_intent": deal.payment_intent, "status": "succeeded", "currency": "eur",
         "created": ts + 3 * 86400, "metadata": {}}
    )  # fmt: skip
    event = deal.refunded(ts + 3 * 86400 + 30, amount_refunded=12000)
    del event["data"]["object"]["amount_refunded"]
    deliver(sessions, settings, [deal.completed(ts), event], now, client=_fee_client(settings, sim))
    assert refunds(sessions) == [(12000, at(ts + 3 * 86400), "succeeded")]
    assert one_order(sessions).refunded_cents == 12000
    assert any("charge=" in url for method, url in sim.seen if "/v1/refunds" in url)
