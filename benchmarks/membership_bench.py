"""Benchmark the membership analysis against a plain pandas computation of the same figures.

Generates (seeded, raw sqlite3 executemany) one membership launch with N members (default
100,000) joining while the doors are open (7 days), 80 % monthly (29.00) and 20 % yearly
(290.00), 30 % with a 7-day trial of which 60 % pay, 5 % switching plan once, a monthly churn
of 3 %, 1 % refunded inside the guarantee, and members x months invoices (default 2.4 M rows
in ``payments``: paid while the member is in, failed attempts after) plus one dated fact per
paid invoice in ``membership_events``.

launchkit side: ``analyze_memberships`` (SQL load + vectorised figures). Baseline side: the raw
tables read with ``pandas.read_sql`` and the same figures computed in plain pandas (groupby,
per-month loops), written independently. Both must agree (every reported figure). Prints both
times and ends with ``ratio: X.XX`` = baseline time / launchkit time (higher is better).

Usage: .venv/bin/python benchmarks/membership_bench.py [--members 100000] [--months 24]
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from launchkit import launches, memberships
from launchkit.analysis.memberships import analyze_memberships
from launchkit.db import make_engine, make_sessionmaker, upgrade_database

OPEN = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
CLOSE = OPEN + timedelta(days=7)
FMT = "%Y-%m-%d %H:%M:%S.%f"
DAY = np.timedelta64(86400, "s")
MONTH = np.timedelta64(30 * 86400, "s")


def ts(values: np.ndarray) -> list[str | None]:
    """SQLAlchemy's SQLite storage format for UTCDateTime (None for NaT)."""
    out = pd.Series(pd.to_datetime(values)).dt.strftime(FMT)
    return [None if isinstance(v, float) else v for v in out.tolist()]


def generate(path: Path, members: int, months: int, seed: int = 7) -> datetime:
    """Build the workspace database; returns the analysis moment (``now``)."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade_database(engine)
    with make_sessionmaker(engine).begin() as s:
        launches.create_launch(s, "club", product="Club", cart_open=OPEN, cart_close=CLOSE,
                               currency="EUR", now=OPEN)  # fmt: skip
        memberships.add_membership_offer(
            s, "club", "club-offer", product="Club", currency="EUR",
            prices=[("month", 2900), ("year", 29000)], guarantee_days=14, now=OPEN,
        )  # fmt: skip
    engine.dispose()
    rng = np.random.default_rng(seed)
    now = np.datetime64(OPEN.replace(tzinfo=None)) + months * MONTH + 5 * DAY
    n = members
    start = np.datetime64(OPEN.replace(tzinfo=None)) + (rng.random(n) * 7 * 86400).astype(
        "timedelta64[s]"
    )
    yearly = rng.random(n) < 0.2
    trial = rng.random(n) < 0.3
    pays = ~trial | (rng.random(n) < 0.6)
    paid_at = np.where(trial, start + 7 * DAY, start).astype("datetime64[s]")
    life = rng.geometric(0.03, n).astype("int64")  # months kept
    ended = paid_at + life * MONTH + (rng.random(n) * 86400).astype("timedelta64[s]")
    ended = np.where(pays, ended, start + 8 * DAY)
    refunded = pays & (rng.random(n) < 0.01)
    ended = np.where(refunded, paid_at + 3 * DAY, ended)
    ended_nat = np.where(ended <= now, ended, np.datetime64("NaT"))
    amount = np.where(yearly, 29000, 2900)
    switch = pays & ~refunded & (rng.random(n) < 0.05)
    switch_at = paid_at + (rng.random(n) * 10 * 30 * 86400).astype("timedelta64[s]")
    ids = np.arange(1, n + 1)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    con.executemany(
        "INSERT INTO orders (id, launch_id, offer_id, email, plan_instalments, currency,"
        " total_cents, paid_cents, refunded_cents, bump, instalments_paid, instalments_failed,"
        " status, access, created_at, updated_at, paid_at, refunded_at)"
        " VALUES (?, 1, 1, ?, 1, 'EUR', ?, 0, ?, 0, 0, 0, ?, 1, ?, ?, ?, ?)",
        zip(ids.tolist(), [f"m{i}@example.fr" for i in ids], amount.tolist(),
            np.where(refunded, amount, 0).tolist(),
            np.where(refunded, "refunded", np.where(pays, "paid", "pending")).tolist(),
            ts(start), ts(start), ts(np.where(pays, paid_at, np.datetime64("NaT"))),
            ts(np.where(refunded, ended, np.datetime64("NaT"))), strict=False),
    )  # fmt: skip
    status = np.where(~np.isnat(ended_nat), "ended", "active")
    con.executemany(
        "INSERT INTO memberships (id, order_id, launch_id, offer_id, stripe_subscription_id,"
        " interval, amount_cents, currency, status, cancel_at_period_end, started_at, trial_end,"
        " paid_at, current_period_end, ended_at, updated_at)"
        " VALUES (?, ?, 1, 1, ?, ?, ?, 'EUR', ?, 0, ?, ?, ?, NULL, ?, ?)",
        zip(ids.tolist(), ids.tolist(), [f"sub_{i}" for i in ids],
            np.where(switch != yearly, "year", "month").tolist(),
            np.where(switch, np.where(yearly, 2900, 29000), amount).tolist(), status.tolist(),
            ts(start), ts(np.where(trial, start + 7 * DAY, np.datetime64("NaT"))),
            ts(np.where(pays, paid_at, np.datetime64("NaT"))), ts(ended_nat), ts(start),
            strict=False),
    )  # fmt: skip
    facts = [(int(i), f"joined:cs_{i}", "joined", s, "year" if y else "month", int(a))
             for i, s, y, a in zip(ids, ts(start), yearly, amount, strict=False)]  # fmt: skip
    live_switch = switch & ((np.isnat(ended_nat)) | (switch_at < ended)) & (switch_at < now)
    facts += [(int(i), f"snap:sub_{i}:1", "snapshot", s, "month" if y else "year",
               2900 if y else 29000)
              for i, s, y in zip(ids[live_switch], ts(switch_at[live_switch]),
                                 yearly[live_switch], strict=False)]  # fmt: skip
    con.executemany(
        "INSERT INTO membership_events (membership_id, key, kind, occurred_at, interval,"
        " amount_cents) VALUES (?, ?, ?, ?, ?, ?)", facts,
    )  # fmt: skip
    k = np.tile(np.arange(months), n)
    who = np.repeat(ids, months)
    when = np.repeat(paid_at, months) + k * MONTH
    alive = np.repeat(pays, months) & (when < np.repeat(ended, months)) & (when < now)
    pay_ts = ts(when)
    con.executemany(
        "INSERT INTO payments (order_id, stripe_id, amount_cents, currency, status,"
        " refunded_cents, recovered, occurred_at) VALUES (?, ?, ?, 'EUR', ?, 0, 0, ?)",
        zip(who.tolist(), [f"in_{i}_{j}" for i, j in zip(who.tolist(), k.tolist(), strict=False)],
            np.repeat(amount, months).tolist(), np.where(alive, "paid", "failed").tolist(),
            pay_ts, strict=False),
    )  # fmt: skip
    con.executemany(
        "INSERT INTO membership_events (membership_id, key, kind, occurred_at, amount_cents)"
        " VALUES (?, ?, 'paid', ?, ?)",
        ((int(i), f"paid:in_{i}_{j}", t, 2900) for i, j, t, a in
         zip(who.tolist(), k.tolist(), pay_ts, alive.tolist(), strict=False) if a),
    )  # fmt: skip
    paid_sum = np.bincount(who[alive], weights=np.repeat(amount, months)[alive], minlength=n + 1)
    con.executemany(
        "UPDATE orders SET paid_cents = ? WHERE id = ?",
        zip(paid_sum[1:].astype("int64").tolist(), ids.tolist(), strict=True),
    )
    con.executemany(
        "INSERT INTO refunds (order_id, idempotency_key, amount_cents, currency, forced,"
        " status, requested_at, refunded_at) VALUES (?, ?, ?, 'EUR', 0, 'succeeded', ?, ?)",
        zip(ids[refunded].tolist(), [f"rf_{i}" for i in ids[refunded]],
            amount[refunded].tolist(), ts(ended[refunded]), ts(ended[refunded]), strict=False),
    )  # fmt: skip
    con.commit()
    con.close()
    return pd.Timestamp(now).tz_localize(UTC).to_pydatetime()


# --- the baseline: plain pandas over the raw tables -------------------------------------------


def _months_between(s: pd.Series, e: pd.Series) -> pd.Series:
    """Whole calendar months (the same day of month and time of day reached)."""
    months = (e.dt.year - s.dt.year) * 12 + (e.dt.month - s.dt.month)
    s_in = (s - s.dt.to_period("M").dt.to_timestamp()).dt.total_seconds()
    e_in = (e - e.dt.to_period("M").dt.to_timestamp()).dt.total_seconds()
    return months - (e_in < s_in).astype(int)


def _cents(value: float) -> int:
    """Whole cents, half up (MRR values are multiples of 1/12 cent: counted in twelfths)."""
    return int(np.floor((np.rint(value * 12) + 6) / 12))


def baseline(path: Path, now: datetime, close: datetime) -> dict:
    con = sqlite3.connect(path)
    dates = ["started_at", "paid_at", "ended_at", "trial_end"]
    m = pd.read_sql(
        "SELECT m.id, m.started_at, m.paid_at, m.ended_at, m.trial_end, m.interval,"
        " m.amount_cents, o.email, o.subscriber_id, f.guarantee_days FROM memberships m"
        " JOIN orders o ON o.id = m.order_id LEFT JOIN offers f ON f.id = m.offer_id"
        " WHERE m.launch_id = 1", con, parse_dates=dates,
    )  # fmt: skip
    steps = pd.read_sql(
        "SELECT membership_id, occurred_at, kind, interval, amount_cents FROM membership_events",
        con, parse_dates=["occurred_at"],
    )  # fmt: skip
    steps = steps[steps["kind"].isin(["joined", "snapshot"]) & steps["interval"].notna()]
    pay = pd.read_sql("SELECT order_id, amount_cents, status FROM payments", con)
    refunds = pd.read_sql(
        "SELECT r.amount_cents, r.refunded_at, m.id AS membership_id FROM refunds r"
        " JOIN memberships m ON m.order_id = r.order_id WHERE r.status = 'succeeded'",
        con, parse_dates=["refunded_at"],
    )  # fmt: skip
    con.close()
    now_t, close_t = pd.Timestamp(now).tz_localize(None), pd.Timestamp(close).tz_localize(None)
    steps = steps.sort_values(["membership_id", "occurred_at"])
    steps["mrr"] = np.where(steps["interval"] == "year", steps["amount_cents"] / 12,
                            steps["amount_cents"])  # fmt: skip
    first_price = steps.groupby("membership_id")["mrr"].first()
    m = m.set_index("id")
    fallback = np.where(m["interval"] == "year", m["amount_cents"] / 12, m["amount_cents"])
    base = pd.Series(fallback, index=m.index)
    base.update(first_price)

    def mrr_at(t: pd.Timestamp) -> pd.Series:
        price = base.copy()
        price.update(steps[steps["occurred_at"] <= t].groupby("membership_id")["mrr"].last())
        live = (
            m["paid_at"].notna()
            & (m["paid_at"] <= t)
            & (m["ended_at"].isna() | (t < m["ended_at"]))
        )
        return price.where(live, 0.0)

    first_month = m["started_at"].min().to_period("M").to_timestamp()
    bounds = list(pd.date_range(first_month, now_t.to_period("M").to_timestamp(), freq="MS"))
    bounds.append(now_t)
    at = {b: mrr_at(b) for b in bounds}
    person = m["email"]
    first_paid = m.groupby("email")["paid_at"].min()
    rows = []
    for b0, b1 in zip(bounds[:-1], bounds[1:], strict=False):
        p0, p1 = at[b0].groupby(person).sum(), at[b1].groupby(person).sum()
        started = (p0 == 0) & (p1 > 0)
        new = started & (first_paid.reindex(p0.index) >= b0)
        paying = at[b0] > 0
        gone = paying & m["ended_at"].notna() & (m["ended_at"] >= b0) & (m["ended_at"] < b1)
        churned = p0[(p0 > 0) & (p1 == 0)].sum()
        contraction = (p0 - p1)[(p1 > 0) & (p1 < p0)].sum()
        start_mrr = at[b0].sum()
        rows.append({
            "month": b0.strftime("%Y-%m"), "new": _cents(p1[new].sum()),
            "reactivated": _cents(p1[started & ~new].sum()),
            "expansion": _cents((p1 - p0)[(p0 > 0) & (p1 > p0)].sum()),
            "contraction": _cents(contraction), "churned": _cents(churned),
            "members_at_start": int(paying.sum()), "cancellations": int(gone.sum()),
            "logo_churn": float(gone.sum() / paying.sum()) if paying.sum() else 0.0,
            "mrr_at_start": _cents(start_mrr),
            "revenue_churn": float((churned + contraction) / start_mrr) if start_mrr > 0 else 0.0,
            "partial": b1 == now_t,
        })  # fmt: skip
    payers = m[m["paid_at"].notna()]
    observed = _months_between(payers["paid_at"], pd.Series(now_t, index=payers.index))
    # still there k months after joining: months counted to just before the end
    before_end = (payers["ended_at"] - pd.Timedelta(1, "ms")).fillna(now_t)
    lived = _months_between(payers["paid_at"], before_end)
    curve = []
    for k in range(int(observed.max()) + 1):
        eligible = observed >= k
        kept = eligible & (lived >= k)
        curve.append({"month": k, "eligible": int(eligible.sum()), "retained": int(kept.sum()),
                      "rate": float(kept.sum() / eligible.sum())})  # fmt: skip
    cohorts = []
    for name, group in payers.groupby(payers["paid_at"].dt.strftime("%Y-%m")):
        obs, liv = observed[group.index], lived[group.index]
        rates = [float(((obs >= k) & (liv >= k)).sum() / (obs >= k).sum())
                 for k in range(int(obs.max()) + 1)]  # fmt: skip
        cohorts.append({"cohort": name, "members": len(group), "retention": rates})
    now_mrr = at[now_t]
    complete = rows[:-1]
    lost = sum(r["cancellations"] for r in complete)
    exposed = sum(r["members_at_start"] for r in complete)
    arpu = Fraction(int(np.rint(now_mrr.sum() * 12)), 12 * int((now_mrr > 0).sum()))
    ltv = arpu * exposed / lost
    merged = refunds.merge(m[["paid_at", "guarantee_days"]], left_on="membership_id",
                           right_index=True)  # fmt: skip
    inside = (merged["refunded_at"] - merged["paid_at"]).dt.total_seconds() / 86400 <= merged[
        "guarantee_days"
    ].fillna(0)
    over = m["trial_end"].notna() & (m["trial_end"] <= now_t)
    orders = set(m.index)  # order id = membership id in this data set
    return {
        "members_joined": len(m), "paying_members": int(m["paid_at"].notna().sum()),
        "members_now": int((now_mrr > 0).sum()),
        "trials_over": int(over.sum()), "converted": int((over & m["paid_at"].notna()).sum()),
        "mrr_at_cart_close": _cents(mrr_at(close_t).sum()), "mrr_now": _cents(now_mrr.sum()),
        "mrr_by_month": rows, "retention_curve": curve, "cohorts": cohorts,
        "arpu_cents": math.floor(arpu + Fraction(1, 2)),
        "ltv_cents": math.floor(ltv + Fraction(1, 2)),
        "refunds_inside_guarantee": {"count": int(merged.loc[inside, "membership_id"].nunique()),
                                     "cents": int(merged.loc[inside, "amount_cents"].sum())},
        "revenue_cents": int(pay[(pay["status"] == "paid") & pay["order_id"].isin(orders)]
                             ["amount_cents"].sum()),
    }  # fmt: skip


def _same(ours: dict, theirs: dict) -> list[str]:
    """The figures that differ (rates compared to 1e-9)."""
    flat = {**ours, "trials_over": ours["trial"]["trials_over"],
            "converted": ours["trial"]["converted"], "arpu_cents": ours["ltv"]["arpu_cents"],
            "ltv_cents": ours["ltv"]["ltv_cents"]}  # fmt: skip
    bad = []
    for key, value in theirs.items():
        a, b = pd.Series([flat[key]]).to_json(), pd.Series([value]).to_json()
        if a != b and not _close(flat[key], value):
            bad.append(key)
    return bad


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-9  # type: ignore[arg-type]
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        started = time.perf_counter()
        now = generate(path, args.members, args.months)
        con = sqlite3.connect(path)
        invoices = con.execute("SELECT count(*) FROM payments").fetchone()[0]
        con.close()
        print(f"data: {args.members:,} members, {invoices:,} invoices, "
              f"generated in {time.perf_counter() - started:.1f} s")  # fmt: skip
        engine = make_engine(f"sqlite:///{path}")
        with make_sessionmaker(engine).begin() as s:
            from launchkit.models import Launch

            launch = s.get(Launch, 1)
            t0, c0 = time.perf_counter(), time.process_time()
            ours = analyze_memberships(s, launch, now)
            ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
        engine.dispose()
        t0, c0 = time.perf_counter(), time.process_time()
        theirs = baseline(path, now, CLOSE)
        theirs_s, theirs_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert ours is not None
    bad = _same(ours, theirs)
    print(f"launchkit: {ours_s:.2f} s wall, {ours_cpu:.2f} s CPU  "
          f"(MRR now {ours['mrr_now'] / 100:,.2f}, {len(ours['mrr_by_month'])} months, "
          f"LTV {ours['ltv']['ltv_cents']})")  # fmt: skip
    print(f"pandas baseline: {theirs_s:.2f} s wall, {theirs_cpu:.2f} s CPU")
    print("agree: yes" if not bad else f"agree: NO ({', '.join(bad)})")
    print(f"ratio: {theirs_s / ours_s:.2f}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
