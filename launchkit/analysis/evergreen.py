"""Evergreen launches: entrants grouped by the ISO week of their entry (README "Definitions").

- entrant: a row of ``evergreen_entries`` (entry time, own cart open and close);
- week: the ISO week (``2026-W45``) of the entry time in the workspace timezone;
- buyer: an entrant with a counted order (not ``pending``) of this launch created at or before
  their own cart close + ``LATE`` (the 15-minute checkout grace, plus the 30 minutes a Checkout
  Session started inside it can stay open, rounded up to an hour);
- late orders: counted orders of entrants created after that (none, when the promise holds);
- conversion: buyers / entrants, with the Wilson 95% interval used everywhere else;
- revenue: the paid amount (``paid_cents``) of the buyers' in-time orders.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.analysis.definitions import wilson_interval
from launchkit.evergreen import LATE_ORDER
from launchkit.models import EvergreenEntry, Launch, Order, OrderStatus

LATE = LATE_ORDER  # the same allowance as the rehearsal promise


def iso_week(moment: datetime, tz: ZoneInfo) -> str:
    """``2026-W45``: the ISO year and week of ``moment`` in ``tz``."""
    year, week, _ = moment.astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


def _entries(session: Session, launch: Launch) -> list[tuple[int, datetime, datetime]]:
    query = sa.select(
        EvergreenEntry.subscriber_id, EvergreenEntry.entered_at, EvergreenEntry.cart_close_at
    ).where(EvergreenEntry.launch_id == launch.id)
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def _orders(session: Session, launch: Launch) -> dict[int, list[tuple[datetime, int]]]:
    query = sa.select(Order.subscriber_id, Order.created_at, Order.paid_cents).where(
        Order.launch_id == launch.id,
        Order.status != OrderStatus.PENDING,
        Order.subscriber_id.is_not(None),
    )
    out: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for sid, created, paid in session.execute(query):
        out[sid].append((created, int(paid or 0)))
    return out


def entrants_by_week(session: Session, launch: Launch, tz: ZoneInfo) -> dict[str, Any]:
    """Per ISO week of entry: entrants, buyers, conversion (Wilson 95%), revenue, late orders."""
    orders = _orders(session, launch)
    weeks: dict[str, dict[str, int]] = defaultdict(
        lambda: {"entrants": 0, "buyers": 0, "revenue_cents": 0, "late_orders": 0}
    )
    for sid, entered, closes in _entries(session, launch):
        row = weeks[iso_week(entered, tz)]
        row["entrants"] += 1
        in_time = [paid for created, paid in orders.get(sid, []) if created <= closes + LATE]
        row["late_orders"] += len(orders.get(sid, [])) - len(in_time)
        if in_time:
            row["buyers"] += 1
            row["revenue_cents"] += sum(in_time)
    rows = [_row(week, counts) for week, counts in sorted(weeks.items())]
    total = {k: sum(r[k] for r in rows) for k in ("entrants", "buyers", "revenue_cents")}
    return {
        "entry": launch.entry,
        "cart_open": launch.entry_cart_open,
        "cart_close": launch.entry_cart_close,
        **_row("all", {**total, "late_orders": sum(r["late_orders"] for r in rows)}),
        "weeks": rows,
    }


def _row(week: str, counts: dict[str, int]) -> dict[str, Any]:
    entrants, buyers = counts["entrants"], counts["buyers"]
    ci = wilson_interval(buyers, entrants)
    return {
        "week": week,
        "entrants": entrants,
        "buyers": buyers,
        "conversion_rate": buyers / entrants if entrants else None,
        "ci95_low": ci[0] if ci else None,
        "ci95_high": ci[1] if ci else None,
        "revenue_cents": counts["revenue_cents"],
        "late_orders": counts["late_orders"],
    }
