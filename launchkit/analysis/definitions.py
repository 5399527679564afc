"""The definitions of a launch's figures, each written once (README "Definitions").

`analyze`, `status`, the report, `compare` and `forecast` all count through these functions.
This module imports neither pandas nor numpy, so `launchkit status` stays fast.

- join time: ``signed_up_at``, else ``created_at``;
- status at T: the status of the subscriber's latest change at or before T (``active`` when it
  has none: a subscriber is created active unless a change row says otherwise);
- Audience(L): joined at or before cart open, active at cart open, address not suppressed at
  cart open; for an evergreen launch, its entrants (rows of ``evergreen_entries``), each with
  their own cart;
- counted orders: orders of L that are not ``pending``; ``pending_orders``: the others;
- buyers: distinct persons among counted orders, split in / on the list outside / not on the
  list; an evergreen entrant is "in" only with an order created at or before their own cart
  close + ``LATE_ORDER`` (the rule of the entrants-by-week table);
- ``provisional``: the cart has not closed yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from launchkit.audience.addresses import normalize_email
from launchkit.db import UTCDateTime
from launchkit.errors import InputError
from launchkit.evergreen import LATE_ORDER
from launchkit.models import (
    EvergreenEntry,
    Launch,
    Order,
    OrderStatus,
    Subscriber,
    SubscriberStatus,
    SubscriberStatusChange,
    Suppression,
)

Z95 = 1.959963984540054


def utc_param(moment: datetime) -> Any:
    """A bound UTC datetime parameter (stored the same way on SQLite and PostgreSQL)."""
    return sa.bindparam(None, moment, type_=UTCDateTime())


def join_time() -> Any:
    """SQL: when a subscriber joined the list."""
    return sa.func.coalesce(Subscriber.signed_up_at, Subscriber.created_at)


def not_active_at(moment: datetime) -> Any:
    """SQL: ids of subscribers whose latest status change at or before ``moment`` is not
    ``active`` (ties on the time: the change recorded last wins)."""
    at = utc_param(moment)
    change, later = SubscriberStatusChange, sa.orm.aliased(SubscriberStatusChange)
    newer = (
        sa.select(later.id)
        .where(
            later.subscriber_id == change.subscriber_id,
            later.changed_at <= at,
            sa.or_(
                later.changed_at > change.changed_at,
                sa.and_(later.changed_at == change.changed_at, later.id > change.id),
            ),
        )
        .exists()
    )
    return sa.select(change.subscriber_id).where(
        change.changed_at <= at, change.status != SubscriberStatus.ACTIVE, ~newer
    )


def audience_condition(cart_open: datetime) -> Any:
    """SQL condition on subscribers: member of the audience of a launch opening at ``cart_open``."""
    at = utc_param(cart_open)
    suppressed = sa.select(Suppression.email).where(Suppression.created_at <= at)
    return sa.and_(
        join_time() <= at,
        Subscriber.id.not_in(not_active_at(cart_open)),
        Subscriber.email.not_in(suppressed),
    )


def is_evergreen(launch: Launch) -> bool:
    """Each entrant of the launch has their own cart (launch mode ``evergreen``)."""
    return launch.mode == "evergreen"


def launch_audience(launch: Launch) -> Any:
    """SQL condition on subscribers: in Audience(L) -- the audience at cart open, or the
    entrants of an evergreen launch."""
    if is_evergreen(launch):
        entrants = sa.select(EvergreenEntry.subscriber_id).where(
            EvergreenEntry.launch_id == launch.id
        )
        return Subscriber.id.in_(entrants)
    return audience_condition(launch.cart_open)


def entrant_deadlines(conn: Connection, launch_id: int) -> dict[int, datetime]:
    """Subscriber id -> last moment an order of theirs counts (own cart close + LATE_ORDER)."""
    stmt = sa.select(EvergreenEntry.subscriber_id, EvergreenEntry.cart_close_at).where(
        EvergreenEntry.launch_id == launch_id
    )
    return {int(sid): close + LATE_ORDER for sid, close in conn.execute(stmt)}


def audience_size(conn: Connection, cart_open: datetime, segment: Any = None) -> int:
    """|Audience at ``cart_open``| (intersected with a segment condition when given)."""
    where = audience_condition(cart_open)
    if segment is not None:
        where = sa.and_(where, segment)
    stmt = sa.select(sa.func.count()).select_from(Subscriber).where(where)
    return int(conn.execute(stmt).scalar_one())


def launch_audience_size(conn: Connection, launch: Launch) -> int:
    """|Audience(L)|: the audience at cart open, or the entrants of an evergreen launch."""
    stmt = sa.select(sa.func.count()).select_from(Subscriber).where(launch_audience(launch))
    return int(conn.execute(stmt).scalar_one())


def pending_orders(conn: Connection, launch_id: int) -> dict[str, int]:
    """Orders of the launch still pending (checkout started, no money moved), per currency."""
    currency = sa.func.upper(Order.currency)
    stmt = (
        sa.select(currency, sa.func.count())
        .where(Order.launch_id == launch_id, Order.status == OrderStatus.PENDING)
        .group_by(currency)
    )
    return {str(c): int(n) for c, n in conn.execute(stmt)}


def order_people(
    conn: Connection, launch: Launch, segment: Any = None
) -> list[tuple[int, int | None, str, str | None, bool, bool]]:
    """Counted orders of ``launch`` with who bought them: (order id, subscriber id, order email,
    subscriber email, in the audience, matches the segment) -- flags computed in SQL, except an
    evergreen entrant's deadline (one more query, compared here)."""
    member = sa.and_(Subscriber.id.is_not(None), launch_audience(launch))
    in_segment = sa.true() if segment is None else sa.and_(Subscriber.id.is_not(None), segment)
    stmt = (
        sa.select(
            Order.id,
            Order.subscriber_id,
            Order.email,
            Subscriber.email,
            sa.case((member, 1), else_=0),
            sa.case((in_segment, 1), else_=0),
            Order.created_at,
        )
        .select_from(Order)
        .outerjoin(Subscriber, Subscriber.id == Order.subscriber_id)
        .where(Order.launch_id == launch.id, Order.status != OrderStatus.PENDING)
    )
    rows = conn.execute(stmt).all()
    if is_evergreen(launch):
        deadline = entrant_deadlines(conn, launch.id)
        in_time = [bool(r[4]) and r[6] <= deadline[int(r[1])] for r in rows]
    else:
        in_time = [bool(r[4]) for r in rows]
    return [
        (r[0], r[1], r[2] or "", r[3], member, bool(r[5]))
        for r, member in zip(rows, in_time, strict=True)
    ]


def person_key(subscriber_id: int | None, email: str) -> str:
    """Who bought: the subscriber, else the order's address normalized as imports do."""
    if subscriber_id is not None:
        return f"id:{int(subscriber_id)}"
    try:
        return f"email:{normalize_email(email)}"
    except InputError:
        return f"email:{email.strip().lower()}"


@dataclass(frozen=True)
class Buyers:
    """Distinct buyers of a launch, split by where they stood at cart open."""

    in_audience: int
    on_list_outside_audience: int
    not_on_list: int

    @property
    def total(self) -> int:
        return self.in_audience + self.on_list_outside_audience + self.not_on_list

    def as_dict(self) -> dict[str, int]:
        return {
            "buyers": self.total,
            "buyers_in_audience": self.in_audience,
            "buyers_on_list_outside_audience": self.on_list_outside_audience,
            "buyers_not_on_list": self.not_on_list,
        }


def person_keys(
    people: Iterable[tuple[int | None, str, str | None]],
) -> list[str]:
    """One key per order (subscriber id, order email, subscriber email): an order linked to no
    subscriber counts as the buyer who has its address when that buyer is linked elsewhere."""
    rows = list(people)
    if all(sid is not None for sid, _, _ in rows):
        return [f"id:{int(sid)}" for sid, _, _ in rows]  # type: ignore[arg-type]
    linked = {  # subscriber addresses are stored normalized
        f"email:{sub_email}": f"id:{int(sid)}"
        for sid, _, sub_email in rows
        if sid is not None and sub_email
    }
    keys = []
    for sid, email, _ in rows:
        key = person_key(sid, email)
        keys.append(linked.get(key, key))
    return keys


def count_buyers(people: Iterable[tuple[str, bool]]) -> Buyers:
    """Distinct buyers from (person key, in the audience) pairs, one pair per counted order."""
    where: dict[str, str] = {}
    for key, in_audience in people:
        kind = "in" if in_audience else "list" if key.startswith("id:") else "none"
        if where.get(key) != "in":
            where[key] = kind
    kinds = list(where.values())
    return Buyers(kinds.count("in"), kinds.count("list"), kinds.count("none"))


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; None when there are no trials. Its bounds are
    exactly 0 with no success and 1 with all (float error would leave ~1e-17 there, and an LTV
    divided by that lower bound would be 10^20 instead of unbounded)."""
    if trials <= 0:
        return None
    p = min(successes, trials) / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    return low, 1.0 if successes >= trials else min(1.0, centre + half)


def conversion_rate(buyers_in_audience: int, audience: int) -> float:
    """Buyers in the audience over the audience (0.0 for an empty audience)."""
    return buyers_in_audience / audience if audience else 0.0


def is_provisional(launch: Launch, now: datetime) -> bool:
    """True while the cart has not closed: the figures can still change."""
    return now < launch.cart_close
