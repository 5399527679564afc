"""The selling terms of one Checkout Session: the tier's price, the coupon, Stripe Tax."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from launchkit.config import Settings
from launchkit.models import Offer
from launchkit.selling.coupons import any_coupon_for, usable_coupon
from launchkit.selling.tiers import price_now


@dataclass(frozen=True)
class SellingTerms:
    """``tier``/``tier_cents``: the pay-in-full price now; ``metadata`` goes on the session
    (so the order keeps tier and code); ``session_params`` go to the Stripe adapter."""

    tier: str | None = None
    tier_cents: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    session_params: dict[str, Any] = field(default_factory=dict)


def selling_terms(
    session: Session,
    settings: Settings,
    offer: Offer,
    instalments: int,
    coupon: str | None,
    now: datetime,
) -> SellingTerms:
    """Tier (pay in full only), prefilled or typed promotion codes, and Stripe Tax."""
    metadata: dict[str, str] = {}
    params: dict[str, Any] = {}
    tier, cents = None, 0
    if instalments == 1:
        price = price_now(session, offer, now)
        if price.tier:
            tier, cents = price.tier, price.cents
            metadata.update(tier=price.tier, tier_cents=str(price.cents))
    found = usable_coupon(session, coupon, offer, now) if coupon else None
    if found is not None:
        params["discounts"] = [{"promotion_code": found.stripe_promotion_code_id}]
        metadata["coupon"] = found.code
    elif any_coupon_for(session, offer, now):
        params["allow_promotion_codes"] = True
    if settings.stripe_automatic_tax:
        params["automatic_tax"] = True
    return SellingTerms(tier, cents, metadata, params)
