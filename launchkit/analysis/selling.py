"""Selling figures of a launch: sales by price tier and by coupon, tax, abandoned-checkout
recovery. Computed on the orders ``analyze_data`` kept (currency, segment), so a launch without
tiers, coupons or tax gets empty lists and zeros, and every other figure is unchanged."""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.analysis import metrics
from launchkit.analysis.load import LaunchData
from launchkit.models import CheckoutRecovery, Offer, OfferTier, Order

FACTS = ("tier", "coupon_code", "discount_cents", "tax_cents")


def selling_summary(session: Session, data: LaunchData, result: dict[str, Any]) -> dict[str, Any]:
    """``by_tier``, ``by_coupon``, ``tax_cents``, ``revenue_net_of_tax_cents``, ``recovery``."""
    orders = _with_facts(session, data.orders)
    tax = _tax(orders)
    return {
        "by_tier": by_tier(session, data.launch.id, orders),
        "by_coupon": by_coupon(orders, int(result.get("audience_size") or 0)),
        "tax_cents": tax,
        "revenue_net_of_tax_cents": int(result.get("net_revenue_cents") or 0) - tax,
        "recovery": recovery_summary(session, data.launch.id, orders),
    }


def _with_facts(session: Session, orders: pd.DataFrame) -> pd.DataFrame:
    ids = [int(i) for i in orders["id"]] if len(orders) else []
    stmt = sa.select(Order.id, *(getattr(Order, name) for name in FACTS)).where(Order.id.in_(ids))
    rows = session.execute(stmt).all() if ids else []
    facts = pd.DataFrame(rows, columns=["id", *FACTS]).astype({"id": "int64"})
    merged = orders.merge(facts, on="id", how="left")
    for name in ("discount_cents", "tax_cents"):
        merged[name] = pd.to_numeric(merged[name]).fillna(0).astype("int64")
    return merged


def _group_rows(orders: pd.DataFrame, column: str, key: str) -> list[dict[str, Any]]:
    rows = []
    for value, group in orders.groupby(orders[column].fillna(""), sort=True):
        rows.append(
            {
                key: value or None,
                "orders": len(group),
                "buyers": int(group["person"].nunique()),
                "revenue_cents": int(group["paid_cents"].sum()),
            }
        )
    return rows


def by_tier(session: Session, launch_id: int, orders: pd.DataFrame) -> list[dict[str, Any]]:
    """Orders, buyers and collected revenue per price tier (``tier: null``: the full price);
    empty when the launch's offers have no tiers and no order was bought at one."""
    has_tiers = session.scalar(
        sa.select(OfferTier.id).join(Offer, Offer.id == OfferTier.offer_id).where(
            Offer.launch_id == launch_id
        ).limit(1)
    )  # fmt: skip
    if has_tiers is None and not orders["tier"].notna().any():
        return []
    return _group_rows(orders, "tier", "tier")


def by_coupon(orders: pd.DataFrame, audience_size: int) -> list[dict[str, Any]]:
    """Per code: orders, buyers, collected revenue, discount given, share of the orders and
    conversion (buyers in the audience who used the code over the audience size, like
    ``conversion_rate``)."""
    used = orders[orders["coupon_code"].notna()]
    rows = _group_rows(used, "coupon_code", "coupon")
    for row in rows:
        group = used[used["coupon_code"] == row["coupon"]]
        row["discount_cents"] = int(group["discount_cents"].sum())
        row["share_of_orders"] = metrics.safe_rate(row["orders"], len(orders))
        in_audience = group[group["in_audience"].astype(bool)]["person"].nunique()
        row["conversion_rate"] = metrics.safe_rate(int(in_audience), audience_size)
    return rows


def _tax(orders: pd.DataFrame) -> int:
    """Stripe Tax collected: the tax of each payment times the payments made."""
    if orders.empty:
        return 0
    return int((orders["tax_cents"] * orders["instalments_paid"]).sum())


def recovery_summary(session: Session, launch_id: int, orders: pd.DataFrame) -> dict[str, Any]:
    """Recovery emails sent for the launch's offers, and the orders paid after one (by the same
    subscriber, for the same launch) with their collected revenue."""
    sent = session.execute(
        sa.select(CheckoutRecovery.subscriber_id, CheckoutRecovery.sent_at)
        .join(Offer, Offer.id == CheckoutRecovery.offer_id)
        .where(Offer.launch_id == launch_id, CheckoutRecovery.sent_at.is_not(None))
    ).all()
    first: dict[int, Any] = {}
    for sid, at in sent:
        first[int(sid)] = min(at, first.get(int(sid), at))
    recovered = pd.Series(False, index=orders.index)
    if first and not orders.empty:
        mailed = orders["subscriber_id"].map(lambda s: first.get(int(s)) if pd.notna(s) else None)
        at = pd.to_datetime(mailed, utc=True)
        recovered = at.notna() & (orders["sold_at"] >= at)
    return {
        "emails_sent": len(sent),
        "recovered_orders": int(recovered.sum()),
        "recovered_revenue_cents": int(orders.loc[recovered, "paid_cents"].sum()),
    }
