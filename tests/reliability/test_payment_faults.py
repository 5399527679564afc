"""Payments under faults (issue 8): signed webhooks through the real app, replays (sequential
and concurrent over real HTTP), events in every problematic order, a web process SIGKILLed
before and after its commit, Stripe calls cut or throttled, and the guarantee's edges.

Peers: real SQLite and PostgreSQL, a real localstripe, the real Starlette app (TestClient and
uvicorn), the file outbox for receipts. Sizes scale with ``LAUNCHKIT_TEST_SCALE`` (default 1.0
= CI size); ``docs/reliability.md`` lists the CI and full sizes and the command for the latter.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import func, select
from starlette.testclient import TestClient

from launchkit import checkout
from launchkit.errors import PaymentError
from launchkit.models import (
    Launch,
    Order,
    Payment,
    Refund,
    StripeEvent,
    Subscriber,
    SubscriberTag,
)
from launchkit.stripe_events import Purchase, encode, payment_intent_succeeded, sign_payload
from launchkit.web import create_app
from tests.conftest import free_port
from tests.fixtures.browser import stop_server
from tests.fixtures.stripe import (
    WEBHOOK_SECRET,
    create_offer,
    real_payment,
    real_subscription,
)
from tests.test_checkout import RecordingClient
from tests.test_webhooks import Server

pytestmark = pytest.mark.reliability

SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1.0"))
ROOT = Path(__file__).resolve().parents[2]


def scaled(ci_size: int, minimum: int = 2) -> int:
    """The CI size times LAUNCHKIT_TEST_SCALE (never below ``minimum``)."""
    return max(minimum, round(ci_size * SCALE))


# --- shared helpers ---------------------------------------------------------------------------


@dataclasses.dataclass
class Shop:
    """An open cart with offer "cours" and one subscriber per future buyer."""

    subscribers: list[int]
    full: list[dict[str, str]]
    plan: list[dict[str, str]]

    def purchase(self, i: int, *, instalments: int = 1, **ids: Any) -> Purchase:
        meta = self.full[i] if instalments == 1 else self.plan[i]
        amount = 49700 if instalments == 1 else 17700
        return Purchase(meta, f"buyer{i}@example.fr", amount, "EUR", instalments, **ids)


def open_shop(sessions, now, buyers: int) -> Shop:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        launch = s.get(Launch, offer.launch_id)
        people = [
            Subscriber(
                email=f"buyer{i}@example.fr",
                first_name=f"B{i}",
                source="webinar",
                created_at=now,
                updated_at=now,
            )  # fmt: skip
            for i in range(buyers)
        ]
        s.add_all(people)
        s.flush()
        ids = [p.id for p in people]
        return Shop(
            subscribers=ids,
            full=[checkout.checkout_metadata(offer, launch, 1, sid, False) for sid in ids],
            plan=[checkout.checkout_metadata(offer, launch, 3, sid, False) for sid in ids],
        )


def counts(sessions) -> dict[str, int]:
    """Rows that a webhook may create."""
    with sessions.begin() as s:
        return {
            "orders": s.scalar(select(func.count(Order.id))),
            "payments": s.scalar(select(func.count(Payment.id))),
            "stripe_events": s.scalar(select(func.count(StripeEvent.id))),
            "refunds": s.scalar(select(func.count(Refund.id))),
            "tags": s.scalar(select(func.count()).select_from(SubscriberTag)),
            "access": s.scalar(select(func.count(Order.id)).where(Order.access.is_(True))),
            "buyers": s.scalar(
                select(func.count(func.distinct(SubscriberTag.subscriber_id))).where(
                    SubscriberTag.tag == "buyer:spring"
                )
            ),
        }


def receipts(outbox: Path) -> list[str]:
    """Receipt emails in the file outbox, one entry per file (Message-IDs)."""
    found = []
    for path in sorted(outbox.glob("**/*.eml")) if outbox.exists() else []:
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        ids = [
            ln.split(":", 1)[1].strip()
            for ln in head.split("\r\n")
            if ln.lower().startswith("message-id:")
        ]
        found.extend(ids)
    return found


def headers_for(body: bytes, ts: int, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Stripe-Signature": sign_payload(body, secret, ts), "Content-Type": "application/json"}


@pytest.fixture
def web(stripe_settings, now) -> Iterator[TestClient]:
    app = create_app(stripe_settings, clock=lambda: now)
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=RecordingClient())
    with TestClient(app) as client:
        yield client


# --- 1. signatures: N valid + N bad ---------------------------------------------------------


def _bad_delivery(kind: int, event: dict, ts: int) -> tuple[bytes, dict[str, str]]:
    """Five ways to be wrong: a changed byte, wrong secret, no header, stale, far future."""
    body = encode(event)
    if kind == 0:
        index = body.index(b'"amount_total":') + len(b'"amount_total":')
        changed = (
            body[:index] + (b"8" if body[index : index + 1] != b"8" else b"7") + body[index + 1 :]
        )
        return changed, headers_for(body, ts)
    if kind == 1:
        return body, headers_for(body, ts, "whsec_not_the_right_secret")
    if kind == 2:
        return body, {"Content-Type": "application/json"}
    if kind == 3:
        return body, headers_for(body, ts - 301)
    return body, headers_for(body, ts + 301)


def test_valid_webhooks_applied_bad_ones_refused_without_side_effect(
    web, sessions, stripe_settings, now
):
    n = scaled(500)  # issue 8: 1,000 + 1,000 at LAUNCHKIT_TEST_SCALE=2
    shop = open_shop(sessions, now, n)
    ts = int(now.timestamp())
    rng = random.Random(8)
    valid = [shop.purchase(i).completed(ts) for i in range(n)]
    bad = [
        (k % 5, shop.purchase(i).completed(ts)) for k, i in enumerate(rng.choices(range(n), k=n))
    ]
    plan = [("ok", e) for e in valid] + [("bad", b) for b in bad]
    rng.shuffle(plan)
    refused, applied = 0, 0
    for what, item in plan:
        if what == "ok":
            response = web.post(
                "/stripe/webhook", content=encode(item), headers=headers_for(encode(item), ts)
            )
            assert response.status_code == 200 and response.json()["outcome"] == "applied"
            applied += 1
            continue
        before = counts(sessions)
        body, headers = _bad_delivery(item[0], item[1], ts)
        response = web.post("/stripe/webhook", content=body, headers=headers)
        assert response.status_code == 400, item[0]
        assert counts(sessions) == before, item[0]
        refused += 1
    after = counts(sessions)
    assert (applied, refused) == (n, n)
    assert (after["orders"], after["payments"], after["stripe_events"]) == (n, n, n)
    assert after["access"] == after["buyers"] == n
    mails = receipts(stripe_settings.outbox_dir)
    assert len(mails) == len(set(mails)) == n  # one receipt per valid purchase, none for bad ones
    print(f"webhooks: {applied}/{n} valid applied, {refused}/{n} bad -> 400, 0 side effects")


# --- 2. replays: 5 in sequence + 10 concurrent per event, over real HTTP --------------------


def _events_of(purchase: Purchase, ts: int) -> list[dict]:
    if purchase.instalments == 1:
        pi = payment_intent_succeeded(
            created=ts, payment_intent=purchase.payment_intent, amount=purchase.amount,
            currency=purchase.currency, metadata=purchase.metadata,
        )  # fmt: skip
        return [purchase.completed(ts), pi]
    return [purchase.completed(ts), purchase.invoice(1, ts)]


def test_replayed_events_apply_exactly_once(sessions, stripe_settings, now):
    m = scaled(50)  # issue 8: 500 at LAUNCHKIT_TEST_SCALE=10
    shop = open_shop(sessions, now, m)
    ts = int(now.timestamp())
    purchases = [shop.purchase(i, instalments=1 if i % 2 else 3) for i in range(m)]
    app = create_app(stripe_settings, clock=lambda: now)
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=RecordingClient())
    codes: dict[int, int] = {}
    lock = threading.Lock()
    with Server(app) as base, httpx.Client(timeout=60) as http, ThreadPoolExecutor(10) as pool:

        def deliver(event: dict) -> int:
            body = encode(event)
            for _ in range(20):  # like Stripe: anything but 2xx is delivered again
                code = http.post(
                    f"{base}/stripe/webhook", content=body, headers=headers_for(body, ts)
                ).status_code
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    return code
            return code

        for purchase in purchases:
            for event in _events_of(purchase, ts):
                assert [deliver(event) for _ in range(5)] == [200] * 5
                assert list(pool.map(deliver, [event] * 10)) == [200] * 10
    final = counts(sessions)
    assert (final["orders"], final["access"], final["buyers"]) == (m, m, m)
    assert final["payments"] == m and final["stripe_events"] == 2 * m
    mails = receipts(stripe_settings.outbox_dir)
    assert len(mails) == len(set(mails)) == m
    print(f"replays: {m} purchases, {sum(codes.values())} deliveries, codes {codes}")


# --- 3. events in every problematic order ----------------------------------------------------


def _story(shop: Shop, i: int, ts: int) -> list[dict]:
    """The in-order events of purchase ``i``: one of six stories."""
    kind = i % 6
    if kind in (0, 1, 2):
        deal = shop.purchase(i)
        events = [deal.completed(ts)]
        if kind == 1:
            events.append(deal.refunded(ts + 60))  # refunded in full
        if kind == 2:
            events.append(deal.disputed(ts + 60))  # disputed
        return events
    deal = shop.purchase(i, instalments=3)
    events = [deal.completed(ts), deal.invoice(1, ts + 1)]
    if kind == 3:  # plan paid to the end
        return events + [deal.invoice(2, ts + 2), deal.invoice(3, ts + 3)]
    if kind == 4:  # plan: second instalment fails, then succeeds
        return events + [deal.invoice(2, ts + 2, paid=False), deal.invoice(2, ts + 3)]
    return events + [deal.disputed(ts + 4)]  # plan: first instalment disputed


def _scrambles(stories: list[list[dict]], rng: random.Random) -> dict[str, list[dict]]:
    """Problematic orders: each story reversed (refund/invoice/dispute before the payment or
    session), a global shuffle, and a shuffle with duplicates interleaved."""
    reversed_all = [e for story in stories for e in reversed(story)]
    shuffled = [e for story in stories for e in story]
    rng.shuffle(shuffled)
    with_dupes = shuffled + rng.sample(shuffled, len(shuffled) // 2)
    rng.shuffle(with_dupes)
    return {"reversed": reversed_all, "shuffled": shuffled, "duplicates": with_dupes}


def state_snapshot(sessions) -> list[tuple]:
    with sessions.begin() as s:
        orders = s.scalars(select(Order).order_by(Order.email)).all()
        state = []
        for o in orders:
            pays = s.execute(
                select(
                    Payment.stripe_id, Payment.status, Payment.amount_cents, Payment.refunded_cents
                )
                .where(Payment.order_id == o.id)
                .order_by(Payment.stripe_id)
            ).all()
            state.append(
                (o.email, o.status, o.plan_instalments, o.instalments_paid, o.instalments_failed,
                 o.paid_cents, o.refunded_cents, o.access, o.source, tuple(map(tuple, pays)))
            )  # fmt: skip
        tags = sorted(s.execute(select(SubscriberTag.subscriber_id, SubscriberTag.tag)).all())
        refunds = s.scalar(select(func.count(Refund.id)))
        parked = s.scalar(select(func.count()).where(StripeEvent.status == "parked"))
        return [*state, ("tags", tuple(tags)), ("refunds", refunds), ("parked", parked)]


def _reset(sessions) -> None:
    with sessions.begin() as s:
        for model in (Refund, Payment, Order, StripeEvent, SubscriberTag):
            s.query(model).delete()


def test_final_state_does_not_depend_on_event_order(sessions, stripe_settings, now):
    k = scaled(100, minimum=6)  # issue 8: 200 at LAUNCHKIT_TEST_SCALE=2
    shop = open_shop(sessions, now, k)
    ts = int(now.timestamp())
    stories = [_story(shop, i, ts) for i in range(k)]
    in_order = [e for story in stories for e in story]

    def deliver(events: list[dict]) -> list[str]:
        outcomes = []
        for event in events:
            with sessions.begin() as s:
                outcomes.append(checkout.handle_event(s, stripe_settings, event, now=now))
        return outcomes

    deliver(in_order)
    expected = state_snapshot(sessions)
    statuses = sorted({row[1] for row in expected if isinstance(row[1], str) and "@" in row[0]})
    assert statuses == ["active_plan", "completed_plan", "disputed", "paid", "refunded"]
    assert ("parked", 0) in expected
    for name, events in _scrambles(stories, random.Random(k)).items():
        _reset(sessions)
        outcomes = deliver(events)
        assert "parked" in outcomes, name
        assert state_snapshot(sessions) == expected, name
        assert outcomes.count("duplicate") == len(events) - len(in_order), name
        print(f"event order {name}: {k} purchases, {len(events)} events, same final state")


# --- 4. the web process killed before and after its commit ---------------------------------

KILLING_SERVER = r'''
"""Test-only: serve the launchkit app; SIGKILL itself around the commit of a webhook."""
import os, sys
from pathlib import Path
import uvicorn
from sqlalchemy import event
from sqlalchemy.orm import Session
from launchkit.config import load_settings
from launchkit.models import StripeEvent
from launchkit.web import create_app

mode, port = sys.argv[1], int(sys.argv[2])
settings = load_settings(Path(os.environ["LAUNCHKIT_HOME"]), env=dict(os.environ))
app = create_app(settings)
engine = app.state.lk.engine
armed = {"on": False}

@event.listens_for(Session, "pending_to_persistent")
def _arm(session, instance):  # this transaction records a Stripe event
    if isinstance(instance, StripeEvent):
        armed["on"] = True


@event.listens_for(engine, "commit")
def _around_db_commit(conn):  # every flush is done; the DBAPI commit comes next
    if not armed["on"]:
        return
    if mode == "after":  # commit for real, then die before anything else happens
        conn.connection.dbapi_connection.commit()
    if mode in ("before", "after"):
        os.kill(os.getpid(), 9)


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
'''


def _serve(tmp_path: Path, env: dict[str, str], mode: str) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "killing_server.py"
    script.write_text(KILLING_SERVER)
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHKIT_", "STRIPE_"))}
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, str(port)], cwd=ROOT, env={**clean, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "server died")
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the web process did not start")


@pytest.mark.parametrize("mode", ["before", "after"])
def test_web_process_killed_around_its_commit_then_redelivered(
    tmp_path, sessions, stripe_settings, workspace_env, now, mode
):
    kills = scaled(2, minimum=2)
    shop = open_shop(sessions, now, kills)
    killed = 0
    for i in range(kills):
        deal = shop.purchase(i, instalments=1 if i % 2 == 0 else 3)
        ts = int(time.time())
        events = [deal.completed(ts)] + ([deal.invoice(1, ts)] if deal.instalments > 1 else [])
        for event in events:
            body = encode(event)
            proc, base = _serve(tmp_path, workspace_env, mode)
            try:
                with pytest.raises(httpx.TransportError):  # the process dies mid-request
                    httpx.post(
                        f"{base}/stripe/webhook",
                        content=body,
                        headers=headers_for(body, ts),
                        timeout=30,
                    )
                assert proc.wait(timeout=10) == -9
                killed += 1
            finally:
                stop_server(proc)
            with sessions.begin() as s:
                stored = s.get(StripeEvent, event["id"])
                assert (stored is not None) == (mode == "after")
            with TestClient(create_app(stripe_settings)) as web:  # a fresh process's app
                for _ in range(2):  # Stripe redelivers; a second redelivery changes nothing
                    answer = web.post(
                        "/stripe/webhook", content=body, headers=headers_for(body, ts)
                    )
                    assert answer.status_code == 200
    with sessions.begin() as s:
        orders = s.scalars(select(Order).order_by(Order.email)).all()
        assert len(orders) == kills
        assert all(o.instalments_paid == 1 and o.access for o in orders)
        assert s.scalar(select(func.count(Payment.id))) == kills
    mails = receipts(stripe_settings.outbox_dir)
    assert len(mails) == len(set(mails)) == kills  # each receipt once, even killed after commit
    print(
        f"kill {mode} commit: {killed} kills, {kills} orders, {kills} payments, {len(mails)} mails"
    )


# --- 5. refunds with Stripe calls cut or throttled -------------------------------------------


def _paid_orders(sessions, settings, client, now, n: int) -> list[tuple[int, str]]:
    shop = open_shop(sessions, now, n)
    made = []
    for i in range(n):
        pi = real_payment(client, 49700, shop.full[i], f"buyer{i}@example.fr")
        deal = shop.purchase(i, payment_intent=pi)
        with sessions.begin() as s:
            assert (
                checkout.handle_event(s, settings, deal.completed(int(now.timestamp())), now=now)
                == "applied"
            )
            made.append(
                (s.scalar(select(Order.id).where(Order.stripe_payment_intent_id == pi)), pi)
            )
    return made


FAULTS = [["cut"], ["429"], ["cut", "429"], ["429", "cut"], ["cut", "cut", "cut"], ["429"] * 3, []]


def test_cut_or_throttled_refund_calls_never_refund_twice(sessions, stripe_settings, now):
    n = scaled(14, minimum=7)
    plain = checkout.make_client(stripe_settings)
    orders = _paid_orders(sessions, stripe_settings, plain, now, n)
    partial = {}
    for number, (order_id, _pi) in enumerate(orders):
        fault = list(FAULTS[number % len(FAULTS)])
        http = RecordingClient(cut={"POST refunds": fault})
        flaky = checkout.make_client(stripe_settings, http_client=http)
        amount = None if number % 2 == 0 else 10000
        partial[order_id] = amount
        for attempt in range(3):  # the operator runs `launchkit refund` again after an error
            try:
                with sessions.begin() as s:
                    refund = checkout.refund_order(
                        s, flaky if attempt == 0 else plain, order_id, now=now, amount_cents=amount
                    )
                if refund.status == "succeeded":
                    break
            except PaymentError:
                continue
        with sessions.begin() as s:
            if s.get(Order, order_id).refunded_cents == 0:  # every attempt was cut: adopt it now
                checkout.refund_order(s, plain, order_id, now=now, amount_cents=amount)
    total_stripe = 0
    with sessions.begin() as s:
        for order_id, pi in orders:
            expected = partial[order_id] or 49700
            stripe_refunds = plain.v1.refunds.list(params={"payment_intent": pi}).data
            assert [r.amount for r in stripe_refunds] == [expected], pi
            total_stripe += len(stripe_refunds)
            order = s.get(Order, order_id)
            assert order.refunded_cents == expected
            ours = s.scalars(select(Refund).where(Refund.order_id == order_id)).all()
            assert [(r.amount_cents, r.status) for r in ours] == [(expected, "succeeded")]
    assert total_stripe == n
    print(f"refund faults: {n} orders, {total_stripe} Stripe refunds, 0 doubles")


# --- 6. guarantee edges -----------------------------------------------------------------------


def test_guarantee_window_plus_one_second_is_refused(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    ((order_id, pi), (other_id, other_pi)) = _paid_orders(sessions, stripe_settings, client, now, 2)
    with sessions.begin() as s:
        closes = checkout.guarantee_closes(s, s.get(Order, order_id))
    assert closes is not None
    with sessions.begin() as s, pytest.raises(PaymentError, match="guarantee window closed"):
        checkout.refund_order(s, client, order_id, now=closes + timedelta(seconds=1))
    assert client.v1.refunds.list(params={"payment_intent": pi}).data == []
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Refund.id))) == 0
        refund = checkout.refund_order(s, client, other_id, now=closes)  # the last second is in
        assert refund.status == "succeeded" and not refund.forced
    assert [r.amount for r in client.v1.refunds.list(params={"payment_intent": other_pi}).data] == [
        49700
    ]


def test_partial_refunds_never_exceed_the_charge(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    ((order_id, pi),) = _paid_orders(sessions, stripe_settings, client, now, 1)
    rng = random.Random(3)
    refused = 0
    for _ in range(12):
        amount = rng.choice([1, 999, 5000, 12345, 20000, 49700, 60000])
        with sessions.begin() as s:
            left = 49700 - s.get(Order, order_id).refunded_cents
        try:
            with sessions.begin() as s:
                checkout.refund_order(s, client, order_id, now=now, amount_cents=amount)
            assert amount <= left
        except PaymentError:
            assert amount > left or left == 0
            refused += 1
    with sessions.begin() as s:
        left = 49700 - s.get(Order, order_id).refunded_cents
    if left:
        with sessions.begin() as s:
            checkout.refund_order(s, client, order_id, now=now, amount_cents=left)
    for amount in (1, 49700):
        with sessions.begin() as s, pytest.raises(PaymentError):
            checkout.refund_order(s, client, order_id, now=now, amount_cents=amount)
    stripe_total = sum(
        r.amount for r in client.v1.refunds.list(params={"payment_intent": pi, "limit": 100}).data
    )
    with sessions.begin() as s:
        ours = sum(s.scalars(select(Refund.amount_cents).where(Refund.status == "succeeded")))
        order = s.get(Order, order_id)
        assert (order.refunded_cents, order.status, order.access) == (49700, "refunded", False)
    assert stripe_total == ours == 49700 and refused >= 1


def test_disputed_charge_is_never_refunded_even_forced(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    ((order_id, pi),) = _paid_orders(sessions, stripe_settings, client, now, 1)
    with sessions.begin() as s:
        order = s.get(Order, order_id)
        deal = Purchase({}, order.email, 49700, "EUR", payment_intent=pi)
        assert (
            checkout.handle_event(s, stripe_settings, deal.disputed(int(now.timestamp())), now=now)
            == "applied"
        )
    for kwargs in ({}, {"force": True}, {"amount_cents": 100}):
        with sessions.begin() as s, pytest.raises(PaymentError, match="disputed"):
            checkout.refund_order(s, client, order_id, now=now, **kwargs)
    assert client.v1.refunds.list(params={"payment_intent": pi}).data == []
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Refund.id))) == 0


def test_refunded_plan_produces_no_later_invoice(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    shop = open_shop(sessions, now, 1)
    sub = real_subscription(client, 17700, shop.plan[0], "buyer0@example.fr")
    first = client.v1.invoices.retrieve(sub.latest_invoice).to_dict()
    ts = int(now.timestamp())
    deal = shop.purchase(0, instalments=3, subscription=sub.id)
    for event in (
        deal.completed(ts),
        {"id": "evt_ls_1", "type": "invoice.payment_succeeded", "data": {"object": first}},
    ):
        with sessions.begin() as s:
            assert checkout.handle_event(s, stripe_settings, event, now=now) == "applied"
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        checkout.refund_order(s, client, order.id, now=now + timedelta(days=2))
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):  # Stripe itself bills nothing more
        client.v1.invoices.create(params={"customer": sub.customer, "subscription": sub.id})
    late = deal.invoice(2, ts + 31 * 86400)  # even if an invoice.paid arrived later
    with sessions.begin() as s:
        checkout.handle_event(s, stripe_settings, late, now=now + timedelta(days=31))
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.status, order.access) == ("refunded", False)
        assert order.subscription_cancelled_at is not None
    invoices = client.v1.invoices.list(params={"customer": sub.customer}).data
    assert len(invoices) == 1
