"""Refunds: within the guarantee, idempotent across crashes, and refunds Stripe reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from launchkit.checkout.orders import _settle, get_order, guarantee_closes, over_collected
from launchkit.checkout.payloads import _ts
from launchkit.checkout.stripe_api import (
    StripeClient,
    _cancel_subscription,
    _create_refund,
    _stripe_call,
    charge_refunds,
)
from launchkit.errors import PaymentError
from launchkit.models import Order, OrderStatus, Payment, Refund

# --- refunds ----------------------------------------------------------------------------------


def refund_order(
    session: Session,
    client: StripeClient,
    order_id: int | str,
    *,
    now: datetime,
    amount_cents: int | None = None,
    reason: str | None = None,
    force: bool = False,
    tz: Any = UTC,
    payment: str | None = None,
) -> Refund:
    """Refund an order through Stripe within its guarantee (or with ``force``).

    Each request gets an idempotency key stored before Stripe is called; a request left
    ``requested`` (Stripe did not answer) is retried with the same key on the next call, after
    looking for a Stripe refund that already carries it. A plan refund also cancels the plan.
    ``payment`` (a Stripe invoice or payment intent id of this order) refunds that payment only;
    an instalment paid beyond the plan can always be returned, guarantee or not.
    """
    order = get_order(session, order_id)
    pending = _pending_refunds(session, order)
    if not pending and payment is not None:
        pending = [_payment_refund(session, order, payment, now, amount_cents, reason, force, tz)]
    elif not pending:
        pending = _new_refunds(session, client, order, now, amount_cents, reason, force, tz)
    for refund in pending:
        _execute_refund(session, client, order, refund, now)
    if all(r.status == "succeeded" for r in pending):
        _settle(session, order, now)
        if order.status == OrderStatus.REFUNDED and order.stripe_subscription_id:
            _cancel_subscription(client, order, now)
    session.flush()
    return pending[0]


def _pending_refunds(session: Session, order: Order) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.order_id == order.id, Refund.status == "requested")
            .order_by(Refund.id)
        )
    )


def _new_refunds(
    session: Session,
    client: StripeClient,
    order: Order,
    now: datetime,
    amount_cents: int | None,
    reason: str | None,
    force: bool,
    tz: Any,
) -> list[Refund]:
    closes = _check_refundable(session, order, now, force, tz)
    _adopt_stripe_refunds(session, client, order, now)
    refundable = order.paid_cents - order.refunded_cents
    amount = refundable if amount_cents is None else amount_cents
    if refundable <= 0:
        raise PaymentError(f"Order {order.id} has nothing left to refund.")
    if amount <= 0 or amount > refundable:
        left = _money_plain(refundable, order.currency)
        raise PaymentError(f"Order {order.id}: a refund must be between 0.01 and {left}.")
    group = uuid.uuid4().hex[:16]
    refunds = []
    for index, (payment, part) in enumerate(_allocate(session, order, amount)):
        refund = Refund(
            order_id=order.id,
            payment_id=payment.id,
            idempotency_key=f"launchkit-refund-{order.id}-{group}-{index}",
            amount_cents=part,
            currency=order.currency,
            reason=reason,
            forced=force and now > closes,
            status="requested",
            requested_at=now,
        )
        session.add(refund)
        refunds.append(refund)
    session.flush()
    return refunds


def _payment_refund(
    session: Session,
    order: Order,
    stripe_id: str,
    now: datetime,
    amount_cents: int | None,
    reason: str | None,
    force: bool,
    tz: Any,
) -> Refund:
    """A refund of one payment of the order (``launchkit refund --payment``)."""
    target = session.scalar(
        select(Payment).where(
            Payment.order_id == order.id,
            Payment.status == "paid",
            (Payment.stripe_id == stripe_id) | (Payment.stripe_payment_intent_id == stripe_id),
        )
    )
    if target is None:
        raise PaymentError(f'Order {order.id} has no paid payment "{stripe_id}".')
    extra = target in over_collected(session, order)
    closes = _check_refundable(session, order, now, force or extra, tz)
    room = target.amount_cents - target.refunded_cents
    amount = room if amount_cents is None else amount_cents
    if amount <= 0 or amount > room:
        left = _money_plain(room, order.currency)
        raise PaymentError(f"Payment {stripe_id}: a refund must be between 0.01 and {left}.")
    refund = Refund(
        order_id=order.id, payment_id=target.id,
        idempotency_key=f"launchkit-refund-{order.id}-{uuid.uuid4().hex[:16]}-0",
        amount_cents=amount, currency=order.currency,
        reason=reason or ("over-collected instalment" if extra else None),
        forced=force and not extra and now > closes, status="requested", requested_at=now,
    )  # fmt: skip
    session.add(refund)
    session.flush()
    return refund


def _money_plain(cents: int, currency: str) -> str:
    return f"{Decimal(cents) / 100:.2f} {currency}"


def _check_refundable(
    session: Session, order: Order, now: datetime, force: bool, tz: Any
) -> datetime:
    if order.disputed_at:
        raise PaymentError(
            f"Order {order.id} is disputed; it cannot be refunded (the dispute decides)."
        )
    closes = guarantee_closes(session, order)
    if closes is None or order.paid_cents <= 0:
        raise PaymentError(f"Order {order.id} has no payment to refund.")
    if now > closes and not force:
        day = closes.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        raise PaymentError(
            f"Order {order.id}: the guarantee window closed on {day}; use --force to refund anyway."
        )
    return closes


def _allocate(session: Session, order: Order, amount: int) -> list[tuple[Payment, int]]:
    """Spread a refund over the paid payments, newest first."""
    payments = session.scalars(
        select(Payment)
        .where(Payment.order_id == order.id, Payment.status == "paid")
        .order_by(Payment.id.desc())
    ).all()
    parts = []
    for payment in payments:
        room = payment.amount_cents - payment.refunded_cents
        if room > 0 and amount > 0:
            parts.append((payment, min(room, amount)))
            amount -= min(room, amount)
    return parts


def _refund_target(payment: Payment) -> dict[str, str]:
    if payment.stripe_payment_intent_id:
        return {"payment_intent": payment.stripe_payment_intent_id}
    if payment.stripe_id.startswith("pi_"):
        return {"payment_intent": payment.stripe_id}
    raise PaymentError(f"Payment {payment.stripe_id} has no Stripe payment intent to refund.")


def _execute_refund(
    session: Session, client: StripeClient, order: Order, refund: Refund, now: datetime
) -> None:
    payment = session.get(Payment, refund.payment_id)
    assert payment is not None
    target = _refund_target(payment)
    params = {
        **target,
        "amount": refund.amount_cents,
        "metadata": {"launchkit_refund": refund.idempotency_key, "launchkit_order": str(order.id)},
    }
    try:
        created = _create_refund(client, target, params, refund.idempotency_key, order.id)
    except PaymentError:
        refund.status = "failed"
        raise
    if created is None:
        return  # stays "requested": the next call retries with the same key
    refund.stripe_refund_id, refund.status, refund.refunded_at = created["id"], "succeeded", now
    payment.refunded_cents += refund.amount_cents
    session.flush()


def _adopt_stripe_refunds(
    session: Session, client: StripeClient, order: Order, now: datetime
) -> None:
    """Record refunds Stripe made for this order that we lost (a crash after the call)."""
    for payment in session.scalars(select(Payment).where(Payment.order_id == order.id)).all():
        if payment.status != "paid":
            continue
        target = _refund_target(payment)
        listing = _stripe_call(
            "list refunds", client.v1.refunds.list, params={**target, "limit": 100}
        )
        total = 0
        for item in (refund.to_dict() for refund in listing.data):
            if item.get("status") in (None, "succeeded", "pending"):
                total += int(item.get("amount") or 0)
            if (item.get("metadata") or {}).get("launchkit_order") == str(order.id):
                _adopt_refund(session, order, payment, item, now)
        payment.refunded_cents = max(payment.refunded_cents, total)
    _settle(session, order, now)


def record_charge_refunds(
    session: Session,
    order: Order,
    payment: Payment,
    charge: dict[str, Any],
    when: datetime,
    client: Any = None,
) -> None:
    """Record what a ``charge.refunded`` event says was refunded, with its time and amount.

    From the charge's ``refunds`` list when present (API versions before 2022-11-15); else
    from its cumulative ``amount_refunded`` at the event's time; else listed from Stripe.
    """
    items = (charge.get("refunds") or {}).get("data")
    total = charge.get("amount_refunded")
    if items is None and total is None and client is not None:
        items = charge_refunds(client, charge["id"])
    if total is None and items is not None:
        counted = [i for i in items if i.get("status") in (None, "succeeded", "pending")]
        total = sum(int(i.get("amount") or 0) for i in counted)
    for item in items or []:
        _adopt_refund(session, order, payment, item, _ts(item.get("created"), when))
    if items is None and total is not None:  # only the cumulative amount is known
        _record_refunded_level(session, order, payment, int(total), when)
    if total is not None:
        payment.refunded_cents = max(payment.refunded_cents, int(total))
    session.flush()


def _record_refunded_level(
    session: Session, order: Order, payment: Payment, total: int, when: datetime
) -> None:
    """A refund known only as "the charge is refunded up to ``total`` at ``when``".

    Each level seen is one row keyed by (payment, level); amounts are the steps between levels
    above what refunds with a Stripe id already account for, so redeliveries and any arrival
    order give the same rows.
    """
    prefix = f"stripe-refunded:{payment.stripe_id}:"
    rows = {
        int(r.idempotency_key.removeprefix(prefix)): r
        for r in session.scalars(select(Refund).where(Refund.idempotency_key.startswith(prefix)))
    }
    if total not in rows:
        rows[total] = Refund(
            order_id=order.id, payment_id=payment.id, idempotency_key=f"{prefix}{total}",
            amount_cents=0, currency=order.currency, status="succeeded",
            requested_at=when, refunded_at=when,
        )  # fmt: skip
        session.add(rows[total])
    row = rows[total]
    row.refunded_at = min(row.refunded_at or when, when)
    row.requested_at = row.refunded_at
    known = session.scalar(
        select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
            Refund.payment_id == payment.id,
            Refund.status == "succeeded",
            Refund.stripe_refund_id.is_not(None),
        )
    )
    floor = int(known or 0)
    for level in sorted(rows):
        rows[level].amount_cents = max(0, level - floor)
        floor = max(floor, level)
    for refund in rows.values():
        if refund.amount_cents > 0:
            continue
        if refund.id is None:  # already accounted for by refunds with a Stripe id
            session.expunge(refund)
        else:
            session.delete(refund)
    session.flush()


def _adopt_refund(
    session: Session, order: Order, payment: Payment, item: dict[str, Any], now: datetime
) -> None:
    if item.get("status") not in (None, "succeeded", "pending"):
        return
    if session.scalar(select(Refund.id).where(Refund.stripe_refund_id == item["id"])):
        return
    key = (item.get("metadata") or {}).get("launchkit_refund") or f"stripe:{item['id']}"
    known = session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if known is not None:
        known.stripe_refund_id, known.status = item["id"], "succeeded"
        known.refunded_at = known.refunded_at or now
        session.flush()
        return
    amount = int(item.get("amount") or 0)
    session.add(
        Refund(
            order_id=order.id, payment_id=payment.id, idempotency_key=key,
            stripe_refund_id=item["id"], amount_cents=amount,
            currency=(item.get("currency") or order.currency).upper(),
            reason=item.get("reason"), status="succeeded", requested_at=now, refunded_at=now,
        )
    )  # fmt: skip
    session.flush()
