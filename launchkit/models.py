"""Database schema: SQLAlchemy 2 typed models, one section per domain.

Money is integer minor units (``*_cents``) next to an ISO ``currency``; every datetime is a
timezone-aware UTC ``UTCDateTime``. Statuses are ``StrEnum`` values stored as short strings.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from launchkit.db import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


# --- statuses ---------------------------------------------------------------------------------


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SuppressionReason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    MANUAL = "manual"


class SequenceStatus(enum.StrEnum):
    ACTIVE = "active"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class SendStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"
    # final: a drop after DATA, then one resend with the same Message-ID: never sent again
    DELIVERED_UNCONFIRMED = "delivered_unconfirmed"


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    ACTIVE_PLAN = "active_plan"
    COMPLETED_PLAN = "completed_plan"
    DEFAULTED = "defaulted"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _str(length: int = 255) -> Any:
    return mapped_column(String(length))


# --- launches ---------------------------------------------------------------------------------


class Launch(Base):
    """A product launch and its milestones."""

    __tablename__ = "launches"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    product: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    prelaunch_start: Mapped[datetime | None]
    cart_open: Mapped[datetime]
    cart_close: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    waitlist: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # evergreen: each entrant's cart opens/closes at entry + these offsets ("entry +7d");
    # cart_open/cart_close are then the period in which entrants are taken
    mode: Mapped[str] = mapped_column(String(20), default="fixed", server_default="fixed")
    entry: Mapped[str | None] = mapped_column(String(200))  # magnet:SLUG | tag:TAG
    entry_cart_open: Mapped[str | None] = mapped_column(String(50))
    entry_cart_close: Mapped[str | None] = mapped_column(String(50))

    steps: Mapped[list[LaunchStep]] = relationship(back_populates="launch")


class LaunchStep(Base):
    """Completion record of one orchestrator step, so `launchkit run` resumes after a crash."""

    __tablename__ = "launch_steps"
    __table_args__ = (UniqueConstraint("launch_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("launches.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default=StepStatus.PENDING)
    detail: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    launch: Mapped[Launch] = relationship(back_populates="steps")


# --- audience ---------------------------------------------------------------------------------


class Subscriber(Base):
    """One person on the list; ``email`` is normalized (trimmed, lowercased, IDNA domain)."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.ACTIVE, index=True)
    source: Mapped[str | None] = mapped_column(String(100), index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    signed_up_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))


class StatusSource(enum.StrEnum):
    """What caused a subscriber status change."""

    IMPORT = "import"
    OPTIN = "optin"
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    SUPPRESS = "suppress"
    RESUBSCRIBE = "resubscribe"
    BACKFILL = "backfill"


class SubscriberStatusChange(Base):
    """One status change of a subscriber, at its true time (the history behind the audience).

    A subscriber without a change at or before T had its creation status (active) at T, from
    its join time on: rows exist for every non-active initial status and every later change.
    """

    __tablename__ = "subscriber_status_changes"
    __table_args__ = (
        Index("ix_subscriber_status_changes_subscriber_at", "subscriber_id", "changed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    changed_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(20))


class SubscriberTag(Base):
    """A tag on a subscriber (many per subscriber)."""

    __tablename__ = "subscriber_tags"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)
    tagged_at: Mapped[datetime | None]  # None: tagged before launchkit recorded the time


class Import(Base):
    """One audience file imported, with its counts."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(String(1024))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(20))
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    counts: Mapped[dict[str, Any] | None]


class Consent(Base):
    """GDPR consent record: who, when, how, the exact wording, confirmation and withdrawal."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(20))  # import | optin | manual
    source: Mapped[str | None] = mapped_column(String(100))
    given_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    page: Mapped[str | None] = mapped_column(String(1024))
    magnet_id: Mapped[int | None] = mapped_column(ForeignKey("magnets.id"))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    wording: Mapped[str | None] = mapped_column(Text)
    wording_sha256: Mapped[str | None] = mapped_column(String(64))
    wording_version: Mapped[str | None] = mapped_column(String(50))
    confirmed_at: Mapped[datetime | None]
    confirm_ip: Mapped[str | None] = mapped_column(String(64))
    withdrawn_at: Mapped[datetime | None]
    withdrawal_method: Mapped[str | None] = mapped_column(String(50))


class Suppression(Base):
    """An address that must never be mailed again; no import can remove it."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class Segment(Base):
    """A saved segment expression, e.g. ``tag:webinar and not tag:buyer``."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    expression: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


# --- lead magnets and web events ----------------------------------------------------------------


class Magnet(Base):
    """A free resource behind an opt-in page."""

    __tablename__ = "magnets"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    file_path: Mapped[str | None] = mapped_column(String(1024))
    url: Mapped[str | None] = mapped_column(String(2048))
    tags: Mapped[dict[str, Any] | None]  # {"tags": [...]} kept as JSON for portability
    sequence: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]  # no new signups; its records stay


class WebEvent(Base):
    """A page view, signup, confirmation, download, sales-page visit or checkout start."""

    __tablename__ = "web_events"
    __table_args__ = (Index("ix_web_events_kind_at", "kind", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    magnet_id: Mapped[int | None] = mapped_column(ForeignKey("magnets.id"), index=True)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime]


# --- sequences and delivery -------------------------------------------------------------------


class LaunchSequence(Base):
    """A sequence folder attached to a launch (or to a magnet, timed from signup)."""

    __tablename__ = "launch_sequences"
    __table_args__ = (UniqueConstraint("launch_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    launch_id: Mapped[int | None] = mapped_column(ForeignKey("launches.id", ondelete="CASCADE"))
    magnet_id: Mapped[int | None] = mapped_column(ForeignKey("magnets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=SequenceStatus.ACTIVE)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]


class Email(Base):
    """One email of an attached sequence, with its resolved send time."""

    __tablename__ = "emails"
    __table_args__ = (UniqueConstraint("sequence_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("launch_sequences.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(Text)
    send_at: Mapped[str | None] = mapped_column(String(100))  # e.g. "cart_close -3h"
    scheduled_at: Mapped[datetime | None]
    local_time: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline_at: Mapped[datetime | None]
    kind: Mapped[str] = mapped_column(String(20), default="content")
    segment: Mapped[str | None] = mapped_column(Text)
    skip_if: Mapped[str | None] = mapped_column(Text)


class Send(Base):
    """The delivery ledger: one row per (email, subscriber), moved queued -> sending -> sent."""

    __tablename__ = "sends"
    __table_args__ = (
        UniqueConstraint("email_id", "subscriber_id"),
        Index("ix_sends_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32), default=SendStatus.QUEUED)
    reason: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    message_id: Mapped[str | None] = mapped_column(String(255))
    deadline_at: Mapped[datetime | None]  # evergreen: this person's own cart close


class EvergreenEntry(Base):
    """One entrant of an evergreen launch, with their own cart open and close."""

    __tablename__ = "evergreen_entries"
    __table_args__ = (UniqueConstraint("launch_id", "subscriber_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("launches.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    entered_at: Mapped[datetime]
    cart_open_at: Mapped[datetime]
    cart_close_at: Mapped[datetime]


class Link(Base):
    """A link of one email sent through ``/c/TOKEN``: the address it leads to, recorded once per
    email (``personal``: the part re-derived for the clicker at click time, e.g. "checkout")."""

    __tablename__ = "links"
    __table_args__ = (UniqueConstraint("email_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    url: Mapped[str] = mapped_column(Text)
    email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    personal: Mapped[str | None] = mapped_column(String(20))


class LinkClick(Base):
    """A click on a tracked link (a GET of ``/c/TOKEN``; the matching ``web_events`` row of
    kind "click" is the same click in the site's event log, never counted twice)."""

    __tablename__ = "link_clicks"
    __table_args__ = (Index("ix_link_clicks_email_id", "email_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"))
    email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id", ondelete="SET NULL"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    occurred_at: Mapped[datetime]


# --- checkout ---------------------------------------------------------------------------------


class Offer(Base):
    """What is sold in a launch: full price, plans, guarantee, optional order bump."""

    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("launches.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    product: Mapped[str] = mapped_column(String(255))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    guarantee_days: Mapped[int] = mapped_column(Integer, default=30)
    bump_name: Mapped[str | None] = mapped_column(String(255))
    bump_cents: Mapped[int | None] = mapped_column(BigInteger)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    presale_until: Mapped[datetime | None]  # a pre-sale: the product is delivered by then
    tax_behavior: Mapped[str | None] = mapped_column(
        String(20)
    )  # inclusive | exclusive (Stripe Tax)
    trial_days: Mapped[int | None] = mapped_column(Integer)  # memberships only
    archived_at: Mapped[datetime | None]  # no new checkouts; its orders stay

    plans: Mapped[list[OfferPlan]] = relationship(
        back_populates="offer", order_by="OfferPlan.instalments", cascade="all, delete-orphan"
    )


class OfferPlan(Base):
    """An instalment plan of an offer, e.g. 3 x 177.00."""

    __tablename__ = "offer_plans"
    __table_args__ = (UniqueConstraint("offer_id", "instalments"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    instalments: Mapped[int] = mapped_column(Integer)
    instalment_cents: Mapped[int] = mapped_column(BigInteger)

    offer: Mapped[Offer] = relationship(back_populates="plans")


class Order(Base):
    """One purchase: pay in full or a plan, with what was paid, failed and refunded."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("launches.id"), index=True)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    source: Mapped[str | None] = mapped_column(String(100))
    plan_instalments: Mapped[int] = mapped_column(Integer, default=1)
    currency: Mapped[str] = mapped_column(String(3))
    total_cents: Mapped[int] = mapped_column(BigInteger)  # booked value of the purchase
    paid_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    fee_cents: Mapped[int | None] = mapped_column(BigInteger)
    bump: Mapped[bool] = mapped_column(Boolean, default=False)
    instalments_paid: Mapped[int] = mapped_column(Integer, default=0)
    instalments_failed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default=OrderStatus.PENDING, index=True)
    access: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    disputed_at: Mapped[datetime | None]
    defaulted_at: Mapped[datetime | None]
    subscription_cancelled_at: Mapped[datetime | None]
    receipt_sent_at: Mapped[datetime | None]
    language: Mapped[str | None] = mapped_column(String(8))  # checked out in
    updated_at: Mapped[datetime]
    tier: Mapped[str | None] = mapped_column(String(50))  # price tier at session creation
    coupon_code: Mapped[str | None] = mapped_column(String(100))  # promotion code used
    discount_cents: Mapped[int | None] = mapped_column(BigInteger)  # session amount_discount
    tax_cents: Mapped[int | None] = mapped_column(BigInteger)  # tax on each payment (Stripe Tax)


class Payment(Base):
    """One successful or failed charge (a pay-in-full payment or one instalment)."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)  # invoice or payment intent
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    instalment_number: Mapped[int | None] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fee_cents: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))  # paid | failed
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)  # paid after a failure
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    notified_at: Mapped[datetime | None]  # dunning email sent (failed payments)
    update_url: Mapped[str | None] = mapped_column(String(2048))  # where the buyer fixes a card
    receipt_url: Mapped[str | None] = mapped_column(String(2048))  # Stripe's page for it
    occurred_at: Mapped[datetime]


class Refund(Base):
    """A refund request and its Stripe refund."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))  # requested | succeeded | failed
    requested_at: Mapped[datetime]
    refunded_at: Mapped[datetime | None]


class StripeEvent(Base):
    """A webhook event already processed (its id makes redeliveries no-ops)."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime | None]
    processed_at: Mapped[datetime]
    # "applied", "ignored", or "parked" (waiting for the order it refers to; replayed later)
    status: Mapped[str] = mapped_column(String(20), default="applied")
    ref: Mapped[str | None] = mapped_column(String(255), index=True)  # PI/subscription it awaits
    payload: Mapped[dict[str, Any] | None]  # kept only while parked


# --- access and outgoing webhooks -------------------------------------------------------------


class Product(Base):
    """Something an offer gives access to: a URL, a file in the workspace, or an invite link."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(10))  # url | file | invite
    target: Mapped[str] = mapped_column(String(2048))  # the URL, or the file's workspace path
    created_at: Mapped[datetime]


class OfferProduct(Base):
    """An offer grants this product to its buyers."""

    __tablename__ = "offer_products"

    offer_id: Mapped[int] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )


class AccessGrant(Base):
    """Whether an order gives its buyer a product now; changes are kept in access_changes."""

    __tablename__ = "access_grants"
    __table_args__ = (UniqueConstraint("order_id", "product_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean)
    granted_at: Mapped[datetime]  # first granted
    revoked_at: Mapped[datetime | None]  # last revoked (None while active)
    email_sent_at: Mapped[datetime | None]  # the access email (claimed before it is sent)


class AccessChange(Base):
    """History: access to a product granted or revoked, when and why."""

    __tablename__ = "access_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(10))  # granted | revoked
    reason: Mapped[str] = mapped_column(String(30))  # the order or membership status
    occurred_at: Mapped[datetime]


class Webhook(Base):
    """An outgoing webhook endpoint and the events it follows (Standard Webhooks signing)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[dict[str, Any]]  # {"events": [...]}
    secret: Mapped[str] = mapped_column(String(100))  # whsec_<base64>
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """Outbox: one event for one endpoint, retried until a 2xx; its id is the webhook-id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # msg_<hex>, stable
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


# --- selling: price tiers, coupons, abandoned checkouts ---------------------------------------


class OfferTier(Base):
    """A dated price of an offer's pay-in-full option, e.g. early-bird 297 until Dec 2."""

    __tablename__ = "offer_tiers"
    __table_args__ = (UniqueConstraint("offer_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    until: Mapped[datetime]  # the price holds up to this moment (inclusive)


class Coupon(Base):
    """A Stripe coupon and its promotion code (the code buyers type or get in a link)."""

    __tablename__ = "coupons"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(100), unique=True)
    percent_off: Mapped[int | None] = mapped_column(Integer)
    amount_off_cents: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    until: Mapped[datetime | None]
    max_uses: Mapped[int | None] = mapped_column(Integer)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    stripe_coupon_id: Mapped[str | None] = mapped_column(String(255))
    stripe_promotion_code_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime]


class CheckoutRecovery(Base):
    """The one recovery email of an abandoned checkout: claimed (inserted) before it is sent."""

    __tablename__ = "checkout_recoveries"
    __table_args__ = (UniqueConstraint("subscriber_id", "offer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    started_at: Mapped[datetime]  # the abandoned checkout_start
    claimed_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


# --- memberships ------------------------------------------------------------------------------


class MembershipStatus(enum.StrEnum):
    INCOMPLETE = "incomplete"  # checkout done, no subscription state known yet
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a renewal failed; Stripe is retrying (grace)
    CANCELLING = "cancelling"  # cancelled at period end: a member until then
    ENDED = "ended"


class MembershipPrice(Base):
    """A recurring price of a membership offer, e.g. monthly 29.00 (founding price optional)."""

    __tablename__ = "membership_prices"
    __table_args__ = (UniqueConstraint("offer_id", "interval"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    interval: Mapped[str] = mapped_column(String(10))  # month | year
    cents: Mapped[int] = mapped_column(BigInteger)
    founding_cents: Mapped[int | None] = mapped_column(BigInteger)  # kept by this launch's members


class Membership(Base):
    """A member's recurring subscription, linked to the order of the checkout that started it.

    Its status is derived from its ``membership_events`` sorted by their own time, so it does
    not depend on the order Stripe's events arrive in."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("launches.id"), index=True)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    interval: Mapped[str] = mapped_column(String(10))  # month | year (current plan)
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # current price per interval
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default=MembershipStatus.INCOMPLETE)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime]
    trial_end: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]  # first payment (trial -> paid conversion)
    current_period_end: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    reminder_period_end: Mapped[datetime | None]  # the renewal a reminder was sent for
    updated_at: Mapped[datetime]


class MembershipEvent(Base):
    """One fact of a membership's life, with its own time (Stripe's), recorded once by key."""

    __tablename__ = "membership_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(255), unique=True)  # invoice, event or request id
    kind: Mapped[str] = mapped_column(String(30), index=True)
    occurred_at: Mapped[datetime]
    status: Mapped[str | None] = mapped_column(String(20))  # Stripe's subscription status
    interval: Mapped[str | None] = mapped_column(String(10))
    amount_cents: Mapped[int | None] = mapped_column(BigInteger)
    period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool | None] = mapped_column(Boolean)
    update_url: Mapped[str | None] = mapped_column(String(2048))
    notified_at: Mapped[datetime | None]  # the email this fact calls for was sent
