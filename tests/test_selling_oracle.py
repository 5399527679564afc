"""An independent oracle for the selling figures of the analysis (#18).

Each seed builds a launch with random orders whose truth the test knows (who bought, at which
tier, with which code, what was paid, refunded in full or in part, the fee, the VAT of each
payment, the recovery emails) and recomputes every figure shown -- by tier, by coupon,
recovered, net of tax -- in plain Python from that truth, without the analysis code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

import pytest
import sqlalchemy as sa

from launchkit.analysis import analyze_launch
from launchkit.models import CheckoutRecovery, Offer, OfferTier, Order, Subscriber
from tests.analysis_data import CLOSE, CREATED, OPEN, _subscriber, make_launch

AUDIENCE = 30  # subscribers 1-30 joined before cart open; 31-40 after (on the list, outside)
TIERS = ("early", "late")
CODES = ("AMI10", "VIP25")


@dataclass
class Truth:
    """One generated order, as the test knows it."""

    person: str
    subscriber: int | None
    in_audience: bool
    offer: int  # 0: the main offer, 1: the second offer of the launch
    tier: str | None
    coupon: str | None
    discount: int
    paid: int
    refunded: int
    fee: int | None
    tax_per_payment: int
    payments: int
    sold_at: datetime
    pending: bool


def _order(rng: random.Random) -> Truth:
    who = rng.randrange(1, 48)  # 41-47: buyers not on the list
    plan = rng.random() < 0.3
    payments = rng.randint(1, 3) if plan else 1
    per_payment = rng.randint(5_000, 60_000)
    paid = per_payment * payments
    refunded = rng.choice([0, 0, 0, paid, rng.randint(1, paid)])
    return Truth(
        person=f"p{who}",
        subscriber=who if who <= 40 else None,
        in_audience=who <= AUDIENCE,
        offer=rng.randrange(2),
        tier=None if plan else rng.choice([None, *TIERS]),
        coupon=rng.choice([None, None, *CODES]),
        discount=rng.randint(0, 9_000),
        paid=paid,
        refunded=refunded,
        fee=rng.choice([None, rng.randint(0, per_payment // 10)]),
        tax_per_payment=rng.choice([0, rng.randint(0, per_payment // 5)]),
        payments=payments,
        sold_at=OPEN + timedelta(minutes=rng.randint(0, 7 * 24 * 60)),
        pending=rng.random() < 0.1,
    )


def _recoveries(rng: random.Random, orders: list[Truth]) -> list[tuple[int, int, datetime | None]]:
    """(subscriber, offer, sent_at): one row at most per (subscriber, offer), some claimed
    but never sent, some a minute before, at or a minute after one of the person's orders."""
    bought = {t.subscriber: t.sold_at for t in orders if t.subscriber}
    rows = []
    for sid in rng.sample(range(1, 41), 16):
        for offer in rng.sample([0, 1], rng.randint(1, 2)):
            sent = OPEN + timedelta(minutes=rng.randint(0, 7 * 24 * 60))
            if sid in bought and rng.random() < 0.6:
                sent = bought[sid] + timedelta(minutes=rng.choice([-1, 0, 1]))
            rows.append((sid, offer, None if rng.random() < 0.15 else sent))
    return rows


def _build(session, orders: list[Truth], recoveries, *, other_launch_noise: bool) -> None:  # noqa: ANN001
    launch_id = make_launch(session)
    other_id = make_launch(session, "other", cart_open=OPEN + timedelta(days=60),
                           cart_close=CLOSE + timedelta(days=60))  # fmt: skip
    people = [_subscriber(i, "web", OPEN - timedelta(days=30)) for i in range(1, AUDIENCE + 1)]
    people += [_subscriber(i, "web", OPEN + timedelta(days=1)) for i in range(AUDIENCE + 1, 41)]
    session.execute(sa.insert(Subscriber), people)
    offers = [
        session.execute(
            sa.insert(Offer).returning(Offer.id),
            [{"launch_id": lid, "slug": slug, "product": "Cours", "price_cents": 49700,
              "currency": "EUR", "guarantee_days": 30, "created_at": CREATED}],
        ).scalar_one()
        for lid, slug in ((launch_id, "cours"), (launch_id, "vip"), (other_id, "plus-tard"))
    ]  # fmt: skip
    session.execute(
        sa.insert(OfferTier),
        [{"offer_id": offers[0], "name": name, "price_cents": 29700 + 5000 * i,
          "until": OPEN + timedelta(days=1 + i)} for i, name in enumerate(TIERS)],
    )  # fmt: skip
    session.execute(sa.insert(Order), [_row(launch_id, offers, t) for t in orders])
    if other_launch_noise:  # another launch's order and recovery email: never counted
        noise = _row(other_id, offers, orders[0])
        session.execute(sa.insert(Order), [{**noise, "offer_id": offers[2]}])
        recoveries = [*recoveries, (1, 2, OPEN)]
    if not recoveries:
        return
    session.execute(
        sa.insert(CheckoutRecovery),
        [{"subscriber_id": sid, "offer_id": offers[offer], "started_at": OPEN,
          "claimed_at": sent or OPEN, "sent_at": sent} for sid, offer, sent in recoveries],
    )  # fmt: skip


def _row(launch_id: int, offers: list[int], t: Truth) -> dict:
    email = f"s{t.subscriber}@example.com" if t.subscriber else f"{t.person}@elsewhere.example"
    return {
        "launch_id": launch_id, "offer_id": offers[t.offer], "subscriber_id": t.subscriber,
        "email": email, "plan_instalments": 3 if t.payments > 1 else 1, "currency": "EUR",
        "total_cents": t.paid, "paid_cents": 0 if t.pending else t.paid,
        "refunded_cents": t.refunded, "fee_cents": t.fee,
        "instalments_paid": 0 if t.pending else t.payments,
        "status": "pending" if t.pending else "refunded" if t.refunded == t.paid else "paid",
        "created_at": t.sold_at - timedelta(minutes=3), "paid_at": None if t.pending else t.sold_at,
        "updated_at": t.sold_at, "tier": t.tier, "coupon_code": t.coupon,
        "discount_cents": t.discount if t.coupon else None,
        "tax_cents": t.tax_per_payment or None,
    }  # fmt: skip


# --- the truth, computed from the generated orders only -------------------------------------


def _net(orders: list[Truth]) -> int:
    return sum(t.paid - t.refunded - (t.fee or 0) for t in orders)


def _group(orders: list[Truth], counted: list[Truth], key: str, value: str | None) -> dict:
    return {
        key: value,
        "orders": len(orders),
        "buyers": len({t.person for t in orders}),
        "revenue_cents": sum(t.paid for t in orders),
        "refunded_cents": sum(t.refunded for t in orders),
        "net_revenue_cents": _net(orders),
        "share_of_orders": len(orders) / len(counted),
        "conversion_rate": len({t.person for t in orders if t.in_audience}) / AUDIENCE,
    }


def expected_by_tier(counted: list[Truth]) -> list[dict]:
    rows = []
    for tier in (None, *TIERS):
        group = [t for t in counted if t.tier == tier]
        if group:
            rows.append(_group(group, counted, "tier", tier))
    return rows


def expected_by_coupon(counted: list[Truth]) -> list[dict]:
    rows = []
    for code in CODES:
        group = [t for t in counted if t.coupon == code]
        if group:
            row = _group(group, counted, "coupon", code)
            rows.append({**row, "discount_cents": sum(t.discount for t in group)})
    return rows


def expected_tax(counted: list[Truth]) -> int:
    """VAT kept: each payment's tax, less the refunded share of it (to the nearest cent,
    halves up)."""
    kept = 0
    for t in counted:
        collected = t.tax_per_payment * t.payments
        given_back = Fraction(collected * t.refunded, t.paid)
        kept += collected - int(given_back + Fraction(1, 2))
    return kept


def expected_recovery(counted: list[Truth], recoveries) -> dict:  # noqa: ANN001
    sent = [(sid, at) for sid, _, at in recoveries if at is not None]
    first = {sid: min(at for s, at in sent if s == sid) for sid, _ in sent}
    won = [t for t in counted if t.subscriber in first and first[t.subscriber] <= t.sold_at]
    return {
        "emails_sent": len(sent),
        "recovered_orders": len(won),
        "recovered_revenue_cents": sum(t.paid for t in won),
        "recovered_net_revenue_cents": _net(won),
        "recovery_rate": len({t.subscriber for t in won}) / len(first) if first else 0.0,
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_selling_figures_match_an_independent_count(sessions, seed: int) -> None:
    rng = random.Random(seed)
    orders = [_order(rng) for _ in range(rng.randint(20, 45))]
    recoveries = _recoveries(rng, orders)
    with sessions.begin() as session:
        _build(session, orders, recoveries, other_launch_noise=seed % 2 == 1)
    with sessions.begin() as session:
        report = analyze_launch(session, "spring")
    counted = [t for t in orders if not t.pending]
    assert report["audience_size"] == AUDIENCE
    assert report["net_revenue_cents"] == _net(counted)
    assert report["by_tier"] == expected_by_tier(counted)
    assert report["by_coupon"] == expected_by_coupon(counted)
    assert report["tax_cents"] == expected_tax(counted)
    assert report["revenue_net_of_tax_cents"] == _net(counted) - expected_tax(counted)
    assert report["recovery"] == pytest.approx(expected_recovery(counted, recoveries))
    # the tiers split every counted order: their nets add up to the launch's
    assert sum(row["net_revenue_cents"] for row in report["by_tier"]) == _net(counted)


def test_refunds_take_their_share_of_the_tax_back(sessions) -> None:
    """Worked by hand: 3 payments of 120.00 with 20.00 VAT each; 90.00 refunded of 360.00
    gives back a quarter of the 60.00 VAT, so 45.00 is kept."""
    order = Truth("p1", 1, True, 0, None, None, 0, 36000, 9000, None, 2000, 3, OPEN, False)
    with sessions.begin() as session:
        _build(session, [order], [], other_launch_noise=False)
    with sessions.begin() as session:
        report = analyze_launch(session, "spring")
    assert report["tax_cents"] == 4500 == expected_tax([order])
    assert report["revenue_net_of_tax_cents"] == 36000 - 9000 - 4500
