"""Stripe checkout: offers, Checkout Sessions, webhooks, orders, instalments, refunds, disputes.

One module per concern, re-exported here:

- ``offers``: offers, prices and plans, the cart window, starting a checkout;
- ``stripe_api``: the Stripe adapter, the only module that imports ``stripe`` (client, product
  sync, Checkout Session, webhook signatures, cancellations, refund calls);
- ``payloads``: reading Stripe's event shapes, and refusing absurd values at the edge;
- ``events``: verified webhook events, applied once each and in any order: each event id is
  stored in ``stripe_events`` in the same transaction as its effects, and an event about an
  order not yet known is parked and replayed when it appears;
- ``orders``: orders, payments, status and access, buyer tags, reports;
- ``refunds``: refunds within the guarantee, idempotent across crashes;
- ``notifications``: receipts and dunning emails.

A payment plan ends after exactly N paid invoices: the N-th marks the order completed and the
subscription is cancelled in Stripe (``cancel_due_subscriptions``). Side effects that talk to the
outside (Stripe cancellations, receipt and dunning emails) are recorded as "due" in the event
transaction and carried out by claim-then-act helpers.
"""

from __future__ import annotations

from launchkit.checkout.events import HANDLERS, MAX_FAILED_INSTALMENTS, handle_event, parked_events
from launchkit.checkout.notifications import send_notifications
from launchkit.checkout.offers import (
    LOCALES,
    PLAN_FULL,
    CartClosed,
    CheckoutStart,
    add_offer,
    cart_state,
    checkout_metadata,
    format_money,
    get_offer,
    list_offers,
    offer_as_dict,
    parse_bump,
    parse_money,
    parse_plan,
    plan_choices,
    resolve_plan,
    start_checkout,
)
from launchkit.checkout.orders import (
    ACCESS_STATUSES,
    cancel_due_subscriptions,
    count_orders,
    get_order,
    guarantee_closes,
    link_order,
    list_orders,
    normal_email,
    order_as_dict,
    over_collected,
)
from launchkit.checkout.payloads import InvalidEvent, validate_event
from launchkit.checkout.refunds import refund_order
from launchkit.checkout.stripe_api import (
    REFUND_ATTEMPTS,
    STRIPE_API_VERSION,
    WEBHOOK_TOLERANCE,
    SignatureError,
    create_checkout_session,
    make_client,
    sync_offers,
    verify_event,
)

__all__ = [
    "ACCESS_STATUSES", "HANDLERS", "LOCALES", "MAX_FAILED_INSTALMENTS", "PLAN_FULL",
    "REFUND_ATTEMPTS", "STRIPE_API_VERSION", "WEBHOOK_TOLERANCE", "CartClosed", "CheckoutStart",
    "InvalidEvent", "SignatureError", "add_offer", "cancel_due_subscriptions", "cart_state",
    "checkout_metadata", "count_orders", "create_checkout_session", "format_money", "get_offer",
    "get_order", "guarantee_closes", "handle_event", "link_order", "list_offers", "list_orders",
    "make_client", "normal_email", "offer_as_dict", "order_as_dict", "over_collected",
    "parked_events", "parse_bump", "parse_money", "parse_plan", "plan_choices", "refund_order",
    "resolve_plan", "send_notifications", "start_checkout", "sync_offers", "validate_event",
    "verify_event",
]  # fmt: skip
