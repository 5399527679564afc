"""A seeded model of buyer behaviour, used by `launchkit demo` and `launchkit rehearse`.

The model (all rates configurable in ``BuyerModel``):
- each eligible subscriber buys with probability ``conversion`` x the lift of their source
  (webinar attendees and lead-magnet subscribers buy more than an old imported list),
  normalized so the overall rate stays close to ``conversion`` (field range: 2-4%);
- purchase times: ``open_share`` of buyers in the first 24 h after cart open, ``close_share`` in
  the last 48 h before close, the rest spread evenly (the open and close spikes);
- ``plan_share`` of buyers take the longest instalment plan, the rest pay in full;
- every later instalment fails with ``instalment_failure``; a failed instalment is recovered by
  dunning with ``recovery`` (paid 3 days later), otherwise the plan defaults;
- ``unsubscribe_rate`` of the list unsubscribes during the cart-open week (one-click);
- ``refund_rate`` of buyers ask for a refund; ``refund_late_share`` of those ask after the
  guarantee window (launchkit refuses them), the others inside it;
- ``coupon_share`` of purchases come through a link carrying the coupon code ``COUPON``;
- ``abandon_rate`` of the people who do not buy start a checkout and leave it; ``come_back`` of
  those buy 3 to 48 hours later (after the recovery email), in full, before the cart closes.

Coupons and abandoned checkouts draw from their own seeded generators, so turning them off (rate
0) leaves every other event of a seed as it was.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

SOURCE_LIFT = {"webinar": 2.0, "magnet": 1.3, "import": 0.6, "instagram": 0.8, "youtube": 0.9}


@dataclass(frozen=True)
class BuyerModel:
    conversion: float = 0.03
    plan_share: float = 0.3
    bump_share: float = 0.2
    open_share: float = 0.35
    close_share: float = 0.40
    instalment_failure: float = 0.08
    recovery: float = 0.5
    refund_rate: float = 0.08
    refund_late_share: float = 0.25
    signup_rate: float = 0.03
    unsubscribe_rate: float = 0.01
    confirm_rate: float = 0.8
    browse_share: float = 0.05  # prospects who click a launch email's link but do not buy
    coupon_share: float = 0.15
    abandon_rate: float = 0.02
    come_back: float = 0.3


COUPON = "AMI20"  # the code the demo plan declares (20% off); unknown codes are ignored


@dataclass(frozen=True)
class Prospect:
    subscriber_id: int
    email: str
    source: str | None


@dataclass(frozen=True)
class SimEvent:
    """Something a simulated buyer does at a given time."""

    at: datetime
    kind: str  # purchase | instalment | instalment_failed | refund_request | unsubscribe |
    # abandon | browse
    email: str
    subscriber_id: int | None = None
    plan: int = 1
    bump: bool = False
    number: int = 0  # instalment number
    recovered: bool = False
    extra: dict[str, int] = field(default_factory=dict)


def _lift(source: str | None) -> float:
    if not source:
        return 1.0
    key = "magnet" if source.startswith("magnet:") else source
    return SOURCE_LIFT.get(key, 1.0)


def _purchase_time(
    rng: random.Random, model: BuyerModel, opens: datetime, closes: datetime
) -> datetime:
    roll = rng.random()
    if roll < model.open_share:
        start, span = opens, timedelta(hours=24)
    elif roll < model.open_share + model.close_share:
        start, span = closes - timedelta(hours=48), timedelta(hours=48)
    else:
        start, span = opens, closes - opens
    return start + timedelta(seconds=rng.random() * span.total_seconds())


def plan_purchases(
    prospects: list[Prospect],
    model: BuyerModel,
    *,
    cart_open: datetime,
    cart_close: datetime,
    plan_instalments: int,
    guarantee_days: int,
    seed: int,
) -> list[SimEvent]:
    """All purchase, instalment and refund events of the simulated launch, sorted by time."""
    rng = random.Random(seed)
    mean_lift = sum(_lift(p.source) for p in prospects) / max(len(prospects), 1)
    events: list[SimEvent] = []
    others: list[Prospect] = []
    for prospect in prospects:
        if rng.random() >= model.conversion * _lift(prospect.source) / mean_lift:
            others.append(prospect)
            continue
        bought = _purchase_time(rng, model, cart_open, cart_close)
        plan = plan_instalments if plan_instalments > 1 and rng.random() < model.plan_share else 1
        bump = rng.random() < model.bump_share
        events.append(
            SimEvent(bought, "purchase", prospect.email, prospect.subscriber_id, plan, bump)
        )
        events += _instalments(rng, model, prospect, bought, plan)
        events += _refund(rng, model, prospect, bought, guarantee_days)
    events += _unsubscribes(rng, model, prospects, cart_open, cart_close)
    events = _with_coupons(random.Random(seed + 3), model, events)
    events += _abandons(random.Random(seed + 2), model, others, cart_open, cart_close)
    return sorted(events, key=lambda e: (e.at, e.email, e.kind))


def _with_coupons(rng: random.Random, model: BuyerModel, events: list[SimEvent]) -> list[SimEvent]:
    """Mark ``coupon_share`` of the purchases as coming through the coupon link."""
    return [
        replace(e, extra={**e.extra, "coupon": 1})
        if e.kind == "purchase" and rng.random() < model.coupon_share
        else e
        for e in events
    ]


def _abandons(
    rng: random.Random,
    model: BuyerModel,
    others: list[Prospect],
    opens: datetime,
    closes: datetime,
) -> list[SimEvent]:
    """Checkouts started and left by people who did not buy; some come back and buy."""
    events = []
    span = (closes - opens).total_seconds()
    for p in others:
        if rng.random() >= model.abandon_rate:
            continue
        left = opens + timedelta(seconds=rng.random() * span)
        events.append(SimEvent(left, "abandon", p.email, p.subscriber_id))
        back = left + timedelta(hours=3 + rng.random() * 45)
        if rng.random() < model.come_back and back < closes - timedelta(minutes=5):
            events.append(SimEvent(back, "purchase", p.email, p.subscriber_id))
    return events


def _instalments(
    rng: random.Random, model: BuyerModel, prospect: Prospect, bought: datetime, plan: int
) -> list[SimEvent]:
    events = []
    for number in range(2, plan + 1):
        due = bought + timedelta(days=30 * (number - 1))
        if rng.random() < model.instalment_failure:
            recovered = rng.random() < model.recovery
            events.append(
                SimEvent(
                    due,
                    "instalment_failed",
                    prospect.email,
                    prospect.subscriber_id,
                    plan,
                    number=number,
                    recovered=recovered,
                )
            )
            if not recovered:
                break
            due += timedelta(days=3)
        events.append(
            SimEvent(
                due,
                "instalment",
                prospect.email,
                prospect.subscriber_id,
                plan,
                number=number,
                recovered=due != bought + timedelta(days=30 * (number - 1)),
            )
        )
    return events


def _refund(
    rng: random.Random, model: BuyerModel, prospect: Prospect, bought: datetime, guarantee_days: int
) -> list[SimEvent]:
    if rng.random() >= model.refund_rate:
        return []
    if rng.random() < model.refund_late_share:
        days = guarantee_days + 1 + rng.random() * 20
    else:
        days = 0.2 + rng.random() * max(guarantee_days - 0.5, 0.5)
    return [
        SimEvent(
            bought + timedelta(days=days), "refund_request", prospect.email, prospect.subscriber_id
        )
    ]


def _unsubscribes(
    rng: random.Random,
    model: BuyerModel,
    prospects: list[Prospect],
    opens: datetime,
    closes: datetime,
) -> list[SimEvent]:
    """Some of the list leaves during the cart-open week (the cost of the sales emails)."""
    span = (closes - opens).total_seconds()
    return [
        SimEvent(
            opens + timedelta(seconds=rng.random() * span), "unsubscribe", p.email, p.subscriber_id
        )
        for p in prospects
        if rng.random() < model.unsubscribe_rate
    ]


def plan_browsing(
    prospects: list[Prospect],
    model: BuyerModel,
    *,
    cart_open: datetime,
    cart_close: datetime,
    seed: int,
) -> list[SimEvent]:
    """Clicks on a launch email's checkout link that do not end in a purchase (the demo's
    click funnel): one "browse" event per browsing prospect, during the cart-open week."""
    rng = random.Random(seed + 2)  # its own stream: the purchases stay what they were
    span = (cart_close - cart_open).total_seconds()
    return [
        SimEvent(
            cart_open + timedelta(seconds=rng.random() * span), "browse", p.email, p.subscriber_id
        )
        for p in prospects
        if rng.random() < model.browse_share
    ]


def plan_signups(
    count: int, *, start: datetime, end: datetime, seed: int, model: BuyerModel
) -> list[tuple[datetime, str, str, bool]]:
    """New lead-magnet opt-ins during the pre-launch: (time, first name, email, confirms)."""
    rng = random.Random(seed + 1)
    names = [
        "Camille",
        "Louise",
        "Hugo",
        "Inès",
        "Lucas",
        "Chloé",
        "Nathan",
        "Jade",
        "Emma",
        "Gabriel",
        "Manon",
        "Arthur",
        "Sarah",
        "Léo",
        "Alice",
        "Noah",
        "Olivia",
        "James",
    ]
    out = []
    for i in range(count):
        at = start + timedelta(seconds=rng.random() * (end - start).total_seconds())
        name = rng.choice(names)
        email = f"{name.lower().replace('é', 'e').replace('è', 'e')}.demo{i}@example.org"
        out.append((at, name, email, rng.random() < model.confirm_rate))
    return sorted(out)
