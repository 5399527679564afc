"""Benchmark `launchkit analyze --json` against hand-written SQL on a large SQLite launch.

Generates (raw sqlite3 executemany, seeded) N subscribers (default 1,000,000) over 5 sources
and 24 signup months, a magnet tag on 40% of them, 30,000 orders for the launch (8% refunded,
30% on a 3-instalment plan, 10% of plans defaulted, fees known), their payments and refunds.

launchkit side: ``analyze_launch`` + ``json.dumps`` (exactly what the CLI prints with --json).
Baseline side: the headline figures (audience, buyers, gross, refunded, fees, booked, orders,
refunded orders, conversion by source) with one hand-written SQL query per figure through
sqlite3 (the audience from the subscriber rows, independently of the status history that
launchkit reads). Both must agree. Prints both times and ends with ``ratio: X.XX`` = baseline time /
launchkit time (launchkit's rate over the baseline's; higher is better).

Usage: .venv/bin/python benchmarks/analyze_bench.py [--subscribers 1000000] [--orders 30000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from launchkit.analysis import analyze_launch
from launchkit.db import make_engine, make_sessionmaker, upgrade_database

OPEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLOSE = OPEN + timedelta(days=7)
SOURCES = ["instagram", "podcast", "webinar", "youtube", "seo"]
FMT = "%Y-%m-%d %H:%M:%S.%f"


def ts(moment: datetime) -> str:
    """SQLAlchemy's SQLite storage format for UTCDateTime."""
    return moment.astimezone(UTC).replace(tzinfo=None).strftime(FMT)


def generate(path: Path, subscribers: int, orders: int, seed: int = 1) -> None:
    """Fill a migrated SQLite database with one large launch."""
    rng = random.Random(seed)
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")
    now = ts(OPEN - timedelta(days=30))
    db.execute(
        "INSERT INTO launches (id, slug, product, currency, prelaunch_start, cart_open, "
        "cart_close, created_at, updated_at) VALUES (1, 'big', 'Cours', 'EUR', ?, ?, ?, ?, ?)",
        (ts(OPEN - timedelta(days=7)), ts(OPEN), ts(CLOSE), now, now),
    )
    db.execute(
        "INSERT INTO offers (id, launch_id, slug, product, price_cents, currency, guarantee_days,"
        " created_at) VALUES (1, 1, 'cours', 'Cours', 49700, 'EUR', 30, ?)",
        (now,),
    )
    _subscribers(db, rng, subscribers)
    _orders(db, rng, subscribers, orders)
    db.commit()
    db.close()


def _subscribers(db: sqlite3.Connection, rng: random.Random, n: int) -> None:
    rows, tags = [], []
    for i in range(1, n + 1):
        signed = ts(OPEN - timedelta(days=rng.randint(1, 730), seconds=rng.randint(0, 86399)))
        gone = rng.random() < 0.05
        status = "unsubscribed" if gone else "active"
        left = ts(OPEN + timedelta(days=rng.uniform(-60, 6))) if gone else None
        rows.append(
            (
                i,
                f"p{i}@example.com",
                "",
                "",
                status,
                rng.choice(SOURCES),
                signed,
                left,
                signed,
                signed,
            )
        )
        if rng.random() < 0.4:
            tags.append((i, rng.choice(("magnet:checklist", "magnet:guide"))))
    db.executemany(
        "INSERT INTO subscribers (id, email, first_name, last_name, status, source, "
        "signed_up_at, unsubscribed_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.executemany("INSERT INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?)", tags)
    db.executemany(  # the status history: each unsubscribe at its time
        "INSERT INTO subscriber_status_changes (subscriber_id, status, changed_at, source) "
        "VALUES (?, 'unsubscribed', ?, 'unsubscribe')",
        [(row[0], row[7]) for row in rows if row[7] is not None],
    )


def _order_row(rng: random.Random, oid: int, sub: int) -> tuple[tuple, list[tuple], tuple | None]:
    paid_at = OPEN + timedelta(seconds=rng.randint(0, 7 * 86400 - 1))
    plan = rng.random() < 0.30
    refunded = rng.random() < 0.08
    if plan:
        defaulted = rng.random() < 0.10
        paid_n = rng.randint(1, 2) if defaulted else 3
        total, paid = 53100, 17700 * paid_n
        status = "defaulted" if defaulted else "completed_plan"
        pays = [
            (
                oid,
                f"in_{oid}_{k}",
                k,
                17700,
                "EUR",
                600,
                "paid",
                0,
                ts(paid_at + timedelta(days=30 * (k - 1))),
            )
            for k in range(1, paid_n + 1)
        ]
        if defaulted:
            pays.append(
                (
                    oid,
                    f"in_{oid}_f",
                    paid_n + 1,
                    17700,
                    "EUR",
                    None,
                    "failed",
                    0,
                    ts(paid_at + timedelta(days=30 * paid_n)),
                )
            )
    else:
        total = paid = 49700
        status = "paid"
        pays = [(oid, f"pi_{oid}", None, 49700, "EUR", 1500, "paid", 0, ts(paid_at))]
    refund = None
    if refunded:
        status = "refunded"
        at = paid_at + timedelta(days=rng.uniform(0, 45))
        refund = (oid, f"rf_{oid}", paid, "EUR", "not for me", 0, "succeeded", ts(at), ts(at))
    fee = 1500 if not plan else 600 * len([p for p in pays if p[6] == "paid"])
    order = (
        oid,
        1,
        1,
        sub,
        f"p{sub}@example.com",
        3 if plan else 1,
        "EUR",
        total,
        paid,
        paid if refunded else 0,
        fee,
        sum(1 for p in pays if p[6] == "paid"),
        sum(1 for p in pays if p[6] == "failed"),
        status,
        ts(paid_at),
        ts(paid_at),
        refund[7] if refund else None,
        ts(paid_at),
    )
    return order, pays, refund


def _orders(db: sqlite3.Connection, rng: random.Random, subscribers: int, n: int) -> None:
    buyers = rng.sample(range(1, subscribers + 1), n)
    orders, payments, refunds = [], [], []
    for oid, sub in enumerate(buyers, start=1):
        order, pays, refund = _order_row(rng, oid, sub)
        orders.append(order)
        payments += pays
        if refund:
            refunds.append(refund)
    db.executemany(
        "INSERT INTO orders (id, launch_id, offer_id, subscriber_id, email, plan_instalments, "
        "currency, total_cents, paid_cents, refunded_cents, fee_cents, instalments_paid, "
        "instalments_failed, status, created_at, paid_at, refunded_at, updated_at, bump, access)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,1)",
        orders,
    )
    db.executemany(
        "INSERT INTO payments (order_id, stripe_id, instalment_number, amount_cents, currency, "
        "fee_cents, status, recovered, occurred_at, refunded_cents) VALUES (?,?,?,?,?,?,?,?,?,0)",
        payments,
    )
    db.executemany(
        "INSERT INTO refunds (order_id, idempotency_key, amount_cents, currency, reason, forced,"
        " status, requested_at, refunded_at) VALUES (?,?,?,?,?,?,?,?,?)",
        refunds,
    )


BASELINE = {
    "audience_size": "SELECT count(*) FROM subscribers WHERE coalesce(signed_up_at, created_at)"
    " <= :open AND (status = 'active' OR unsubscribed_at > :open) AND email NOT IN "
    "(SELECT email FROM suppressions WHERE created_at <= :open)",
    "buyers": "SELECT count(DISTINCT coalesce('id:' || subscriber_id, 'email:' || lower(email)))"
    " FROM orders WHERE launch_id = 1 AND status != 'pending'",
    "buyers_in_audience": "SELECT count(DISTINCT subscriber_id) FROM orders WHERE launch_id = 1"
    " AND status != 'pending' AND subscriber_id IN (SELECT id FROM subscribers WHERE "
    "coalesce(signed_up_at, created_at) <= :open AND (status = 'active' OR unsubscribed_at > "
    ":open) AND email NOT IN (SELECT email FROM suppressions WHERE created_at <= :open))",
    "orders": "SELECT count(*) FROM orders WHERE launch_id = 1 AND status != 'pending'",
    "gross_revenue_cents": "SELECT coalesce(sum(paid_cents), 0) FROM orders WHERE launch_id = 1"
    " AND status != 'pending'",
    "refunded_cents": "SELECT coalesce(sum(refunded_cents), 0) FROM orders WHERE launch_id = 1"
    " AND status != 'pending'",
    "fees_cents": "SELECT coalesce(sum(fee_cents), 0) FROM orders WHERE launch_id = 1"
    " AND status != 'pending'",
    "booked_revenue_cents": "SELECT coalesce(sum(total_cents), 0) FROM orders WHERE launch_id = 1"
    " AND status != 'pending'",
    "refunded_orders": "SELECT count(*) FROM orders WHERE launch_id = 1 AND status != 'pending'"
    " AND (refunded_cents > 0 OR status = 'refunded')",
}
BY_SOURCE = (
    "SELECT coalesce(s.source, '(unknown)'), count(*), sum(s.id IN (SELECT subscriber_id FROM "
    "orders WHERE launch_id = 1 AND status != 'pending' AND subscriber_id IS NOT NULL)) "
    "FROM subscribers s WHERE coalesce(s.signed_up_at, s.created_at) <= :open"
    " AND (s.status = 'active' OR s.unsubscribed_at > :open) AND s.email NOT IN (SELECT email "
    "FROM suppressions WHERE created_at <= :open) GROUP BY 1 ORDER BY 2 DESC"
)


def run_baseline(path: Path) -> dict:
    """The headline figures, one hand-written query per figure."""
    db = sqlite3.connect(path)
    params = {"open": ts(OPEN)}
    figures = {name: db.execute(sql, params).fetchone()[0] for name, sql in BASELINE.items()}
    figures["by_source"] = db.execute(BY_SOURCE, params).fetchall()
    figures["conversion_rate"] = figures["buyers_in_audience"] / figures["audience_size"]
    figures["refund_rate"] = figures["refunded_orders"] / figures["orders"]
    db.close()
    return figures


def run_launchkit(path: Path) -> tuple[dict, str]:
    """What `launchkit analyze big --json` computes and prints."""
    engine = make_engine(f"sqlite:///{path}")
    with make_sessionmaker(engine).begin() as session:
        result = analyze_launch(session, "big", now=CLOSE + timedelta(days=1))
    text = json.dumps(result, indent=2, ensure_ascii=False)
    engine.dispose()
    return result, text


def check_same(result: dict, base: dict) -> None:
    """launchkit and the baseline must report the same headline figures."""
    for key in (
        "audience_size",
        "buyers",
        "buyers_in_audience",
        "gross_revenue_cents",
        "refunded_cents",
        "fees_cents",
        "booked_revenue_cents",
        "orders",
        "conversion_rate",
        "refund_rate",
    ):
        assert result[key] == base[key], (key, result[key], base[key])
    mine = sorted((r["source"], r["audience"], r["buyers"]) for r in result["by_source"])
    assert mine == sorted(tuple(row) for row in base["by_source"]), "by_source differs"


def timed(function, *args):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=30_000)
    args = parser.parse_args()
    orders = min(args.orders, args.subscribers)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        _, gen_time = timed(generate, path, args.subscribers, orders)
        print(
            f"generated {args.subscribers:,} subscribers and {orders:,} orders in {gen_time:.1f} s"
        )
        base, base_time = timed(run_baseline, path)
        (result, text), lk_time = timed(run_launchkit, path)
        check_same(result, base)
    print(f"baseline (one SQL query per headline figure): {base_time:.2f} s")
    print(f"launchkit analyze --json (every figure, {len(text):,} bytes of JSON): {lk_time:.2f} s")
    print(f"target under 10 s: {'met' if lk_time < 10 else 'MISSED'}")
    print(f"ratio: {base_time / lk_time:.2f}")


if __name__ == "__main__":
    main()
