"""Orders and their status: found or created from whichever event comes first, payments
counted once, status and access derived from the facts, buyer tags."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from launchkit.access import sync_access
from launchkit.audience.addresses import normalize_email
from launchkit.checkout.stripe_api import StripeClient, _cancel_subscription
from launchkit.errors import InputError, NotFound
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

LANGUAGES = ("fr", "en")  # the languages transactional emails exist in

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


def normal_email(raw: Any) -> str:
    """An address as imports store it (``normalize_email``); "" when there is none."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return ""
    try:
        return normalize_email(text)
    except InputError:
        return text.lower()  # kept as typed; it matches no subscriber


def _find_subscriber(
    session: Session, meta: dict[str, str], email: str | None
) -> Subscriber | None:
    ref = meta.get("subscriber") or ""
    if ref.isascii() and ref.isdigit():
        found = session.get(Subscriber, int(ref))
        if found:
            return found
    email = normal_email(email)
    if email:
        return session.scalar(select(Subscriber).where(Subscriber.email == email))
    return None


def link_order(
    session: Session, order: Order, meta: dict[str, str], email: Any, *, typed: bool = False
) -> None:
    """Give the order its address and subscriber, whichever event brings them first.

    ``typed``: the address the buyer typed at checkout, which replaces any other. The order is
    linked by the metadata subscriber id, else by the address; a link made by address follows a
    replaced address. Purchase tags follow the link when the order is settled.
    """
    email = normal_email(email)
    if email and (typed or not order.email) and email != order.email:
        by_address = order.subscriber_id is not None and not (meta or {}).get("subscriber")
        order.email = email
        if by_address:
            order.subscriber_id = None
    if order.subscriber_id is None:
        subscriber = _find_subscriber(session, meta or {}, order.email)
        if subscriber is not None:
            order.subscriber_id = subscriber.id
            order.source = order.source or subscriber.source
            order.email = order.email or subscriber.email


def checkout_language(meta: dict[str, Any], locale: Any = None) -> str | None:
    """The language the buyer checked out in: the metadata's, else the Checkout locale's."""
    for value in (meta.get("language"), locale):
        code = value.split("-", 1)[0].lower() if isinstance(value, str) else ""
        if code in LANGUAGES:
            return code
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
    order = Order(
        language=checkout_language(meta),
        launch_id=launch.id,
        offer_id=offer.id if offer else None,
        subscriber_id=None,
        email="",
        source=None,
        plan_instalments=instalments,
        currency=(currency or (offer.currency if offer else launch.currency)).upper(),
        total_cents=_order_total(offer, instalments, bump),
        bump=bump,
        status=OrderStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    link_order(session, order, meta, email)
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
    """Count one successful payment, once, whichever event reports it.

    ``when`` is when the money moved as this event tells it; the earliest report wins, so the
    payment's time does not depend on the order the events arrive in.
    """
    known = session.scalar(select(Payment).where(Payment.stripe_id == stripe_id))
    if known is None and pi:
        known = session.scalar(
            select(Payment).where(
                (Payment.stripe_payment_intent_id == pi) | (Payment.stripe_id == pi)
            )
        )
    if known is not None and known.status == "paid":
        known.stripe_payment_intent_id = known.stripe_payment_intent_id or pi
        known.occurred_at = min(known.occurred_at, when)
        return None
    payment = Payment(
        order_id=order.id,
        stripe_id=stripe_id,
        stripe_payment_intent_id=pi,
        amount_cents=amount,
        currency=(currency or order.currency).upper(),
        status="paid",
        recovered=False,
        refunded_cents=0,
        occurred_at=when,
    )
    session.add(payment)
    session.flush()
    _count_payments(session, order)
    return payment


def _over_collected_cents(session: Session, order: Order) -> int:
    """Money taken beyond the plan and not given back yet."""
    return sum(p.amount_cents - p.refunded_cents for p in over_collected(session, order))


def _failed_invoice(payment: Payment) -> str:
    return payment.stripe_id.split(":failed:", 1)[0]


def _count_payments(session: Session, order: Order) -> None:
    """Number the payments and total them from the facts, in the order the money moved."""
    payments = session.scalars(select(Payment).where(Payment.order_id == order.id)).all()
    paid = sorted(
        (p for p in payments if p.status == "paid"), key=lambda p: (p.occurred_at, p.stripe_id)
    )
    number = {p.stripe_id: index for index, p in enumerate(paid, 1)}
    failed = [p for p in payments if p.status == "failed"]
    failed_invoices = {_failed_invoice(p) for p in failed}
    for payment in paid:
        payment.instalment_number = number[payment.stripe_id]
        payment.recovered = payment.stripe_id in failed_invoices
    for payment in failed:
        payment.instalment_number = number.get(_failed_invoice(payment), len(paid) + 1)
    order.paid_cents = sum(p.amount_cents for p in paid)
    order.instalments_paid = len(paid)
    order.instalments_failed = len(failed)
    order.paid_at = paid[0].occurred_at if paid else None
    fees = [p.fee_cents for p in paid]
    order.fee_cents = sum(fees) if paid and None not in fees else None  # unknown, never 0
    session.flush()


def _consecutive_failures(session: Session, order: Order) -> int:
    """Failed attempts at instalments that are still unpaid (whatever order events came in)."""
    payments = session.scalars(select(Payment).where(Payment.order_id == order.id)).all()
    paid = {p.stripe_id for p in payments if p.status == "paid"}
    return sum(1 for p in payments if p.status == "failed" and _failed_invoice(p) not in paid)


def over_collected(session: Session, order: Order) -> list[Payment]:
    """Instalments paid beyond the plan (a 4th invoice after a 3-instalment plan completed)."""
    if order.plan_instalments <= 1:
        return []
    return list(
        session.scalars(
            select(Payment)
            .where(
                Payment.order_id == order.id,
                Payment.status == "paid",
                Payment.instalment_number > order.plan_instalments,
            )
            .order_by(Payment.instalment_number)
        )
    )


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
    _count_payments(session, order)
    refunded = sum(
        session.scalars(select(Payment.refunded_cents).where(Payment.order_id == order.id))
    )
    order.refunded_cents = max(order.refunded_cents, refunded)
    extra = over_collected(session, order)  # giving back an extra instalment refunds nothing owed
    owed_paid = order.paid_cents - sum(p.amount_cents for p in extra)
    owed_refunded = order.refunded_cents - sum(p.refunded_cents for p in extra)
    if owed_refunded > 0 and (owed_refunded >= owed_paid or order.plan_instalments > 1):
        order.refunded_at = _refund_time(session, order) or order.refunded_at or now
    if order.plan_instalments > 1 and order.instalments_paid >= order.plan_instalments:
        order.defaulted_at = None  # every instalment came in after all
    order.status = _derive_status(order)
    order.access = order.status in ACCESS_STATUSES
    order.updated_at = now
    if order.instalments_paid > 0:
        launch = session.get(Launch, order.launch_id)
        _add_tags(session, order.subscriber_id, ["buyer", f"buyer:{launch.slug if launch else ''}"])
    if order.status == OrderStatus.REFUNDED:
        _add_tags(session, order.subscriber_id, ["refunded"])
    session.flush()
    sync_access(session, order, now)


def _refund_time(session: Session, order: Order) -> datetime | None:
    """When the order became refunded: its latest succeeded refund."""
    return session.scalar(
        select(func.max(Refund.refunded_at)).where(
            Refund.order_id == order.id, Refund.status == "succeeded"
        )
    )


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
    """Orders, newest first; ``failing``: plans with an unpaid failed instalment, defaulted, or
    over-collected (an instalment paid beyond the plan and not refunded)."""
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
            or _over_collected_cents(session, o) > 0
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
        "over_collected_cents": _over_collected_cents(session, order),
        "over_collected": [
            {
                "payment": p.stripe_id,
                "instalment_number": p.instalment_number,
                "amount_cents": p.amount_cents,
                "refunded_cents": p.refunded_cents,
                "paid_at": p.occurred_at,
            }
            for p in over_collected(session, order)
        ],
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
