"""Pre-sales: an offer sold before the product exists, with a delivery date. If it is not
delivered, `cancel_presale` refunds every buyer in full through the refund machinery
(idempotency keys, a refund lost in a crash adopted, not repeated), past any guarantee."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from launchkit.checkout.refunds import refund_order
from launchkit.checkout.stripe_api import StripeClient
from launchkit.errors import InputError, PaymentError
from launchkit.launches import get_launch
from launchkit.models import Offer, Order, Refund

REASON = "pre-sale cancelled"


@dataclass
class PresaleCancellation:
    """What `cancel_presale` did: orders refunded now, already refunded, and failures."""

    refunded: list[tuple[int, int]] = field(default_factory=list)  # (order, cents)
    already: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def presale_orders(session: Session, launch_slug: str) -> list[int]:
    """Ids of the orders of the launch's pre-sale offers that took money, oldest first."""
    launch = get_launch(session, launch_slug)
    offers = select(Offer.id).where(Offer.launch_id == launch.id, Offer.presale_until.is_not(None))
    if not session.scalars(offers).first():
        raise InputError(
            f'Launch "{launch_slug}" has no pre-sale offer (offer add --presale-until).'
        )
    return list(
        session.scalars(
            select(Order.id)
            .where(Order.offer_id.in_(offers), Order.paid_cents > 0)
            .order_by(Order.id)
        )
    )


def cancel_presale(
    sessions: sessionmaker[Session], client: StripeClient, launch_slug: str, *, now: datetime
) -> PresaleCancellation:
    """Refund every pre-sale buyer of the launch in full, one order per transaction; running it
    again refunds only what is left (a refund Stripe did not confirm is retried, same key)."""
    with sessions.begin() as session:
        order_ids = presale_orders(session, launch_slug)
    result = PresaleCancellation()
    for order_id in order_ids:
        try:
            with sessions.begin() as session:
                _refund_one(session, client, order_id, now, result)
        except PaymentError as e:
            result.failed.append((order_id, str(e)))
    return result


def _refund_one(
    session: Session, client: StripeClient, order_id: int, now: datetime,
    result: PresaleCancellation,
) -> None:  # fmt: skip
    order = session.get(Order, order_id)
    pending = session.scalar(
        select(Refund.id).where(Refund.order_id == order_id, Refund.status == "requested")
    )
    if order is None or (order.paid_cents - order.refunded_cents <= 0 and pending is None):
        result.already.append(order_id)
        return
    before = order.refunded_cents
    refund = refund_order(session, client, order_id, now=now, reason=REASON, force=True)
    if refund.status != "succeeded":  # kept with its idempotency key; the next run retries it
        result.failed.append((order_id, "Stripe did not confirm the refund; run it again."))
        return
    session.refresh(order)
    result.refunded.append((order_id, order.refunded_cents - before))
