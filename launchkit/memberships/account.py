"""The member's side: a signed, expiring magic link to ``/account``, what the address bought,
cancelling a membership at the end of its paid period, and the guarantee refund."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
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


def _serializer(settings: Settings) -> URLSafeSerializer:
    keys = list(reversed(settings.secret_keys))
    if not keys:
        raise LaunchkitError("No signing key: set LAUNCHKIT_SECRET_KEY or run `launchkit init`.")
    return URLSafeSerializer(keys, salt="launchkit.account")


def account_token(settings: Settings, email: str, *, now: datetime) -> str:
    """A signed token naming an address, issued at ``now`` (valid ``ACCOUNT_LINK_MAX_AGE``)."""
    return _serializer(settings).dumps({"email": normal_email(email), "at": int(now.timestamp())})


def read_account_token(settings: Settings, token: str, *, now: datetime) -> str:
    """The address a token names; TokenExpired or TokenInvalid otherwise."""
    try:
        data = _serializer(settings).loads(token)
    except BadSignature as e:
        raise TokenInvalid("This link is not valid.") from e
    ok = isinstance(data, dict) and isinstance(data.get("email"), str)
    if not ok or not isinstance(data.get("at"), int):
        raise TokenInvalid("This link is not valid.")
    age = now.timestamp() - data["at"]
    if age > ACCOUNT_LINK_MAX_AGE.total_seconds() or age < -300:
        raise TokenExpired("This link has expired.")
    return str(data["email"])


def account_link(settings: Settings, email: str, *, now: datetime) -> str:
    """The absolute ``/account/{token}`` link for an address."""
    return f"{settings.base_url.rstrip('/')}/account/{account_token(settings, email, now=now)}"


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


def refund_any_order(
    session: Session, client: StripeClient, order_id: int | str, *, now: datetime,
    force: bool = False, reason: str | None = None, **partial: Any,
) -> Refund:  # fmt: skip
    """``launchkit refund ORDER``: a membership's order refunded whole is the guarantee refund
    (the membership ends and its subscription is cancelled, so nothing is charged again);
    any other order, or a partial refund (``amount_cents``, ``payment``), is an order refund."""
    order = get_order(session, order_id)
    whole = partial.get("amount_cents") is None and partial.get("payment") is None
    if whole and membership_for_order(session, order) is not None:
        return refund_membership(session, client, order.id, now=now, force=force, reason=reason)
    return refund_order(session, client, order.id, now=now, force=force, reason=reason, **partial)


def refund_membership(
    session: Session, client: StripeClient, order_id: int | str, *, now: datetime,
    force: bool = False, reason: str | None = None,
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
                          reason=reason or "membership guarantee")  # fmt: skip
    if refund.status == "succeeded" and m.stripe_subscription_id:
        end_subscription_now(client, m.stripe_subscription_id)
        order.subscription_cancelled_at = order.subscription_cancelled_at or now
        sub = m.stripe_subscription_id
        _fact(session, m, f"ended:{sub}", "ended", now, status="canceled")  # same key as Stripe's
        _settle(session, order, now)
        derive(session, m, now)
        _settle(session, order, now)  # access follows the ended membership, as after an event
    return refund


def send_account_link(
    session: Session, settings: Settings, messenger: Any, email: str, *, now: datetime,
    env: Any = None,
) -> bool:  # fmt: skip
    """Email the ``/account`` link to an address that bought something (False: nothing sent;
    the web page answers the same either way, so it reveals nobody)."""
    from launchkit.checkout.notifications import buyer_settings
    from launchkit.memberships.notify import deliver

    orders = [o for o in orders_of(session, email) if o.status != "pending"]
    if not orders:
        return False
    member = buyer_settings(session, settings, orders[0])
    context = {"first_name": "", "creator_name": member.sender_name or member.name,
               "account_link": account_link(member, email, now=now)}  # fmt: skip
    key = f"account-link:{normal_email(email)}:{int(now.timestamp())}"
    deliver(member, messenger, env, "account-link", key, orders[0].email, orders[0].subscriber_id,
            context, now)  # fmt: skip
    return True
