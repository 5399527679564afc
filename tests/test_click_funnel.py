"""The click funnel per email, checked against a truth computed from the generated events (#18).

Random clicks (repeated, anonymous, on every email), sales-page visits and checkout starts
(before and after the clicks, on the launch's offer, another launch's offer and anonymous) and
extra orders are added to the hand-built launch of tests/analysis_data.py; the expected funnel
is computed here in plain Python from those lists, never through the code under test.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from launchkit.analysis import analyze_launch
from launchkit.models import Email, Link, LinkClick, Offer, Order, Send, WebEvent
from tests.analysis_data import CLOSE, CREATED, OPEN, build_small_launch, make_launch

MINUTE = timedelta(minutes=1)


def _moment(rng: random.Random):
    return OPEN - 2 * 24 * 60 * MINUTE + rng.randrange(11 * 24 * 60) * MINUTE


def generate_launch(session, seed: int) -> dict:
    """The hand-built launch plus random clicks, visits, checkouts and orders; the lists."""
    rng = random.Random(seed)
    launch_id = build_small_launch(session)
    offer = session.scalar(sa.select(Offer.id).where(Offer.launch_id == launch_id))
    later = make_launch(
        session,
        "later",
        cart_open=CLOSE + 90 * 24 * 60 * MINUTE,
        cart_close=CLOSE + 97 * 24 * 60 * MINUTE,
    )
    other_offer = session.execute(
        sa.insert(Offer).returning(Offer.id),
        [
            {
                "launch_id": later,
                "slug": "autre",
                "product": "Autre",
                "price_cents": 100,
                "currency": "EUR",
                "guarantee_days": 0,
                "created_at": CREATED,
            }
        ],
    ).scalar_one()
    emails = list(session.scalars(sa.select(Email.id).order_by(Email.id)))
    links = {}
    for email_id in emails:
        for n in range(2):
            link = Link(
                uuid=str(uuid.uuid4()), url=f"https://x.example/{email_id}/{n}", email_id=email_id
            )
            session.add(link)
            session.flush()
            links.setdefault(email_id, []).append(link.id)
    clicks = []
    for _ in range(rng.randrange(150, 400)):
        email_id = rng.choice(emails)
        who = rng.choice([None] + list(range(1, 201)) * 2)
        at = _moment(rng) + timedelta(microseconds=rng.randrange(1_000_000))
        clicks.append((rng.choice(links[email_id]), email_id, who, at))
    web = []
    for _ in range(rng.randrange(200, 500)):
        kind = rng.choice(["sales_view", "checkout_start", "sales_view", "click"])
        where = rng.choice([offer, offer, offer, other_offer, None])
        who = rng.choice([None] + list(range(1, 201)))
        web.append((kind, where, who, _moment(rng)))
    extra_orders = []
    for oid in range(100, 100 + rng.randrange(5, 25)):
        who = rng.randrange(1, 201)
        status = rng.choice(["paid", "paid", "refunded", "pending"])
        extra_orders.append((oid, who, status, _moment(rng)))
    for oid, (_, _, who, at) in enumerate(rng.sample(clicks, 5), start=200):
        if who is not None:  # paid in the second of a click (Stripe's times are whole seconds)
            extra_orders.append((oid, who, "paid", at.replace(microsecond=0)))
    session.execute(
        sa.insert(LinkClick),
        [
            {"link_id": lk, "email_id": e, "subscriber_id": s, "occurred_at": at}
            for lk, e, s, at in clicks
        ],
    )
    session.execute(
        sa.insert(WebEvent),
        [{"kind": k, "offer_id": o, "subscriber_id": s, "occurred_at": at} for k, o, s, at in web],
    )
    session.execute(
        sa.insert(Order),
        [
            {
                "id": oid,
                "launch_id": launch_id,
                "offer_id": offer,
                "subscriber_id": s,
                "email": f"s{s}@example.com",
                "plan_instalments": 1,
                "currency": "EUR",
                "total_cents": 49700,
                "paid_cents": 0 if status == "pending" else 49700,
                "refunded_cents": 49700 if status == "refunded" else 0,
                "instalments_paid": 1,
                "instalments_failed": 0,
                "status": status,
                "created_at": at - 5 * MINUTE,
                "paid_at": None if status == "pending" else at,
                "updated_at": at,
            }
            for oid, s, status, at in extra_orders
        ],
    )
    sends = session.execute(sa.select(Send.email_id, Send.status)).all()
    orders = session.execute(
        sa.select(Order.subscriber_id, Order.status, Order.paid_at, Order.created_at).where(
            Order.launch_id == launch_id
        )
    ).all()
    return {
        "emails": emails,
        "offer": offer,
        "sends": sends,
        "clicks": clicks,
        "web": web,
        "orders": orders,
    }


def _utc(moment):
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _expected(truth: dict) -> dict[int, dict]:
    """The funnel worked out from the generated lists alone."""
    out = {}
    for email_id in truth["emails"]:
        delivered = sum(1 for e, status in truth["sends"] if e == email_id and status == "sent")
        mine = [c for c in truth["clicks"] if c[1] == email_id]
        first: dict[int, object] = {}
        for _, _, who, at in mine:
            if who is not None and (who not in first or at < first[who]):
                first[who] = at

        def did(kind, first=first):
            return {
                who
                for who, at in first.items()
                if any(
                    k == kind and o == truth["offer"] and s == who and t >= at
                    for k, o, s, t in truth["web"]
                )
            }

        bought = {
            who
            for who, at in first.items()
            if any(
                s == who and status != "pending" and _utc(paid or made) >= at.replace(microsecond=0)
                for s, status, paid, made in truth["orders"]
            )
        }
        clicked = len(first)
        out[email_id] = {
            "delivered": delivered,
            "clicks": len(mine),
            "clicked": clicked,
            "sales_page": len(did("sales_view")),
            "checkout_started": len(did("checkout_start")),
            "bought": len(bought),
            "click_rate": clicked / delivered if delivered else 0.0,
            "sales_page_rate": len(did("sales_view")) / clicked if clicked else 0.0,
            "checkout_rate": len(did("checkout_start")) / clicked if clicked else 0.0,
            "buy_rate": len(bought) / clicked if clicked else 0.0,
        }
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_click_funnel_matches_the_generated_truth(sessions, seed) -> None:
    with sessions.begin() as session:
        truth = generate_launch(session, seed)
    with sessions.begin() as session:
        result = analyze_launch(session, "spring")
    expected = _expected(truth)
    got = {row["email_id"]: row for row in result["click_funnel"]}
    assert set(got) == set(expected)
    for email_id, want in expected.items():
        row = got[email_id]
        for key, value in want.items():
            assert row[key] == pytest.approx(value), (seed, email_id, key)
    assert any(row["bought"] for row in got.values())
    assert any(row["sales_page"] < row["clicked"] for row in got.values())


def test_a_launch_without_clicks_has_a_zero_funnel(sessions) -> None:
    with sessions.begin() as session:
        build_small_launch(session)
    with sessions.begin() as session:
        result = analyze_launch(session, "spring")
    assert [row["clicked"] for row in result["click_funnel"]] == [0, 0, 0]
    assert [row["delivered"] for row in result["click_funnel"]] == [
        198,
        197,
        195,
    ]  # 199 and 200 bounced on E1
