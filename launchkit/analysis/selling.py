"""Selling figures of a launch: sales by price tier and by coupon, tax, abandoned-checkout
recovery. Computed on the orders ``analyze_data`` kept (currency, segment), so a launch without
tiers, coupons or tax gets empty lists and zeros, and every other figure is unchanged.

Definitions (the same words as the top-level figures):

- ``revenue_cents``: collected (what the buyers paid, every instalment so far);
- ``refunded_cents``: given back; ``net_revenue_cents``: collected - refunded - known fees, so
  the groups of ``by_tier`` (or the coupon rows plus the orders without a code) add up to the
  launch's ``net_revenue_cents``;
- ``conversion_rate``: distinct buyers in the audience in the group / audience at cart open;
- ``tax_cents``: Stripe Tax kept: the tax of each payment times the payments made, less the
  refunded share (a refund gives back tax in proportion, rounded to the nearest cent);
  ``revenue_net_of_tax_cents`` = ``net_revenue_cents`` - ``tax_cents``;
- recovery: an order is recovered when its buyer got a recovery email at or before buying.
"""

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
    audience = int(result.get("audience_size") or 0)
    tax = kept_tax(orders)
    return {
        "by_tier": by_tier(session, data.launch.id, orders, audience),
        "by_coupon": by_coupon(orders, audience),
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


def _net(group: pd.DataFrame) -> int:
    """Collected - refunded - known fees (unknown fees count 0, as in ``revenue_summary``)."""
    fees = pd.to_numeric(group["fee_cents"]).fillna(0).sum()
    return int(group["paid_cents"].sum() - group["refunded_cents"].sum() - fees)


def _group_rows(
    orders: pd.DataFrame, column: str, key: str, audience_size: int
) -> list[dict[str, Any]]:
    rows = []
    for value, group in orders.groupby(orders[column].fillna(""), sort=True):
        in_audience = group[group["in_audience"].astype(bool)]["person"].nunique()
        rows.append(
            {
                key: value or None,
                "orders": len(group),
                "buyers": int(group["person"].nunique()),
                "revenue_cents": int(group["paid_cents"].sum()),
                "refunded_cents": int(group["refunded_cents"].sum()),
                "net_revenue_cents": _net(group),
                "share_of_orders": metrics.safe_rate(len(group), len(orders)),
                "conversion_rate": metrics.safe_rate(int(in_audience), audience_size),
            }
        )
    return rows


def by_tier(
    session: Session, launch_id: int, orders: pd.DataFrame, audience_size: int
) -> list[dict[str, Any]]:
    """Per price tier (``tier: null``: the full price or a plan): orders, buyers, revenue
    collected, refunded and net, share of the orders and conversion; empty when the launch's
    offers have no tiers and no order was bought at one."""
    has_tiers = session.scalar(
        sa.select(OfferTier.id).join(Offer, Offer.id == OfferTier.offer_id).where(
            Offer.launch_id == launch_id
        ).limit(1)
    )  # fmt: skip
    if has_tiers is None and not orders["tier"].notna().any():
        return []
    return _group_rows(orders, "tier", "tier", audience_size)


def by_coupon(orders: pd.DataFrame, audience_size: int) -> list[dict[str, Any]]:
    """Per code used: the ``by_tier`` figures plus the discount given; ``share_of_orders`` is
    over every order of the launch. Empty when no order used a code."""
    used = orders[orders["coupon_code"].notna()]
    rows = _group_rows(used, "coupon_code", "coupon", audience_size)
    for row in rows:
        group = used[used["coupon_code"] == row["coupon"]]
        row["discount_cents"] = int(group["discount_cents"].sum())
        row["share_of_orders"] = metrics.safe_rate(row["orders"], len(orders))
    return rows


def kept_tax(orders: pd.DataFrame) -> int:
    """Stripe Tax kept: the tax of each payment times the payments made, less the share a
    refund gave back (refunded / collected of that tax, rounded half up to the cent)."""
    if orders.empty:
        return 0
    total = 0
    columns = ("tax_cents", "instalments_paid", "paid_cents", "refunded_cents")
    for tax, payments, paid, refunded in orders[list(columns)].itertuples(index=False):
        collected = int(tax) * int(payments)
        total += collected - refunded_share(collected, int(refunded), int(paid))
    return total


def refunded_share(amount: int, refunded: int, paid: int) -> int:
    """``amount * refunded / paid`` rounded half up (0 when nothing was paid)."""
    if paid <= 0 or amount <= 0 or refunded <= 0:
        return 0
    return min(amount, (2 * amount * refunded + paid) // (2 * paid))


def recovery_summary(session: Session, launch_id: int, orders: pd.DataFrame) -> dict[str, Any]:
    """Recovery emails sent for the launch's offers, the orders paid after one (by the same
    subscriber, for the same launch) with their collected and net revenue, and the share of
    the people emailed who then bought."""
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
    won = orders.loc[recovered]
    return {
        "emails_sent": len(sent),
        "recovered_orders": int(recovered.sum()),
        "recovered_revenue_cents": int(won["paid_cents"].sum()),
        "recovered_net_revenue_cents": _net(won) if len(won) else 0,
        "recovery_rate": metrics.safe_rate(int(won["subscriber_id"].nunique()), len(first)),
    }
