"""Coupons: a Stripe Coupon plus its PromotionCode (the code buyers type or get in a link).

``add_coupon`` creates both in Stripe (idempotently) and keeps them in ``coupons``; a Checkout
Session accepts typed codes when a usable coupon exists for the offer, or carries one prefilled
from ``/buy/OFFER?coupon=CODE``. The code's deadline and use limit are Stripe's to enforce
(``expires_at``, ``max_redemptions``); launchkit checks them too before prefilling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from launchkit.checkout.stripe_api import StripeClient, create_promotion_code
from launchkit.errors import AlreadyExists, InputError, NotFound
from launchkit.models import Coupon, Offer, Order, OrderStatus

CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{1,49}")


def normal_code(code: str) -> str:
    """Codes are case-insensitive: kept upper case."""
    return (code or "").strip().upper()


@dataclass(frozen=True, kw_only=True)
class CouponTerms:
    """What a coupon takes off (``percent`` or ``amount_off_cents``) and its limits."""

    percent: int | None = None
    amount_off_cents: int | None = None
    currency: str
    until: datetime | None = None
    max_uses: int | None = None
    offer_slug: str | None = None


def add_coupon(
    session: Session, client: StripeClient, code: str, terms: CouponTerms, *, now: datetime
) -> Coupon:
    """Create coupon ``code`` in Stripe (Coupon + PromotionCode) and record it."""
    code = normal_code(code)
    _check(session, code, terms, now)
    offer = _offer(session, terms.offer_slug)
    coupon = Coupon(
        code=code,
        percent_off=terms.percent,
        amount_off_cents=terms.amount_off_cents,
        currency=(offer.currency if offer else terms.currency).upper(),
        until=terms.until,
        max_uses=terms.max_uses,
        offer_id=offer.id if offer else None,
        created_at=now,
    )
    coupon_id, promo_id = create_promotion_code(
        client, coupon=_stripe_coupon(coupon, offer), code=code, extra=_promotion(coupon)
    )
    coupon.stripe_coupon_id, coupon.stripe_promotion_code_id = coupon_id, promo_id
    session.add(coupon)
    session.flush()
    return coupon


class CouponClash(InputError):
    "A coupon code already exists with other terms than the plan's."


def ensure_coupon(
    session: Session, client: StripeClient, code: str, terms: CouponTerms, *, now: datetime
) -> bool:
    """Create coupon ``code`` unless it exists with the same terms; True when created.

    A code that exists with other terms raises CouponClash naming it (nothing is changed).
    """
    existing = session.scalar(select(Coupon).where(Coupon.code == normal_code(code)))
    if existing is None:
        add_coupon(session, client, code, terms, now=now)
        return True
    slug = terms.offer_slug
    offer = session.scalar(select(Offer).where(Offer.slug == slug)) if slug else None
    offer_id = offer.id if offer else None
    wanted = (terms.percent, terms.amount_off_cents, _utc(terms.until), terms.max_uses, offer_id)
    found = (existing.percent_off, existing.amount_off_cents, _utc(existing.until),
             existing.max_uses, existing.offer_id)  # fmt: skip
    if wanted != found:
        raise CouponClash(
            f'Coupon "{existing.code}" already exists with other terms than the plan\'s; '
            "give the plan's coupon another code (coupons cannot be changed once created)."
        )
    return False


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite gives naive UTC back: compare both as aware UTC, to the second."""
    from datetime import UTC

    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def _check(session: Session, code: str, terms: CouponTerms, now: datetime) -> None:
    percent, until, max_uses = terms.percent, terms.until, terms.max_uses
    if not CODE.fullmatch(code):
        raise InputError(f'Coupon "{code}": use 2-50 letters, digits, - or _.')
    if session.scalar(select(Coupon.id).where(Coupon.code == code)) is not None:
        raise AlreadyExists(f'Coupon "{code}" already exists.')
    if (percent is None) == (terms.amount_off_cents is None):
        raise InputError(f'Coupon "{code}": give exactly one of --percent and --amount-off.')
    if percent is not None and not 1 <= percent <= 100:
        raise InputError(f'Coupon "{code}": --percent must be between 1 and 100.')
    if until is not None and until <= now:
        raise InputError(f'Coupon "{code}": --until is already past.')
    if max_uses is not None and max_uses < 1:
        raise InputError(f'Coupon "{code}": --max-uses must be 1 or more.')


def _offer(session: Session, slug: str | None) -> Offer | None:
    if slug is None:
        return None
    offer = session.scalar(select(Offer).where(Offer.slug == slug))
    if offer is None:
        raise NotFound(f'Offer "{slug}" does not exist; see `launchkit offer list`.')
    if not offer.stripe_product_id:
        raise InputError(
            f'Offer "{slug}" has no Stripe product yet; run `launchkit offer sync` first so '
            "the coupon can be limited to it."
        )
    return offer


def _stripe_coupon(coupon: Coupon, offer: Offer | None) -> dict[str, Any]:
    """A percentage is off every instalment (``forever``); an amount off comes off once."""
    params: dict[str, Any] = {
        "id": f"launchkit-{coupon.code.lower()}",
        "duration": "forever" if coupon.percent_off else "once",
        "metadata": {"launchkit_coupon": coupon.code},
    }
    if coupon.percent_off:
        params["percent_off"] = coupon.percent_off
    else:
        params["amount_off"] = coupon.amount_off_cents
        params["currency"] = coupon.currency.lower()
    if offer is not None:
        params["applies_to"] = {"products": [offer.stripe_product_id]}
    return params


def _promotion(coupon: Coupon) -> dict[str, Any]:
    params: dict[str, Any] = {"metadata": {"launchkit_coupon": coupon.code}}
    if coupon.until is not None:
        params["expires_at"] = int(coupon.until.timestamp())
    if coupon.max_uses is not None:
        params["max_redemptions"] = coupon.max_uses
    return params


def list_coupons(session: Session) -> list[Coupon]:
    """Every coupon, oldest first."""
    return list(session.scalars(select(Coupon).order_by(Coupon.id)))


def times_used(session: Session, coupon: Coupon) -> int:
    """Orders (not pending) that used the code."""
    query = select(func.count(Order.id)).where(
        Order.coupon_code == coupon.code, Order.status != OrderStatus.PENDING
    )
    return int(session.scalar(query) or 0)


def usable(session: Session, coupon: Coupon, offer: Offer, now: datetime) -> bool:
    """For this offer, not expired, not used up (as far as launchkit's orders know)."""
    if coupon.offer_id is not None and coupon.offer_id != offer.id:
        return False
    if coupon.until is not None and now > coupon.until:
        return False
    if coupon.currency != offer.currency and coupon.amount_off_cents:
        return False
    return coupon.max_uses is None or times_used(session, coupon) < coupon.max_uses


def usable_coupon(session: Session, code: str, offer: Offer, now: datetime) -> Coupon | None:
    """The coupon ``code`` if it can be prefilled on this offer now (None otherwise)."""
    coupon = session.scalar(select(Coupon).where(Coupon.code == normal_code(code)))
    if coupon is None or not coupon.stripe_promotion_code_id:
        return None
    return coupon if usable(session, coupon, offer, now) else None


def any_coupon_for(session: Session, offer: Offer, now: datetime) -> bool:
    """Whether a buyer of ``offer`` could type a code now (so Checkout shows the field)."""
    query = select(Coupon).where(
        or_(Coupon.offer_id.is_(None), Coupon.offer_id == offer.id),
        or_(Coupon.until.is_(None), Coupon.until >= now),
    )
    return any(usable(session, c, offer, now) for c in session.scalars(query))


def coupon_as_dict(session: Session, coupon: Coupon) -> dict[str, Any]:
    """JSON-ready description of a coupon."""
    from launchkit.clock import iso_utc

    offer = session.get(Offer, coupon.offer_id) if coupon.offer_id else None
    return {
        "code": coupon.code,
        "percent_off": coupon.percent_off,
        "amount_off_cents": coupon.amount_off_cents,
        "currency": coupon.currency,
        "until": iso_utc(coupon.until),
        "max_uses": coupon.max_uses,
        "used": times_used(session, coupon),
        "offer": offer.slug if offer else None,
        "stripe_coupon_id": coupon.stripe_coupon_id,
        "stripe_promotion_code_id": coupon.stripe_promotion_code_id,
    }
