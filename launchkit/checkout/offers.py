"""Offers, prices and plans, the cart window, and starting a Checkout Session."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency
from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.checkout.stripe_api import StripeClient, create_checkout_session
from launchkit.config import Settings
from launchkit.errors import AlreadyExists, InputError, InvalidTransition, NotFound
from launchkit.launches import check_slug, get_launch
from launchkit.models import Launch, Offer, OfferPlan
from launchkit.selling.tiers import TierSpec, check_tiers, offer_tiers, set_tiers, tiers_as_dicts

LOCALES = {"fr": "fr_FR", "en": "en_GB"}
PLAN_FULL = "full"


class CartClosed(InvalidTransition):
    "The cart of the launch is not open at this time."


# --- money ------------------------------------------------------------------------------------


def parse_money(text: str, *, what: str = "price") -> int:
    """``497``, ``497.00`` or ``497,5`` -> integer cents."""
    try:
        value = Decimal(str(text).strip().replace(",", "."))
    except InvalidOperation as e:
        raise InputError(f'{what} "{text}" is not an amount like 497 or 49.90.') from e
    if value <= 0 or value != value.quantize(Decimal("0.01")):
        raise InputError(f'{what} "{text}" must be positive with at most 2 decimals.')
    return int(value * 100)


def format_money(cents: int, currency: str, language: str = "fr") -> str:
    """Amount in the workspace locale, e.g. ``497,00 €`` (fr) or ``€497.00`` (en)."""
    return format_currency(Decimal(cents) / 100, currency, locale=LOCALES.get(language, "en_GB"))


def parse_plan(text: str) -> tuple[int, int]:
    """``3x177`` -> (3 instalments, 17700 cents each)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*([\d.,]+)\s*", text)
    if not match or int(match[1]) < 2:
        raise InputError(f'--plan "{text}" must look like 3x177 (at least 2 instalments).')
    return int(match[1]), parse_money(match[2], what=f'--plan "{text}"')


def parse_bump(text: str) -> tuple[str, int]:
    """``Workbook:27`` -> ("Workbook", 2700)."""
    name, sep, amount = text.rpartition(":")
    if not sep or not name.strip():
        raise InputError(f'--bump "{text}" must look like "Workbook:27".')
    return name.strip(), parse_money(amount, what=f'--bump "{text}"')


# --- offers -----------------------------------------------------------------------------------


def add_offer(
    session: Session,
    launch_slug: str,
    slug: str,
    *,
    product: str,
    price_cents: int,
    currency: str,
    plans: list[tuple[int, int]],
    guarantee_days: int = 30,
    bump: tuple[str, int] | None = None,
    now: datetime,
    presale_until: datetime | None = None,
    tiers: list[TierSpec] | None = None,
    tax_behavior: str | None = None,
) -> Offer:
    """Create an offer: pay in full, any number of instalment plans, guarantee, optional bump,
    dated price tiers of the pay-in-full price, and Stripe Tax's tax behaviour;
    ``presale_until``: a pre-sale, delivered by that date (`launchkit presale cancel` refunds)."""
    launch = get_launch(session, launch_slug)
    check_slug(slug, "Offer")
    if session.scalar(select(Offer.id).where(Offer.slug == slug)) is not None:
        raise AlreadyExists(f'Offer "{slug}" already exists.')
    if not product.strip() or price_cents <= 0:
        raise InputError(f'Offer "{slug}": --product and a positive --price are required.')
    if guarantee_days < 0:
        raise InputError(f'Offer "{slug}": --guarantee-days must be 0 or more.')
    counts = [n for n, _ in plans]
    if len(set(counts)) != len(counts):
        raise InputError(f'Offer "{slug}": two plans have the same number of instalments.')
    check_tax_behavior(slug, tax_behavior)
    check_tiers(slug, price_cents, tiers or [])
    offer = Offer(
        launch_id=launch.id,
        slug=slug,
        product=product.strip(),
        price_cents=price_cents,
        currency=currency.upper(),
        guarantee_days=guarantee_days,
        bump_name=bump[0] if bump else None,
        bump_cents=bump[1] if bump else None,
        created_at=now,
        presale_until=presale_until,
    )
    offer.plans = [OfferPlan(instalments=n, instalment_cents=c) for n, c in sorted(plans)]
    offer.tax_behavior = tax_behavior
    session.add(offer)
    session.flush()
    if tiers:
        set_tiers(session, offer, tiers)
    return offer


TAX_BEHAVIORS = ("inclusive", "exclusive")


def check_tax_behavior(slug: str, tax_behavior: str | None) -> None:
    """``inclusive``, ``exclusive`` or None (Stripe's default for the account)."""
    if tax_behavior is not None and tax_behavior not in TAX_BEHAVIORS:
        raise InputError(
            f'Offer "{slug}": --tax-behavior "{tax_behavior}" must be inclusive or exclusive.'
        )


def get_offer(session: Session, slug: str) -> Offer:
    """The offer with this slug, or NotFound."""
    offer = session.scalar(select(Offer).where(Offer.slug == slug))
    if offer is None:
        raise NotFound(f'Offer "{slug}" does not exist; see `launchkit offer list`.')
    return offer


def list_offers(session: Session) -> list[Offer]:
    """All offers, oldest first."""
    return list(session.scalars(select(Offer).order_by(Offer.id)))


def offer_as_dict(session: Session, offer: Offer) -> dict[str, Any]:
    """JSON-ready description of an offer."""
    launch = session.get(Launch, offer.launch_id)
    tiers = tiers_as_dicts(offer_tiers(session, offer.id))
    selling = {"tiers": tiers} if tiers else {}  # keys only when used: plain offers list as before
    if offer.tax_behavior:
        selling["tax_behavior"] = offer.tax_behavior
    return {
        "slug": offer.slug,
        "launch": launch.slug if launch else None,
        "product": offer.product,
        "price_cents": offer.price_cents,
        "currency": offer.currency,
        "plans": [
            {"instalments": p.instalments, "instalment_cents": p.instalment_cents}
            for p in offer.plans
        ],
        "guarantee_days": offer.guarantee_days,
        "bump": {"name": offer.bump_name, "cents": offer.bump_cents} if offer.bump_name else None,
        "stripe_product_id": offer.stripe_product_id,
        **selling,
    } | _membership_dict(session, offer)


def _membership_dict(session: Session, offer: Offer) -> dict[str, Any]:
    """``{"membership": ...}`` for a membership offer, else nothing."""
    from launchkit.memberships.offers import membership_as_dict

    found = membership_as_dict(session, offer)
    return {"membership": found} if found else {}


def plan_choices(offer: Offer) -> list[tuple[str, int, int]]:
    """(plan key, instalments, cents per instalment): ``full`` first, then each plan."""
    choices = [(PLAN_FULL, 1, offer.price_cents)]
    return choices + [(str(p.instalments), p.instalments, p.instalment_cents) for p in offer.plans]


def resolve_plan(offer: Offer, plan: str | None) -> tuple[int, int]:
    """(instalments, cents per instalment) for ``full``, ``3`` or ``3x``; InputError otherwise."""
    key = (plan or PLAN_FULL).strip().lower().rstrip("x")
    for name, count, cents in plan_choices(offer):
        if key == name or (key == "1" and name == PLAN_FULL):
            return count, cents
    names = ", ".join(name for name, _, _ in plan_choices(offer))
    raise InputError(f'Offer "{offer.slug}" has no plan "{plan}"; choose one of: {names}.')


# --- checkout ---------------------------------------------------------------------------------


def cart_state(launch: Launch, now: datetime, grace: timedelta) -> str:
    """``before`` the cart opens, ``open``, or ``closed`` (after close + grace)."""
    if now < launch.cart_open:
        return "before"
    if now > launch.cart_close + grace:
        return "closed"
    return "open"


def checkout_metadata(
    offer: Offer,
    launch: Launch,
    instalments: int,
    subscriber_id: int | None,
    bump: bool,
    language: str | None = None,
) -> dict[str, str]:
    """Metadata put on the session, its payment intent or subscription, and so on every event.

    ``language``: the language of the sales page the buyer checked out from (kept on the order,
    so receipts and dunning use it when the buyer is not a subscriber with a language).
    """
    extra = {"language": language} if language in LOCALES else {}
    return {
        **extra,
        "launch": launch.slug,
        "offer": offer.slug,
        "plan": PLAN_FULL if instalments == 1 else str(instalments),
        "instalments": str(instalments),
        "subscriber": "" if subscriber_id is None else str(subscriber_id),
        "bump": "1" if bump else "0",
    }


@dataclass(frozen=True)
class CheckoutStart:
    """What the sales page needs to send a buyer to Stripe."""

    session_id: str
    url: str
    instalments: int


def start_checkout(
    session: Session,
    settings: Settings,
    client: StripeClient,
    offer_slug: str,
    *,
    plan: str | None,
    subscriber_id: int | None,
    email: str | None,
    bump: bool,
    now: datetime,
    language: str | None = None,
    coupon: str | None = None,
    deadline: datetime | None = None,
) -> CheckoutStart:
    """Check the cart is open, then create a Checkout Session for this offer and plan.

    An evergreen launch's cart is the buyer's own: ``deadline`` (from their signed link) is
    required, a checkout after it (plus ``checkout_grace``) is refused, and the session
    expires no later than it (but after Stripe's 30-minute minimum).

    Pay in full costs the price tier holding at ``now`` (named in the metadata, so the order
    keeps it); ``coupon`` prefills a promotion code (else codes may be typed when coupons exist).
    """
    offer = get_offer(session, offer_slug)
    if offer.archived_at is not None:
        raise CartClosed(f'Offer "{offer.slug}" is archived: no checkout now.')
    from launchkit.memberships import offers as membership_offers

    if membership_offers.is_membership(session, offer):  # plan: monthly | yearly
        return membership_offers.start_membership_checkout(
            session, settings, client, offer_slug, plan=plan, subscriber_id=subscriber_id,
            email=email, now=now, language=language,
        )  # fmt: skip
    launch = session.get(Launch, offer.launch_id)
    assert launch is not None
    expires_at = _check_cart(launch, now, settings.checkout_grace, deadline)
    instalments, cents = resolve_plan(offer, plan)
    metadata = checkout_metadata(offer, launch, instalments, subscriber_id, bump, language)
    selling = _selling_terms(session, settings, offer, instalments, coupon, now)
    if selling.tier:
        cents = selling.tier_cents
    metadata.update(selling.metadata)
    base = settings.base_url.rstrip("/")
    session_id, url = create_checkout_session(
        client,
        offer=offer,
        plan=(instalments, cents),
        customer_email=email,
        metadata=metadata,
        success_url=f"{base}/buy/{offer.slug}/thanks?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/buy/{offer.slug}",
        now=now,
        expires_at=expires_at,
        **selling.session_params,
    )
    return CheckoutStart(session_id, url, instalments)


def _check_cart(
    launch: Launch, now: datetime, grace: timedelta, deadline: datetime | None
) -> datetime | None:
    """Refuse a checkout outside the cart; the session's expiry for an evergreen one."""
    from launchkit import evergreen

    if not evergreen.is_evergreen(launch):
        state = cart_state(launch, now, grace)
        if state != "open":
            raise CartClosed(f'The cart of "{launch.slug}" is {state}: no checkout now.')
        return None
    if deadline is None:
        raise CartClosed(
            f'"{launch.slug}" is evergreen: checkout only from the link in its emails.'
        )
    if now > deadline + grace:
        raise CartClosed(f'The cart of "{launch.slug}" closed for this buyer: no checkout now.')
    return evergreen.session_expiry(now, deadline + grace)


def _selling_terms(
    session: Session,
    settings: Settings,
    offer: Offer,
    instalments: int,
    coupon: str | None,
    now: datetime,
) -> Any:
    from launchkit.selling.checkout import selling_terms

    return selling_terms(session, settings, offer, instalments, coupon, now)


# --- edits ------------------------------------------------------------------------------------


def _order_count(session: Session, offer: Offer) -> int:
    from sqlalchemy import func

    from launchkit.models import Order

    return int(session.scalar(select(func.count(Order.id)).where(Order.offer_id == offer.id)) or 0)


def update_offer(
    session: Session,
    slug: str,
    *,
    product: str | None = None,
    price_cents: int | None = None,
    plans: list[tuple[int, int]] | None = None,
    guarantee_days: int | None = None,
) -> Offer:
    """Change an offer; once it has an order, its price and plans are what buyers paid and
    stay, and its guarantee can only grow (a promise made to them)."""
    offer = get_offer(session, slug)
    orders = _order_count(session, offer)
    if orders and price_cents is not None and price_cents != offer.price_cents:
        raise InvalidTransition(
            f'Offer "{slug}" has {orders} order(s): its price is what they paid; archive it '
            "with `launchkit offer archive` and add a new offer instead."
        )
    if orders and plans is not None and sorted(plans) != _plans(offer):
        raise InvalidTransition(
            f'Offer "{slug}" has {orders} order(s): its plans are what they signed up for; '
            "archive it and add a new offer instead."
        )
    if guarantee_days is not None:
        _check_guarantee(offer, guarantee_days, orders)
        offer.guarantee_days = guarantee_days
    if product is not None:
        if not product.strip():
            raise InputError(f'Offer "{slug}": --product must not be empty.')
        offer.product = product.strip()
    if price_cents is not None:
        offer.price_cents = price_cents
    if plans is not None:
        _replace_plans(session, offer, plans)
    session.flush()
    return offer


def _plans(offer: Offer) -> list[tuple[int, int]]:
    return sorted((p.instalments, p.instalment_cents) for p in offer.plans)


def _check_guarantee(offer: Offer, days: int, orders: int) -> None:
    if days < 0:
        raise InputError(f'Offer "{offer.slug}": --guarantee-days must be 0 or more.')
    if orders and days < offer.guarantee_days:
        raise InvalidTransition(
            f'Offer "{offer.slug}" has {orders} order(s) sold with a {offer.guarantee_days}-day '
            f"guarantee: it can grow, not shrink to {days} days."
        )


def _replace_plans(session: Session, offer: Offer, plans: list[tuple[int, int]]) -> None:
    counts = [n for n, _ in plans]
    if len(set(counts)) != len(counts):
        raise InputError(f'Offer "{offer.slug}": two plans have the same number of instalments.')
    offer.plans.clear()
    session.flush()
    offer.plans.extend(OfferPlan(instalments=n, instalment_cents=c) for n, c in sorted(plans))


def archive_offer(session: Session, slug: str, *, now: datetime) -> bool:
    """Stop new checkouts of an offer (its orders, refunds and plans go on); False if it
    already was archived."""
    offer = get_offer(session, slug)
    if offer.archived_at is not None:
        return False
    offer.archived_at = now
    session.flush()
    return True
