"""Rehearsal checks for selling: recovery emails never after the cart closed, never to a buyer,
never twice; no tier price after its deadline. Each returns (email, example, detail) triples
for ``orchestrator.promises``.

The recovery checks read two records of what went out: the ``checkout_recoveries`` ledger and
the messages themselves (``Delivery``: what the messenger was handed, one per push, so a
message pushed twice counts twice even when the file outbox keeps one file), so a sender that
forgot its ledger row is caught as well as one that wrote it wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from launchkit.models import (
    CheckoutRecovery,
    Launch,
    Offer,
    OfferTier,
    Order,
    OrderStatus,
    Subscriber,
)

SESSION_LIFETIME = timedelta(hours=1)  # Checkout Sessions expire an hour after creation


@dataclass(frozen=True)
class Delivery:
    """One recovery email handed to the messenger: to whom, for which offer, when."""

    email: str
    offer: str  # the offer's slug, from the link back to it
    at: datetime
    message_id: str


def _sent(
    session: Session, launch: Launch, delivered: Iterable[Delivery]
) -> list[tuple[str, str, datetime, str]]:
    """Every recovery email of the launch's offers: (email, offer slug, sent at, source), from
    the ledger (``ledger``) and from the messages (their Message-ID)."""
    rows = session.execute(
        select(Subscriber.email, Offer.slug, CheckoutRecovery.sent_at)
        .join(Offer, Offer.id == CheckoutRecovery.offer_id)
        .join(Subscriber, Subscriber.id == CheckoutRecovery.subscriber_id)
        .where(Offer.launch_id == launch.id, CheckoutRecovery.sent_at.is_not(None))
    ).all()
    slugs = set(session.scalars(select(Offer.slug).where(Offer.launch_id == launch.id)))
    found = [(email.lower(), slug, at, "ledger") for email, slug, at in rows]
    found += [(d.email.lower(), d.offer, d.at, d.message_id) for d in delivered if d.offer in slugs]
    return found


def recoveries_after_close(
    session: Session, launch: Launch, delivered: Iterable[Delivery] = ()
) -> list[tuple[str, str, str]]:
    """Recovery emails sent after ``cart_close``."""
    late = {
        (slug, email, at)
        for email, slug, at, _ in _sent(session, launch, delivered)
        if at > launch.cart_close
    }
    return [
        (f"recovery/{slug}", email, f"sent at {at:%Y-%m-%d %H:%M} UTC")
        for slug, email, at in sorted(late)
    ]


def _bought_at(session: Session, launch: Launch) -> dict[str, datetime]:
    """When each buyer of the launch (by address) first paid."""
    rows = session.execute(
        select(func.lower(Order.email), Subscriber.email, Order.paid_at, Order.created_at)
        .outerjoin(Subscriber, Subscriber.id == Order.subscriber_id)
        .where(Order.launch_id == launch.id, Order.status != OrderStatus.PENDING)
    ).all()
    first: dict[str, datetime] = {}
    for order_email, subscriber_email, paid_at, created_at in rows:
        moment = paid_at or created_at
        for email in {order_email, (subscriber_email or "").lower()} - {""}:
            first[email] = min(moment, first.get(email, moment))
    return first


def recoveries_to_buyers(
    session: Session, launch: Launch, delivered: Iterable[Delivery] = ()
) -> list[tuple[str, str, str]]:
    """Recovery emails sent to someone who had already bought in this launch."""
    bought = _bought_at(session, launch)
    wrong = {
        (slug, email, at, bought[email])
        for email, slug, at, _ in _sent(session, launch, delivered)
        if email in bought and bought[email] < at
    }
    return [
        (f"recovery/{slug}", email, f"bought {paid:%Y-%m-%d %H:%M}, mailed {at:%Y-%m-%d %H:%M} UTC")
        for slug, email, at, paid in sorted(wrong)
    ]


def recoveries_twice(
    session: Session, launch: Launch, delivered: Iterable[Delivery] = ()
) -> list[tuple[str, str, str]]:
    """More than one recovery email to one person for one offer, in the ledger or in the
    messages (the ledger row and its own message are one email)."""
    ledger: Counter[tuple[str, str]] = Counter()
    messages: Counter[tuple[str, str]] = Counter()
    for email, slug, _, source in _sent(session, launch, delivered):
        (ledger if source == "ledger" else messages)[(slug, email)] += 1
    return [
        (f"recovery/{slug}", email, f"{count} recovery emails")
        for (slug, email) in sorted(ledger.keys() | messages.keys())
        if (count := max(ledger[(slug, email)], messages[(slug, email)])) > 1
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
