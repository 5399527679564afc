"""`analyze_launch`: load one launch, pick its currency, and assemble every metric."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.analysis import definitions, metrics
from launchkit.analysis.funnel import click_funnel
from launchkit.analysis.load import LaunchData, launch_window, load_launch
from launchkit.analysis.selling import selling_summary
from launchkit.analysis.waitlist import waitlist_section
from launchkit.clock import iso_utc
from launchkit.errors import InputError
from launchkit.launches import get_launch
from launchkit.models import Launch, Segment, Subscriber
from launchkit.segments import resolve_segment, segment_filter


def segment_condition(session: Session, name_or_expression: str) -> Any:
    """SQL condition on subscribers for a saved segment name or a segment expression."""
    return segment_filter(resolve_segment(session, name_or_expression))


def _segment_members(session: Session) -> dict[str, pd.Series]:
    """Subscriber ids of every saved segment (one query per segment, none per row)."""
    conn = session.connection()
    members = {}
    for name, expression in conn.execute(sa.select(Segment.name, Segment.expression)):
        stmt = sa.select(Subscriber.id).where(segment_filter(expression))
        members[name] = pd.Series([row[0] for row in conn.execute(stmt)], dtype="int64")
    return members


def choose_currency(data: LaunchData, currency: str | None) -> str:
    """The launch's single order currency, or the one picked; mixed without a pick is an error."""
    found = sorted(data.orders["currency"].str.upper().unique())
    if currency:
        return currency.upper()
    if len(found) > 1:
        listed = " and ".join(found) if len(found) == 2 else ", ".join(found)
        raise InputError(
            f"Launch {data.launch.slug} has orders in {listed}; pick one with --currency"
        )
    return found[0] if found else data.launch.currency


def keep_currency(data: LaunchData, currency: str) -> None:
    """Drop orders (and their payments and refunds) in other currencies."""
    data.orders = data.orders[data.orders["currency"].str.upper() == currency].copy()
    kept = data.orders["id"]
    data.payments = data.payments[data.payments["order_id"].isin(kept)]
    data.refunds = data.refunds[data.refunds["order_id"].isin(kept)]


def keep_segment(data: LaunchData) -> None:
    """``--segment``: keep only the orders of buyers whose subscriber matches the segment."""
    data.orders = data.orders[data.orders["in_segment"].astype(bool)].copy()
    kept = data.orders["id"]
    data.payments = data.payments[data.payments["order_id"].isin(kept)]
    data.refunds = data.refunds[data.refunds["order_id"].isin(kept)]


def buyers_of(orders: pd.DataFrame) -> definitions.Buyers:
    """Distinct buyers of the counted orders, split by where they stood at cart open."""
    pairs = zip(orders["person"], orders["in_audience"].astype(bool), strict=True)
    return definitions.count_buyers(pairs)


def _conversion(data: LaunchData, members: dict[str, pd.Series]) -> dict[str, Any]:
    audience = data.audience
    buyers = buyers_of(data.orders)
    in_audience = data.orders[data.orders["in_audience"].astype(bool)]
    buyer_ids = in_audience["subscriber_id"].dropna().astype("int64")
    is_buyer = audience["id"].isin(buyer_ids)
    size = len(audience)
    ci = metrics.wilson_interval(buyers.in_audience, size)
    rate = definitions.conversion_rate(buyers.in_audience, size)
    segments = [
        metrics.conversion_row(
            name,
            int(audience["id"].isin(ids).sum()),
            int((is_buyer & audience["id"].isin(ids)).sum()),
            "segment",
        )
        for name, ids in members.items()
    ]
    return {
        "audience_size": size,
        **buyers.as_dict(),
        "conversion_rate": rate,
        "conversion_ci95": list(ci) if ci else None,
        "benchmark": metrics.benchmark_position(rate),
        "by_source": metrics.conversion_by(audience["source"], is_buyer, "source"),
        "by_magnet": metrics.conversion_by_tags(data.tags, buyer_ids, magnets=True),
        "by_tag": metrics.conversion_by_tags(data.tags, buyer_ids, magnets=False),
        "by_cohort": sorted(
            metrics.conversion_by(audience["cohort"], is_buyer, "cohort"),
            key=lambda row: row["cohort"],
        ),
        "by_segment": segments,
    }


def _launch_info(launch: Launch, data: LaunchData) -> dict[str, Any]:
    start, end = launch_window(launch)
    return {
        "slug": launch.slug,
        "product": launch.product,
        "mode": launch.mode,
        "prelaunch_start": iso_utc(launch.prelaunch_start),
        "cart_open": iso_utc(launch.cart_open),
        "cart_close": iso_utc(launch.cart_close),
        "window_start": iso_utc(start),
        "window_end": iso_utc(end),
        "offers": [
            {
                "slug": o["slug"],
                "price_cents": int(o["price_cents"]),
                "guarantee_days": int(o["guarantee_days"]),
                "plans": int(o["plans"]),
            }
            for o in data.offers.to_dict("records")
        ],
    }


def analyze_data(
    data: LaunchData,
    *,
    currency: str | None = None,
    segment: str | None = None,
    members: dict[str, pd.Series] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every metric of a loaded launch, as one JSON-ready dict (``provisional`` when ``now`` is
    before cart close)."""
    chosen = choose_currency(data, currency)
    keep_currency(data, chosen)
    if segment:
        keep_segment(data)
    launch = data.launch
    conversion = _conversion(data, members or {})
    revenue = metrics.revenue_summary(data.orders, conversion["audience_size"])
    provisional = definitions.is_provisional(launch, now) if now is not None else None
    return {
        "launch": _launch_info(launch, data),
        "provisional": provisional,
        "currency": chosen,
        "segment": segment,
        **conversion,
        "pending_orders": 0 if segment else data.pending.get(chosen, 0),
        **revenue,
        "refund_rate": metrics.safe_rate(
            int(metrics.refunded_mask(data.orders).sum()), len(data.orders)
        ),
        "refunds": metrics.refund_summary(data.orders, data.refunds, data.offers, data.payments),
        "payment_plans": metrics.plan_summary(data.orders, data.payments),
        "timing": metrics.timing_summary(data.orders, launch.cart_open, launch.cart_close),
        "emails": metrics.email_summary(
            data.emails, data.send_events, data.orders, data.leavers, data.web
        ),
    }


def analyze_launch(
    session: Session,
    slug: str,
    *,
    currency: str | None = None,
    segment: str | None = None,
    now: datetime | None = None,
    tz: ZoneInfo | None = None,
) -> dict[str, Any]:
    """Analyze launch ``slug``: the dict behind ``launchkit analyze --json``.

    An evergreen launch also gets ``evergreen``: its entrants by ISO week of entry (in ``tz``,
    UTC when None), see ``analysis.evergreen``.

    ``currency`` picks one currency when the orders mix several; ``segment`` (a saved segment
    name or an expression) narrows the audience and the buyers (and their orders) to the
    segment's people. ``now`` decides whether the figures are ``provisional`` (null without it).
    """
    launch = get_launch(session, slug)
    condition = segment_condition(session, segment) if segment else None
    data = load_launch(session, launch, condition)
    members = {} if segment else _segment_members(session)
    result = analyze_data(data, currency=currency, segment=segment, members=members, now=now)
    result = {**result, **selling_summary(session, data, result)}  # tiers, coupons, tax, recovery
    result["click_funnel"] = click_funnel(session, data)
    waitlist = None if segment else waitlist_section(session, launch)
    if waitlist is not None:
        result["waitlist"] = waitlist
    if launch.mode == "evergreen" and not segment:
        from launchkit.analysis.evergreen import entrants_by_week

        result["evergreen"] = entrants_by_week(session, launch, tz or ZoneInfo("UTC"))
    if now is not None:  # memberships are measured against now (docs: "Membership launches")
        from launchkit.analysis.memberships import analyze_memberships

        result["membership"] = analyze_memberships(session, launch, now)
        result["membership_only"] = result["membership"] is not None and _only_memberships(
            session, data
        )
    return result


def _only_memberships(session: Session, data: LaunchData) -> bool:
    """Every order of the launch bought a membership offer (none bought a one-off offer)."""
    from launchkit.memberships.offers import is_membership
    from launchkit.models import Offer

    offers = data.orders["offer_id"]
    if offers.empty or offers.isna().any():
        return False
    return all(is_membership(session, session.get(Offer, int(i))) for i in offers.unique())
