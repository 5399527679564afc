"""Abandoned checkouts: one recovery email per (person, offer), never after close, never to a
buyer, never twice.

A ``checkout_start`` web event of a known subscriber (the sales page was opened from a signed
link) with no purchase ``checkout_recovery_delay`` later gets ONE email linking back to the
offer with the address prefilled (a signed CHECKOUT link). The ``checkout_recoveries`` row,
unique per (subscriber, offer), is inserted before the email is sent: of two concurrent
passes only the one whose insert wins sends, and a rerun finds the row and sends nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit.config import LANGUAGES, Settings
from launchkit.models import (
    CheckoutRecovery,
    Launch,
    Offer,
    Order,
    OrderStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    WebEvent,
)

TEMPLATE = "checkout-recovery"
MESSAGE_KIND = f"tx-{TEMPLATE}"  # in the Message-ID (and outbox file name) of each email


@dataclasses.dataclass(frozen=True)
class Abandoned:
    """A person who started a checkout and has not bought since."""

    subscriber_id: int
    offer_id: int
    started_at: datetime


def abandoned_checkouts(session: Session, settings: Settings, *, now: datetime) -> list[Abandoned]:
    """Checkouts started at least ``checkout_recovery_delay`` ago, not yet recovered."""
    latest = func.max(WebEvent.occurred_at)
    rows = session.execute(
        select(WebEvent.subscriber_id, WebEvent.offer_id, latest)
        .where(
            WebEvent.kind == "checkout_start",
            WebEvent.subscriber_id.is_not(None),
            WebEvent.offer_id.is_not(None),
        )
        .group_by(WebEvent.subscriber_id, WebEvent.offer_id)
        .having(latest <= now - settings.checkout_recovery_delay)
        .order_by(WebEvent.subscriber_id, WebEvent.offer_id)
    ).all()
    done = set(session.execute(select(CheckoutRecovery.subscriber_id, CheckoutRecovery.offer_id)))
    return [Abandoned(s, o, at) for s, o, at in rows if (s, o) not in done]


def skip_reason(
    session: Session, item: Abandoned, now: datetime
) -> tuple[str | None, Subscriber | None, Offer | None]:
    """Why no recovery email goes out (None: it should), with the subscriber and offer."""
    subscriber = session.get(Subscriber, item.subscriber_id)
    offer = session.get(Offer, item.offer_id)
    launch = session.get(Launch, offer.launch_id) if offer else None
    if subscriber is None or offer is None or launch is None:
        return "gone", subscriber, offer
    if now > launch.cart_close or now < launch.cart_open:
        return "cart_closed", subscriber, offer
    if subscriber.status != SubscriberStatus.ACTIVE or _suppressed(session, subscriber.email):
        return "inactive", subscriber, offer
    if is_buyer(session, launch.id, subscriber):
        return "buyer", subscriber, offer
    return None, subscriber, offer


def _suppressed(session: Session, email: str) -> bool:
    found = session.scalar(select(Suppression.id).where(Suppression.email == email.lower()))
    return found is not None


def is_buyer(session: Session, launch_id: int, subscriber: Subscriber) -> bool:
    """Any order of this person (by subscriber or address) for the launch that was paid."""
    query = select(Order.id).where(
        Order.launch_id == launch_id,
        Order.status != OrderStatus.PENDING,
        (Order.subscriber_id == subscriber.id) | (func.lower(Order.email) == subscriber.email),
    )
    return session.scalar(query.limit(1)) is not None


def claim(session: Session, item: Abandoned, now: datetime) -> CheckoutRecovery | None:
    """Insert the (subscriber, offer) row; None when another pass already has it."""
    row = CheckoutRecovery(
        subscriber_id=item.subscriber_id, offer_id=item.offer_id,
        started_at=item.started_at, claimed_at=now,
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


def send_recoveries(
    session: Session, settings: Settings, messenger: Any, *, now: datetime, env: Any = None
) -> dict[str, int]:
    """Send the due recovery emails; returns counts (``sent`` and each skip reason)."""
    counts: dict[str, int] = {"sent": 0}
    for item in abandoned_checkouts(session, settings, now=now):
        reason, subscriber, offer = skip_reason(session, item, now)
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
            continue
        assert subscriber is not None and offer is not None
        outcome = _send_claimed(session, settings, messenger, env, item, subscriber, offer, now)
        counts[outcome] = counts.get(outcome, 0) + 1
    session.flush()
    return counts


def _send_claimed(
    session: Session, settings: Settings, messenger: Any, env: Any, item: Abandoned,
    subscriber: Subscriber, offer: Offer, now: datetime,
) -> str:  # fmt: skip
    """Claim and send one recovery email (``checkout.notifications.send_claimed``: a relay's
    refusal or a broken template never undoes the others); "sent", "failed" or
    "claimed_elsewhere"."""
    from launchkit.checkout.notifications import send_claimed

    state: dict[str, Any] = {"row": None, "tried": False}

    def take() -> bool:
        state["row"] = claim(session, item, now)
        return state["row"] is not None

    def send() -> None:
        state["tried"] = True
        _send(session, settings, messenger, env, subscriber, offer, now)
        state["row"].sent_at = now

    if send_claimed(session, messenger, subscriber.email, take, send, now=now):
        return "sent"
    return "failed" if state["tried"] else "claimed_elsewhere"


def recovery_url(settings: Settings, offer: Offer, subscriber_id: int) -> str:
    """The sales page with the address prefilled (signed CHECKOUT link)."""
    from launchkit.tokens import Purpose, make_token

    token = make_token(settings, Purpose.CHECKOUT, {"s": subscriber_id})
    return f"{settings.base_url.rstrip('/')}/buy/{offer.slug}?t={token}"


def _send(
    session: Session,
    settings: Settings,
    messenger: Any,
    env: Any,
    subscriber: Subscriber,
    offer: Offer,
    now: datetime,
) -> None:
    from launchkit import mailer, render, tokens
    from launchkit.checkout.offers import format_money
    from launchkit.clock import format_local
    from launchkit.selling.tiers import price_now

    language = (subscriber.language or "").split("-", 1)[0].lower()
    buyer = dataclasses.replace(settings, language=language) if language in LANGUAGES else settings
    launch = session.get(Launch, offer.launch_id)
    price = price_now(session, offer, now)
    context = {
        "first_name": subscriber.first_name or "",
        "last_name": subscriber.last_name or "",
        "email": subscriber.email,
        "product": offer.product,
        "creator_name": settings.sender_name or settings.name,
        "guarantee_days": offer.guarantee_days,
        "checkout_url": recovery_url(settings, offer, subscriber.id),
        "price": format_money(price.cents, offer.currency, buyer.language),
        "cart_close": format_local(launch.cart_close, settings.tz) if launch else "",
    }
    mailer.send_transactional(
        buyer, messenger, env if env is not None else render.make_environment(buyer),
        TEMPLATE, to_email=subscriber.email, to_name=context["first_name"], context=context,
        subscriber_id=subscriber.id, key=f"{TEMPLATE}:{offer.id}", now=now,
        unsubscribe_url=tokens.unsubscribe_url(settings, subscriber.id),
    )  # fmt: skip


def recovery_pass(
    sessions: Any, settings: Settings, *, now: datetime, messenger: Any = None
) -> dict[str, int]:
    """One pass of ``launchkit run --tick``: its own transaction and (unless given) messenger."""
    from launchkit import mailer

    with sessions.begin() as session:
        if not abandoned_checkouts(session, settings, now=now):
            return {"sent": 0}  # no messenger (no SMTP connection) when there is nothing to do
    own = messenger is None
    messenger = mailer.messenger_from_settings(settings) if own else messenger
    try:
        with sessions.begin() as session:
            return send_recoveries(session, settings, messenger, now=now)
    finally:
        close = getattr(messenger, "close", None) if own else None
        if close is not None:
            close()
