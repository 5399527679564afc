"""What webhook events tell an order about selling: its price tier, coupon, discount and tax.

Called for every applied event with the order it concerns; each fact is recorded once (the
first event that brings it), so events may come in any order and any number of times.
The booked value (``total_cents``) of an order bought at a tier price or with a discount is
the price actually agreed: the tier's price (plus the bump), less the discount.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.checkout.payloads import MAX_CENTS, _id, invoice_metadata
from launchkit.models import Coupon, Order

SESSION_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


def _cents(value: Any) -> int | None:
    """A non-negative integer amount, or None (absent or absurd values are not recorded)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_CENTS:
        return None
    return value


def _metadata(event_type: str, obj: dict[str, Any]) -> dict[str, str]:
    if event_type.startswith("invoice."):
        return invoice_metadata(obj)
    return obj.get("metadata") or {}


def record_selling_facts(
    session: Session, order: Order, event_type: str, obj: dict[str, Any]
) -> None:
    """Record the tier, coupon, discount and tax an event carries, once each."""
    meta = _metadata(event_type, obj)
    _record_tier(session, order, meta)
    code = str(meta.get("coupon") or "")[:100]
    if code and not order.coupon_code:
        order.coupon_code = code
    if event_type in SESSION_EVENTS:
        _record_totals(session, order, obj)


def _record_tier(session: Session, order: Order, meta: dict[str, str]) -> None:
    tier, raw = str(meta.get("tier") or "")[:50], str(meta.get("tier_cents") or "")
    if order.tier or not tier or not raw.isdigit() or order.plan_instalments > 1:
        return
    cents = _cents(int(raw))
    if cents is None:
        return
    order.tier = tier
    bump = _bump_cents(session, order)
    order.total_cents = cents + bump - (order.discount_cents or 0)


def _bump_cents(session: Session, order: Order) -> int:
    from launchkit.models import Offer

    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    return (offer.bump_cents or 0) if offer is not None and order.bump else 0


def _record_totals(session: Session, order: Order, obj: dict[str, Any]) -> None:
    totals = obj.get("total_details") or {}
    discount = _cents(totals.get("amount_discount"))
    if order.discount_cents is None and discount:
        coupon = _coupon_of(session, obj)
        if coupon is not None and not order.coupon_code:
            order.coupon_code = coupon.code
        order.discount_cents = discount
        per_instalment = coupon is not None and coupon.percent_off and order.plan_instalments > 1
        order.total_cents -= discount * order.plan_instalments if per_instalment else discount
    tax = _cents(totals.get("amount_tax"))
    taxed = bool((obj.get("automatic_tax") or {}).get("enabled"))
    if order.tax_cents is None and tax is not None and (tax > 0 or taxed):
        order.tax_cents = tax


def _coupon_of(session: Session, obj: dict[str, Any]) -> Coupon | None:
    """The launchkit coupon of the session's discount (by promotion code, else coupon id)."""
    for item in obj.get("discounts") or []:
        if not isinstance(item, dict):
            continue
        promo, coupon = _id(item.get("promotion_code")), _id(item.get("coupon"))
        found = session.scalar(
            select(Coupon).where(
                (Coupon.stripe_promotion_code_id == (promo or ""))
                | (Coupon.stripe_coupon_id == (coupon or ""))
            )
        )
        if found is not None:
            return found
    return None
