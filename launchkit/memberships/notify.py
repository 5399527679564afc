"""Membership emails: welcome, failed renewal (one per failed attempt, with the card-update
link), trial ending, cancellation confirmation, win-back after churn, and the reminder before a
yearly renewal. Each is claimed once (a unique ``membership_events`` key) before it is sent.
The renewal reminder and trial ending are also sent on a schedule, under the same keys, by
``launchkit.memberships.reminders`` (a yearly member may see no event before the renewal).

Templates: ``emails/membership-{fr,en}/*.md`` (the workspace's copy first, then the starter's),
in the member's language (as a subscriber, else the one they checked out in)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit.checkout.notifications import buyer_settings
from launchkit.checkout.offers import format_money
from launchkit.config import Settings
from launchkit.errors import InputError
from launchkit.memberships.lifecycle import ENTITLED
from launchkit.memberships.reminders import ref as _ref
from launchkit.memberships.reminders import reminder_key
from launchkit.memberships.reminders import stamp as _stamp
from launchkit.models import (
    Membership,
    MembershipEvent,
    MembershipStatus,
    Offer,
    Order,
    Subscriber,
)
from launchkit.resources import starter_dir

TEMPLATES = ("welcome", "renewal-reminder", "failed-renewal", "cancelled", "trial-ending",
             "win-back")  # fmt: skip


def send_membership_emails(
    session: Session,
    settings: Settings,
    messenger: Any,
    *,
    now: datetime,
    reminder_days: int | None = None,
    env: Any = None,
) -> int:
    """Send every membership email now due; returns how many were sent. A yearly renewal is
    announced ``reminder_days`` before it (default: ``settings.renewal_reminder_days``).

    Runs after every Stripe event, so it reads in three queries (the memberships with their
    orders, the facts not yet notified, the keys of the emails already sent) whatever the
    number of members; only an email not sent yet is claimed (``_claim``) and sent."""
    if reminder_days is None:
        reminder_days = settings.renewal_reminder_days
    sent = 0
    live = session.execute(
        select(Membership, Order)
        .join(Order, Order.id == Membership.order_id)
        .where(Membership.status != MembershipStatus.INCOMPLETE, Order.email != "")
        .order_by(Membership.id)
    ).all()  # an order without its address waits for the event that brings it
    pending: dict[int, list[MembershipEvent]] = {}
    for fact in session.scalars(
        select(MembershipEvent)
        .where(
            MembershipEvent.kind.in_(["failed", "trial_will_end"]),
            MembershipEvent.notified_at.is_(None),
        )
        .order_by(MembershipEvent.id)
    ):
        pending.setdefault(fact.membership_id, []).append(fact)
    done = set(session.scalars(select(MembershipEvent.key).where(MembershipEvent.kind == "email")))
    from launchkit.checkout.notifications import send_claimed

    for m, order in live:
        for template, key, extra, mark in _due(m, order, pending.get(m.id, []), now, reminder_days):

            def claim(m: Membership = m, key: str = key, mark: Callable[[], None] = mark) -> bool:
                mark()  # undone with the claim when the email is to be tried again
                return key not in done and _claim(session, m, key, now)

            def send(m: Membership = m, order: Order = order, email: tuple[str, str] = (template,
                     key), extra: dict[str, Any] = extra) -> None:  # fmt: skip
                send_member_email(session, settings, messenger, env, email, m, order, extra, now)

            sent += send_claimed(session, messenger, order.email, claim, send, now=now)
    session.flush()
    return sent


Due = tuple[str, str, dict[str, Any], Callable[[], None]]


def _due(
    m: Membership,
    order: Order,
    facts: list[MembershipEvent],
    now: datetime,
    reminder_days: int,
) -> list[Due]:
    """(template, claim key, variables, mark) of the emails this membership calls for now;
    ``facts``: its failed payments and trial ends not notified yet. Each fact calls for at most
    one email: a fact that calls for none is marked notified here, the others by their email's
    ``mark``, run with its claim (so an email to try again leaves its fact pending)."""
    due: list[Due] = []
    if m.status in ENTITLED:
        due.append(("welcome", f"email:welcome:{_ref(m)}", {}, _nothing))
    for fact in facts:
        if fact.kind == "failed" and m.status == MembershipStatus.PAST_DUE:
            url = {"update_card_url": fact.update_url or ""}
            due.append(("failed-renewal", f"email:{fact.key}", url, _notified(fact, now)))
        elif fact.kind == "trial_will_end" and m.status == MembershipStatus.TRIALING:
            key = f"email:trial-ending:{_ref(m)}:{_stamp(m.trial_end)}"
            due.append(("trial-ending", key, {}, _notified(fact, now)))
        else:
            fact.notified_at = now
    if m.status == MembershipStatus.CANCELLING:
        key = f"email:cancelled:{_ref(m)}:{_stamp(m.current_period_end)}"
        due.append(("cancelled", key, {}, _nothing))
    if m.status == MembershipStatus.ENDED and m.paid_at and not order.refunded_at:
        due.append(("win-back", f"email:win-back:{_ref(m)}", {}, _nothing))
    key = reminder_key(m, now, reminder_days)  # also sent on a schedule: .reminders
    if key is not None and m.reminder_period_end != m.current_period_end:
        due.append(("renewal-reminder", key, {}, _reminded(m)))
    return due


def _nothing() -> None:
    pass


def _notified(fact: MembershipEvent, now: datetime) -> Callable[[], None]:
    def mark() -> None:
        fact.notified_at = now

    return mark


def _reminded(m: Membership) -> Callable[[], None]:
    def mark() -> None:
        m.reminder_period_end = m.current_period_end

    return mark


def _claim(session: Session, m: Membership, key: str, now: datetime) -> bool:
    """Insert the email's key; False when it was sent already (or by a concurrent run)."""
    if session.scalar(select(MembershipEvent.id).where(MembershipEvent.key == key)):
        return False
    try:
        with session.begin_nested():
            session.add(MembershipEvent(membership_id=m.id, key=key, kind="email",
                                        occurred_at=now, notified_at=now))  # fmt: skip
            session.flush()
    except IntegrityError:
        return False
    return True


def send_member_email(
    session: Session, settings: Settings, messenger: Any, env: Any, email: tuple[str, str],
    m: Membership, order: Order, extra: dict[str, Any], now: datetime,
) -> None:  # fmt: skip
    """Send ``email`` = (template, key) to the member now, in their language."""
    template, key = email
    member = buyer_settings(session, settings, order)
    subscriber = session.get(Subscriber, order.subscriber_id) if order.subscriber_id else None
    offer = session.get(Offer, m.offer_id) if m.offer_id else None
    context = {
        "first_name": subscriber.first_name if subscriber else "",
        "email": order.email,
        "product": offer.product if offer else member.name,
        "creator_name": member.sender_name or member.name,
        "amount": format_money(m.amount_cents, m.currency, member.language),
        "interval": m.interval,
        "period_end": _day(m.current_period_end, member),
        "trial_end": _day(m.trial_end, member),
        "account_url": f"{member.base_url.rstrip('/')}/account",
        "update_card_url": member.base_url,
        **extra,
    }
    deliver(member, messenger, env, template, key, order.email, order.subscriber_id, context, now)


def _day(moment: datetime | None, settings: Settings) -> str:
    """``mardi 3 décembre 2026`` / ``Tuesday, December 3, 2026`` in the buyer's language."""
    from launchkit.render.french import format_date

    return format_date(moment, settings.language, settings.timezone) if moment else ""


def deliver(
    settings: Settings, messenger: Any, env: Any, template: str, key: str, to_email: str,
    subscriber_id: int | None, context: dict[str, Any], now: datetime,
) -> None:  # fmt: skip
    """Render ``membership-{language}/{template}.md`` with ``context`` and send it now."""
    from launchkit import mailer, render

    env = env if env is not None else render.make_environment(settings)
    source = render.parse_email_file(membership_template(settings, template))
    rendered = render.render_email(
        env, source, context, settings=settings, unsubscribe_url="", language=settings.language
    )
    sender = mailer.sender_of(settings)
    msg = mailer.OutgoingMessage(
        to_email=to_email, to_name=context.get("first_name") or "", from_email=sender,
        from_name=settings.sender_name, subject=rendered.subject, html=rendered.html,
        text=rendered.text, bulk=False, unsubscribe_url=None,
        message_id=mailer.make_message_id(f"member-{template}", key, subscriber_id or 0,
                                          mailer.domain_of(sender)),
    )  # fmt: skip
    messenger.push(msg, mailer.build_message(msg, date=now))


def membership_template(settings: Settings, template: str) -> Path:
    """``membership-{language}/{template}.md``: the workspace's copy, else the starter's."""
    folder = f"membership-{settings.language}"
    for root in (settings.emails_dir, starter_dir("emails")):
        path = Path(root) / folder / f"{template}.md"
        if path.is_file():
            return path
    raise InputError(f'There is no email "{folder}/{template}.md" in {settings.emails_dir}.')
