"""The member's lifecycle from Stripe's events: joined, trial, renewals, failed renewals,
cancel at period end, plan switches, end.

Every event about a membership is stored as one dated fact (``membership_events``, unique by its
key: the invoice id, the failed attempt, the event id), and the membership's status, plan and
dates are derived again from all its facts sorted by their own time. So a redelivered event
changes nothing, and the state does not depend on the order events arrive in. The handlers wrap
the order handlers of ``launchkit.checkout.events`` (the order still counts the payments)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.checkout.orders import _fill, _find_order, _order_from_metadata, _settle, link_order
from launchkit.checkout.payloads import _id, _ts, invoice_metadata, invoice_subscription
from launchkit.models import (
    Membership,
    MembershipEvent,
    MembershipPrice,
    MembershipStatus,
    Offer,
    Order,
)

ENTITLED = (
    MembershipStatus.TRIALING,
    MembershipStatus.ACTIVE,
    MembershipStatus.PAST_DUE,
    MembershipStatus.CANCELLING,
)
STRIPE_STATUS = {
    "trialing": MembershipStatus.TRIALING,
    "active": MembershipStatus.ACTIVE,
    "past_due": MembershipStatus.PAST_DUE,
    "unpaid": MembershipStatus.PAST_DUE,
    "incomplete": MembershipStatus.INCOMPLETE,
    "paused": MembershipStatus.PAST_DUE,
    "canceled": MembershipStatus.ENDED,
    "incomplete_expired": MembershipStatus.ENDED,
}
# facts at the same second are applied in this order (then by key): deterministic
RANK = {"joined": 0, "snapshot": 1, "paid": 2, "failed": 3, "trial_will_end": 4,
        "cancel_requested": 5, "ended": 6}  # fmt: skip
Handler = Callable[[Session, dict[str, Any], Any], Order | None]


def membership_entitled(m: Membership) -> bool:
    """Whether the member has access now: trialing, active, past due (Stripe still retrying),
    or cancelled but inside the period already paid for. Ended memberships have none."""
    return m.status in ENTITLED


def membership_for_order(session: Session, order: Order) -> Membership | None:
    """The membership an order started, if it is a membership order."""
    return session.scalar(select(Membership).where(Membership.order_id == order.id))


def find_membership(session: Session, subscription: str) -> Membership | None:
    """The membership of a Stripe subscription."""
    return session.scalar(
        select(Membership).where(Membership.stripe_subscription_id == subscription)
    )


# --- reading Stripe's objects (both the pinned API version's shape and older ones) ------------


def _first_item(sub: dict[str, Any]) -> dict[str, Any]:
    items = (sub.get("items") or {}).get("data") or []
    return items[0] if items and isinstance(items[0], dict) else {}


def subscription_plan(sub: dict[str, Any]) -> tuple[str | None, int | None]:
    """(interval, cents per interval) of a subscription's first item, price or legacy plan."""
    item = _first_item(sub)
    price = item.get("price") or item.get("plan") or sub.get("plan") or {}
    interval = (price.get("recurring") or {}).get("interval") or price.get("interval")
    amount = price.get("unit_amount", price.get("amount"))
    ok = isinstance(amount, int) and not isinstance(amount, bool)
    return (interval if interval in ("month", "year") else None), (amount if ok else None)


def subscription_period_end(sub: dict[str, Any]) -> datetime | None:
    """The end of the current period (item level since 2025, top level before)."""
    value = _first_item(sub).get("current_period_end") or sub.get("current_period_end")
    return _ts(value, None) if value else None  # type: ignore[arg-type]


def invoice_period_end(inv: dict[str, Any]) -> datetime | None:
    """The end of the period an invoice pays for (its line, else the invoice's own)."""
    for line in (inv.get("lines") or {}).get("data") or []:
        end = (line.get("period") or {}).get("end")
        if end:
            return _ts(end, None)  # type: ignore[arg-type]
    return None


# --- finding or creating the membership -------------------------------------------------------


def _ensure(
    session: Session, order: Order | None, meta: dict[str, str], sub: str | None, when: datetime
) -> Membership | None:
    """The membership of this order/subscription, created when the metadata says membership."""
    found = membership_for_order(session, order) if order is not None else None
    found = found or (find_membership(session, sub) if sub else None)
    if found is not None:
        if sub and not found.stripe_subscription_id:
            found.stripe_subscription_id = sub
        return found
    interval = meta.get("membership")
    if order is None or interval not in ("month", "year"):
        return None
    cents = _checkout_cents(session, order, interval)
    order.total_cents = cents
    _fill(order, stripe_subscription_id=sub)
    membership = Membership(
        order_id=order.id, launch_id=order.launch_id, offer_id=order.offer_id,
        stripe_subscription_id=sub, interval=interval, amount_cents=cents,
        currency=order.currency, status=MembershipStatus.INCOMPLETE,
        cancel_at_period_end=False, started_at=when, updated_at=when,
        trial_end=None,
    )  # fmt: skip
    session.add(membership)
    session.flush()
    return membership


def _checkout_cents(session: Session, order: Order, interval: str) -> int:
    """The price the member checked out at: the founding price of the launch, else the price."""
    price = session.scalar(
        select(MembershipPrice).where(
            MembershipPrice.offer_id == order.offer_id, MembershipPrice.interval == interval
        )
    )
    return (price.founding_cents or price.cents) if price else order.total_cents


def _fact(session: Session, m: Membership, key: str, kind: str, when: datetime, **values: Any):
    """Record a fact once (its key); a later report of the same fact keeps the earliest time."""
    known = session.scalar(select(MembershipEvent).where(MembershipEvent.key == key))
    if known is not None:
        known.occurred_at = min(known.occurred_at, when)
        return known
    fact = MembershipEvent(membership_id=m.id, key=key[:255], kind=kind, occurred_at=when, **values)
    session.add(fact)
    session.flush()
    return fact


# --- deriving the state from the facts --------------------------------------------------------


def derive(session: Session, m: Membership, now: datetime) -> None:
    """Status, plan and dates from the facts sorted by their time (then kind, then key)."""
    order = session.get(Order, m.order_id)
    offer = session.get(Offer, m.offer_id) if m.offer_id else None
    facts = sorted(
        session.scalars(
            select(MembershipEvent).where(
                MembershipEvent.membership_id == m.id, MembershipEvent.kind.in_(list(RANK))
            )
        ),
        key=lambda f: (f.occurred_at, RANK[f.kind], f.key),
    )
    if not facts:
        return
    if order is not None:
        order.defaulted_at = None  # a membership's end is its own state, never a plan default
    price = _initial_price(session, m, order)
    state: dict[str, Any] = {
        "status": MembershipStatus.INCOMPLETE, "cancel": False, "interval": price[0],
        "amount": price[1], "paid_at": None, "period_end": None, "trial_end": None,
        "ended_at": None, "cancel_requested_at": None,
    }  # fmt: skip
    if offer is not None and offer.trial_days:
        state["status"] = MembershipStatus.TRIALING
    for fact in facts:
        _step(state, fact)
    if offer is not None and offer.trial_days and state["trial_end"] is None:
        state["trial_end"] = facts[0].occurred_at + timedelta(days=offer.trial_days)
    if order is not None and (order.refunded_at or order.disputed_at):
        # the refund (or a dispute) ends it then, even when the subscription is deleted later
        stop = min(t for t in (order.refunded_at, order.disputed_at) if t)
        state["status"] = MembershipStatus.ENDED
        state["ended_at"] = min(state["ended_at"] or stop, stop)
    if state["status"] != MembershipStatus.ENDED and state["cancel"]:
        state["status"] = MembershipStatus.CANCELLING
    m.status = state["status"]
    m.cancel_at_period_end = state["cancel"]
    m.interval, m.amount_cents = state["interval"], state["amount"]
    m.paid_at, m.current_period_end = state["paid_at"], state["period_end"]
    m.trial_end, m.ended_at = state["trial_end"], state["ended_at"]
    m.cancel_requested_at = state["cancel_requested_at"]
    m.started_at = facts[0].occurred_at
    m.updated_at = now
    session.flush()


def _initial_price(session: Session, m: Membership, order: Order | None) -> tuple[str, int]:
    joined = session.scalar(
        select(MembershipEvent).where(
            MembershipEvent.membership_id == m.id, MembershipEvent.kind == "joined"
        )
    )
    if joined is not None and joined.interval and joined.amount_cents is not None:
        return joined.interval, joined.amount_cents
    return m.interval, m.amount_cents


def _step(state: dict[str, Any], fact: MembershipEvent) -> None:
    ended = state["status"] == MembershipStatus.ENDED
    if fact.kind == "joined" and state["status"] == MembershipStatus.INCOMPLETE:
        state["status"] = MembershipStatus.ACTIVE  # Checkout completes once the first payment is in
    elif fact.kind == "snapshot":
        status = STRIPE_STATUS.get(fact.status or "", state["status"])
        if not ended:
            state["status"] = status
        if status == MembershipStatus.TRIALING and fact.period_end:
            state["trial_end"] = fact.period_end
        if fact.interval and fact.amount_cents is not None:
            state["interval"], state["amount"] = fact.interval, fact.amount_cents
        if fact.cancel_at_period_end is not None:
            if fact.cancel_at_period_end and not state["cancel"]:
                state["cancel_requested_at"] = fact.occurred_at
            state["cancel"] = fact.cancel_at_period_end
        state["period_end"] = _later(state["period_end"], fact.period_end)
    elif fact.kind == "paid":
        if (fact.amount_cents or 0) > 0:
            state["paid_at"] = state["paid_at"] or fact.occurred_at
            if not ended:
                state["status"] = MembershipStatus.ACTIVE
        state["period_end"] = _later(state["period_end"], fact.period_end)
    elif fact.kind == "trial_will_end":
        state["trial_end"] = fact.period_end or state["trial_end"]
    elif fact.kind == "failed" and not ended:
        state["status"] = MembershipStatus.PAST_DUE
    elif fact.kind == "cancel_requested" and not state["cancel"]:
        state["cancel"], state["cancel_requested_at"] = True, fact.occurred_at
    elif fact.kind == "ended":
        state["status"] = MembershipStatus.ENDED
        state["ended_at"] = state["ended_at"] or fact.occurred_at


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a and b else a or b


# --- handlers: wrap the order handlers, then record the membership fact ----------------------


def _wrap(base: Handler, record: Callable[..., Membership | None]) -> Handler:
    def handler(session: Session, obj: dict[str, Any], ctx: Any) -> Order | None:
        order = base(session, obj, ctx)
        if order is None:
            return None
        membership = record(session, order, obj, ctx)
        if membership is not None:
            # Refund/dispute facts first, then the membership: ``derive`` reads the
            # ``refunded_at`` this settle computes. ``_apply`` settles the order again after us,
            # and that one is not redundant either: ``derive`` changes what it reads (the
            # membership's status, which decides access, and ``defaulted_at``), and only that
            # second settle syncs access with the membership this event left.
            _settle(session, order, ctx.now)
            derive(session, membership, ctx.now)
        return order

    return handler


def _record_session(session: Session, order: Order, obj: dict[str, Any], ctx: Any):
    meta = obj.get("metadata") or {}
    if obj.get("mode") != "subscription":
        return membership_for_order(session, order)
    m = _ensure(session, order, meta, _id(obj.get("subscription")), ctx.when)
    interval = meta.get("membership")
    if m is not None and interval in ("month", "year"):
        _fact(session, m, f"joined:{obj['id']}", "joined", ctx.when, interval=interval,
              amount_cents=_checkout_cents(session, order, interval))  # fmt: skip
    return m


def _record_invoice(paid: bool) -> Callable[..., Membership | None]:
    def record(session: Session, order: Order, inv: dict[str, Any], ctx: Any):
        m = _ensure(session, order, invoice_metadata(inv), invoice_subscription(inv), ctx.when)
        if m is None:
            return None
        if paid:
            when = _ts((inv.get("status_transitions") or {}).get("paid_at"), ctx.when)
            _fact(session, m, f"paid:{inv['id']}", "paid", when,
                  amount_cents=int(inv.get("amount_paid") or 0),
                  period_end=invoice_period_end(inv))  # fmt: skip
        else:
            key = f"failed:{inv['id']}:{inv.get('attempt_count') or 1}"
            _fact(session, m, key, "failed", ctx.when, amount_cents=int(inv.get("amount_due") or 0),
                  update_url=inv.get("hosted_invoice_url"))  # fmt: skip
        return m

    return record


def _record_any(session: Session, order: Order, obj: dict[str, Any], ctx: Any):
    return membership_for_order(session, order)


def _record_deleted(session: Session, order: Order, sub: dict[str, Any], ctx: Any):
    m = _ensure(session, order, sub.get("metadata") or {}, sub["id"], ctx.when)
    if m is not None:
        when = _ts(sub.get("ended_at"), ctx.when)
        _fact(session, m, f"ended:{sub['id']}", "ended", when, status="canceled")
    return m


def _subscription_handler(kind: str, park: type[Exception]) -> Handler:
    """``customer.subscription.created/updated`` (a snapshot) and ``trial_will_end``."""

    def handler(session: Session, sub: dict[str, Any], ctx: Any) -> Order | None:
        meta = sub.get("metadata") or {}
        m = find_membership(session, sub["id"])
        order = session.get(Order, m.order_id) if m else _find_order(session, sub=sub["id"])
        if order is None and meta.get("membership"):
            order = _order_from_metadata(
                session, meta, email=None, currency=sub.get("currency"), now=ctx.when
            )
        if order is None:
            if meta.get("membership"):
                raise park(sub["id"])  # a launch or offer this workspace does not know (yet)
            return None  # not a membership launchkit sold
        link_order(session, order, meta, None)
        m = m or _ensure(session, order, meta, sub["id"], ctx.when)
        if m is None:
            return None
        if kind == "trial_will_end":
            _fact(session, m, f"trial:{sub['id']}:{sub.get('trial_end')}", kind, ctx.when,
                  period_end=_ts(sub.get("trial_end"), ctx.when))  # fmt: skip
        else:
            interval, amount = subscription_plan(sub)
            status = str(sub.get("status") or "")[:20] or None
            end, cancel = subscription_period_end(sub), bool(sub.get("cancel_at_period_end"))
            key = f"snap:{sub['id']}:{epoch(ctx.when)}:{status}:{interval}:{amount}:{end}:{cancel}"
            _fact(session, m, key, "snapshot", ctx.when, status=status, interval=interval,
                  amount_cents=amount, period_end=end, cancel_at_period_end=cancel)  # fmt: skip
        order.created_at = min(order.created_at, ctx.when)
        derive(session, m, ctx.now)
        return order

    return handler


def membership_handlers(existing: dict[str, Handler], park: type[Exception]) -> dict[str, Handler]:
    """The handlers of ``checkout.events`` with the membership facts added, plus the
    subscription events only memberships read."""
    invoice_paid = _record_invoice(paid=True)
    wrapped = {
        "checkout.session.completed": _record_session,
        "checkout.session.async_payment_succeeded": _record_session,
        "invoice.paid": invoice_paid,
        "invoice.payment_succeeded": invoice_paid,
        "invoice.payment_failed": _record_invoice(paid=False),
        "customer.subscription.deleted": _record_deleted,
        "charge.refunded": _record_any,
        "charge.dispute.created": _record_any,
    }
    handlers = {name: _wrap(existing[name], record) for name, record in wrapped.items()}
    handlers["customer.subscription.created"] = _subscription_handler("snapshot", park)
    handlers["customer.subscription.updated"] = _subscription_handler("snapshot", park)
    handlers["customer.subscription.trial_will_end"] = _subscription_handler("trial_will_end", park)
    return handlers


def request_cancel(session: Session, m: Membership, *, now: datetime, key: str) -> None:
    """Record the member's own cancellation at period end (after Stripe accepted it)."""
    _fact(session, m, f"cancel:{key}", "cancel_requested", now, cancel_at_period_end=True)
    derive(session, m, now)


def epoch(when: datetime) -> int:
    """Seconds since the epoch (Stripe's timestamps)."""
    return int(when.astimezone(UTC).timestamp())
