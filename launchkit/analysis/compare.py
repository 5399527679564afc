"""Launches side by side, and conversion against audience size with a least-squares line."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from launchkit.analysis import definitions
from launchkit.analysis.analyze import analyze_launch
from launchkit.analysis.definitions import Z95
from launchkit.launches import list_launches

SUMMARY_KEYS = (
    "currency",
    "audience_size",
    "buyers",
    "buyers_in_audience",
    "conversion_rate",
    "conversion_ci95",
    "gross_revenue_cents",
    "refunded_cents",
    "fees_cents",
    "fee_ratio",
    "net_revenue_cents",
    "booked_revenue_cents",
    "average_order_cents",
    "refund_rate",
    "net_revenue_per_subscriber_cents",
)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one analysis, plus the plan figures compare and forecast use."""
    plans = result["payment_plans"]
    row = {"launch": result["launch"]["slug"], "cart_open": result["launch"]["cart_open"]}
    row.update({key: result[key] for key in SUMMARY_KEYS})
    row.update(
        orders=result["orders"],
        fees_known_orders=result["fees_known_orders"],
        fees_gross_cents=result["fees_gross_cents"],
        refunded_orders=result["refunds"]["count"],
        plan_orders=plans["orders"],
        plan_defaulted=plans["defaulted"],
        plan_booked_cents=plans["booked_cents"],
        plan_collected_cents=plans["collected_cents"],
        plan_completion_rate=plans["completion_rate"],
        share_last_48h=result["timing"]["share_last_48h"],
    )
    return row


MIN_FIT_LAUNCHES = 3
# two-sided 95% Student t quantiles for 1-30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t (table to 30, Cornish-Fisher expansion beyond)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def fit_line(x: list[float], y: list[float]) -> dict[str, Any] | None:
    """Least-squares line y = slope * x + intercept with the slope's 95% interval; None with
    fewer than three points or fewer than two distinct x (a line through two points says
    nothing about its error). ``r2`` is None when every y is the same."""
    if len(x) < MIN_FIT_LAUNCHES or len(set(x)) < 2:
        return None
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    total = float(np.sum((ys - ys.mean()) ** 2))
    spread = float(np.sum((xs - xs.mean()) ** 2))
    df = len(xs) - 2
    half = t_quantile_975(df) * math.sqrt(residual / df / spread)
    low, high = float(slope) - half, float(slope) + half
    return {
        "launches": len(xs),
        "slope": float(slope),
        "slope_ci95": [low, high],
        "slope_per_1000": float(slope) * 1000,
        "slope_per_1000_ci95": [low * 1000, high * 1000],
        "intercept": float(intercept),
        "r2": 1 - residual / total if total else None,
    }


def pick_launches(session: Session, slugs: list[str] | None, now: datetime | None) -> list[str]:
    """The launches named, or every launch whose cart has closed at ``now`` (oldest first;
    every launch when ``now`` is not given)."""
    if slugs:
        return list(slugs)
    launches = reversed(list_launches(session))
    return [one.slug for one in launches if now is None or not definitions.is_provisional(one, now)]


def compare_launches(
    session: Session,
    slugs: list[str] | None = None,
    *,
    now: datetime | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """Analyze each launch side by side: the ones named, else every launch whose cart has closed
    (a provisional launch is compared only when named)."""
    chosen = pick_launches(session, slugs, now)
    results = [analyze_launch(session, slug, currency=currency, now=now) for slug in chosen]
    rows = [summarize(result) | {"provisional": result["provisional"]} for result in results]
    measured = [row for row in rows if row["audience_size"] > 0]
    fit = fit_line(
        [row["audience_size"] for row in measured], [row["conversion_rate"] for row in measured]
    )
    return {"launches": rows, "fit": fit, "membership_retention": compare_retention(results)}


RETENTION_MONTHS = (1, 2, 3, 6, 12)


def launch_retention(result: dict[str, Any]) -> dict[str, Any] | None:
    """One membership launch's row of the retention comparison (None: no paying member).

    Retention at month k is reported only once every paying member of the launch has been a
    member for k whole months or more (every joining cohort has reached it); before that it is
    ``None`` (not yet reached), never 0: a share of the early joiners alone is not comparable."""
    ms = result.get("membership")
    if not ms or not ms["paying_members"]:
        return None
    curve = {row["month"]: row for row in ms["retention_curve"]}
    paying = ms["paying_members"]
    months = []
    for k in RETENTION_MONTHS:
        row = curve.get(k)
        reached = row is not None and row["eligible"] == paying
        months.append(
            {
                "month": k,
                "reached": reached,
                "retained": row["retained"] if reached else None,
                "rate": row["rate"] if reached else None,
            }
        )
    return {
        "launch": result["launch"]["slug"],
        "cart_open": result["launch"]["cart_open"],
        "members_joined": ms["members_joined"],
        "paying_members": paying,
        "monthly_churn": ms["ltv"]["monthly_churn"],
        "retention": months,
    }


def compare_retention(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Membership launches side by side: retention at months 1, 2, 3, 6 and 12, members joined
    and monthly churn; ``comparable_months``: the months every one of them has reached."""
    rows = [row for row in map(launch_retention, results) if row is not None]
    comparable = [
        k
        for index, k in enumerate(RETENTION_MONTHS)
        if rows and all(row["retention"][index]["reached"] for row in rows)
    ]
    return {"months": list(RETENTION_MONTHS), "comparable_months": comparable, "launches": rows}
