"""Receipts and dunning emails: recorded as due with the event, sent once each (claim, then act)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from launchkit.checkout.offers import format_money
from launchkit.checkout.orders import ACCESS_STATUSES, LANGUAGES, _failed_invoice
from launchkit.config import Settings
from launchkit.models import Offer, Order, OrderStatus, Payment, Subscriber


def send_notifications(
    session: Session, settings: Settings, messenger: Any, *, now: datetime, env: Any = None
) -> int:
    """Send due receipts (once per order) and dunning emails (once per failed instalment)."""
    sent = 0
    orders = session.scalars(
        select(Order).where(
            Order.receipt_sent_at.is_(None),
            Order.instalments_paid > 0,
            Order.email != "",  # a receipt waits for the event that brings the address
            Order.status.in_(ACCESS_STATUSES),
        )
    ).all()
    for order in orders:
        if _claim(session, Order, order.id, "receipt_sent_at", now):
            buyer = buyer_settings(session, settings, order)
            variables = _receipt_vars(order, buyer)
            _email(buyer, messenger, env, "receipt", session, order, variables, now)
            sent += 1
    failed = session.scalars(
        select(Payment).where(Payment.status == "failed", Payment.notified_at.is_(None))
    ).all()
    for payment in failed:
        order = session.get(Order, payment.order_id)
        if order is None or order.status not in (OrderStatus.ACTIVE_PLAN, OrderStatus.DEFAULTED):
            continue
        if not order.email or _since_paid(session, payment):
            continue  # waits for the address; or the instalment came in after all
        if _claim(session, Payment, payment.id, "notified_at", now):
            buyer = buyer_settings(session, settings, order)
            variables = _dunning_vars(order, payment, buyer)
            _email(buyer, messenger, env, "dunning", session, order, variables, now, payment.id)
            sent += 1
    from launchkit.memberships.notify import send_membership_emails

    return sent + send_membership_emails(session, settings, messenger, now=now, env=env)


def buyer_settings(session: Session, settings: Settings, order: Order) -> Settings:
    """The settings to write to this buyer with: their language as a subscriber, else the one
    they checked out in, else the workspace's."""
    subscriber = session.get(Subscriber, order.subscriber_id) if order.subscriber_id else None
    for language in (subscriber.language if subscriber else None, order.language):
        code = language.split("-", 1)[0].lower() if language else ""
        if code in LANGUAGES:
            return dataclasses.replace(settings, language=code)
    return settings


def _since_paid(session: Session, payment: Payment) -> bool:
    invoice = _failed_invoice(payment)
    paid = select(Payment.id).where(Payment.stripe_id == invoice, Payment.status == "paid")
    return session.scalar(paid) is not None


def _claim(session: Session, model: Any, row_id: int, column: str, now: datetime) -> bool:
    """Set ``column`` from NULL to now; True only for the one caller that did it."""
    result = session.execute(
        update(model)
        .where(model.id == row_id, getattr(model, column).is_(None))
        .values({column: now})
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return bool(getattr(result, "rowcount", 0))


def _money(order: Order, cents: int, settings: Settings) -> str:
    return format_money(cents, order.currency, settings.language)


def _receipt_vars(order: Order, settings: Settings) -> dict[str, Any]:
    paid = order.paid_cents
    if order.plan_instalments > 1:
        each = order.total_cents // order.plan_instalments if order.total_cents else paid
        summary = f"{order.plan_instalments} × {_money(order, each, settings)}"
    else:
        summary = _money(order, order.total_cents or paid, settings)
    return {"order_summary": summary, "amount_paid": _money(order, paid, settings)}


def _dunning_vars(order: Order, payment: Payment, settings: Settings) -> dict[str, Any]:
    return {
        "amount_paid": _money(order, payment.amount_cents, settings),
        "instalment_number": payment.instalment_number or order.instalments_paid + 1,
        "instalments_total": order.plan_instalments,
        "update_card_url": payment.update_url or settings.base_url,
    }


def _email(
    settings: Settings,
    messenger: Any,
    env: Any,
    template: str,
    session: Session,
    order: Order,
    variables: dict[str, Any],
    now: datetime,
    part: int | None = None,
) -> None:
    from launchkit import mailer, render, tokens

    subscriber = session.get(Subscriber, order.subscriber_id) if order.subscriber_id else None
    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    context = {
        "first_name": subscriber.first_name if subscriber else "",
        "last_name": subscriber.last_name if subscriber else "",
        "email": order.email,
        "product": offer.product if offer else settings.name,
        "creator_name": settings.sender_name or settings.name,
        "guarantee_days": offer.guarantee_days if offer else 0,
        **variables,
    }
    mailer.send_transactional(
        settings, messenger, env if env is not None else render.make_environment(settings),
        template, to_email=order.email, to_name=context["first_name"], context=context,
        subscriber_id=order.subscriber_id or 0, key=f"{template}:{order.id}:{part or 0}", now=now,
        unsubscribe_url=tokens.unsubscribe_url(settings, order.subscriber_id)
        if order.subscriber_id else None,
    )  # fmt: skip
