"""Load one launch's data into pandas: one query per table, only the columns the analysis uses.

Nothing here loops over rows in Python or queries per row. The subscriber query filters the
audience in SQL (the only place the analysis uses a dialect-specific expression: the signup
month, computed by the database so a million timestamps are never parsed in Python).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from launchkit.analysis import definitions
from launchkit.models import (
    Email,
    Launch,
    LaunchSequence,
    Offer,
    OfferPlan,
    Order,
    OrderStatus,
    Payment,
    Refund,
    Send,
    Subscriber,
    SubscriberStatus,
    SubscriberStatusChange,
    SubscriberTag,
    WebEvent,
)

UNKNOWN = "(unknown)"
WEB_KINDS = ("sales_view", "checkout_start")
LEFT = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


@dataclass
class LaunchData:
    """Everything the metrics need about one launch, as DataFrames."""

    launch: Launch
    window_start: datetime
    audience: pd.DataFrame  # id, source, cohort
    tags: pd.DataFrame  # subscriber_id, tag (audience members only)
    orders: pd.DataFrame
    payments: pd.DataFrame
    refunds: pd.DataFrame
    offers: pd.DataFrame
    emails: pd.DataFrame  # id, step, subject, position, scheduled_at, sent, bounced
    send_events: pd.DataFrame  # subscriber_id, email_id, sent_at (buyers and leavers only)
    leavers: pd.DataFrame  # subscriber_id, kind (unsubscribed|complained|bounced), left_at
    web: dict[str, int | None] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # pending orders per currency


_utc = definitions.utc_param


def _frame(conn: Connection, stmt: Any, dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """Run one query and build a DataFrame from the driver's rows.

    SQLAlchemy compiles the query and binds its parameters; the rows are then read straight
    from the DBAPI cursor (no per-row result processing), and ``dates`` are parsed by pandas
    in one vectorized pass (ISO strings on SQLite, aware datetimes on PostgreSQL).
    """
    result = conn.execute(stmt)
    columns = list(result.keys())
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)
    for column in dates:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


read_frame = _frame  # the other analysis modules read their queries the same way


def _cohort_expr(conn: Connection) -> Any:
    signup = sa.func.coalesce(Subscriber.signed_up_at, Subscriber.created_at)
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", signup), "YYYY-MM")
    return sa.func.substr(sa.type_coerce(signup, sa.String), 1, 7)


def audience_filter(cart_open: datetime) -> Any:
    """SQL condition: in the audience at ``cart_open`` (see ``definitions.audience_condition``)."""
    return definitions.audience_condition(cart_open)


def load_audience(conn: Connection, launch: Launch, segment: Any = None) -> pd.DataFrame:
    """Audience(L) (active subscribers at cart open; an evergreen launch's entrants): id, source
    and signup month (categorical)."""
    where = definitions.launch_audience(launch)
    if segment is not None:
        where = sa.and_(where, segment)
    stmt = sa.select(Subscriber.id, Subscriber.source, _cohort_expr(conn).label("cohort"))
    frame = _frame(conn, stmt.where(where))
    frame["id"] = frame["id"].astype("int64")
    frame["source"] = frame["source"].astype("category")
    frame["cohort"] = frame["cohort"].astype("category")
    for column in ("source", "cohort"):
        series = frame[column]
        if series.isna().any():
            frame[column] = series.cat.add_categories([UNKNOWN]).fillna(UNKNOWN)
    return frame


def load_tags(conn: Connection, audience_ids: pd.Series) -> pd.DataFrame:
    """Tags of the audience members (tags as they are now, not as of cart open)."""
    frame = _frame(conn, sa.select(SubscriberTag.subscriber_id, SubscriberTag.tag))
    frame = frame[frame["subscriber_id"].isin(audience_ids)]
    return frame.assign(tag=frame["tag"].astype("category"))


def load_orders(conn: Connection, launch: Launch, segment: Any = None) -> pd.DataFrame:
    """The launch's counted orders (status is not pending), each with its buyer: ``person``
    (definitions.person_keys), ``in_audience`` and ``in_segment`` (computed in SQL)."""
    frame = _order_rows(conn, launch.id)
    people = definitions.order_people(conn, launch, segment)
    ids = [row[0] for row in people]
    keys = definitions.person_keys((row[1], row[2], row[3]) for row in people)
    who = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="int64"),
            "person": pd.Series(keys, dtype="object"),
            "in_audience": pd.Series([row[4] for row in people], dtype="bool"),
            "in_segment": pd.Series([row[5] for row in people], dtype="bool"),
        }
    )
    # where a buyer stands is the person's, not the order row's: an unlinked order counted as a
    # linked buyer's (person_keys) is in the audience and the segment when that buyer is
    for flag in ("in_audience", "in_segment"):
        who[flag] = who.groupby("person")[flag].transform("max").astype("bool")
    frame["id"] = frame["id"].astype("int64")
    return frame.merge(who, on="id", how="left")


def _order_rows(conn: Connection, launch_id: int) -> pd.DataFrame:
    stmt = sa.select(
        Order.id,
        Order.offer_id,
        Order.subscriber_id,
        Order.email,
        Order.source,
        Order.plan_instalments,
        Order.currency,
        Order.total_cents,
        Order.paid_cents,
        Order.refunded_cents,
        Order.fee_cents,
        Order.instalments_paid,
        Order.instalments_failed,
        Order.status,
        Order.created_at,
        Order.paid_at,
        Order.refunded_at,
    ).where(Order.launch_id == launch_id, Order.status != OrderStatus.PENDING)
    frame = _frame(conn, stmt, ("created_at", "paid_at", "refunded_at"))
    frame["subscriber_id"] = frame["subscriber_id"].astype("Int64")
    frame["offer_id"] = frame["offer_id"].astype("Int64")
    frame["fee_cents"] = frame["fee_cents"].astype("Int64")
    frame["sold_at"] = frame["paid_at"].fillna(frame["created_at"])
    return frame


def _launch_orders(launch_id: int) -> Any:
    return sa.select(Order.id).where(
        Order.launch_id == launch_id, Order.status != OrderStatus.PENDING
    )


def load_payments(conn: Connection, launch_id: int) -> pd.DataFrame:
    """Charges and instalment attempts of the launch's orders."""
    stmt = sa.select(
        Payment.id,
        Payment.order_id,
        Payment.instalment_number,
        Payment.amount_cents,
        Payment.fee_cents,
        Payment.status,
        Payment.recovered,
        Payment.occurred_at,
    ).where(Payment.order_id.in_(_launch_orders(launch_id)))
    frame = _frame(conn, stmt, ("occurred_at",))
    frame["instalment_number"] = frame["instalment_number"].astype("Int64")
    frame["recovered"] = frame["recovered"].fillna(False).astype(bool)
    return frame


def load_refunds(conn: Connection, launch_id: int) -> pd.DataFrame:
    """Refund records of the launch's orders (all statuses; metrics keep the succeeded ones)."""
    stmt = sa.select(
        Refund.order_id,
        Refund.payment_id,
        Refund.amount_cents,
        Refund.reason,
        Refund.status,
        Refund.requested_at,
        Refund.refunded_at,
    ).where(Refund.order_id.in_(_launch_orders(launch_id)))
    return _frame(conn, stmt, ("requested_at", "refunded_at"))


def load_offers(conn: Connection, launch_id: int) -> pd.DataFrame:
    """Offers of the launch with their guarantee and number of plans."""
    plans = (
        sa.select(sa.func.count(OfferPlan.id))
        .where(OfferPlan.offer_id == Offer.id)
        .scalar_subquery()
    )
    stmt = sa.select(
        Offer.id, Offer.slug, Offer.price_cents, Offer.guarantee_days, plans.label("plans")
    ).where(Offer.launch_id == launch_id)
    return _frame(conn, stmt)


def _launch_email_ids(launch_id: int) -> Any:
    return (
        sa.select(Email.id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(LaunchSequence.launch_id == launch_id)
    )


def load_emails(conn: Connection, launch_id: int) -> pd.DataFrame:
    """The launch's emails with their sent and bounced counts (one grouped query on sends)."""
    stmt = (
        sa.select(
            Email.id,
            Email.step,
            Email.subject,
            Email.position,
            Email.scheduled_at,
            LaunchSequence.name.label("sequence"),
        )
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(LaunchSequence.launch_id == launch_id)
        .order_by(Email.scheduled_at, LaunchSequence.name, Email.position)
    )
    emails = _frame(conn, stmt, ("scheduled_at",))
    counts = sa.select(
        Send.email_id,
        sa.func.sum(sa.case((Send.status == "sent", 1), else_=0)).label("sent"),
        sa.func.sum(sa.case((Send.status == "bounced", 1), else_=0)).label("bounced"),
    ).where(Send.email_id.in_(_launch_email_ids(launch_id)))
    counts = _frame(conn, counts.group_by(Send.email_id)).rename(columns={"email_id": "id"})
    emails = emails.merge(counts, on="id", how="left")
    emails[["sent", "bounced"]] = emails[["sent", "bounced"]].fillna(0).astype("int64")
    return emails


def load_send_events(
    conn: Connection, launch_id: int, window: tuple[datetime, datetime]
) -> pd.DataFrame:
    """Deliveries of the launch's emails to buyers and to people who left during the launch."""
    buyers = sa.select(Order.subscriber_id).where(
        Order.launch_id == launch_id, Order.subscriber_id.is_not(None)
    )
    leavers = sa.select(SubscriberStatusChange.subscriber_id).where(
        SubscriberStatusChange.status.in_(LEFT),
        SubscriberStatusChange.changed_at.between(_utc(window[0]), _utc(window[1])),
    )
    stmt = sa.select(Send.subscriber_id, Send.email_id, Send.sent_at).where(
        Send.email_id.in_(_launch_email_ids(launch_id)),
        Send.status.in_(("sent", "bounced")),
        Send.sent_at.is_not(None),
        sa.or_(Send.subscriber_id.in_(buyers), Send.subscriber_id.in_(leavers)),
    )
    return _frame(conn, stmt, ("sent_at",))


def load_leavers(conn: Connection, window: tuple[datetime, datetime]) -> pd.DataFrame:
    """People whose leaving change (unsubscribe, bounce, complaint, suppression) has its time
    inside the launch window: subscriber_id, kind (unsubscribed|bounced|complained), left_at."""
    change = SubscriberStatusChange
    stmt = sa.select(
        change.subscriber_id, change.status.label("kind"), change.changed_at.label("left_at")
    ).where(change.status.in_(LEFT), change.changed_at.between(_utc(window[0]), _utc(window[1])))
    frame = _frame(conn, stmt, ("left_at",))
    return frame.sort_values("left_at", kind="stable").drop_duplicates(["subscriber_id", "kind"])


def load_web_counts(
    conn: Connection, offer_ids: list[int], window: tuple[datetime, datetime]
) -> dict[str, int | None]:
    """Sales-page visits and checkout starts in the launch window; None when none are recorded."""
    offer_match = WebEvent.offer_id.is_(None)
    if offer_ids:
        offer_match = sa.or_(offer_match, WebEvent.offer_id.in_(offer_ids))
    stmt = (
        sa.select(WebEvent.kind, sa.func.count().label("n"))
        .where(
            WebEvent.kind.in_(WEB_KINDS),
            WebEvent.occurred_at.between(_utc(window[0]), _utc(window[1])),
            offer_match,
        )
        .group_by(WebEvent.kind)
    )
    counts = {kind: int(n) for kind, n in conn.execute(stmt)}
    if not counts:
        return dict.fromkeys(WEB_KINDS)
    return {kind: counts.get(kind, 0) for kind in WEB_KINDS}


def launch_window(launch: Launch) -> tuple[datetime, datetime]:
    """From the pre-launch start (or a week before cart open) to cart close."""
    start = launch.prelaunch_start or (launch.cart_open - timedelta(days=7))
    return start, launch.cart_close


def load_launch(session: Session, launch: Launch, segment: Any = None) -> LaunchData:
    """Read everything about ``launch`` through the session's connection."""
    conn = session.connection()
    window = launch_window(launch)
    audience = load_audience(conn, launch, segment)
    offers = load_offers(conn, launch.id)
    return LaunchData(
        launch=launch,
        window_start=window[0],
        audience=audience,
        tags=load_tags(conn, audience["id"]),
        orders=load_orders(conn, launch, segment),
        payments=load_payments(conn, launch.id),
        refunds=load_refunds(conn, launch.id),
        offers=offers,
        emails=load_emails(conn, launch.id),
        send_events=load_send_events(conn, launch.id, window),
        leavers=load_leavers(conn, window),
        web=load_web_counts(conn, [int(i) for i in offers["id"]], window),
        pending=definitions.pending_orders(conn, launch.id),
    )
