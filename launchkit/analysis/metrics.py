"""Launch metrics computed from the loaded frames: conversion, revenue, refunds, plans, timing.

Every function takes DataFrames and returns plain JSON-ready values (ints, floats, lists of
dicts). Rates over an empty denominator are 0.0 and their intervals are ``None``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from launchkit.analysis.definitions import Z95, wilson_interval  # noqa: F401 (re-exported)
from launchkit.clock import iso_utc

DEFAULT_GUARANTEE_DAYS = 30
BENCHMARK_BANDS = {
    "typical": (0.005, 0.02),  # paid course launch by email, share of the list
    "established": (0.02, 0.04),  # established creators
}
HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)


def safe_rate(numerator: float, denominator: float) -> float:
    """numerator / denominator, or 0.0 when the denominator is zero."""
    return float(numerator) / float(denominator) if denominator else 0.0


def benchmark_position(rate: float) -> dict[str, Any]:
    """Where a conversion rate sits against the field's bands."""
    low, high = BENCHMARK_BANDS["typical"]
    top = BENCHMARK_BANDS["established"][1]
    if rate < low:
        position = "below"
    elif rate <= high:
        position = "typical"
    elif rate <= top:
        position = "established"
    else:
        position = "above"
    bands = {name: {"low": lo, "high": hi} for name, (lo, hi) in BENCHMARK_BANDS.items()}
    return {"bands": bands, "position": position}


def conversion_row(label: str, audience: int, buyers: int, key: str = "source") -> dict[str, Any]:
    """One group's audience, buyers, conversion and Wilson 95% interval."""
    ci = wilson_interval(buyers, audience)
    return {
        key: label,
        "audience": int(audience),
        "buyers": int(buyers),
        "conversion_rate": safe_rate(buyers, audience),
        "ci95_low": ci[0] if ci else None,
        "ci95_high": ci[1] if ci else None,
    }


def buyer_keys(orders: pd.DataFrame) -> pd.Series:
    """One key per buyer: the subscriber id, or the email for buyers not on the list."""
    by_email = "email:" + orders["email"].astype(str).str.strip().str.lower()
    by_id = "id:" + orders["subscriber_id"].astype("string")
    return by_id.where(orders["subscriber_id"].notna(), by_email)


def conversion_by(groups: pd.Series, is_buyer: pd.Series, key: str) -> list[dict[str, Any]]:
    """Conversion per value of ``groups`` (aligned with ``is_buyer``), largest audience first."""
    if groups.empty:
        return []
    table = (
        pd.DataFrame({"g": groups.to_numpy(), "b": is_buyer.to_numpy()})
        .groupby("g", observed=True)["b"]
        .agg(["size", "sum"])
        .sort_values(["size", "sum"], ascending=False, kind="stable")
    )
    return [conversion_row(str(g), int(n), int(b), key) for g, (n, b) in table.iterrows()]


def conversion_by_tags(
    tags: pd.DataFrame, buyer_ids: pd.Series, *, magnets: bool
) -> list[dict[str, Any]]:
    """Conversion per tag; ``magnets`` selects ``magnet:*`` tags (named without the prefix)."""
    tag = tags["tag"].astype("category")
    magnet_tags = [c for c in tag.cat.categories if str(c).startswith("magnet:")]
    chosen = tag.isin(magnet_tags) == magnets
    labels = tag[chosen].cat.remove_unused_categories()
    if magnets:
        labels = labels.cat.rename_categories(lambda c: str(c).removeprefix("magnet:"))
    key = "magnet" if magnets else "tag"
    return conversion_by(labels, tags.loc[chosen, "subscriber_id"].isin(buyer_ids), key)


def revenue_summary(orders: pd.DataFrame, audience_size: int) -> dict[str, Any]:
    """Gross collected, refunded, fees, net, booked, average order and the plan mix."""
    gross = int(orders["paid_cents"].sum())
    refunded = int(orders["refunded_cents"].sum())
    fees = fee_summary(orders)
    booked = int(orders["total_cents"].sum())
    net = gross - refunded - (fees["fees_cents"] or 0)
    is_plan = orders["plan_instalments"] > 1
    return {
        "gross_revenue_cents": gross,
        "refunded_cents": refunded,
        **fees,
        "net_revenue_cents": net,
        "booked_revenue_cents": booked,
        "orders": len(orders),
        "average_order_cents": round(safe_rate(booked, len(orders))),
        "net_revenue_per_subscriber_cents": round(safe_rate(net, audience_size), 2),
        "mix": {
            "pay_in_full": _mix_row(orders[~is_plan]),
            "plan": _mix_row(orders[is_plan]),
        },
    }


def fee_summary(orders: pd.DataFrame) -> dict[str, Any]:
    """Stripe fees: only orders whose fee is known count. ``fees_cents`` is the sum of the known
    fees (null when no order's fee is known), ``fee_ratio`` those fees over the same orders'
    gross ``fees_gross_cents`` (null without a known fee), ``fees_known`` true when every
    order's fee is known."""
    known = orders[orders["fee_cents"].notna()]
    fees = int(known["fee_cents"].sum())
    gross_known = int(known["paid_cents"].sum())
    return {
        "fees_cents": fees if len(known) or orders.empty else None,
        "fees_known": len(known) == len(orders),
        "fees_known_orders": len(known),
        "fees_unknown_orders": len(orders) - len(known),
        "fees_gross_cents": gross_known,
        "fee_ratio": safe_rate(fees, gross_known) if gross_known else None,
    }


def _mix_row(orders: pd.DataFrame) -> dict[str, int]:
    return {
        "orders": len(orders),
        "booked_cents": int(orders["total_cents"].sum()),
        "collected_cents": int(orders["paid_cents"].sum()),
    }


def refunded_mask(orders: pd.DataFrame) -> pd.Series:
    """Orders with any money given back (or marked refunded)."""
    return (orders["refunded_cents"] > 0) | (orders["status"] == "refunded")


def guarantee_days(orders: pd.DataFrame, offers: pd.DataFrame) -> pd.Series:
    """The guarantee window (days) of each order's offer; 30 days when unknown."""
    if offers.empty:
        return pd.Series(DEFAULT_GUARANTEE_DAYS, index=orders.index, dtype="int64")
    days = offers.set_index("id")["guarantee_days"]
    fallback = int(days.iloc[0]) if len(days) == 1 else DEFAULT_GUARANTEE_DAYS
    mapped = orders["offer_id"].map(days).astype("Float64").fillna(fallback)
    return mapped.astype("int64")


def refund_times(
    orders: pd.DataFrame, refunds: pd.DataFrame, payments: pd.DataFrame | None = None
) -> tuple[pd.Series, pd.Series]:
    """For each refunded order: when it was first refunded (the first succeeded refund's own
    time, its request time, else the order's ``refunded_at``) and when the money that refund
    returns had moved (its payment's time, else the order's ``paid_at``)."""
    own = pd.to_datetime(orders["refunded_at"], utc=True)
    paid = pd.to_datetime(orders["paid_at"], utc=True)
    done = refunds[refunds["status"] == "succeeded"]
    if done.empty:
        return own, paid
    at = pd.to_datetime(done["refunded_at"], utc=True).fillna(
        pd.to_datetime(done["requested_at"], utc=True)
    )
    first = done.assign(at=at).sort_values("at", kind="stable").drop_duplicates("order_id")
    first = first.set_index("order_id")
    refunded_at = pd.to_datetime(orders["id"].map(first["at"]), utc=True).fillna(own)
    if payments is not None and "id" in payments and "payment_id" in first:
        moved = payments.set_index("id")["occurred_at"]
        payment_at = pd.to_datetime(first["payment_id"].map(moved), utc=True)
        paid = pd.to_datetime(orders["id"].map(payment_at), utc=True).fillna(paid)
    return refunded_at, paid


def refund_summary(
    orders: pd.DataFrame,
    refunds: pd.DataFrame,
    offers: pd.DataFrame,
    payments: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Count, rate, amount, days from the refunded payment to the refund against the guarantee
    window, and reasons."""
    mask = refunded_mask(orders)
    refunded = orders[mask]
    window = guarantee_days(refunded, offers)
    refunded_at, paid_at = refund_times(refunded, refunds, payments)
    days = (refunded_at - paid_at) / DAY
    known = days.notna()
    inside = int((days[known] <= window[known]).sum())
    reasons = refunds.loc[refunds["status"] == "succeeded", "reason"].fillna("unspecified")
    reason_counts = reasons.value_counts().sort_index().sort_values(ascending=False, kind="stable")
    max_window = int(window.max()) if len(window) else _main_guarantee(offers)
    return {
        "count": len(refunded),
        "rate": safe_rate(len(refunded), len(orders)),
        "amount_cents": int(orders["refunded_cents"].sum()),
        "guarantee_days": max_window,
        "inside_guarantee": inside,
        "outside_guarantee": int(known.sum()) - inside,
        "timing_unknown": int((~known).sum()),
        "days": sorted(round(float(d), 2) for d in days[known]),
        "median_days": round(float(days[known].median()), 2) if known.any() else None,
        "histogram": _day_histogram(days[known], max_window),
        "reasons": [{"reason": str(r), "count": int(n)} for r, n in reason_counts.items()],
    }


def _main_guarantee(offers: pd.DataFrame) -> int:
    return int(offers["guarantee_days"].max()) if len(offers) else DEFAULT_GUARANTEE_DAYS


def _day_histogram(days: pd.Series, window: int) -> list[dict[str, int]]:
    whole = days.clip(lower=0).floordiv(1).astype("int64")
    last = max(window, int(whole.max()) if len(whole) else 0)
    counts = whole.value_counts()
    return [{"day": d, "refunds": int(counts.get(d, 0))} for d in range(last + 1)]


def plan_summary(orders: pd.DataFrame, payments: pd.DataFrame) -> dict[str, Any]:
    """Instalments expected, paid and failed; completion, default by instalment, dunning."""
    plans = orders[orders["plan_instalments"] > 1]
    full = orders[orders["plan_instalments"] <= 1]
    completed = plans["instalments_paid"] >= plans["plan_instalments"]
    completed |= plans["status"] == "completed_plan"
    plan_payments = payments[payments["order_id"].isin(plans["id"])]
    failures = plan_payments[plan_payments["status"] == "failed"]
    instalments = instalment_outcomes(plan_payments, plans)
    recovered = int(instalments["recovered"].sum())
    return {
        "orders": len(plans),
        "instalments_expected": int(plans["plan_instalments"].sum()),
        "instalments_paid": int(plans["instalments_paid"].sum()),
        "instalments_failed": int(plans["instalments_failed"].sum()),
        "completed": int(completed.sum()),
        "active": int((plans["status"] == "active_plan").sum()),
        "defaulted": int((plans["status"] == "defaulted").sum()),
        "completion_rate": safe_rate(int(completed.sum()), len(plans)),
        "failed_payments": len(failures),
        "failed_instalments": int(instalments["failed"].sum()),
        "recovered_payments": recovered,
        "recovered_share": safe_rate(recovered, int(instalments["failed"].sum())),
        "by_instalment": _by_instalment(instalments),
        "booked_cents": int(plans["total_cents"].sum()),
        "collected_cents": int(plans["paid_cents"].sum()),
        "refund_rate_plan": safe_rate(int(refunded_mask(plans).sum()), len(plans)),
        "refund_rate_pay_in_full": safe_rate(int(refunded_mask(full).sum()), len(full)),
    }


def instalment_outcomes(payments: pd.DataFrame, plans: pd.DataFrame) -> pd.DataFrame:
    """One row per (instalment number, order) charged: paid (at least once), failed (at least
    one failed attempt), recovered (failed, then paid), defaulted (failed, never paid, and the
    order's plan is ``defaulted``)."""
    rows = payments.dropna(subset=["instalment_number"])
    columns = ["paid", "failed", "recovered", "defaulted"]
    if rows.empty:
        index = pd.MultiIndex.from_arrays([[], []], names=["instalment_number", "order_id"])
        return pd.DataFrame({c: pd.Series(dtype=bool) for c in columns}, index=index)
    flags = rows.assign(paid=rows["status"] == "paid", failed=rows["status"] == "failed")
    outcome = flags.groupby(["instalment_number", "order_id"])[["paid", "failed"]].any()
    gave_up = set(plans.loc[plans["status"] == "defaulted", "id"])
    order_ids = outcome.index.get_level_values("order_id")
    outcome["recovered"] = outcome["failed"] & outcome["paid"]
    outcome["defaulted"] = outcome["failed"] & ~outcome["paid"] & order_ids.isin(gave_up)
    return outcome[columns]


def _by_instalment(outcome: pd.DataFrame) -> list[dict[str, Any]]:
    """Per instalment number: orders charged, paid, failed, recovered, defaulted."""
    if outcome.empty:
        return []
    table = outcome.groupby(level=0).agg(["size", "sum"])
    result = []
    for number, row in table.iterrows():
        attempted = int(row[("paid", "size")])
        result.append(
            {
                "instalment": int(number),
                "orders": attempted,
                "paid": int(row[("paid", "sum")]),
                "failed": int(row[("failed", "sum")]),
                "recovered": int(row[("recovered", "sum")]),
                "defaulted": int(row[("defaulted", "sum")]),
                "default_rate": safe_rate(int(row[("defaulted", "sum")]), attempted),
            }
        )
    return result


def timing_summary(orders: pd.DataFrame, cart_open: datetime, cart_close: datetime) -> dict:
    """Sales per hour and day from cart open, hours before close, the last-48-hours share."""
    sold = orders["sold_at"]
    opens, closes = pd.Timestamp(cart_open), pd.Timestamp(cart_close)
    hour = ((sold - opens) // HOUR).astype("int64")
    day = ((sold - opens) // DAY).astype("int64")
    last48 = (sold > closes - pd.Timedelta(hours=48)) & (sold <= closes)
    first24 = (sold >= opens) & (sold < opens + DAY)
    hours_left = ((closes - sold) // HOUR).astype("int64")
    return {
        "cart_open": iso_utc(cart_open),
        "cart_close": iso_utc(cart_close),
        "open_hours": round((cart_close - cart_open) / timedelta(hours=1), 2),
        "orders_before_open": int((sold < opens).sum()),
        "orders_after_close": int((sold > closes).sum()),
        "share_first_24h": safe_rate(int(first24.sum()), len(orders)),
        "share_last_48h": safe_rate(int(last48.sum()), len(orders)),
        "per_hour": _per_bucket(orders, hour, "hour"),
        "per_day": _per_bucket(orders, day, "day", fill=True),
        "per_hour_before_close": _per_bucket(orders, hours_left, "hours_before_close"),
    }


def _per_bucket(orders: pd.DataFrame, bucket: pd.Series, name: str, fill: bool = False) -> list:
    if orders.empty:
        return []
    grouped = orders.groupby(bucket.to_numpy())["total_cents"].agg(["size", "sum"])
    if fill:
        grouped = grouped.reindex(range(grouped.index.min(), grouped.index.max() + 1), fill_value=0)
    return [
        {name: int(b), "orders": int(n), "booked_cents": int(s)} for b, (n, s) in grouped.iterrows()
    ]


def _last_email_before(events: pd.DataFrame, at: str, sends: pd.DataFrame) -> pd.Series:
    """For each event row (subscriber_id, ``at``), the id of the last email sent before it."""
    result = pd.Series(pd.NA, index=events.index, dtype="Int64")
    known = events.dropna(subset=["subscriber_id", at])
    if known.empty or sends.empty:
        return result
    left = known.assign(subscriber_id=known["subscriber_id"].astype("int64"), _row=known.index)
    right = sends.assign(subscriber_id=sends["subscriber_id"].astype("int64"))
    merged = pd.merge_asof(
        left.sort_values(at),
        right.sort_values("sent_at")[["subscriber_id", "sent_at", "email_id"]],
        left_on=at,
        right_on="sent_at",
        by="subscriber_id",
        direction="backward",
    )
    result.loc[merged["_row"].to_numpy()] = merged["email_id"].astype("Int64").to_numpy()
    return result


def email_summary(
    emails: pd.DataFrame,
    sends: pd.DataFrame,
    orders: pd.DataFrame,
    leavers: pd.DataFrame,
    web: dict[str, int | None],
) -> dict[str, Any]:
    """Sent, bounced, unsubscribed during the launch; per email: revenue and cost attributed."""
    order_email = _last_email_before(orders, "sold_at", sends)
    leaver_email = _last_email_before(leavers, "left_at", sends)
    unsubscribed = leavers["kind"] == "unsubscribed"
    complained = leavers["kind"] == "complained"
    rows = [_email_row(e, orders, order_email, leavers, leaver_email) for e in _records(emails)]
    visits, starts = web.get("sales_view"), web.get("checkout_start")
    return {
        "sent": int(emails["sent"].sum()),
        "delivered": int(emails["sent"].sum()),
        "bounced": int(emails["bounced"].sum()),
        "unsubscribed": int(leavers.loc[unsubscribed, "subscriber_id"].nunique()),
        "complaints": int(leavers.loc[complained, "subscriber_id"].nunique()),
        "left": int(leavers["subscriber_id"].nunique()),
        "sales_page_visits": visits,
        "checkout_starts": starts,
        "checkout_start_rate": safe_rate(starts, visits) if visits else None,
        "orders_without_email": int(order_email.isna().sum()),
        "revenue_without_email_cents": int(orders.loc[order_email.isna(), "paid_cents"].sum()),
        "per_email": rows,
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def _email_row(
    email: dict[str, Any],
    orders: pd.DataFrame,
    order_email: pd.Series,
    leavers: pd.DataFrame,
    leaver_email: pd.Series,
) -> dict[str, Any]:
    mine = orders[(order_email == email["id"]).fillna(False).to_numpy()]
    gone = leavers[(leaver_email == email["id"]).fillna(False).to_numpy()]
    revenue = int(mine["paid_cents"].sum())
    scheduled = email["scheduled_at"]
    return {
        "email_id": int(email["id"]),
        "sequence": email["sequence"],
        "step": email["step"],
        "subject": email["subject"],
        "scheduled_at": None if pd.isna(scheduled) else pd.Timestamp(scheduled).isoformat(),
        "sent": int(email["sent"]),
        "bounced": int(email["bounced"]),
        "orders": len(mine),
        "revenue_cents": revenue,
        "booked_cents": int(mine["total_cents"].sum()),
        "revenue_per_send_cents": round(safe_rate(revenue, int(email["sent"])), 2),
        "unsubscribes": int((gone["kind"] == "unsubscribed").sum()),
        "complaints": int((gone["kind"] == "complained").sum()),
    }
