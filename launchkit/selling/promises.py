"""Rehearsal checks for selling: no recovery email after the cart closed, no tier price after
its deadline. Each returns (email, example, detail) triples for ``orchestrator.promises``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.models import CheckoutRecovery, Launch, Offer, OfferTier, Order, Subscriber

SESSION_LIFETIME = timedelta(hours=1)  # Checkout Sessions expire an hour after creation


def recoveries_after_close(session: Session, launch: Launch) -> list[tuple[str, str, str]]:
    """Recovery emails sent after ``cart_close``."""
    rows = session.execute(
        select(Offer.slug, Subscriber.email, CheckoutRecovery.sent_at)
        .join(Offer, Offer.id == CheckoutRecovery.offer_id)
        .join(Subscriber, Subscriber.id == CheckoutRecovery.subscriber_id)
        .where(Offer.launch_id == launch.id, CheckoutRecovery.sent_at > launch.cart_close)
    ).all()
    return [
        (f"recovery/{slug}", email, f"sent at {at:%Y-%m-%d %H:%M} UTC") for slug, email, at in rows
    ]


def tiers_after_deadline(session: Session, launch: Launch) -> list[tuple[str, str, str]]:
    """Orders at a tier price first seen more than a session's lifetime after the tier ended
    (the price is fixed when the session is created, which expires an hour later)."""
    rows = session.execute(
        select(OfferTier.name, Order.email, Order.created_at, OfferTier.until)
        .join(Offer, Offer.id == OfferTier.offer_id)
        .join(Order, (Order.offer_id == Offer.id) & (Order.tier == OfferTier.name))
        .where(Offer.launch_id == launch.id)
    ).all()
    return [
        (f"tier/{name}", email, f"ordered {at:%Y-%m-%d %H:%M}, tier ended {until:%Y-%m-%d %H:%M}")
        for name, email, at, until in rows
        if at > until + SESSION_LIFETIME
    ]
