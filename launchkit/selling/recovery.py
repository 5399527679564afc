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


def _due_starts(settings: Settings, now: datetime) -> Any:
    """(subscriber, offer, latest start) of starts older than the delay, with no recovery row."""
    latest = func.max(WebEvent.occurred_at)
    claimed = select(CheckoutRecovery.id).where(
        CheckoutRecovery.subscriber_id == WebEvent.subscriber_id,
        CheckoutRecovery.offer_id == WebEvent.offer_id,
    )
    return (
        select(WebEvent.subscriber_id, WebEvent.offer_id, latest.label("started_at"))
        .where(
            WebEvent.kind == "checkout_start",
            WebEvent.subscriber_id.is_not(None),
            WebEvent.offer_id.is_not(None),
            ~claimed.exists(),
        )
        .group_by(WebEvent.subscriber_id, WebEvent.offer_id)
        .having(latest <= now - settings.checkout_recovery_delay)
    )


def abandoned_checkouts(session: Session, settings: Settings, *, now: datetime) -> list[Abandoned]:
    """Checkouts started at least ``checkout_recovery_delay`` ago, not yet recovered."""
    due = _due_starts(settings, now).subquery()
    rows = session.execute(select(due).order_by(due.c.subscriber_id, due.c.offer_id)).all()
    return [Abandoned(s, o, at) for s, o, at in rows]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An abandoned checkout with what decides whether its email goes out."""

    item: Abandoned
    subscriber: Subscriber | None
    offer: Offer | None
    launch: Launch | None
    suppressed: bool  # the subscriber's address is in the suppression list


def candidates(session: Session, settings: Settings, *, now: datetime) -> list[Candidate]:
    """The abandoned checkouts with their subscriber, offer and launch: one query, whatever
    their number."""
    due = _due_starts(settings, now).subquery()
    address = func.lower(Subscriber.email)  # suppressions are kept lowercased
    suppressed = select(Suppression.id).where(Suppression.email == address).exists()
    columns = (due.c.subscriber_id, due.c.offer_id, due.c.started_at)
    rows = session.execute(
        select(*columns, Subscriber, Offer, Launch, suppressed)
        .select_from(due)
        .outerjoin(Subscriber, Subscriber.id == due.c.subscriber_id)
        .outerjoin(Offer, Offer.id == due.c.offer_id)
        .outerjoin(Launch, Launch.id == Offer.launch_id)
        .order_by(due.c.subscriber_id, due.c.offer_id)
    ).all()
    return [
        Candidate(Abandoned(s, o, at), subscriber, offer, launch, bool(flag))
        for s, o, at, subscriber, offer, launch, flag in rows
    ]


def skip_reasons(session: Session, found: list[Candidate], now: datetime) -> list[str | None]:
    """Why no recovery email goes out for each candidate (None: it should), in order:
    "gone", "cart_closed", "inactive" (not active, or suppressed), "buyer"."""
    launches = {c.launch.id: c.launch for c in found if c.launch is not None}
    open_ids = {i for i, launch in launches.items() if launch.cart_open <= now <= launch.cart_close}
    buyers = _buyers(session, open_ids)  # only asked once the cart is open
    return [_skip_reason(session, c, now, buyers) for c in found]


def _skip_reason(
    session: Session, found: Candidate, now: datetime, buyers: set[tuple[int, Any]]
) -> str | None:
    subscriber, launch = found.subscriber, found.launch
    if subscriber is None or found.offer is None or launch is None:
        return "gone"
    if now > launch.cart_close or now < launch.cart_open:
        return "cart_closed"
    if subscriber.status != SubscriberStatus.ACTIVE or found.suppressed:
        return "inactive"
    if (launch.id, subscriber.id) in buyers or (launch.id, subscriber.email) in buyers:
        return "buyer"
    return None


def _suppressed(session: Session, email: str) -> bool:
    found = session.scalar(select(Suppression.id).where(Suppression.email == email.lower()))
    return found is not None


def _buyers(session: Session, launch_ids: set[int]) -> set[tuple[int, Any]]:
    """(launch, subscriber id) and (launch, lowercased address) of every paid order of these
    launches, in one query: a person bought when either key matches theirs."""
    if not launch_ids:
        return set()
    rows = session.execute(
        select(Order.launch_id, Order.subscriber_id, func.lower(Order.email)).where(
            Order.launch_id.in_(sorted(launch_ids)), Order.status != OrderStatus.PENDING
        )
    ).all()
    keys: set[tuple[int, Any]] = set()
    for launch_id, subscriber_id, email in rows:
        if subscriber_id is not None:
            keys.add((launch_id, subscriber_id))
        if email is not None:
            keys.add((launch_id, email))
    return keys


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
    """Send the due recovery emails; returns counts (``sent`` and each skip reason).

    The reasons are decided for all candidates at once (a few queries, however many old
    checkout starts there are). Only a send can change one on the way: a relay refusing an
    address for good suppresses it, so a person's next offer in the same pass is looked at
    again (``_still_active``) before it goes out."""
    counts: dict[str, int] = {"sent": 0}
    found = candidates(session, settings, now=now)
    tried: set[int] = set()
    for candidate, reason in zip(found, skip_reasons(session, found, now), strict=True):
        subscriber, offer = candidate.subscriber, candidate.offer
        if reason is None and subscriber is not None and subscriber.id in tried:
            reason = None if _still_active(session, subscriber) else "inactive"
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
            continue
        assert subscriber is not None and offer is not None
        tried.add(subscriber.id)
        outcome = _send_claimed(
            session, settings, messenger, env, candidate.item, subscriber, offer, now
        )
        counts[outcome] = counts.get(outcome, 0) + 1
    session.flush()
    return counts


def _still_active(session: Session, subscriber: Subscriber) -> bool:
    return subscriber.status == SubscriberStatus.ACTIVE and not _suppressed(
        session, subscriber.email
    )


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
