"""Receipts and dunning emails: recorded as due with the event, sent once each (claim, then act).

Every email sent after a Stripe event (receipt, dunning, access, membership emails) goes through
``send_claimed``: what happens to one of them never undoes or blocks the others of the run.
"""

from __future__ import annotations

import calendar
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from launchkit.access import send_access_emails
from launchkit.checkout.offers import format_money
from launchkit.checkout.orders import ACCESS_STATUSES, LANGUAGES, _failed_invoice
from launchkit.config import Settings
from launchkit.errors import LaunchkitError
from launchkit.models import Offer, Order, OrderStatus, Payment, Subscriber, SuppressionReason

log = logging.getLogger(__name__)


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

        def receipt(order: Order = order) -> None:
            buyer = buyer_settings(session, settings, order)
            variables = _receipt_vars(order, buyer)
            variables |= receipt_details(session, order, buyer, now=now)
            _email(buyer, messenger, env, "receipt", session, order, variables, now)

        claim = _claimer(session, Order, order.id, "receipt_sent_at", now)
        sent += send_claimed(session, messenger, order.email, claim, receipt, now=now)
    failed = session.scalars(
        select(Payment).where(Payment.status == "failed", Payment.notified_at.is_(None))
    ).all()
    for payment in failed:
        order = session.get(Order, payment.order_id)
        if order is None or order.status not in (OrderStatus.ACTIVE_PLAN, OrderStatus.DEFAULTED):
            continue
        if not order.email or _since_paid(session, payment):
            continue  # waits for the address; or the instalment came in after all

        def dunning(order: Order = order, payment: Payment = payment) -> None:
            buyer = buyer_settings(session, settings, order)
            variables = _dunning_vars(order, payment, buyer)
            _email(buyer, messenger, env, "dunning", session, order, variables, now, payment.id)

        claim = _claimer(session, Payment, payment.id, "notified_at", now)
        sent += send_claimed(session, messenger, order.email, claim, dunning, now=now)
    from launchkit.memberships.notify import send_membership_emails

    sent += send_access_emails(session, settings, messenger, now=now, env=env)
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


def send_claimed(
    session: Session,
    messenger: Any,
    to_email: str,
    claim: Callable[[], bool],
    send: Callable[[], None],
    *,
    now: datetime,
) -> bool:
    """Claim one email (``claim``: False when it is taken already) and send it (``send``:
    render and push) in a savepoint of the caller's transaction; True when it was handed over.

    A refusal for good (5xx) keeps the claim, so it is never tried again, and suppresses a
    refused address as a launch email's bounce does; in doubt (the relay dropped after the
    data: it may have arrived) keeps the claim too. A temporary failure (4xx, relay down) or an
    email that does not render undoes the claim with the savepoint: the next event or run
    tries again. Either way the run goes on with the next email and the caller's transaction
    keeps the claims of the emails already sent, so none of them goes twice.
    """
    from launchkit import mailer

    try:
        with session.begin_nested():
            if not claim():
                return False
            send()
            return True
    except mailer.PermanentFailure as e:
        log.warning("email to %s refused for good, not retried: %s", to_email, e)
        claim()
        if e.recipient:
            from launchkit.sequences.audience_glue import suppress_address

            suppress_address(session, to_email, SuppressionReason.BOUNCED, now, detail=str(e))
    except mailer.InDoubt as e:
        log.warning("email to %s may have arrived, not sent again: %s", to_email, e)
        claim()
    except LaunchkitError as e:  # temporary failure, relay unusable, template error
        log.warning("email to %s not sent, tried again on the next event or run: %s", to_email, e)
        close = getattr(messenger, "close", None)
        if close is not None:
            close()  # the next email opens a fresh connection
    return False


def _claimer(
    session: Session, model: Any, row_id: int, column: str, now: datetime
) -> Callable[[], bool]:
    return lambda: _claim(session, model, row_id, column, now)


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


_SCHEDULE_WORDS = {"fr": ("payée le", "prévue le"), "en": ("paid on", "due on")}


def receipt_details(
    session: Session, order: Order, settings: Settings, *, now: datetime
) -> dict[str, Any]:
    """What a buyer keeps: order number, instalment dates, guarantee end, Stripe's link."""
    from launchkit.render import french

    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    paid = session.scalars(
        select(Payment)
        .where(Payment.order_id == order.id, Payment.status == "paid")
        .order_by(Payment.occurred_at)
    ).all()
    start = order.paid_at or (paid[0].occurred_at if paid else now)
    days = offer.guarantee_days if offer else 0
    return {
        "order_number": str(order.id),
        "plan_schedule": _schedule(order, list(paid), start, settings),
        "guarantee_end": french.format_moment(
            start + timedelta(days=days), settings.language, settings.timezone
        )
        if days
        else "",
        "receipt_url": next((p.receipt_url for p in paid if p.receipt_url), ""),
        "tax": format_money(order.tax_cents, order.currency, settings.language)
        if order.tax_cents
        else "",
    }


def _schedule(order: Order, paid: list[Payment], start: datetime, settings: Settings) -> list[str]:
    """``1/3 · 99,00 € · payée le jeudi 3 décembre 2026`` for each instalment of a plan."""
    from launchkit.render import french

    if order.plan_instalments <= 1:
        return []
    each = order.total_cents // order.plan_instalments if order.total_cents else 0
    done, due = _SCHEDULE_WORDS.get(settings.language, _SCHEDULE_WORDS["en"])
    lines = []
    for index in range(order.plan_instalments):
        payment = paid[index] if index < len(paid) else None
        when = payment.occurred_at if payment else _add_months(start, index)
        amount = payment.amount_cents if payment else each
        day = french.format_date(when, settings.language, settings.timezone)
        word = done if payment else due
        lines.append(
            f"{index + 1}/{order.plan_instalments} · {_money(order, amount, settings)} · "
            f"{word} {day}"
        )
    return lines


def _add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later (the 31st becomes the month's last day)."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


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
