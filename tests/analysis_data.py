"""A small launch whose every figure is worked out by hand (see tests/test_analysis.py).

Cart open 2026-12-01 09:00 UTC, close 2026-12-08 09:00 UTC (168 hours), pre-launch from
2026-11-24 09:00. 211 subscribers, of whom 200 are the audience at cart open:

- 1-100 instagram (signed up 2026-09), 101-160 podcast (2026-10), 161-200 webinar (2026-11);
- not in the audience: 201-205 signed up after cart open, 206-208 unsubscribed 2026-11-25,
  209-210 pending, 211 active but suppressed (bounced) on 2026-11-10;
- in the audience but gone later: 50 unsubscribed at open+1h30, 190 at open+2d+1h,
  191 complained at open+4d (also a suppression row at the same time).

Tags: magnet:checklist on 1-50 and 101-120, magnet:guide on 161-200 and 201, vip on 1-10.
Emails E1 (sent at open), E2 (open+2d), E3 (close-12h) of sequence "launch".
Eight orders (plus one pending and one in another launch), see ORDERS.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.models import (
    CheckoutRecovery,
    Email,
    Launch,
    LaunchSequence,
    Offer,
    OfferPlan,
    OfferTier,
    Order,
    Payment,
    Refund,
    Send,
    Subscriber,
    SubscriberStatusChange,
    SubscriberTag,
    Suppression,
    WebEvent,
)

OPEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLOSE = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
PRELAUNCH = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
CREATED = datetime(2026, 8, 1, tzinfo=UTC)


def make_launch(session: Session, slug: str = "spring", currency: str = "EUR", **times) -> int:
    """Insert a launch row and return its id."""
    values = {"prelaunch_start": PRELAUNCH, "cart_open": OPEN, "cart_close": CLOSE, **times}
    return session.execute(
        sa.insert(Launch).returning(Launch.id),
        [
            {
                "slug": slug,
                "product": "Cours photo",
                "currency": currency,
                "created_at": CREATED,
                "updated_at": CREATED,
                **values,
            }
        ],
    ).scalar_one()


def _subscriber(
    i: int,
    source: str,
    signed: datetime,
    status: str = "active",
    unsubscribed_at: datetime | None = None,
) -> dict:
    return {
        "id": i,
        "email": f"s{i}@example.com",
        "first_name": f"S{i}",
        "last_name": "",
        "status": status,
        "source": source,
        "signed_up_at": signed,
        "unsubscribed_at": unsubscribed_at,
        "created_at": signed,
        "updated_at": signed,
    }


def subscribers() -> list[dict]:
    rows = []
    for i in range(1, 201):
        source, signed = (
            ("instagram", datetime(2026, 9, 15, tzinfo=UTC))
            if i <= 100
            else ("podcast", datetime(2026, 10, 10, tzinfo=UTC))
            if i <= 160
            else ("webinar", datetime(2026, 11, 5, tzinfo=UTC))
        )
        rows.append(_subscriber(i, source, signed))
    rows[49] |= {"status": "unsubscribed", "unsubscribed_at": OPEN + 90 * timedelta(minutes=1)}
    rows[189] |= {"status": "unsubscribed", "unsubscribed_at": OPEN + 2 * D + H}
    rows[190] |= {"status": "complained", "unsubscribed_at": OPEN + 4 * D}
    rows += [
        _subscriber(i, "instagram", datetime(2026, 12, 2, tzinfo=UTC)) for i in range(201, 206)
    ]
    rows += [
        _subscriber(
            i,
            "instagram",
            datetime(2026, 9, 1, tzinfo=UTC),
            "unsubscribed",
            datetime(2026, 11, 25, tzinfo=UTC),
        )
        for i in range(206, 209)
    ]
    rows += [
        _subscriber(i, "podcast", datetime(2026, 11, 1, tzinfo=UTC), "pending") for i in (209, 210)
    ]
    rows.append(_subscriber(211, "instagram", datetime(2026, 9, 1, tzinfo=UTC)))
    return rows


def status_changes() -> list[dict]:
    """The history behind each non-active status: when it was set (pending: at signup)."""
    return [
        {
            "subscriber_id": row["id"],
            "status": row["status"],
            "changed_at": row["unsubscribed_at"] or row["signed_up_at"],
            "source": "optin" if row["status"] == "pending" else "unsubscribe",
        }
        for row in subscribers()
        if row["status"] != "active"
    ]


def tags() -> list[dict]:
    rows = [
        {"subscriber_id": i, "tag": "magnet:checklist"} for i in [*range(1, 51), *range(101, 121)]
    ]
    rows += [{"subscriber_id": i, "tag": "magnet:guide"} for i in [*range(161, 201), 201]]
    rows += [{"subscriber_id": i, "tag": "vip"} for i in range(1, 11)]
    return rows


def sends(email_ids: list[int]) -> list[dict]:
    e1, e2, e3 = email_ids
    times = {e1: OPEN, e2: OPEN + 2 * D, e3: CLOSE - 12 * H}
    skip = {e1: set(), e2: {50}, e3: {50, 190, 191}}
    rows = []
    for email_id, at in times.items():
        for i in range(1, 201):
            if i in skip[email_id] or (i > 198 and email_id != e1):
                continue
            bounced = i > 198
            rows.append(
                {
                    "email_id": email_id,
                    "subscriber_id": i,
                    "status": "bounced" if bounced else "sent",
                    "due_at": at,
                    "attempts": 1,
                    "sent_at": at,
                }
            )
    return rows


# id, subscriber, email, plan, total, paid, refunded, fee, instalments paid/failed, status, paid_at
ORDERS = [
    (1, 1, None, 1, 49700, 49700, 0, 1500, 1, 0, "paid", OPEN + H),
    (2, 2, None, 1, 49700, 49700, 49700, 1500, 1, 0, "refunded", OPEN + 150 * timedelta(minutes=1)),
    (3, 101, None, 3, 53100, 35400, 0, 1200, 2, 1, "defaulted", OPEN + 26 * H),
    (4, 102, None, 3, 53100, 53100, 0, 1800, 3, 1, "completed_plan", OPEN + 3 * D),
    (5, 161, None, 1, 49700, 49700, 0, None, 1, 0, "paid", CLOSE - 10 * H),
    (6, 162, None, 1, 49700, 49700, 49700, 1500, 1, 0, "refunded", CLOSE - 30 * H),
    (7, 10, None, 1, 54700, 54700, 0, 1650, 1, 0, "paid", CLOSE - H),
    (8, None, "Outsider@Example.com", 1, 49700, 49700, 0, 1500, 1, 0, "paid", OPEN + 5 * D),
]


def orders(launch_id: int, offer_id: int, currency: str = "EUR") -> list[dict]:
    rows = []
    for oid, sub, email, plan, total, paid, refunded, fee, ip, fail, status, at in ORDERS:
        rows.append(
            {
                "id": oid,
                "launch_id": launch_id,
                "offer_id": offer_id,
                "subscriber_id": sub,
                "email": email or f"s{sub}@example.com",
                "plan_instalments": plan,
                "currency": currency,
                "total_cents": total,
                "paid_cents": paid,
                "refunded_cents": refunded,
                "fee_cents": fee,
                "instalments_paid": ip,
                "instalments_failed": fail,
                "status": status,
                "created_at": at - timedelta(minutes=5),
                "paid_at": at,
                "updated_at": at,
                "refunded_at": at + (10 * D if oid == 2 else 40 * D) if refunded else None,
            }
        )
    return rows


def payments() -> list[dict]:
    def pay(order, number, status, at, recovered=False, amount=17700):
        return {
            "order_id": order,
            "stripe_id": f"in_{order}_{number}_{status}_{recovered}",
            "instalment_number": number,
            "amount_cents": amount,
            "currency": "EUR",
            "status": status,
            "recovered": recovered,
            "occurred_at": at,
        }

    rows = [pay(o, None, "paid", OPEN + H, amount=49700) for o in (1, 2, 5, 6, 8)]
    rows.append(pay(7, None, "paid", CLOSE - H, amount=54700))
    rows += [
        pay(3, 1, "paid", OPEN + 26 * H),
        pay(3, 2, "paid", OPEN + 30 * D),
        pay(3, 3, "failed", OPEN + 60 * D),
    ]
    rows += [
        pay(4, 1, "paid", OPEN + 3 * D),
        pay(4, 2, "failed", OPEN + 33 * D),
        pay(4, 2, "paid", OPEN + 36 * D, recovered=True),
        pay(4, 3, "paid", OPEN + 63 * D),
    ]
    return rows


def refunds() -> list[dict]:
    def refund(order, at, reason, status="succeeded", forced=False):
        return {
            "order_id": order,
            "idempotency_key": f"r{order}{status}",
            "amount_cents": 49700,
            "currency": "EUR",
            "reason": reason,
            "forced": forced,
            "status": status,
            "requested_at": at,
            "refunded_at": at if status == "succeeded" else None,
        }

    return [
        refund(2, OPEN + 150 * timedelta(minutes=1) + 10 * D, "not for me"),
        refund(6, CLOSE - 30 * H + 40 * D, "changed mind", forced=True),
        refund(1, OPEN + 2 * D, "card issue", status="failed"),
    ]


def build_small_launch(session: Session) -> int:
    """Insert the hand-computed launch; returns its id."""
    launch_id = make_launch(session)
    other = make_launch(
        session,
        "other",
        cart_open=OPEN + 60 * D,
        cart_close=OPEN + 67 * D,
        prelaunch_start=OPEN + 50 * D,
    )
    session.execute(sa.insert(Subscriber), subscribers())
    session.execute(sa.insert(SubscriberStatusChange), status_changes())
    session.execute(sa.insert(SubscriberTag), tags())
    session.execute(
        sa.insert(Suppression),
        [
            {
                "email": "s211@example.com",
                "reason": "bounced",
                "created_at": datetime(2026, 11, 10, tzinfo=UTC),
            },
            {"email": "s191@example.com", "reason": "complained", "created_at": OPEN + 4 * D},
        ],
    )
    offer_id = session.execute(
        sa.insert(Offer).returning(Offer.id),
        [
            {
                "launch_id": launch_id,
                "slug": "cours",
                "product": "Cours photo",
                "price_cents": 49700,
                "currency": "EUR",
                "guarantee_days": 30,
                "created_at": CREATED,
            }
        ],
    ).scalar_one()
    session.execute(
        sa.insert(OfferPlan), [{"offer_id": offer_id, "instalments": 3, "instalment_cents": 17700}]
    )
    seq = session.execute(
        sa.insert(LaunchSequence).returning(LaunchSequence.id),
        [
            {
                "launch_id": launch_id,
                "name": "launch",
                "status": "finished",
                "consecutive_failures": 0,
                "created_at": CREATED,
            }
        ],
    ).scalar_one()
    email_ids = [
        session.execute(
            sa.insert(Email).returning(Email.id),
            [
                {
                    "sequence_id": seq,
                    "step": f"e{n}",
                    "position": n,
                    "subject": f"Email {n}",
                    "scheduled_at": at,
                    "local_time": False,
                    "kind": "sales",
                }
            ],
        ).scalar_one()
        for n, at in ((1, OPEN), (2, OPEN + 2 * D), (3, CLOSE - 12 * H))
    ]
    session.execute(sa.insert(Send), sends(email_ids))
    session.execute(sa.insert(Order), orders(launch_id, offer_id))
    session.execute(
        sa.insert(Order),
        [
            {
                **orders(launch_id, offer_id)[0],
                "id": 9,
                "subscriber_id": 3,
                "email": "s3@example.com",
                "status": "pending",
                "paid_cents": 0,
                "paid_at": None,
            },
            {**orders(other, None)[0], "id": 10, "subscriber_id": 4, "email": "s4@example.com"},
        ],
    )
    session.execute(sa.insert(Payment), payments())
    session.execute(sa.insert(Refund), refunds())
    web = [{"kind": "sales_view", "occurred_at": OPEN + i * H} for i in range(30)]
    web += [{"kind": "checkout_start", "occurred_at": OPEN + i * H} for i in range(12)]
    web += [{"kind": "sales_view", "occurred_at": CLOSE + 3 * D}]
    session.execute(sa.insert(WebEvent), web)
    _fix_sequences(session)
    return launch_id


def _fix_sequences(session: Session) -> None:
    """Explicit ids on PostgreSQL leave the sequences behind; move them past the data."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in ("subscribers", "orders"):
        session.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        )


def add_selling(session: Session, launch_id: int) -> None:
    """Selling facts on the small launch (figures worked out in tests/test_cli_analysis.py):
    an early-bird tier bought by orders 1 and 2 (2 refunded), coupon AMI20 on orders 5 and 7,
    VAT on orders 1, 2 (refunded in full) and 3 (two instalments paid), and recovery emails to
    subscribers 1 (after buying), 3 (never bought) and 161 (bought 10 h later: recovered)."""
    offer_id = session.scalar(sa.select(Offer.id).where(Offer.launch_id == launch_id))
    session.execute(
        sa.insert(OfferTier),
        [{"offer_id": offer_id, "name": "early", "price_cents": 39700, "until": OPEN + 2 * D}],
    )
    facts = {
        1: {"tier": "early", "tax_cents": 8283},
        2: {"tier": "early", "tax_cents": 8283},
        3: {"tax_cents": 2950},
        5: {"coupon_code": "AMI20", "discount_cents": 9940},
        7: {"coupon_code": "AMI20", "discount_cents": 9940},
    }
    for order_id, values in facts.items():
        session.execute(sa.update(Order).where(Order.id == order_id).values(**values))
    session.execute(
        sa.insert(CheckoutRecovery),
        [
            {"subscriber_id": sub, "offer_id": offer_id, "claimed_at": at, "sent_at": at}
            | {"started_at": at - H}
            for sub, at in ((1, OPEN + 2 * H), (3, OPEN + 2 * D), (161, CLOSE - 20 * H))
        ],
    )
