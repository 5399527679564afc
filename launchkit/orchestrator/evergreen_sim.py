"""Simulated buyers of an evergreen launch (for `launchkit rehearse`).

Every entrant of the launch's period (recorded up front: entries come from the copied data)
buys with the buyer model's conversion at a random moment of their own cart; a tenth of the
others try to buy a day after their own deadline, which the checkout must refuse.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from launchkit import evergreen
from launchkit.config import Settings
from launchkit.launches import get_launch
from launchkit.models import EvergreenEntry, Offer, Subscriber
from launchkit.orchestrator.simulate import BuyerModel, SimEvent
from launchkit.plan import Plan

LATE_SHARE = 0.1


def entrant_events(
    sessions: Any, settings: Settings, plan: Plan, model: BuyerModel, seed: int
) -> tuple[list[SimEvent], Offer | None, datetime]:
    """(purchase attempts in time order, the plan's first offer, when the replay can stop)."""
    rng = random.Random(seed)
    with sessions.begin() as session:
        launch = get_launch(session, plan.slug)
        evergreen.record_entries(session, launch, tz=settings.tz, now=launch.cart_close)
        rows = session.execute(
            select(Subscriber.id, Subscriber.email, EvergreenEntry.cart_open_at,
                   EvergreenEntry.cart_close_at)
            .join(EvergreenEntry, EvergreenEntry.subscriber_id == Subscriber.id)
            .where(EvergreenEntry.launch_id == launch.id)
            .order_by(Subscriber.id)
        ).all()  # fmt: skip
        slug = plan.offers[0].slug if plan.offers else None
        offer = session.scalar(select(Offer).where(Offer.slug == slug)) if slug else None
        if offer is not None:
            session.expunge(offer)
        end = max((row[3] for row in rows), default=launch.cart_open) + timedelta(days=2)
    events = []
    for sid, email, opens, closes in rows:
        deadline = {"deadline": int(closes.timestamp())}
        if rng.random() < model.conversion * 10:  # a warm list: entrants opted in for this
            at = opens + (closes - opens) * rng.random()
            events.append(SimEvent(at, "purchase", email, sid, extra=deadline))
        elif rng.random() < LATE_SHARE:
            late = closes + timedelta(days=1)
            events.append(SimEvent(late, "purchase", email, sid, extra={**deadline, "late": 1}))
    return sorted(events, key=lambda e: (e.at, e.email)), offer, end
