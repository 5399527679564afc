"""Launches side by side, and conversion against audience size with a least-squares line."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from launchkit.analysis.analyze import analyze_launch
from launchkit.launches import list_launches

SUMMARY_KEYS = (
    "currency",
    "audience_size",
    "buyers",
    "conversion_rate",
    "conversion_ci95",
    "gross_revenue_cents",
    "refunded_cents",
    "fees_cents",
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
        refunded_orders=result["refunds"]["count"],
        plan_orders=plans["orders"],
        plan_defaulted=plans["defaulted"],
        plan_booked_cents=plans["booked_cents"],
        plan_collected_cents=plans["collected_cents"],
        plan_completion_rate=plans["completion_rate"],
        share_last_48h=result["timing"]["share_last_48h"],
    )
    return row


def fit_line(x: list[float], y: list[float]) -> dict[str, float] | None:
    """Least-squares line y = slope * x + intercept; None with fewer than two distinct x."""
    if len(set(x)) < 2:
        return None
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    predicted = slope * np.asarray(x, float) + intercept
    residual = float(np.sum((np.asarray(y, float) - predicted) ** 2))
    total = float(np.sum((np.asarray(y, float) - np.mean(y)) ** 2))
    return {
        "slope": float(slope),
        "slope_per_1000": float(slope) * 1000,
        "intercept": float(intercept),
        "r2": 1 - residual / total if total else 1.0,
    }


def compare_launches(
    session: Session, slugs: list[str] | None = None, *, currency: str | None = None
) -> dict[str, Any]:
    """Analyze each launch (all of them, oldest first, when ``slugs`` is empty) side by side."""
    if not slugs:
        slugs = [launch.slug for launch in reversed(list_launches(session))]
    rows = [summarize(analyze_launch(session, slug, currency=currency)) for slug in slugs]
    measured = [row for row in rows if row["audience_size"] > 0]
    fit = fit_line(
        [row["audience_size"] for row in measured], [row["conversion_rate"] for row in measured]
    )
    return {"launches": rows, "fit": fit}
