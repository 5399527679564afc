"""Launches and their milestones (prelaunch start, cart open, cart close)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.clock import iso_utc
from launchkit.errors import AlreadyExists, InputError, NotFound
from launchkit.models import Launch

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
UTC_ZONE = ZoneInfo("UTC")
MILESTONES = ("prelaunch_start", "cart_open", "cart_close")


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
) -> Launch:
    """Change a launch's product name or milestones (callers then reschedule its emails)."""
    launch = get_launch(session, slug)
    if product is not None:
        launch.product = product.strip()
    launch.prelaunch_start = prelaunch_start or launch.prelaunch_start
    launch.cart_open = cart_open or launch.cart_open
    launch.cart_close = cart_close or launch.cart_close
    _check_milestones(slug, launch.prelaunch_start, launch.cart_open, launch.cart_close)
    launch.updated_at = now
    session.flush()
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
    }
