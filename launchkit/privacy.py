"""GDPR requests: export everything held on a person, or erase it.

``export_person`` gathers the profile, tags, status history, consents (with their wording),
sends, web events, orders (payments, refunds, access grants) and the suppression entry.

``erase_person`` removes or anonymises the person's data in every table, in the caller's
transaction, and is idempotent: the address survives only as ``sha256:<hex>`` on the suppression
list (``erased_key``), which the importer and the opt-in confirmation check, so no import re-adds
the person; orders stay for accounting (amounts, dates, statuses) under ``erased-<id>@invalid``.

``ERASE_POLICY`` decides, column by column, what happens to every column that can hold personal
data, and ``NOT_PERSONAL`` lists every other column: a test fails when the schema grows without
a decision.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.errors import NotFound
from launchkit.models import (
    AccessChange,
    AccessGrant,
    Base,
    Consent,
    Email,
    EvergreenEntry,
    Link,
    LinkClick,
    Membership,
    MembershipEvent,
    Order,
    Payment,
    Refund,
    Send,
    Subscriber,
    SubscriberStatus,
    SubscriberStatusChange,
    SubscriberTag,
    Suppression,
    WebEvent,
)

ERASED = "[erased]"
ERASED_REASON = "erased"

# What erase does to each column that can hold personal data, on the person's rows:
# placeholder = erased-<id>@invalid, clear = NULL (or "" when required), delete = the person's
# rows are deleted, unlink = the link to the subscriber is cut, hash = sha256:<hex> only,
# redact = the person's address and names are replaced by [erased] wherever they appear.
ERASE_POLICY: dict[str, str] = {
    "subscribers.email": "placeholder",
    "subscribers.first_name": "clear",
    "subscribers.last_name": "clear",
    "subscribers.timezone": "clear",
    "subscriber_tags.tag": "delete",
    "consents.ip": "clear",
    "consents.user_agent": "clear",
    "consents.page": "clear",
    "consents.confirm_ip": "clear",
    "suppressions.email": "hash",
    "suppressions.detail": "clear",
    "web_events.subscriber_id": "unlink",
    "web_events.ip": "clear",
    "link_clicks.subscriber_id": "unlink",
    "sends.reason": "clear",
    "orders.email": "placeholder",
    "orders.subscriber_id": "unlink",
    "payments.update_url": "clear",
    "payments.receipt_url": "clear",
    "membership_events.update_url": "clear",
    "refunds.reason": "clear",
    "stripe_events.payload": "redact",
    "webhook_deliveries.payload": "redact",
    "webhook_deliveries.last_error": "redact",
    "launch_steps.error": "redact",
    "launch_steps.detail": "redact",
    "imports.counts": "redact",
}

# Columns that hold no personal data (configuration, ids, amounts, statuses, times, wording).
NOT_PERSONAL: dict[str, str] = {
    "imports": "id file_name file_sha256 format source created_at",
    "launches": "id slug product currency prelaunch_start cart_open cart_close created_at "
    "updated_at waitlist mode entry entry_cart_open entry_cart_close",
    "links": "id uuid url email_id personal",  # url: never one that carries an address
    "magnets": "id slug title description file_path url tags sequence language created_at "
    "archived_at",
    "products": "id slug title kind target created_at",
    "segments": "id name expression created_at",
    "stripe_events": "id type created_at processed_at status ref",
    "suppressions": "id reason created_at",
    "webhooks": "id url events secret created_at",
    "launch_sequences": "id launch_id magnet_id name segment status consecutive_failures "
    "created_at",
    "launch_steps": "id launch_id step status started_at finished_at",
    "offers": "id launch_id slug product price_cents currency guarantee_days bump_name "
    "bump_cents stripe_product_id created_at presale_until tax_behavior trial_days archived_at",
    "subscribers": "id status source language signed_up_at confirmed_at unsubscribed_at "
    "created_at updated_at import_id",
    "webhook_deliveries": "id webhook_id event status attempts next_attempt_at last_status "
    "created_at delivered_at",
    "checkout_recoveries": "id subscriber_id offer_id started_at claimed_at sent_at",
    "consents": "id subscriber_id method source given_at magnet_id import_id wording "
    "wording_sha256 wording_version confirmed_at withdrawn_at withdrawal_method",
    "coupons": "id code percent_off amount_off_cents currency until max_uses offer_id "
    "stripe_coupon_id stripe_promotion_code_id created_at",
    "emails": "id sequence_id step position subject send_at scheduled_at local_time "
    "deadline_at kind segment skip_if",
    "offer_plans": "id offer_id instalments instalment_cents",
    "offer_products": "offer_id product_id",
    "offer_tiers": "id offer_id name price_cents until",
    "orders": "id launch_id offer_id source plan_instalments currency total_cents paid_cents "
    "refunded_cents fee_cents bump instalments_paid instalments_failed status access "
    "stripe_checkout_session_id stripe_payment_intent_id stripe_subscription_id "
    "stripe_customer_id external_id created_at paid_at refunded_at disputed_at defaulted_at "
    "subscription_cancelled_at receipt_sent_at language updated_at tier coupon_code "
    "discount_cents tax_cents",
    "subscriber_status_changes": "id subscriber_id status changed_at source",
    "subscriber_tags": "subscriber_id tagged_at",
    "evergreen_entries": "id launch_id subscriber_id entered_at cart_open_at cart_close_at",
    "web_events": "id kind magnet_id offer_id occurred_at",
    "access_changes": "id order_id product_id action reason occurred_at",
    "access_grants": "id order_id product_id active granted_at revoked_at email_sent_at",
    "link_clicks": "id link_id email_id occurred_at",
    "payments": "id order_id stripe_id stripe_payment_intent_id instalment_number amount_cents "
    "currency fee_cents status recovered refunded_cents notified_at occurred_at",
    "sends": "id email_id subscriber_id status due_at attempts next_attempt_at claimed_by "
    "claimed_at sent_at message_id deadline_at",
    "refunds": "id order_id payment_id idempotency_key stripe_refund_id amount_cents currency "
    "forced status requested_at refunded_at",
    "memberships": "id order_id offer_id launch_id stripe_subscription_id interval amount_cents "
    "currency status started_at paid_at trial_end current_period_end cancel_at_period_end "
    "cancel_requested_at ended_at reminder_period_end updated_at",
    "membership_events": "id membership_id key kind occurred_at status interval amount_cents "
    "period_end cancel_at_period_end notified_at",
    "membership_prices": "id offer_id interval cents founding_cents",
}


def not_personal_columns() -> set[str]:
    """``NOT_PERSONAL`` as ``table.column`` names."""
    return {f"{t}.{c}" for t, cols in NOT_PERSONAL.items() for c in cols.split()}


def is_erased(subscriber: Subscriber) -> bool:
    """True for a subscriber row ``erase_person`` anonymised (nothing may be linked to it)."""
    return subscriber.email == f"erased-{subscriber.id}@invalid"


def erased_key(email: str) -> str:
    """The suppression-list entry of an erased address: ``sha256:`` + hex of the address."""
    return "sha256:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _normalize(email: str) -> str:
    from launchkit.audience.addresses import normalize_email  # audience imports this module

    return normalize_email(email)


# --- export -----------------------------------------------------------------------------------


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for column in obj.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(obj, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _orders(session: Session, email: str, subscriber: Subscriber | None) -> list[Order]:
    match = Order.email == email
    if subscriber is not None:
        match = sa.or_(match, Order.subscriber_id == subscriber.id)
    return list(session.scalars(sa.select(Order).where(match).order_by(Order.id)))


def _suppressions(session: Session, email: str) -> list[Suppression]:
    keys = [email, erased_key(email)]
    return list(session.scalars(sa.select(Suppression).where(Suppression.email.in_(keys))))


def _by_subscriber(session: Session, model: Any, subscriber_id: int) -> list[Any]:
    query = sa.select(model).where(model.subscriber_id == subscriber_id)
    return list(session.scalars(query.order_by(*model.__table__.primary_key.columns)))


class _Person(NamedTuple):
    email: str
    subscriber: Subscriber | None
    orders: list[Order]
    suppressions: list[Suppression]


def _find_person(session: Session, raw_email: str) -> _Person:
    """What is held on this address; NotFound when there is nothing."""
    email = _normalize(raw_email)
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
    orders = _orders(session, email, subscriber)
    suppressions = _suppressions(session, email)
    if subscriber is None and not orders and not suppressions:
        raise NotFound(f"No subscriber or order with the address {email}")
    return _Person(email, subscriber, orders, suppressions)


def export_person(session: Session, raw_email: str) -> dict[str, Any]:
    """Everything held on the person with this address, as JSON-ready data."""
    email, subscriber, orders, suppressions = _find_person(session, raw_email)
    data: dict[str, Any] = {"email": email, "subscriber": None}
    if subscriber is not None:
        data["subscriber"] = _subscriber_data(session, subscriber)
    data["orders"] = [_order_data(session, order) for order in orders]
    data["suppressions"] = [_row(s) for s in suppressions]
    return data


def _subscriber_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    sid = subscriber.id
    sends = session.execute(
        sa.select(Send, Email.step, Email.subject)
        .join(Email, Email.id == Send.email_id)
        .where(Send.subscriber_id == sid)
        .order_by(Send.id)
    )
    return {
        "profile": _row(subscriber),
        "tags": sorted(t.tag for t in _by_subscriber(session, SubscriberTag, sid)),
        "status_history": [
            _row(c, ("subscriber_id",))
            for c in _by_subscriber(session, SubscriberStatusChange, sid)
        ],
        "consents": [_row(c, ("subscriber_id",)) for c in _by_subscriber(session, Consent, sid)],
        "sends": [
            {"step": step, "subject": subject, **_row(send, ("subscriber_id", "claimed_by"))}
            for send, step, subject in sends
        ],
        "web_events": [_row(e, ("subscriber_id",)) for e in _by_subscriber(session, WebEvent, sid)],
        "link_clicks": [
            {**_row(c, ("subscriber_id",)), "url": url} for c, url in _clicks(session, sid)
        ],
        "evergreen_entries": [
            _row(e, ("subscriber_id",)) for e in _by_subscriber(session, EvergreenEntry, sid)
        ],
    }


def _clicks(session: Session, sid: int) -> list[tuple[LinkClick, str]]:
    """The person's clicks with the address each link leads to."""
    query = (
        sa.select(LinkClick, Link.url)
        .join(Link, Link.id == LinkClick.link_id)
        .where(LinkClick.subscriber_id == sid)
        .order_by(LinkClick.id)
    )
    return [(click, url) for click, url in session.execute(query).all()]


def _order_data(session: Session, order: Order) -> dict[str, Any]:
    def rows(model: Any) -> list[dict[str, Any]]:
        query = sa.select(model).where(model.order_id == order.id).order_by(model.id)
        return [_row(r, ("order_id",)) for r in session.scalars(query)]

    return {
        **_row(order),
        "payments": rows(Payment),
        "refunds": rows(Refund),
        "access_grants": rows(AccessGrant),
        "access_changes": rows(AccessChange),
        "memberships": rows(Membership),
    }


# --- erase ------------------------------------------------------------------------------------


def erase_person(session: Session, raw_email: str, *, now: datetime) -> dict[str, int]:
    """Erase the person with this address (see the module docstring); returns counts.

    Runs in the caller's transaction. Erasing an address already erased changes nothing.
    """
    email, subscriber, orders, suppressions = _find_person(session, raw_email)
    names = [email]
    if subscriber is not None:
        names += [n for n in (subscriber.first_name, subscriber.last_name) if len(n.strip()) > 2]
        _clear_ips(session, subscriber.id)
    counts = {"subscribers": 0, "orders": len(orders), "redacted": 0}
    _redact_everywhere(session, names, counts)
    for order in orders:
        _erase_order(session, order)
    if subscriber is not None:
        _erase_subscriber(session, subscriber, now)
        counts["subscribers"] = 1
    _hash_suppression(session, email, suppressions, now)
    session.flush()
    return counts


def _erase_subscriber(session: Session, subscriber: Subscriber, now: datetime) -> None:
    from launchkit import audience  # audience imports this module

    sid = subscriber.id
    session.execute(sa.delete(SubscriberTag).where(SubscriberTag.subscriber_id == sid))
    session.execute(
        sa.update(Consent)
        .where(Consent.subscriber_id == sid)
        .values(ip=None, user_agent=None, page=None, confirm_ip=None)
    )
    session.execute(
        sa.update(WebEvent).where(WebEvent.subscriber_id == sid).values(subscriber_id=None, ip=None)
    )
    session.execute(
        sa.update(LinkClick).where(LinkClick.subscriber_id == sid).values(subscriber_id=None)
    )
    session.execute(sa.update(Send).where(Send.subscriber_id == sid).values(reason=None))
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        audience.set_status(
            session, subscriber, SubscriberStatus.UNSUBSCRIBED, at=now, source="suppress"
        )
    subscriber.email = f"erased-{sid}@invalid"
    subscriber.first_name = ""
    subscriber.last_name = ""
    subscriber.timezone = None
    subscriber.updated_at = max(subscriber.updated_at or now, now)


def _clear_ips(session: Session, sid: int) -> None:
    """Clear the person's IPs on every web event, also those not linked (page views)."""
    ips = set(session.scalars(sa.select(WebEvent.ip).where(WebEvent.subscriber_id == sid)))
    for row in session.execute(
        sa.select(Consent.ip, Consent.confirm_ip).where(Consent.subscriber_id == sid)
    ):
        ips.update(row)
    ips.discard(None)
    if ips:
        session.execute(sa.update(WebEvent).where(WebEvent.ip.in_(ips)).values(ip=None))


def _erase_order(session: Session, order: Order) -> None:
    order.email = f"erased-{order.id}@invalid"
    order.subscriber_id = None
    session.execute(
        sa.update(Payment)
        .where(Payment.order_id == order.id)
        .values(update_url=None, receipt_url=None)
    )
    session.execute(sa.update(Refund).where(Refund.order_id == order.id).values(reason=None))
    memberships = sa.select(Membership.id).where(Membership.order_id == order.id)
    session.execute(
        sa.update(MembershipEvent)
        .where(MembershipEvent.membership_id.in_(memberships))
        .values(update_url=None)
    )


def _hash_suppression(
    session: Session, email: str, found: list[Suppression], now: datetime
) -> None:
    key = erased_key(email)
    for entry in found:
        if entry.email != key:
            session.delete(entry)
    if not any(entry.email == key for entry in found):
        session.add(Suppression(email=key, reason=ERASED_REASON, detail=None, created_at=now))


def _redact_everywhere(session: Session, names: list[str], counts: dict[str, int]) -> None:
    """Replace the person's address and names in the free-form columns marked ``redact``."""
    needles = [n.lower() for n in names]
    for table_column, action in ERASE_POLICY.items():
        if action != "redact":
            continue
        table_name, column_name = table_column.split(".")
        table = Base.metadata.tables[table_name]
        column = table.c[column_name]
        pk = list(table.primary_key.columns)
        rows = session.execute(sa.select(*pk, column).where(column.is_not(None))).all()
        for row in rows:
            value = row[-1]
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if not any(n in text.lower() for n in needles):
                continue
            new = _scrub(value, needles)
            where = sa.and_(*(c == row[i] for i, c in enumerate(pk)))
            session.execute(sa.update(table).where(where).values({column_name: new}))
            counts["redacted"] += 1


def _scrub(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        lowered = value.lower()
        for needle in needles:
            start = lowered.find(needle)
            while start >= 0:
                value = value[:start] + ERASED + value[start + len(needle) :]
                lowered = value.lower()
                start = lowered.find(needle, start + len(ERASED))
        return value
    if isinstance(value, dict):
        return {_scrub(k, needles): _scrub(v, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, needles) for v in value]
    return value
