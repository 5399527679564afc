"""Shared membership fixtures: launch "club" with a membership offer, metadata for its members."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from launchkit import checkout, launches, memberships
from launchkit.models import Launch


def create_membership_offer(
    session: Any, now: Any, *, trial_days: int = 0, founding: list | None = None, slug="club"
) -> Any:
    """Launch "club" (doors open around ``now``) selling 29/month or 290/year, 14-day guarantee."""
    launches.create_launch(
        session, slug, product="Club photo", cart_open=now - timedelta(days=1),
        cart_close=now + timedelta(days=5), currency="EUR", now=now,
    )  # fmt: skip
    return memberships.add_membership_offer(
        session, slug, f"{slug}-offer", product="Club photo", currency="EUR",
        prices=[("month", 2900), ("year", 29000)], founding=founding, trial_days=trial_days,
        guarantee_days=14, now=now,
    )  # fmt: skip


def member_metadata(session: Any, offer: Any, interval: str, subscriber_id: int | None) -> dict:
    """The metadata a membership checkout puts on the session and the subscription."""
    launch = session.get(Launch, offer.launch_id)
    meta = checkout.checkout_metadata(offer, launch, 1, subscriber_id, False)
    meta["membership"] = interval
    return meta
