"""Webhook events: applied once each, in any order (an event about an order not known yet is
parked and replayed when it appears); both ``invoice.paid`` and ``invoice.payment_succeeded``
count an instalment, deduplicated by invoice id."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit.checkout.notifications import send_notifications
from launchkit.checkout.orders import (
    _consecutive_failures,
    _count_payments,
    _fill,
    _find_order,
    _order_from_metadata,
    _record_payment,
    _settle,
    cancel_due_subscriptions,
    checkout_language,
    link_order,
)
from launchkit.checkout.payloads import (
    _id,
    _ts,
    invoice_metadata,
    invoice_payment_intent,
    invoice_subscription,
    validate_event,
)
from launchkit.checkout.refunds import record_charge_refunds
from launchkit.checkout.stripe_api import StripeClient, charge_fee, make_client
from launchkit.config import Settings
from launchkit.errors import PaymentError
from launchkit.memberships.lifecycle import membership_handlers
from launchkit.models import Order, Payment, StripeEvent
from launchkit.selling.orders import record_selling_facts

MAX_FAILED_INSTALMENTS = 3
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What a handler knows besides the object: processing time, the event's own time, and a
    Stripe client to fetch what the payload leaves out (None: nothing is fetched)."""

    now: datetime
    when: datetime
    client: Any = None


class _Park(Exception):  # noqa: N818 (control flow, never leaves this module)
    """The event refers to a payment or subscription not known yet: keep it for later."""

    def __init__(self, ref: str | None):
        super().__init__(ref)
        self.ref = ref


def _seen_at(order: Order, ctx: Context) -> None:
    """An order's creation time is its earliest event, whichever arrived first."""
    order.created_at = min(order.created_at, ctx.when)


# --- event handlers ---------------------------------------------------------------------------


def _on_session_completed(session: Session, obj: dict[str, Any], ctx: Context) -> Order | None:
    pi, sub = _id(obj.get("payment_intent")), _id(obj.get("subscription"))
    email = (obj.get("customer_details") or {}).get("email") or obj.get("customer_email")
    meta = obj.get("metadata") or {}
    order = _find_order(session, checkout=obj["id"], pi=pi, sub=sub)
    if order is None:
        order = _order_from_metadata(
            session, meta, email=email, currency=obj.get("currency"), now=ctx.when
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
    link_order(session, order, meta, email, typed=True)  # the address typed at checkout wins
    order.language = order.language or checkout_language(meta, obj.get("locale"))
    if obj.get("mode") != "subscription" and obj.get("payment_status") == "paid":
        _record_payment(
            session, order, stripe_id=pi or obj["id"], pi=pi,
            amount=int(obj.get("amount_total") or 0), currency=obj.get("currency"),
            when=ctx.when,  # the session completes when the money moved, not when it was opened
        )  # fmt: skip
    _seen_at(order, ctx)
    return order


def _on_payment_intent_succeeded(
    session: Session, obj: dict[str, Any], ctx: Context
) -> Order | None:
    meta = obj.get("metadata") or {}
    order = _find_order(session, pi=obj["id"])
    email = obj.get("receipt_email")
    if order is None and meta.get("launch") and meta.get("instalments", "1") == "1":
        order = _order_from_metadata(
            session, meta, email=email, currency=obj.get("currency"), now=ctx.when
        )
    if order is None or order.plan_instalments > 1:
        return None  # not ours, or an instalment (counted from its invoice)
    _fill(order, stripe_payment_intent_id=obj["id"], stripe_customer_id=_id(obj.get("customer")))
    link_order(session, order, meta, email)
    amount = int(obj.get("amount_received") or obj.get("amount") or 0)
    payment = _record_payment(
        session, order, stripe_id=obj["id"], pi=obj["id"], amount=amount,
        currency=obj.get("currency"), when=ctx.when,
    )  # fmt: skip
    charge = obj.get("latest_charge")
    _keep_receipt_link(
        session, obj["id"], charge.get("receipt_url") if isinstance(charge, dict) else None
    )
    _capture_fee(session, order, obj["id"], _id(obj.get("latest_charge")), ctx, payment)
    _seen_at(order, ctx)
    return order


def _order_for_invoice(session: Session, inv: dict[str, Any], ctx: Context) -> Order:
    sub = invoice_subscription(inv)
    meta = invoice_metadata(inv)
    email = inv.get("customer_email")
    order = _find_order(session, pi=invoice_payment_intent(inv), sub=sub)
    if order is None:
        order = _order_from_metadata(
            session, meta, email=email, currency=inv.get("currency"), now=ctx.when
        )
    if order is None:
        raise _Park(sub)
    _fill(order, stripe_subscription_id=sub, stripe_customer_id=_id(inv.get("customer")))
    link_order(session, order, meta, email)
    _seen_at(order, ctx)
    return order


def _on_invoice_paid(session: Session, inv: dict[str, Any], ctx: Context) -> Order | None:
    if not invoice_subscription(inv):
        return None
    order = _order_for_invoice(session, inv, ctx)
    amount = int(inv.get("amount_paid") or 0)
    if amount > 0:
        paid_at = (inv.get("status_transitions") or {}).get("paid_at")
        pi = invoice_payment_intent(inv)
        payment = _record_payment(
            session, order, stripe_id=inv["id"], pi=pi, amount=amount,
            currency=inv.get("currency"), when=_ts(paid_at, ctx.when),
        )  # fmt: skip
        _keep_receipt_link(session, inv["id"], inv.get("hosted_invoice_url"))
        _capture_fee(session, order, inv["id"], _id(inv.get("charge")), ctx, payment)
    return order


def _keep_receipt_link(session: Session, stripe_id: str, url: Any) -> None:
    """Keep Stripe's own page for a paid payment (the charge's receipt or the paid invoice), for
    the buyer's receipt; only an https address, and the first one known stays."""
    if not (isinstance(url, str) and url.startswith("https://") and len(url) <= 2048):
        return
    payment = session.scalar(select(Payment).where(Payment.stripe_id == stripe_id))
    if payment is not None and payment.receipt_url is None:
        payment.receipt_url = url


def _on_invoice_failed(session: Session, inv: dict[str, Any], ctx: Context) -> Order | None:
    if not invoice_subscription(inv):
        return None
    order = _order_for_invoice(session, inv, ctx)
    stripe_id = f"{inv['id']}:failed:{inv.get('attempt_count') or 1}"
    if session.scalar(select(Payment.id).where(Payment.stripe_id == stripe_id)) is None:
        session.add(
            Payment(
                order_id=order.id,
                stripe_id=stripe_id,
                amount_cents=int(inv.get("amount_due") or 0),
                currency=(inv.get("currency") or order.currency).upper(),
                status="failed",
                refunded_cents=0,
                update_url=inv.get("hosted_invoice_url"),
                occurred_at=ctx.when,
            )
        )
        session.flush()
        _count_payments(session, order)
    final = inv.get("status") == "uncollectible"
    if final or _consecutive_failures(session, order) >= MAX_FAILED_INSTALMENTS:
        order.defaulted_at = min(order.defaulted_at or ctx.when, ctx.when)
    return order


def _on_subscription_deleted(session: Session, obj: dict[str, Any], ctx: Context) -> Order:
    order = _find_order(session, sub=obj["id"])
    if order is None:
        raise _Park(obj["id"])
    order.subscription_cancelled_at = order.subscription_cancelled_at or ctx.when
    unfinished = order.instalments_paid < order.plan_instalments
    if unfinished and not (order.refunded_at or order.disputed_at):
        order.defaulted_at = order.defaulted_at or ctx.when  # Stripe gave up collecting
    return order


def _on_charge_refunded(session: Session, charge: dict[str, Any], ctx: Context) -> Order | None:
    pi = _id(charge.get("payment_intent"))
    order = _find_order(session, pi=pi)
    meta = charge.get("metadata") or {}
    if order is None and meta.get("launch") and meta.get("instalments", "1") == "1":
        order = _order_from_metadata(
            session, meta, email=(charge.get("billing_details") or {}).get("email"),
            currency=charge.get("currency"), now=ctx.when,
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
            currency=charge.get("currency"), when=_ts(charge.get("created"), ctx.when),
        )  # fmt: skip
    assert payment is not None
    record_charge_refunds(session, order, payment, charge, ctx.when, ctx.client)
    _seen_at(order, ctx)
    return order


def _on_dispute_created(session: Session, dispute: dict[str, Any], ctx: Context) -> Order:
    pi = _id(dispute.get("payment_intent"))
    order = _find_order(session, pi=pi)
    if order is None:
        raise _Park(pi or _id(dispute.get("charge")))
    order.disputed_at = min(order.disputed_at or ctx.when, ctx.when)
    return order


def _capture_fee(
    session: Session,
    order: Order,
    stripe_id: str,
    charge: str | None,
    ctx: Context,
    payment: Payment | None,
) -> None:
    """Store the Stripe fee of a payment when a client can read its balance transaction."""
    payment = payment or session.scalar(select(Payment).where(Payment.stripe_id == stripe_id))
    if payment is None or payment.fee_cents is not None or not charge or ctx.client is None:
        return
    try:
        fee = charge_fee(ctx.client, charge)
    except PaymentError:
        log.warning("fee of charge %s not read from Stripe; left unknown", charge)
        return
    if fee is not None:
        payment.fee_cents = fee
        _count_payments(session, order)


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
HANDLERS.update(membership_handlers(HANDLERS, _Park))  # memberships add their facts


def handle_event(
    session: Session,
    settings: Settings,
    event: dict[str, Any],
    *,
    now: datetime,
    messenger: Any = None,
    client: StripeClient | None = None,
    fetch: bool = True,
    fetch_client: StripeClient | None = None,
) -> str:
    """Apply a verified event once: ``applied``, ``ignored``, ``parked`` or ``duplicate``.

    The event id is stored in the caller's transaction with its effects. ``InvalidEvent`` (and
    nothing written) for a payload with an absurd value. With ``client``, plans that must stop
    are cancelled in Stripe; with ``messenger``, due emails go out. With ``fetch``, what the
    payload leaves out (fees, refunds) is read from Stripe through ``fetch_client``, else
    ``client``, else a client made from the API key (none: left unknown).
    """
    validate_event(event)
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
    reader = _reader(settings, fetch_client or client) if fetch else None
    outcome = _apply(session, record, event, now, reader)
    if client is not None:
        cancel_due_subscriptions(session, client, now=now)
    if messenger is not None:
        send_notifications(session, settings, messenger, now=now)
    return outcome


def _reader(settings: Settings, client: StripeClient | None) -> StripeClient | None:
    if client is not None:
        return client
    return make_client(settings) if settings.stripe_api_key else None


def _apply(
    session: Session, record: StripeEvent, event: dict[str, Any], now: datetime, reader: Any
) -> str:
    handler = HANDLERS.get(str(event.get("type")))
    obj = (event.get("data") or {}).get("object") or {}
    if handler is None or not obj.get("id"):
        record.status = "ignored"
        return "ignored"
    ctx = Context(now=now, when=_ts(event.get("created"), now), client=reader)
    try:
        order = handler(session, obj, ctx)
    except _Park as park:
        record.status, record.ref, record.payload = "parked", park.ref, event
        session.flush()
        return "parked"
    if order is None:
        record.status = "ignored"
        return "ignored"
    record_selling_facts(session, order, str(event.get("type")), obj)
    _settle(session, order, now)
    _replay_parked(session, order, now, reader)
    return "applied"


def _replay_parked(session: Session, order: Order, now: datetime, reader: Any) -> None:
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
        _apply(session, record, event, now, reader)


def parked_events(session: Session) -> list[StripeEvent]:
    """Events still waiting for the order they refer to."""
    return list(session.scalars(select(StripeEvent).where(StripeEvent.status == "parked")))
