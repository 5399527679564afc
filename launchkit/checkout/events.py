"""Webhook events: applied once each, in any order (an event about an order not known yet is
parked and replayed when it appears); both ``invoice.paid`` and ``invoice.payment_succeeded``
count an instalment, deduplicated by invoice id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit.checkout.notifications import send_notifications
from launchkit.checkout.orders import (
    _consecutive_failures,
    _fill,
    _find_order,
    _order_from_metadata,
    _record_payment,
    _settle,
    cancel_due_subscriptions,
)
from launchkit.checkout.refunds import _adopt_refund
from launchkit.checkout.stripe_api import StripeClient
from launchkit.config import Settings
from launchkit.models import Order, Payment, StripeEvent

MAX_FAILED_INSTALMENTS = 3


# --- reading event payloads (current API shape and the 2017 shape localstripe sends) ----------


class _Park(Exception):  # noqa: N818 (control flow, never leaves this module)
    """The event refers to a payment or subscription not known yet: keep it for later."""

    def __init__(self, ref: str | None):
        super().__init__(ref)
        self.ref = ref


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _ts(value: Any, default: datetime) -> datetime:
    return datetime.fromtimestamp(int(value), UTC) if value else default


def _invoice_subscription(inv: dict[str, Any]) -> str | None:
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    return _id(inv.get("subscription")) or _id(details.get("subscription"))


def _invoice_metadata(inv: dict[str, Any]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in (inv.get("lines") or {}).get("data") or []:
        meta.update(line.get("metadata") or {})
    meta.update(inv.get("subscription_details", {}).get("metadata") or {})
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    meta.update(details.get("metadata") or {})
    meta.update(inv.get("metadata") or {})
    return meta


def _invoice_payment_intent(inv: dict[str, Any]) -> str | None:
    if inv.get("payment_intent"):
        return _id(inv["payment_intent"])
    for item in (inv.get("payments") or {}).get("data") or []:
        found = _id((item.get("payment") or {}).get("payment_intent"))
        if found:
            return found
    charge = inv.get("charge")
    return _id(charge.get("payment_intent")) if isinstance(charge, dict) else None


# --- event handlers ---------------------------------------------------------------------------


def _on_session_completed(session: Session, obj: dict[str, Any], now: datetime) -> Order | None:
    pi, sub = _id(obj.get("payment_intent")), _id(obj.get("subscription"))
    email = (obj.get("customer_details") or {}).get("email") or obj.get("customer_email")
    order = _find_order(session, checkout=obj["id"], pi=pi, sub=sub)
    if order is None:
        meta = obj.get("metadata") or {}
        order = _order_from_metadata(
            session, meta, email=email, currency=obj.get("currency"), now=now
        )
    if order is None:
        return None
    _fill(
        order,
        stripe_checkout_session_id=obj["id"],
        stripe_payment_intent_id=pi,
        stripe_subscription_id=sub,
        stripe_customer_id=_id(obj.get("customer")),
    )
    if email:  # the address the buyer typed at checkout is the one to keep
        order.email = email.strip().lower()
    if obj.get("mode") != "subscription" and obj.get("payment_status") == "paid":
        when = _ts(obj.get("created"), now)
        amount = int(obj.get("amount_total") or 0)
        _record_payment(
            session, order, stripe_id=pi or obj["id"], pi=pi, amount=amount,
            currency=obj.get("currency"), when=when,
        )  # fmt: skip
    return order


def _on_payment_intent_succeeded(
    session: Session, obj: dict[str, Any], now: datetime
) -> Order | None:
    meta = obj.get("metadata") or {}
    order = _find_order(session, pi=obj["id"])
    if order is None and meta.get("launch") and meta.get("instalments", "1") == "1":
        email = obj.get("receipt_email")
        order = _order_from_metadata(
            session, meta, email=email, currency=obj.get("currency"), now=now
        )
    if order is None or order.plan_instalments > 1:
        return None  # not ours, or an instalment (counted from its invoice)
    _fill(order, stripe_payment_intent_id=obj["id"], stripe_customer_id=_id(obj.get("customer")))
    amount = int(obj.get("amount_received") or obj.get("amount") or 0)
    _record_payment(
        session, order, stripe_id=obj["id"], pi=obj["id"], amount=amount,
        currency=obj.get("currency"), when=_ts(obj.get("created"), now),
    )  # fmt: skip
    return order


def _order_for_invoice(session: Session, inv: dict[str, Any], now: datetime) -> Order:
    sub = _invoice_subscription(inv)
    order = _find_order(session, pi=_invoice_payment_intent(inv), sub=sub)
    if order is None:
        meta = _invoice_metadata(inv)
        email = inv.get("customer_email")
        order = _order_from_metadata(
            session, meta, email=email, currency=inv.get("currency"), now=now
        )
    if order is None:
        raise _Park(sub)
    _fill(order, stripe_subscription_id=sub, stripe_customer_id=_id(inv.get("customer")))
    return order


def _on_invoice_paid(session: Session, inv: dict[str, Any], now: datetime) -> Order | None:
    if not _invoice_subscription(inv):
        return None
    order = _order_for_invoice(session, inv, now)
    amount = int(inv.get("amount_paid") or 0)
    if amount > 0:
        paid_at = (inv.get("status_transitions") or {}).get("paid_at") or inv.get("created")
        _record_payment(
            session, order, stripe_id=inv["id"], pi=_invoice_payment_intent(inv), amount=amount,
            currency=inv.get("currency"), when=_ts(paid_at, now),
        )  # fmt: skip
    return order


def _on_invoice_failed(session: Session, inv: dict[str, Any], now: datetime) -> Order | None:
    if not _invoice_subscription(inv):
        return None
    order = _order_for_invoice(session, inv, now)
    stripe_id = f"{inv['id']}:failed:{inv.get('attempt_count') or 1}"
    if session.scalar(select(Payment.id).where(Payment.stripe_id == stripe_id)) is None:
        session.add(
            Payment(
                order_id=order.id,
                stripe_id=stripe_id,
                instalment_number=order.instalments_paid + 1,
                amount_cents=int(inv.get("amount_due") or 0),
                currency=(inv.get("currency") or order.currency).upper(),
                status="failed",
                refunded_cents=0,
                update_url=inv.get("hosted_invoice_url"),
                occurred_at=_ts(inv.get("created"), now),
            )
        )
        order.instalments_failed += 1
        session.flush()
    final = inv.get("status") == "uncollectible"
    if final or _consecutive_failures(session, order) >= MAX_FAILED_INSTALMENTS:
        order.defaulted_at = order.defaulted_at or now
    return order


def _on_subscription_deleted(session: Session, obj: dict[str, Any], now: datetime) -> Order:
    order = _find_order(session, sub=obj["id"])
    if order is None:
        raise _Park(obj["id"])
    order.subscription_cancelled_at = order.subscription_cancelled_at or now
    unfinished = order.instalments_paid < order.plan_instalments
    if unfinished and not (order.refunded_at or order.disputed_at):
        order.defaulted_at = order.defaulted_at or now  # Stripe gave up collecting
    return order


def _on_charge_refunded(session: Session, charge: dict[str, Any], now: datetime) -> Order | None:
    pi = _id(charge.get("payment_intent"))
    order = _find_order(session, pi=pi)
    meta = charge.get("metadata") or {}
    if order is None and meta.get("launch") and meta.get("instalments", "1") == "1":
        order = _order_from_metadata(
            session, meta, email=(charge.get("billing_details") or {}).get("email"),
            currency=charge.get("currency"), now=now,
        )  # fmt: skip
        if order is not None:
            order.stripe_payment_intent_id = pi
    if order is None:
        raise _Park(pi)
    payment = session.scalar(
        select(Payment).where(
            (Payment.stripe_payment_intent_id == pi) | (Payment.stripe_id == (pi or ""))
        )
    )
    if payment is None:  # the refund is proof of the payment it refunds
        payment = _record_payment(
            session, order, stripe_id=pi or charge["id"], pi=pi, amount=int(charge["amount"]),
            currency=charge.get("currency"), when=_ts(charge.get("created"), now),
        )  # fmt: skip
    assert payment is not None
    payment.refunded_cents = max(payment.refunded_cents, int(charge.get("amount_refunded") or 0))
    for item in (charge.get("refunds") or {}).get("data") or []:
        _adopt_refund(session, order, payment, item, now)
    return order


def _on_dispute_created(session: Session, dispute: dict[str, Any], now: datetime) -> Order:
    pi = _id(dispute.get("payment_intent"))
    order = _find_order(session, pi=pi)
    if order is None:
        raise _Park(pi or _id(dispute.get("charge")))
    order.disputed_at = order.disputed_at or now
    return order


HANDLERS = {
    "checkout.session.completed": _on_session_completed,
    "checkout.session.async_payment_succeeded": _on_session_completed,
    "payment_intent.succeeded": _on_payment_intent_succeeded,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_succeeded": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_failed,
    "customer.subscription.deleted": _on_subscription_deleted,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_dispute_created,
}


def handle_event(
    session: Session,
    settings: Settings,
    event: dict[str, Any],
    *,
    now: datetime,
    messenger: Any = None,
    client: StripeClient | None = None,
) -> str:
    """Apply a verified event once: ``applied``, ``ignored``, ``parked`` or ``duplicate``.

    The event id is stored in the caller's transaction with its effects. With ``client``,
    plans that must stop are cancelled in Stripe; with ``messenger``, due emails go out.
    """
    if session.get(StripeEvent, event["id"]) is not None:
        return "duplicate"
    record = StripeEvent(
        id=event["id"],
        type=str(event.get("type"))[:100],
        created_at=_ts(event.get("created"), now),
        processed_at=now,
        status="applied",
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:
        return "duplicate"  # a concurrent delivery of the same event won the insert
    outcome = _apply(session, record, event, now)
    if client is not None:
        cancel_due_subscriptions(session, client, now=now)
    if messenger is not None:
        send_notifications(session, settings, messenger, now=now)
    return outcome


def _apply(session: Session, record: StripeEvent, event: dict[str, Any], now: datetime) -> str:
    handler = HANDLERS.get(str(event.get("type")))
    obj = (event.get("data") or {}).get("object") or {}
    if handler is None or not obj.get("id"):
        record.status = "ignored"
        return "ignored"
    try:
        order = handler(session, obj, now)
    except _Park as park:
        record.status, record.ref, record.payload = "parked", park.ref, event
        session.flush()
        return "parked"
    if order is None:
        record.status = "ignored"
        return "ignored"
    _settle(session, order, now)
    _replay_parked(session, order, now)
    return "applied"


def _replay_parked(session: Session, order: Order, now: datetime) -> None:
    refs = {order.stripe_payment_intent_id, order.stripe_subscription_id}
    refs |= set(
        session.scalars(
            select(Payment.stripe_payment_intent_id).where(Payment.order_id == order.id)
        )
    )
    refs.discard(None)
    if not refs:
        return
    parked = session.scalars(
        select(StripeEvent)
        .where(StripeEvent.status == "parked", StripeEvent.ref.in_(refs))
        .order_by(StripeEvent.created_at, StripeEvent.id)
    ).all()
    for record in parked:
        event = dict(record.payload or {})
        record.status, record.payload = "applied", None
        _apply(session, record, event, now)


def parked_events(session: Session) -> list[StripeEvent]:
    """Events still waiting for the order they refer to."""
    return list(session.scalars(select(StripeEvent).where(StripeEvent.status == "parked")))
