"""The member's side: a signed, expiring magic link to ``/account``, what the address bought,
cancelling a membership at the end of its paid period, and the guarantee refund."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.checkout.orders import _settle, get_order, normal_email
from launchkit.checkout.refunds import refund_order
from launchkit.checkout.stripe_api import StripeClient, cancel_at_period_end, end_subscription_now
from launchkit.config import Settings
from launchkit.errors import InvalidTransition, LaunchkitError, NotFound
from launchkit.memberships.lifecycle import _fact, derive, membership_for_order, request_cancel
from launchkit.models import Membership, MembershipStatus, Offer, Order, Payment, Refund
from launchkit.tokens import TokenExpired, TokenInvalid

ACCOUNT_LINK_MAX_AGE = timedelta(hours=1)
CANCELLABLE = (MembershipStatus.ACTIVE, MembershipStatus.TRIALING, MembershipStatus.PAST_DUE)


# --- magic link -------------------------------------------------------------------------------


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    keys = list(reversed(settings.secret_keys))
    if not keys:
        raise LaunchkitError("No signing key: set LAUNCHKIT_SECRET_KEY or run `launchkit init`.")
    return URLSafeTimedSerializer(keys, salt="launchkit.account")


def account_token(settings: Settings, email: str) -> str:
    """A signed token naming an address (valid ``ACCOUNT_LINK_MAX_AGE``)."""
    return _serializer(settings).dumps({"email": normal_email(email)})


def read_account_token(settings: Settings, token: str, *, now: datetime) -> str:
    """The address a token names; TokenExpired or TokenInvalid otherwise."""
    try:
        data, signed_at = _serializer(settings).loads(token, return_timestamp=True)
    except BadSignature as e:
        raise TokenInvalid("This link is not valid.") from e
    except SignatureExpired as e:  # pragma: no cover (no max_age given above)
        raise TokenExpired("This link has expired.") from e
    if now - signed_at > ACCOUNT_LINK_MAX_AGE or now < signed_at - timedelta(minutes=5):
        raise TokenExpired("This link has expired.")
    if not isinstance(data, dict) or not isinstance(data.get("email"), str):
        raise TokenInvalid("This link is not valid.")
    return str(data["email"])


def account_link(settings: Settings, email: str) -> str:
    """The absolute ``/account/{token}`` link for an address."""
    return f"{settings.base_url.rstrip('/')}/account/{account_token(settings, email)}"


def orders_of(session: Session, email: str) -> list[Order]:
    """The orders of an address, newest first."""
    address = normal_email(email)
    if not address:
        return []
    return list(
        session.scalars(select(Order).where(Order.email == address).order_by(Order.id.desc()))
    )


# --- what the member sees ---------------------------------------------------------------------


def account_overview(session: Session, email: str) -> dict[str, Any]:
    """Purchases and memberships of an address (what ``/account`` lists)."""
    purchases, members = [], []
    for order in orders_of(session, email):
        offer = session.get(Offer, order.offer_id) if order.offer_id else None
        product = offer.product if offer else ""
        m = membership_for_order(session, order)
        if m is None:
            if order.status != "pending":
                purchases.append({"id": order.id, "product": product, "status": order.status,
                                  "paid_cents": order.paid_cents, "currency": order.currency,
                                  "paid_at": order.paid_at})  # fmt: skip
            continue
        members.append({
            "id": m.id, "product": product, "status": m.status, "interval": m.interval,
            "amount_cents": m.amount_cents, "currency": m.currency,
            "period_end": m.current_period_end, "trial_end": m.trial_end,
            "cancellable": m.status in CANCELLABLE and bool(m.stripe_subscription_id),
        })  # fmt: skip
    return {"email": normal_email(email), "purchases": purchases, "memberships": members}


def cancel_membership(
    session: Session, client: StripeClient, email: str, membership_id: int, *, now: datetime
) -> Membership:
    """Cancel at period end (the member keeps access until then) a membership of ``email``."""
    m = session.get(Membership, membership_id)
    order = session.get(Order, m.order_id) if m else None
    if m is None or order is None or order.email != normal_email(email):
        raise NotFound("This membership does not exist.")
    if m.status == MembershipStatus.CANCELLING:
        return m  # already done: the same answer again
    if m.status not in CANCELLABLE or not m.stripe_subscription_id:
        raise InvalidTransition(f"The membership is {m.status}; it cannot be cancelled.")
    updated = cancel_at_period_end(client, m.stripe_subscription_id)
    key = f"{m.stripe_subscription_id}:{updated.get('cancel_at') or ''}"
    request_cancel(session, m, now=now, key=key)
    return m


# --- the guarantee ----------------------------------------------------------------------------


def refund_membership(
    session: Session, client: StripeClient, order_id: int | str, *, now: datetime,
    force: bool = False,
) -> Refund:  # fmt: skip
    """The guarantee: refund the membership's first payment (within the offer's guarantee days
    of it, unless ``force``) and end the membership at once (its subscription is cancelled)."""
    order = get_order(session, order_id)
    m = membership_for_order(session, order)
    if m is None:
        raise NotFound(f'Order "{order_id}" is not a membership.')
    first = session.scalar(
        select(Payment).where(Payment.order_id == order.id, Payment.status == "paid")
        .order_by(Payment.occurred_at, Payment.stripe_id)
    )  # fmt: skip
    if first is None:
        raise InvalidTransition(f"Order {order.id} has no payment to refund.")
    refund = refund_order(session, client, order.id, now=now, force=force, payment=first.stripe_id,
                          reason="membership guarantee")  # fmt: skip
    if refund.status == "succeeded" and m.stripe_subscription_id:
        end_subscription_now(client, m.stripe_subscription_id)
        order.subscription_cancelled_at = order.subscription_cancelled_at or now
        sub = m.stripe_subscription_id
        _fact(session, m, f"ended:{sub}", "ended", now, status="canceled")  # same key as Stripe's
        _settle(session, order, now)
        derive(session, m, now)
    return refund
