"""`launchkit status`: where a launch stands, at a glance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from launchkit.analysis import definitions
from launchkit.clock import format_local, iso_utc
from launchkit.config import Settings
from launchkit.launches import milestones
from launchkit.models import (
    Email,
    Launch,
    LaunchSequence,
    LaunchStep,
    Order,
    OrderStatus,
    Send,
    SendStatus,
)

COUNTED_ORDERS = [s.value for s in OrderStatus if s is not OrderStatus.PENDING]


def _milestones(launch: Launch, settings: Settings, now: datetime) -> dict[str, Any]:
    passed, upcoming = [], []
    for name, moment in milestones(launch).items():
        if moment is None:
            continue
        item = {"name": name, "at": iso_utc(moment), "local": format_local(moment, settings.tz)}
        (passed if moment <= now else upcoming).append(item)
    return {"passed": passed, "next": upcoming[0] if upcoming else None}


def _launch_sends(launch_id: int) -> Any:
    return (
        select(func.count())
        .select_from(Send)
        .join(Email, Email.id == Send.email_id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(LaunchSequence.launch_id == launch_id)
    )


def _send_counts(session: Session, launch_id: int, now: datetime) -> dict[str, int]:
    by_status = _launch_sends(launch_id).add_columns(Send.status).group_by(Send.status)
    counts = {status: n for n, status in session.execute(by_status)}
    due = session.scalar(
        _launch_sends(launch_id).where(Send.status == SendStatus.QUEUED, Send.due_at <= now)
    )
    return {
        "sent": counts.get(SendStatus.SENT, 0),
        "queued": counts.get(SendStatus.QUEUED, 0),
        "due_now": due or 0,
        "failed": counts.get(SendStatus.FAILED, 0) + counts.get(SendStatus.BOUNCED, 0),
        "skipped": counts.get(SendStatus.SKIPPED, 0),
        "sending": counts.get(SendStatus.SENDING, 0),
        "delivered_unconfirmed": counts.get(SendStatus.DELIVERED_UNCONFIRMED, 0),
    }


def _next_email(session: Session, launch_id: int, now: datetime) -> dict[str, Any] | None:
    row = session.execute(
        select(Email.step, Email.subject, func.min(Send.due_at), func.count())
        .join(Send, Send.email_id == Email.id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(
            LaunchSequence.launch_id == launch_id,
            Send.status == SendStatus.QUEUED,
            Send.due_at > now,
        )
        .group_by(Email.id, Email.step, Email.subject)
        .order_by(func.min(Send.due_at))
        .limit(1)
    ).first()
    if row is None:
        return None
    return {"step": row[0], "subject": row[1], "at": iso_utc(row[2]), "recipients": row[3]}


def _orders(session: Session, launch: Launch, currency: str | None) -> dict[str, Any]:
    """Orders, buyers and audience of the launch in one currency, by the analysis definitions
    (``currency``, else the orders' only one, else the launch's); the other currencies' orders
    and money apart, never added to it."""
    conn = session.connection()
    money = _money_by_currency(session, launch.id)
    chosen = (currency or (next(iter(money)) if len(money) == 1 else launch.currency)).upper()
    ids = set(
        session.scalars(
            select(Order.id).where(
                Order.launch_id == launch.id, func.upper(Order.currency) == chosen
            )
        )
    )
    people = [row for row in definitions.order_people(conn, launch) if row[0] in ids]
    keys = definitions.person_keys((row[1], row[2], row[3]) for row in people)
    buyers = definitions.count_buyers(zip(keys, [row[4] for row in people], strict=True))
    audience = definitions.launch_audience_size(conn, launch)
    mine = money.pop(chosen, {"orders": 0, "collected_cents": 0, "refunded_cents": 0, "refunds": 0})
    return {
        "currency": chosen,
        "audience_size": audience,
        **buyers.as_dict(),
        "orders": len(people),
        "pending_orders": definitions.pending_orders(conn, launch.id).get(chosen, 0),
        "collected_cents": mine["collected_cents"],
        "refunded_cents": mine["refunded_cents"],
        "refunds": mine["refunds"],
        "conversion_rate": definitions.conversion_rate(buyers.in_audience, audience),
        "other_currencies": money,
    }


def _money_by_currency(session: Session, launch_id: int) -> dict[str, dict[str, int]]:
    """Counted orders, money collected and refunded, and refunded orders, per currency."""
    currency = func.upper(Order.currency)
    rows = session.execute(
        select(
            currency,
            func.count(),
            func.coalesce(func.sum(Order.paid_cents), 0),
            func.coalesce(func.sum(Order.refunded_cents), 0),
            func.count().filter(Order.refunded_cents > 0),
        )
        .where(Order.launch_id == launch_id, Order.status.in_(COUNTED_ORDERS))
        .group_by(currency)
        .order_by(currency)
    ).all()
    return {
        str(cur): {"orders": int(n), "collected_cents": int(paid), "refunded_cents": int(back),
                   "refunds": int(refunds)}
        for cur, n, paid, back, refunds in rows
    }  # fmt: skip


def _next_action(
    launch: Launch,
    sends: dict[str, int],
    steps: dict[str, str],
    next_email: dict[str, Any] | None,
    now: datetime,
) -> str:
    if not any(sends.values()):
        return (
            "attach sequences (`launchkit sequence attach`) or run `launchkit run launch.toml` "
            "to import, publish and schedule the launch"
        )
    if sends["due_now"]:
        return (
            f"{sends['due_now']} email(s) are due: run `launchkit run --tick` (or `launchkit send`)"
        )
    if sends["failed"]:
        return f"{sends['failed']} delivery failure(s): check `launchkit schedule {launch.slug}`"
    if next_email:
        return f'wait: next email "{next_email["step"]}" goes out at {next_email["at"]}'
    if now < launch.cart_close:
        return "all emails sent; the cart is open until it closes"
    if steps.get("analyze") != "done":
        return "the cart is closed: run `launchkit run --tick` to write the analysis"
    return f"done: read the report with `launchkit analyze {launch.slug} --html report.html`"


def build_status(
    session: Session, settings: Settings, launch: Launch, now: datetime, currency: str | None = None
) -> dict[str, Any]:
    """Milestones passed and next, emails sent/due/failed, buyers, conversion, next action;
    orders and money in one currency (``currency``, else the orders' only one, else the
    launch's), the others under ``other_currencies``."""
    steps = {
        row.step: row.status
        for row in session.scalars(select(LaunchStep).where(LaunchStep.launch_id == launch.id))
    }
    sends = _send_counts(session, launch.id, now)
    orders = _orders(session, launch, currency)
    next_email = _next_email(session, launch.id, now)
    phase = (
        "prelaunch"
        if now < launch.cart_open
        else "cart open"
        if now < launch.cart_close
        else "closed"
    )
    return {
        "launch": launch.slug,
        "product": launch.product,
        "mode": launch.mode,
        "now": iso_utc(now),
        "phase": phase,
        "milestones": _milestones(launch, settings, now),
        "steps": steps,
        "emails": sends,
        "next_email": next_email,
        **orders,
        "provisional": definitions.is_provisional(launch, now),
        "next_action": _next_action(launch, sends, steps, next_email, now),
    }
