"""The waitlist section of `analyze`: how many joined the waitlist, and how well they bought
compared with the rest of the list."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.analysis.definitions import conversion_rate, wilson_interval
from launchkit.models import Launch, Order, Subscriber, SubscriberStatus, SubscriberTag
from launchkit.waitlists import waitlist_tag


def waitlist_section(session: Session, launch: Launch) -> dict[str, Any] | None:
    """``size``: confirmed subscribers tagged ``waitlist:LAUNCH``; ``buyers``: those of them with
    a paid order of the launch (refunded or not); the same for the rest of the list (every
    other subscriber who ever confirmed, whatever their status now). None without a waitlist."""
    tag = waitlist_tag(launch.slug)
    on_list = sa.select(SubscriberTag.subscriber_id).where(SubscriberTag.tag == tag)
    size = session.scalar(sa.select(sa.func.count()).select_from(on_list.subquery())) or 0
    if not launch.waitlist and not size:
        return None
    bought = sa.select(Order.subscriber_id).where(
        Order.launch_id == launch.id, Order.instalments_paid > 0, Order.subscriber_id.is_not(None)
    )
    listed = (Subscriber.status != SubscriberStatus.PENDING) | Subscriber.confirmed_at.is_not(None)
    rest = sa.and_(listed, Subscriber.id.not_in(on_list))
    rest_size = _count(session, rest)
    return {
        "tag": tag,
        "waitlist": _group(size, _count(session, Subscriber.id.in_(on_list), bought)),
        "rest_of_list": _group(rest_size, _count(session, rest, bought)),
    }


def _count(session: Session, condition: Any, bought: Any = None) -> int:
    query = sa.select(sa.func.count(Subscriber.id)).where(condition)
    if bought is not None:
        query = query.where(Subscriber.id.in_(bought))
    return int(session.scalar(query) or 0)


def _group(size: int, buyers: int) -> dict[str, Any]:
    interval = wilson_interval(buyers, size)
    return {
        "size": size,
        "buyers": buyers,
        "conversion": conversion_rate(buyers, size),
        "conversion_ci95": list(interval) if interval else None,
    }
