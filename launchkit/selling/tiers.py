"""Dated price tiers: the pay-in-full price of an offer while a tier holds (``until``, in UTC).

A tier holds from the previous tier's end (or forever before) up to and including its
``until``; after the last one the offer's own price applies. Instalment plans keep their price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.clock import parse_local_datetime
from launchkit.errors import InputError
from launchkit.models import Offer, OfferTier

TIER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")


@dataclass(frozen=True)
class TierSpec:
    """A tier as typed: ``early:297:until=2026-12-02 23:59`` (time in the workspace timezone)."""

    name: str
    price_cents: int
    until: datetime


@dataclass(frozen=True)
class PriceNow:
    """The pay-in-full price at a moment: the tier holding then (None: the offer's price)."""

    cents: int
    tier: str | None
    next_price_at: datetime | None  # when this price ends (None: it does not change)
    next_cents: int | None


def parse_tier(text: str, tz: ZoneInfo, *, what: str = "--tier") -> TierSpec:
    """``early:297:until=2026-12-02 23:59`` -> TierSpec (the time read in ``tz``, kept in UTC)."""
    from launchkit.checkout.offers import parse_money

    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[2].strip().startswith("until="):
        raise InputError(f'{what} "{text}" must look like "early:297:until=2026-12-02 23:59".')
    name = parts[0].strip().lower()
    if not TIER_NAME.fullmatch(name):
        raise InputError(f'{what} "{text}": the tier name must be letters, digits, - or _.')
    cents = parse_money(parts[1], what=f'{what} "{text}" price')
    until = parse_local_datetime(parts[2].strip()[len("until=") :].strip(), tz, what=what)
    return TierSpec(name, cents, until)


def check_tiers(slug: str, price_cents: int, tiers: list[TierSpec]) -> None:
    """Tier names unique, deadlines distinct, and every tier cheaper than the price after it."""
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise InputError(f'Offer "{slug}": two tiers have the same name.')
    ordered = sorted(tiers, key=lambda t: t.until)
    if len({t.until for t in tiers}) != len(tiers):
        raise InputError(f'Offer "{slug}": two tiers end at the same time.')
    later = [t.price_cents for t in ordered[1:]] + [price_cents]
    for tier, after in zip(ordered, later[: len(ordered)], strict=True):
        if tier.price_cents >= after:
            raise InputError(
                f'Offer "{slug}": tier "{tier.name}" must cost less than the price after it.'
            )


def set_tiers(session: Session, offer: Offer, tiers: list[TierSpec]) -> list[OfferTier]:
    """Store the tiers of an offer (checked first)."""
    check_tiers(offer.slug, offer.price_cents, tiers)
    rows = [
        OfferTier(offer_id=offer.id, name=t.name, price_cents=t.price_cents, until=t.until)
        for t in sorted(tiers, key=lambda t: t.until)
    ]
    session.add_all(rows)
    session.flush()
    return rows


def offer_tiers(session: Session, offer_id: int) -> list[OfferTier]:
    """The tiers of an offer, earliest deadline first."""
    query = select(OfferTier).where(OfferTier.offer_id == offer_id).order_by(OfferTier.until)
    return list(session.scalars(query))


def price_at(offer: Offer, tiers: list[OfferTier], now: datetime) -> PriceNow:
    """The pay-in-full price of ``offer`` at ``now``."""
    pending = [t for t in tiers if now <= t.until]
    if not pending:
        return PriceNow(offer.price_cents, None, None, None)
    current, rest = pending[0], pending[1:]
    next_cents = rest[0].price_cents if rest else offer.price_cents
    return PriceNow(current.price_cents, current.name, current.until, next_cents)


def price_now(session: Session, offer: Offer, now: datetime) -> PriceNow:
    """The pay-in-full price of ``offer`` at ``now``, read from its stored tiers."""
    return price_at(offer, offer_tiers(session, offer.id), now)


def tiers_as_dicts(tiers: list[OfferTier]) -> list[dict[str, object]]:
    """JSON-ready tiers (deadline in ISO UTC)."""
    from launchkit.clock import iso_utc

    return [
        {"name": t.name, "price_cents": t.price_cents, "until": iso_utc(t.until)} for t in tiers
    ]
