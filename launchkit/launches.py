"""Launches and their milestones (prelaunch start, cart open, cart close)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.clock import iso_utc
from launchkit.errors import AlreadyExists, InputError, InvalidTransition, NotFound
from launchkit.models import Launch

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
UTC_ZONE = ZoneInfo("UTC")
MILESTONES = ("prelaunch_start", "cart_open", "cart_close")
# a message in these statuses was handed to the mail server (or may have been)
WENT_OUT = ("sending", "sent", "delivered_unconfirmed")


def check_slug(slug: str, what: str = "Launch") -> str:
    """Slugs are lowercase letters, digits and dashes."""
    if not SLUG.match(slug):
        raise InputError(f'{what} slug "{slug}" must use lowercase letters, digits and dashes.')
    return slug


def _check_milestones(
    slug: str, prelaunch: datetime | None, opens: datetime, closes: datetime
) -> None:
    if closes <= opens:
        raise InputError(f'Launch "{slug}": the cart must open before it closes.')
    if prelaunch is not None and prelaunch > opens:
        raise InputError(f'Launch "{slug}": the pre-launch must start before the cart opens.')


def create_launch(
    session: Session,
    slug: str,
    *,
    product: str,
    cart_open: datetime,
    cart_close: datetime,
    currency: str,
    now: datetime,
    prelaunch_start: datetime | None = None,
) -> Launch:
    """Create a launch; times are aware datetimes."""
    check_slug(slug)
    if session.scalar(select(Launch.id).where(Launch.slug == slug)) is not None:
        raise AlreadyExists(f'Launch "{slug}" already exists.')
    if not product.strip():
        raise InputError("--product must not be empty.")
    _check_milestones(slug, prelaunch_start, cart_open, cart_close)
    launch = Launch(
        slug=slug,
        product=product.strip(),
        currency=currency.upper(),
        prelaunch_start=prelaunch_start,
        cart_open=cart_open,
        cart_close=cart_close,
        created_at=now,
        updated_at=now,
    )
    session.add(launch)
    session.flush()
    return launch


def get_launch(session: Session, slug: str) -> Launch:
    """The launch with this slug, or NotFound."""
    launch = session.scalar(select(Launch).where(Launch.slug == slug))
    if launch is None:
        raise NotFound(f'Launch "{slug}" does not exist; see `launchkit launch list`.')
    return launch


def list_launches(session: Session) -> list[Launch]:
    """All launches, most recent cart opening first."""
    return list(session.scalars(select(Launch).order_by(Launch.cart_open.desc())))


def update_launch(
    session: Session,
    slug: str,
    *,
    now: datetime,
    product: str | None = None,
    prelaunch_start: datetime | None = None,
    cart_open: datetime | None = None,
    cart_close: datetime | None = None,
    force: bool = False,
) -> Launch:
    """Change a launch's product name or milestones (callers then reschedule its emails).

    A milestone cannot move into the past, nor (unless ``force``: e.g. a cart extended after
    its last call) move once an email timed from it went out; unsent emails move, sent stay.
    """
    launch = get_launch(session, slug)
    new = {"prelaunch_start": prelaunch_start, "cart_open": cart_open, "cart_close": cart_close}
    moves = {k: v for k, v in new.items() if v is not None}
    after = {**milestones(launch), **moves}
    _check_milestones(slug, after["prelaunch_start"], after["cart_open"], after["cart_close"])
    _check_moves(session, launch, moves, now, force=force)
    if product is not None:
        launch.product = product.strip()
    for name, value in moves.items():
        setattr(launch, name, value)
    launch.updated_at = now
    session.flush()
    return launch


def _check_moves(
    session: Session, launch: Launch, moves: dict[str, datetime], now: datetime, *, force: bool
) -> None:
    for name, value in moves.items():
        old = getattr(launch, name)
        if old is not None and value == old:
            continue
        label = name.replace("_", " ")
        if value < now:
            raise InvalidTransition(
                f'Launch "{launch.slug}": the {label} cannot move into the past '
                f"({iso_utc(value)}); pick a time after now."
            )
        sent = 0 if force else _sent_from(session, launch, name)
        if sent:
            raise InvalidTransition(
                f'Launch "{launch.slug}": {sent} email(s) timed from the {label} already went '
                "out; moving it would change the story they told (--force moves the unsent ones)."
            )


def _sent_from(session: Session, launch: Launch, milestone: str) -> int:
    """Messages that went out for emails of this launch timed from ``milestone``."""
    from sqlalchemy import func

    from launchkit.models import Email, LaunchSequence, Send

    query = (
        select(func.count(Send.id))
        .join(Email, Email.id == Send.email_id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(
            LaunchSequence.launch_id == launch.id,
            Email.send_at.like(f"{milestone} %"),
            Send.status.in_(WENT_OUT),
        )
    )
    return int(session.scalar(query) or 0)


def delete_launch(session: Session, slug: str) -> Launch:
    """Delete a launch with its sequences, queued emails and offers, only while nothing of it
    was sent or sold."""
    from sqlalchemy import delete, func

    from launchkit.models import (
        Email,
        LaunchSequence,
        LaunchStep,
        Offer,
        OfferPlan,
        Order,
        Send,
        WebEvent,
    )  # fmt: skip

    launch = get_launch(session, slug)
    orders = int(session.scalar(select(func.count(Order.id)).where(Order.launch_id == launch.id)))
    if orders:
        raise InvalidTransition(f'Launch "{slug}" has {orders} order(s): it cannot be deleted.')
    seq_ids = select(LaunchSequence.id).where(LaunchSequence.launch_id == launch.id)
    email_ids = select(Email.id).where(Email.sequence_id.in_(seq_ids))
    went_out = select(func.count(Send.id)).where(
        Send.email_id.in_(email_ids), Send.status.in_(WENT_OUT)
    )
    went = int(session.scalar(went_out) or 0)
    if went:
        raise InvalidTransition(
            f'Launch "{slug}": {went} email(s) already went out; it cannot be deleted '
            "(pause its sequences with `launchkit sequence pause` instead)."
        )
    offer_ids = select(Offer.id).where(Offer.launch_id == launch.id)
    session.execute(delete(Send).where(Send.email_id.in_(email_ids)))
    session.execute(delete(Email).where(Email.sequence_id.in_(seq_ids)))
    session.execute(delete(LaunchSequence).where(LaunchSequence.launch_id == launch.id))
    session.execute(delete(WebEvent).where(WebEvent.offer_id.in_(offer_ids)))
    session.execute(delete(OfferPlan).where(OfferPlan.offer_id.in_(offer_ids)))
    session.execute(delete(Offer).where(Offer.launch_id == launch.id))
    session.execute(delete(LaunchStep).where(LaunchStep.launch_id == launch.id))
    session.execute(delete(Launch).where(Launch.id == launch.id))
    session.expire_all()
    return launch


def milestones(launch: Launch) -> dict[str, datetime | None]:
    """The launch's milestones by name."""
    return {name: getattr(launch, name) for name in MILESTONES}


def launch_as_dict(launch: Launch) -> dict[str, Any]:
    """Plain data for JSON output."""
    return {
        "slug": launch.slug,
        "product": launch.product,
        "currency": launch.currency,
        "milestones": {k: iso_utc(v) for k, v in milestones(launch).items()},
        **launch_mode(launch),
    }


def launch_mode(launch: Launch) -> dict[str, Any]:
    """``{"mode": "fixed"}``, or the evergreen entry and per-person cart offsets."""
    if launch.mode != "evergreen":
        return {"mode": "fixed"}
    return {
        "mode": "evergreen",
        "entry": launch.entry,
        "entry_cart_open": launch.entry_cart_open,
        "entry_cart_close": launch.entry_cart_close,
    }
