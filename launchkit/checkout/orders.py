"""Orders and their status: found or created from whichever event comes first, payments
counted once, status and access derived from the facts, buyer tags."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from launchkit.checkout.stripe_api import StripeClient, _cancel_subscription
from launchkit.errors import NotFound
from launchkit.launches import get_launch
from launchkit.models import (
    Launch,
    Offer,
    Order,
    OrderStatus,
    Payment,
    Refund,
    Subscriber,
    SubscriberTag,
)

# --- orders -----------------------------------------------------------------------------------


def get_order(session: Session, order_id: int | str) -> Order:
    """An order by its number, or NotFound."""
    try:
        order = session.get(Order, int(order_id))
    except (TypeError, ValueError):
        order = None
    if order is None:
        raise NotFound(f'Order "{order_id}" does not exist; see `launchkit orders`.')
    return order


def _find_order(
    session: Session, *, checkout: str | None = None, pi: str | None = None, sub: str | None = None
) -> Order | None:
    if checkout:
        found = session.scalar(select(Order).where(Order.stripe_checkout_session_id == checkout))
        if found:
            return found
    if pi:
        found = session.scalar(select(Order).where(Order.stripe_payment_intent_id == pi))
        found = found or session.scalar(
            select(Order).join(Payment).where(Payment.stripe_payment_intent_id == pi)
        )
        if found:
            return found
    if sub:
        return session.scalar(select(Order).where(Order.stripe_subscription_id == sub))
    return None


def _find_subscriber(
    session: Session, meta: dict[str, str], email: str | None
) -> Subscriber | None:
    ref = meta.get("subscriber") or ""
    if ref.isdigit():
        found = session.get(Subscriber, int(ref))
        if found:
            return found
    if email:
        return session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))
    return None


def _order_total(offer: Offer | None, instalments: int, bump: bool) -> int:
    if offer is None:
        return 0
    base = offer.price_cents
    for plan in offer.plans:
        if plan.instalments == instalments:
            base = plan.instalments * plan.instalment_cents
    return base + (offer.bump_cents or 0 if bump else 0)


def _order_from_metadata(
    session: Session,
    meta: dict[str, str],
    *,
    email: str | None,
    currency: str | None,
    now: datetime,
) -> Order | None:
    launch = session.scalar(select(Launch).where(Launch.slug == meta.get("launch", "")))
    if launch is None:
        return None
    offer = session.scalar(select(Offer).where(Offer.slug == meta.get("offer", "")))
    instalments = (
        int(meta.get("instalments") or 1) if str(meta.get("instalments", "1")).isdigit() else 1
    )
    bump = meta.get("bump") == "1"
    subscriber = _find_subscriber(session, meta, email)
    order = Order(
        launch_id=launch.id,
        offer_id=offer.id if offer else None,
        subscriber_id=subscriber.id if subscriber else None,
        email=(email or (subscriber.email if subscriber else "")).strip().lower(),
        source=subscriber.source if subscriber else None,
        plan_instalments=instalments,
        currency=(currency or (offer.currency if offer else launch.currency)).upper(),
        total_cents=_order_total(offer, instalments, bump),
        bump=bump,
        status=OrderStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    return order


def _fill(order: Order, **ids: str | None) -> None:
    for name, value in ids.items():
        if value and not getattr(order, name):
            setattr(order, name, value)


def _record_payment(
    session: Session,
    order: Order,
    *,
    stripe_id: str,
    pi: str | None,
    amount: int,
    currency: str | None,
    when: datetime,
) -> Payment | None:
    """Count one successful payment, once, whichever event reports it."""
    known = session.scalar(select(Payment).where(Payment.stripe_id == stripe_id))
    if known is None and pi:
        known = session.scalar(
            select(Payment).where(
                (Payment.stripe_payment_intent_id == pi) | (Payment.stripe_id == pi)
            )
        )
    if known is not None and known.status == "paid":
        known.stripe_payment_intent_id = known.stripe_payment_intent_id or pi
        return None
    recovered = _consecutive_failures(session, order) > 0
    payment = Payment(
        order_id=order.id,
        stripe_id=stripe_id,
        stripe_payment_intent_id=pi,
        instalment_number=order.instalments_paid + 1,
        amount_cents=amount,
        currency=(currency or order.currency).upper(),
        status="paid",
        recovered=recovered,
        refunded_cents=0,
        occurred_at=when,
    )
    session.add(payment)
    order.paid_cents += amount
    order.instalments_paid += 1
    order.paid_at = order.paid_at or when
    session.flush()
    return payment


def _consecutive_failures(session: Session, order: Order) -> int:
    statuses = session.scalars(
        select(Payment.status).where(Payment.order_id == order.id).order_by(Payment.id.desc())
    )
    count = 0
    for status in statuses:
        if status != "failed":
            break
        count += 1
    return count


def _derive_status(order: Order) -> OrderStatus:
    if order.disputed_at:
        return OrderStatus.DISPUTED
    if order.refunded_at:
        return OrderStatus.REFUNDED
    if order.instalments_paid == 0:
        return OrderStatus.PENDING
    if order.plan_instalments <= 1:
        return OrderStatus.PAID
    if order.instalments_paid >= order.plan_instalments:
        return OrderStatus.COMPLETED_PLAN
    if order.defaulted_at:
        return OrderStatus.DEFAULTED
    return OrderStatus.ACTIVE_PLAN


ACCESS_STATUSES = (OrderStatus.PAID, OrderStatus.ACTIVE_PLAN, OrderStatus.COMPLETED_PLAN)


def _add_tags(session: Session, subscriber_id: int | None, tags: Iterable[str]) -> None:
    if subscriber_id is None:
        return
    for tag in tags:
        if session.get(SubscriberTag, (subscriber_id, tag)) is None:
            session.add(SubscriberTag(subscriber_id=subscriber_id, tag=tag))
    session.flush()


def _settle(session: Session, order: Order, now: datetime) -> None:
    """Recompute status and access from the facts; tag buyers and refunded buyers."""
    refunded = sum(
        session.scalars(select(Payment.refunded_cents).where(Payment.order_id == order.id))
    )
    order.refunded_cents = max(order.refunded_cents, refunded)
    if order.refunded_cents and (
        order.refunded_cents >= order.paid_cents or order.plan_instalments > 1
    ):
        order.refunded_at = order.refunded_at or now
    order.status = _derive_status(order)
    order.access = order.status in ACCESS_STATUSES
    order.updated_at = now
    if order.instalments_paid > 0:
        launch = session.get(Launch, order.launch_id)
        _add_tags(session, order.subscriber_id, ["buyer", f"buyer:{launch.slug if launch else ''}"])
    if order.status == OrderStatus.REFUNDED:
        _add_tags(session, order.subscriber_id, ["refunded"])
    session.flush()


# --- after the event: Stripe cancellations (claim, then act) ----------------------------------


def cancel_due_subscriptions(session: Session, client: StripeClient, *, now: datetime) -> list[str]:
    """Cancel in Stripe every plan that must stop: completed, refunded, disputed or defaulted."""
    stopping = (
        OrderStatus.COMPLETED_PLAN,
        OrderStatus.REFUNDED,
        OrderStatus.DISPUTED,
        OrderStatus.DEFAULTED,
    )
    due = session.scalars(
        select(Order).where(
            Order.stripe_subscription_id.is_not(None),
            Order.subscription_cancelled_at.is_(None),
            Order.status.in_(stopping),
        )
    ).all()
    for order in due:
        _cancel_subscription(client, order, now)
    session.flush()
    return [order.stripe_subscription_id or "" for order in due]


# --- reports ----------------------------------------------------------------------------------


def list_orders(
    session: Session, launch_slug: str | None = None, failing: bool = False
) -> list[Order]:
    """Orders, newest first; ``failing``: plans with an unpaid failed instalment or defaulted."""
    query = select(Order).order_by(Order.id.desc())
    if launch_slug:
        query = query.where(Order.launch_id == get_launch(session, launch_slug).id)
    orders = list(session.scalars(query))
    if failing:
        orders = [
            o
            for o in orders
            if o.status == OrderStatus.DEFAULTED
            or (o.status == OrderStatus.ACTIVE_PLAN and _consecutive_failures(session, o) > 0)
        ]
    return orders


def order_as_dict(session: Session, order: Order) -> dict[str, Any]:
    """JSON-ready order with its refunds."""
    launch = session.get(Launch, order.launch_id)
    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    refunds = session.scalars(select(Refund).where(Refund.order_id == order.id).order_by(Refund.id))
    closes = guarantee_closes(session, order)
    return {
        "id": order.id,
        "launch": launch.slug if launch else None,
        "offer": offer.slug if offer else None,
        "email": order.email,
        "subscriber_id": order.subscriber_id,
        "source": order.source,
        "status": order.status,
        "plan_instalments": order.plan_instalments,
        "instalments_paid": order.instalments_paid,
        "instalments_failed": order.instalments_failed,
        "currency": order.currency,
        "total_cents": order.total_cents,
        "paid_cents": order.paid_cents,
        "refunded_cents": order.refunded_cents,
        "fee_cents": order.fee_cents,
        "access": order.access,
        "paid_at": order.paid_at,
        "guarantee_until": closes,
        "refunds": [
            {
                "amount_cents": r.amount_cents,
                "reason": r.reason,
                "status": r.status,
                "forced": r.forced,
                "requested_at": r.requested_at,
                "refunded_at": r.refunded_at,
                "stripe_refund_id": r.stripe_refund_id,
            }
            for r in refunds
        ],
        "stripe_subscription_id": order.stripe_subscription_id,
        "stripe_payment_intent_id": order.stripe_payment_intent_id,
    }


def count_orders(session: Session) -> int:
    """Number of orders (used by reports and tests)."""
    return int(session.scalar(select(func.count(Order.id))) or 0)


def guarantee_closes(session: Session, order: Order) -> datetime | None:
    """When the money-back guarantee of this order ends (None before any payment)."""
    if order.paid_at is None:
        return None
    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    return order.paid_at + timedelta(days=offer.guarantee_days if offer else 0)
