"""The plain data a launch email is rendered with (never ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.config import LANGUAGES, Settings
from launchkit.models import Consent, Launch, Magnet, Offer
from launchkit.render import french
from launchkit.tokens import Purpose, make_token

DATE_PATTERNS = {"fr": "EEEE d MMMM 'à' HH:mm", "en": "EEEE, MMMM d 'at' h:mm a"}
SAMPLE = {
    "id": 0,
    "email": "sample@example.com",
    "first_name": "Camille",
    "last_name": "Martin",
    "timezone": None,
    "language": None,
}


@lru_cache(maxsize=256)
def format_moment(moment: datetime | None, language: str, zone: str) -> str:
    """``lundi 8 décembre à 23 h 59 (heure de Paris)`` in the given language and timezone."""
    return french.format_moment(moment, language, zone)


@lru_cache(maxsize=256)
def format_money(cents: int, currency: str, language: str) -> str:
    """``497,00 €`` / ``€497.00``."""
    return format_currency(cents / 100, currency, locale=language)


def sequence_language(name: str, subscriber_language: str | None, settings: Settings) -> str:
    """A ``-fr``/``-en`` folder is written in that language; otherwise the subscriber's."""
    suffix = french.folder_language(name)
    if suffix in LANGUAGES:
        return suffix
    return subscriber_language if subscriber_language in LANGUAGES else settings.language


@dataclass
class LaunchData:
    """Launch-wide values, read once per send run."""

    slug: str
    product: str
    currency: str
    cart_open: datetime | None
    cart_close: datetime | None
    offer_slug: str | None = None
    price_cents: int | None = None
    plans: list[tuple[int, int]] = field(default_factory=list)
    guarantee_days: int = 30
    price_now_cents: int | None = None  # the pay-in-full price at send time (price tiers)
    tier: str | None = None
    next_price_at: datetime | None = None


def load_launch_data(session: Session, launch: Launch, now: datetime | None = None) -> LaunchData:
    """The launch's milestones and its first offer (price, plans, guarantee, and its price
    tier at ``now``: at cart open when None)."""
    data = LaunchData(
        launch.slug, launch.product, launch.currency, launch.cart_open, launch.cart_close
    )
    offer = session.scalar(select(Offer).where(Offer.launch_id == launch.id).order_by(Offer.id))
    if offer is not None:
        data.offer_slug = offer.slug
        data.price_cents = offer.price_cents
        data.currency = offer.currency
        data.plans = [(p.instalments, p.instalment_cents) for p in offer.plans]
        data.guarantee_days = offer.guarantee_days
        _load_tier(session, offer, data, now or launch.cart_open)
    return data


def _load_tier(session: Session, offer: Offer, data: LaunchData, now: datetime | None) -> None:
    from launchkit.selling.tiers import price_now

    price = price_now(session, offer, now) if now is not None else None
    data.price_now_cents = price.cents if price else offer.price_cents
    data.tier = price.tier if price else None
    data.next_price_at = price.next_price_at if price else None


def magnet_titles(session: Session, subscriber_ids: list[int]) -> dict[int, str]:
    """The title of the lead magnet each subscriber signed up for (latest consent)."""
    if not subscriber_ids:
        return {}
    query = (
        select(Consent.subscriber_id, Magnet.title)
        .join(Magnet, Magnet.id == Consent.magnet_id)
        .where(Consent.subscriber_id.in_(subscriber_ids))
        .order_by(Consent.id)
    )
    return {row[0]: row[1] for row in session.execute(query).all()}


def launch_context(
    settings: Settings, launch: LaunchData, subscriber: dict[str, Any], *, language: str
) -> dict[str, Any]:
    """The template variables that depend only on the launch, language and timezone."""
    zone = _zone(settings, subscriber)
    price = (
        format_money(launch.price_cents, launch.currency, language) if launch.price_cents else ""
    )
    plans = [f"{n} × {format_money(c, launch.currency, language)}" for n, c in launch.plans]
    return {
        "product": launch.product,
        "creator_name": settings.sender_name,
        "cart_open": format_moment(launch.cart_open, language, zone),
        "cart_close": format_moment(launch.cart_close, language, zone),
        "price": price,
        "plans": plans,
        "guarantee_days": launch.guarantee_days,
        "offer": {
            "price": price,
            "price_now": format_money(launch.price_now_cents, launch.currency, language)
            if launch.price_now_cents
            else price,
            "tier": launch.tier or "",
            "next_price_at": format_moment(launch.next_price_at, language, zone),
        },
        "download_url": "",
        "confirm_url": "",
    }


def email_context(
    settings: Settings,
    launch: LaunchData,
    subscriber: dict[str, Any],
    *,
    language: str,
    magnet_title: str = "",
    shared: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Template variables for one subscriber (``shared``: a ``launch_context`` to reuse)."""
    if shared is None:
        shared = launch_context(settings, launch, subscriber, language=language)
    return {
        **shared,
        "plans": list(shared["plans"]),
        "first_name": subscriber.get("first_name") or "",
        "last_name": subscriber.get("last_name") or "",
        "email": subscriber["email"],
        "checkout_url": checkout_url(settings, launch, subscriber),
        "magnet_title": magnet_title,
    }


def person_context(
    settings: Settings, shared: dict[str, Any], row: dict[str, Any], *, language: str
) -> dict[str, Any]:
    """Evergreen: the launch values with this person's own cart open and close."""
    zone = _zone(settings, row)
    return {
        **shared,
        "cart_open": format_moment(row["cart_open_at"], language, zone),
        "cart_close": format_moment(row["cart_close_at"], language, zone),
    }


def _zone(settings: Settings, subscriber: dict[str, Any]) -> str:
    zone = subscriber.get("timezone") or settings.timezone
    try:
        ZoneInfo(zone)
    except Exception:  # an unknown zone falls back to the workspace's
        zone = settings.timezone
    return str(zone)


def checkout_url(settings: Settings, launch: LaunchData, subscriber: dict[str, Any]) -> str:
    """``{base_url}/buy/{offer}?t={token}``: the checkout, prefilled for this subscriber; in an
    evergreen launch the signed token also carries the person's deadline (``d``)."""
    payload: dict[str, Any] = {"s": int(subscriber["id"])}
    if subscriber.get("cart_close_at") is not None:
        payload["d"] = int(subscriber["cart_close_at"].timestamp())
    token = make_token(settings, Purpose.CHECKOUT, payload)
    return f"{settings.base_url.rstrip('/')}/buy/{launch.offer_slug or launch.slug}?t={token}"
