"""The click funnel of each launch email: delivered -> clicked -> sales page -> checkout
started -> bought (README "Analysis", "Click funnel" states the definitions).

For one email E: *delivered* is its ``sent`` sends; *clicks* every recorded click on its links;
*clicked* the distinct people with a click on E; then, among those clickers, the people with a
sales-page visit (*sales_page*), a checkout start (*checkout_started*) of one of the launch's
offers, or a counted order of the launch (*bought*) at or after their first click on E (for
orders: at or after the second of that click, as Stripe's times are whole seconds). Each
later stage counts clickers who did it after clicking, not only those who passed the stage
before it, so its rate is a share of the clickers: ``click_rate = clicked / delivered``, then
``sales_page_rate``, ``checkout_rate``, ``buy_rate`` over ``clicked``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.analysis.load import LaunchData, read_frame
from launchkit.analysis.metrics import safe_rate
from launchkit.models import LinkClick, WebEvent

STAGES = (("sales_page", "sales_view"), ("checkout_started", "checkout_start"))


def click_funnel(session: Session, data: LaunchData) -> list[dict[str, Any]]:
    """One funnel row per launch email (``data.orders``: the orders the analysis counts)."""
    conn = session.connection()
    email_ids = [int(i) for i in data.emails["id"]]
    clicks = read_frame(
        conn,
        sa.select(LinkClick.email_id, LinkClick.subscriber_id, LinkClick.occurred_at).where(
            LinkClick.email_id.in_(email_ids)
        ),
        ("occurred_at",),
    )
    first = _first_clicks(clicks)
    for stage, kind in STAGES:
        first[stage] = _after(first, _latest_web(conn, data, kind))
    orders = data.orders.dropna(subset=["subscriber_id"])
    latest_order = orders.groupby(orders["subscriber_id"].astype("int64"))["sold_at"].max()
    # Stripe's times are whole seconds: an order paid in the second of the click is after it
    first["bought"] = _after(first.assign(at=first["at"].dt.floor("s")), latest_order)
    return [_row(email, clicks, first) for email in data.emails.to_dict("records")]


def _first_clicks(clicks: pd.DataFrame) -> pd.DataFrame:
    """(email_id, subscriber_id, at): each clicker's first click on each email."""
    known = clicks.dropna(subset=["subscriber_id"])
    first = known.groupby(["email_id", "subscriber_id"], as_index=False)["occurred_at"].min()
    first["subscriber_id"] = first["subscriber_id"].astype("int64")
    return first.rename(columns={"occurred_at": "at"})


def _latest_web(conn: Any, data: LaunchData, kind: str) -> pd.Series:
    """subscriber_id -> their latest web event of ``kind`` on one of the launch's offers."""
    offers = [int(i) for i in data.offers["id"]]
    stmt = sa.select(WebEvent.subscriber_id, WebEvent.occurred_at).where(
        WebEvent.kind == kind, WebEvent.offer_id.in_(offers), WebEvent.subscriber_id.is_not(None)
    )
    events = read_frame(conn, stmt, ("occurred_at",))
    return events.groupby(events["subscriber_id"].astype("int64"))["occurred_at"].max()


def _after(first: pd.DataFrame, latest: pd.Series) -> pd.Series:
    """True where the clicker's latest event is at or after their first click."""
    if first.empty:
        return pd.Series(False, index=first.index, dtype=bool)
    when = pd.to_datetime(first["subscriber_id"].map(latest), utc=True)
    return (when >= first["at"]).fillna(False).astype(bool)


def _row(email: dict[str, Any], clicks: pd.DataFrame, first: pd.DataFrame) -> dict[str, Any]:
    mine = first[first["email_id"] == email["id"]]
    delivered = int(email["sent"])
    clicked = len(mine)
    row: dict[str, Any] = {
        "email_id": int(email["id"]),
        "sequence": email["sequence"],
        "step": email["step"],
        "subject": email["subject"],
        "delivered": delivered,
        "clicks": int((clicks["email_id"] == email["id"]).sum()),
        "clicked": clicked,
        "click_rate": safe_rate(clicked, delivered),
    }
    for stage in ("sales_page", "checkout_started", "bought"):
        row[stage] = int(mine[stage].sum())
    row["sales_page_rate"] = safe_rate(row["sales_page"], clicked)
    row["checkout_rate"] = safe_rate(row["checkout_started"], clicked)
    row["buy_rate"] = safe_rate(row["bought"], clicked)
    return row
