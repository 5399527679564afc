"""Membership offers: recurring prices (monthly, yearly), a trial, a founding price, and the
Checkout Session that starts a membership while the doors (the launch's cart) are open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.checkout.offers import (
    CartClosed,
    CheckoutStart,
    add_offer,
    cart_state,
    checkout_metadata,
    get_offer,
    parse_money,
)
from launchkit.checkout.stripe_api import StripeClient, create_membership_session
from launchkit.config import Settings
from launchkit.errors import InputError
from launchkit.models import Launch, MembershipPrice, Offer

INTERVALS = {"monthly": "month", "month": "month", "yearly": "year", "year": "year"}
INTERVAL_NAMES = {"month": "monthly", "year": "yearly"}


def parse_membership(text: str, *, option: str = "--membership") -> tuple[str, int]:
    """``monthly:29`` -> ("month", 2900); ``yearly:290`` -> ("year", 29000)."""
    name, sep, amount = text.partition(":")
    interval = INTERVALS.get(name.strip().lower())
    if not sep or interval is None:
        raise InputError(f'{option} "{text}" must look like monthly:29 or yearly:290.')
    return interval, parse_money(amount, what=f'{option} "{text}"')


def add_membership_offer(
    session: Session,
    launch_slug: str,
    slug: str,
    *,
    product: str,
    currency: str,
    prices: list[tuple[str, int]],
    founding: list[tuple[str, int]] | None = None,
    trial_days: int = 0,
    guarantee_days: int = 14,
    now: datetime,
) -> Offer:
    """A membership offer: one recurring price per interval, optional trial and founding price.

    ``founding``: a lower price for the members who join during this launch (they keep it);
    it replaces the regular price at checkout. The offer's ``price_cents`` is its first price.
    """
    intervals = [interval for interval, _ in prices]
    if not prices or len(set(intervals)) != len(intervals):
        raise InputError(f'Offer "{slug}": give each --membership interval once (monthly, yearly).')
    founding_by = dict(founding or [])
    unknown = set(founding_by) - set(intervals)
    if unknown:
        name = INTERVAL_NAMES[sorted(unknown)[0]]
        raise InputError(f'Offer "{slug}": --founding-price {name} has no --membership {name}.')
    if trial_days < 0 or trial_days > 730:
        raise InputError(f'Offer "{slug}": --trial-days must be between 0 and 730.')
    first = sorted(prices, key=lambda p: p[0] != "month")[0][1]
    offer = add_offer(
        session, launch_slug, slug, product=product, price_cents=first, currency=currency,
        plans=[], guarantee_days=guarantee_days, now=now,
    )  # fmt: skip
    offer.trial_days = trial_days or None
    for interval, cents in prices:
        session.add(
            MembershipPrice(
                offer_id=offer.id, interval=interval, cents=cents,
                founding_cents=founding_by.get(interval),
            )
        )  # fmt: skip
    session.flush()
    return offer


def membership_prices(session: Session, offer: Offer) -> list[MembershipPrice]:
    """The recurring prices of an offer, monthly first ([] for a one-off offer)."""
    rows = session.scalars(select(MembershipPrice).where(MembershipPrice.offer_id == offer.id))
    return sorted(rows, key=lambda p: p.interval != "month")


@dataclass(frozen=True)
class MembershipChoice:
    """One price the sales page offers: what the /buy form posts (``plan``), what checkout
    charges (the founding price when there is one), the regular price, and for the yearly
    price what it saves against twelve monthly payments (0 when it saves nothing)."""

    plan: str  # "monthly" | "yearly"
    interval: str  # "month" | "year"
    cents: int
    regular_cents: int
    saving_cents: int = 0
    saving_ratio: float = 0.0  # saving over twelve monthly payments


def membership_choices(session: Session, offer: Offer) -> list[MembershipChoice]:
    """Each recurring price of ``offer`` as a choice, monthly first ([] for a one-off offer)."""
    prices = membership_prices(session, offer)
    charged = {p.interval: p.founding_cents or p.cents for p in prices}
    year_of_months = 12 * charged["month"] if "month" in charged else 0
    choices = []
    for price in prices:
        cents = charged[price.interval]
        saving = year_of_months - cents if price.interval == "year" and year_of_months else 0
        choices.append(
            MembershipChoice(
                plan=INTERVAL_NAMES[price.interval], interval=price.interval, cents=cents,
                regular_cents=price.cents, saving_cents=max(saving, 0),
                saving_ratio=max(saving, 0) / year_of_months if year_of_months else 0.0,
            )
        )  # fmt: skip
    return choices


def is_membership(session: Session, offer: Offer | None) -> bool:
    """Whether the offer sells a membership."""
    return offer is not None and bool(membership_prices(session, offer))


def resolve_interval(session: Session, offer: Offer, plan: str | None) -> MembershipPrice:
    """The price for ``monthly``/``yearly`` (default: the first), or InputError."""
    prices = membership_prices(session, offer)
    if not plan or plan.strip().lower() in ("full", "1"):
        return prices[0]
    wanted = INTERVALS.get(plan.strip().lower())
    for price in prices:
        if price.interval == wanted:
            return price
    names = ", ".join(INTERVAL_NAMES[p.interval] for p in prices)
    raise InputError(f'Offer "{offer.slug}" has no membership "{plan}"; choose one of: {names}.')


def membership_as_dict(session: Session, offer: Offer) -> dict[str, Any] | None:
    """The membership part of ``offer list --json`` (None for a one-off offer)."""
    prices = membership_prices(session, offer)
    if not prices:
        return None
    return {
        "trial_days": offer.trial_days or 0,
        "prices": [
            {"interval": p.interval, "cents": p.cents, "founding_cents": p.founding_cents}
            for p in prices
        ],
    }


def start_membership_checkout(
    session: Session,
    settings: Settings,
    client: StripeClient,
    offer_slug: str,
    *,
    plan: str | None,
    subscriber_id: int | None,
    email: str | None,
    now: datetime,
    language: str | None = None,
) -> CheckoutStart:
    """Doors open (cart open + grace): a Checkout Session in subscription mode, no end."""
    offer = get_offer(session, offer_slug)
    launch = session.get(Launch, offer.launch_id)
    assert launch is not None
    state = cart_state(launch, now, settings.checkout_grace)
    if state != "open":
        raise CartClosed(f'The doors of "{launch.slug}" are {state}: no new members now.')
    price = resolve_interval(session, offer, plan)
    cents = price.founding_cents or price.cents
    metadata = checkout_metadata(offer, launch, 1, subscriber_id, False, language)
    metadata["membership"] = price.interval
    base = settings.base_url.rstrip("/")
    session_id, url = create_membership_session(
        client, offer=offer, interval=price.interval, cents=cents,
        trial_days=offer.trial_days or 0, customer_email=email, metadata=metadata,
        success_url=f"{base}/buy/{offer.slug}/thanks?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/buy/{offer.slug}", now=now,
    )  # fmt: skip
    return CheckoutStart(session_id, url, 1)
