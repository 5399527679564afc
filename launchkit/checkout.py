"""Stripe checkout: offers, Checkout Sessions, webhooks, orders, instalments, refunds, disputes.

The only module that imports ``stripe``. Pinned to the API version of the installed library
(``STRIPE_API_VERSION``). Design, driven by what a real Stripe and the local test peer share:

- prices are inline (``price_data``), so ``sync_offers`` keeps Stripe *Products* only;
- creating a Checkout Session is one small adapter, ``create_checkout_session``;
- everything after it is event-driven and idempotent: each webhook event id is stored in
  ``stripe_events`` in the same transaction as its effects; events may arrive in any order
  (an order is created or merged from whichever event comes first, and an event about an order
  not yet known is parked and replayed when it appears); both ``invoice.paid`` and
  ``invoice.payment_succeeded`` count an instalment, deduplicated by invoice id;
- a payment plan ends after exactly N paid invoices: the N-th marks the order completed and the
  subscription is cancelled in Stripe (``cancel_due_subscriptions``);
- side effects that talk to the outside (Stripe cancellations, receipt and dunning emails) are
  recorded as "due" in the event transaction and carried out by claim-then-act helpers.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe
from babel.numbers import format_currency
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit.config import Settings
from launchkit.errors import AlreadyExists, InputError, InvalidTransition, NotFound, PaymentError
from launchkit.launches import check_slug, get_launch
from launchkit.models import (
    Launch,
    Offer,
    OfferPlan,
    Order,
    OrderStatus,
    Payment,
    Refund,
    StripeEvent,
    Subscriber,
    SubscriberTag,
)

STRIPE_API_VERSION = "2026-10-28.endive"  # stripe-python 16.1's version; payloads read both shapes
WEBHOOK_TOLERANCE = 300  # seconds, either side of now
MAX_FAILED_INSTALMENTS = 3
LOCALES = {"fr": "fr_FR", "en": "en_GB"}
PLAN_FULL = "full"


class SignatureError(InputError):
    "A webhook's Stripe-Signature header is missing, wrong or outside the tolerance window."


class CartClosed(InvalidTransition):
    "The cart of the launch is not open at this time."


# --- money ------------------------------------------------------------------------------------


def parse_money(text: str, *, what: str = "price") -> int:
    """``497``, ``497.00`` or ``497,5`` -> integer cents."""
    try:
        value = Decimal(str(text).strip().replace(",", "."))
    except InvalidOperation as e:
        raise InputError(f'{what} "{text}" is not an amount like 497 or 49.90.') from e
    if value <= 0 or value != value.quantize(Decimal("0.01")):
        raise InputError(f'{what} "{text}" must be positive with at most 2 decimals.')
    return int(value * 100)


def format_money(cents: int, currency: str, language: str = "fr") -> str:
    """Amount in the workspace locale, e.g. ``497,00 €`` (fr) or ``€497.00`` (en)."""
    return format_currency(Decimal(cents) / 100, currency, locale=LOCALES.get(language, "en_GB"))


def parse_plan(text: str) -> tuple[int, int]:
    """``3x177`` -> (3 instalments, 17700 cents each)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*([\d.,]+)\s*", text)
    if not match or int(match[1]) < 2:
        raise InputError(f'--plan "{text}" must look like 3x177 (at least 2 instalments).')
    return int(match[1]), parse_money(match[2], what=f'--plan "{text}"')


def parse_bump(text: str) -> tuple[str, int]:
    """``Workbook:27`` -> ("Workbook", 2700)."""
    name, sep, amount = text.rpartition(":")
    if not sep or not name.strip():
        raise InputError(f'--bump "{text}" must look like "Workbook:27".')
    return name.strip(), parse_money(amount, what=f'--bump "{text}"')


# --- offers -----------------------------------------------------------------------------------


def add_offer(
    session: Session,
    launch_slug: str,
    slug: str,
    *,
    product: str,
    price_cents: int,
    currency: str,
    plans: list[tuple[int, int]],
    guarantee_days: int = 30,
    bump: tuple[str, int] | None = None,
    now: datetime,
) -> Offer:
    """Create an offer: pay in full, any number of instalment plans, guarantee, optional bump."""
    launch = get_launch(session, launch_slug)
    check_slug(slug, "Offer")
    if session.scalar(select(Offer.id).where(Offer.slug == slug)) is not None:
        raise AlreadyExists(f'Offer "{slug}" already exists.')
    if not product.strip() or price_cents <= 0:
        raise InputError(f'Offer "{slug}": --product and a positive --price are required.')
    if guarantee_days < 0:
        raise InputError(f'Offer "{slug}": --guarantee-days must be 0 or more.')
    counts = [n for n, _ in plans]
    if len(set(counts)) != len(counts):
        raise InputError(f'Offer "{slug}": two plans have the same number of instalments.')
    offer = Offer(
        launch_id=launch.id,
        slug=slug,
        product=product.strip(),
        price_cents=price_cents,
        currency=currency.upper(),
        guarantee_days=guarantee_days,
        bump_name=bump[0] if bump else None,
        bump_cents=bump[1] if bump else None,
        created_at=now,
    )
    offer.plans = [OfferPlan(instalments=n, instalment_cents=c) for n, c in sorted(plans)]
    session.add(offer)
    session.flush()
    return offer


def get_offer(session: Session, slug: str) -> Offer:
    """The offer with this slug, or NotFound."""
    offer = session.scalar(select(Offer).where(Offer.slug == slug))
    if offer is None:
        raise NotFound(f'Offer "{slug}" does not exist; see `launchkit offer list`.')
    return offer


def list_offers(session: Session) -> list[Offer]:
    """All offers, oldest first."""
    return list(session.scalars(select(Offer).order_by(Offer.id)))


def offer_as_dict(session: Session, offer: Offer) -> dict[str, Any]:
    """JSON-ready description of an offer."""
    launch = session.get(Launch, offer.launch_id)
    return {
        "slug": offer.slug,
        "launch": launch.slug if launch else None,
        "product": offer.product,
        "price_cents": offer.price_cents,
        "currency": offer.currency,
        "plans": [
            {"instalments": p.instalments, "instalment_cents": p.instalment_cents}
            for p in offer.plans
        ],
        "guarantee_days": offer.guarantee_days,
        "bump": {"name": offer.bump_name, "cents": offer.bump_cents} if offer.bump_name else None,
        "stripe_product_id": offer.stripe_product_id,
    }


def plan_choices(offer: Offer) -> list[tuple[str, int, int]]:
    """(plan key, instalments, cents per instalment): ``full`` first, then each plan."""
    choices = [(PLAN_FULL, 1, offer.price_cents)]
    return choices + [(str(p.instalments), p.instalments, p.instalment_cents) for p in offer.plans]


def resolve_plan(offer: Offer, plan: str | None) -> tuple[int, int]:
    """(instalments, cents per instalment) for ``full``, ``3`` or ``3x``; InputError otherwise."""
    key = (plan or PLAN_FULL).strip().lower().rstrip("x")
    for name, count, cents in plan_choices(offer):
        if key == name or (key == "1" and name == PLAN_FULL):
            return count, cents
    names = ", ".join(name for name, _, _ in plan_choices(offer))
    raise InputError(f'Offer "{offer.slug}" has no plan "{plan}"; choose one of: {names}.')


# --- Stripe client and product sync -----------------------------------------------------------


def make_client(settings: Settings, *, http_client: Any = None) -> stripe.StripeClient:
    """A StripeClient on ``settings.stripe_api_base``, pinned to ``STRIPE_API_VERSION``."""
    if not settings.stripe_api_key:
        raise PaymentError("No Stripe key: set STRIPE_API_KEY (sk_test_... for test mode).")
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=STRIPE_API_VERSION,
        max_network_retries=0,
        http_client=http_client,
    )


def _stripe_call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except stripe.StripeError as e:
        message = getattr(e, "user_message", None) or str(e) or type(e).__name__
        raise PaymentError(f"Stripe refused to {what}: {message}") from e


def sync_offers(session: Session, client: stripe.StripeClient, *, now: datetime) -> list[dict]:
    """Create or update one Stripe Product per offer, found by metadata ``launchkit_offer``."""
    existing: dict[str, Any] = {}
    products = _stripe_call("list products", client.v1.products.list, params={"limit": 100})
    for product in products.auto_paging_iter():
        product = product.to_dict()
        slug = (product.get("metadata") or {}).get("launchkit_offer")
        if slug and slug not in existing:
            existing[slug] = product
    results = []
    for offer in list_offers(session):
        params = {"name": offer.product, "metadata": {"launchkit_offer": offer.slug}}
        found = existing.get(offer.slug)
        if found is None:
            product = _stripe_call("create a product", client.v1.products.create, params=params)
            action = "created"
        elif found.get("name") != offer.product:
            product = _stripe_call(
                "update a product", client.v1.products.update, found["id"], params=params
            )
            action = "updated"
        else:
            product, action = found, "unchanged"
        offer.stripe_product_id = product["id"]
        results.append({"offer": offer.slug, "product": product["id"], "action": action})
    session.flush()
    return results


# --- checkout ---------------------------------------------------------------------------------


def cart_state(launch: Launch, now: datetime, grace: timedelta) -> str:
    """``before`` the cart opens, ``open``, or ``closed`` (after close + grace)."""
    if now < launch.cart_open:
        return "before"
    if now > launch.cart_close + grace:
        return "closed"
    return "open"


def checkout_metadata(
    offer: Offer, launch: Launch, instalments: int, subscriber_id: int | None, bump: bool
) -> dict[str, str]:
    """Metadata put on the session, its payment intent or subscription, and so on every event."""
    return {
        "launch": launch.slug,
        "offer": offer.slug,
        "plan": PLAN_FULL if instalments == 1 else str(instalments),
        "instalments": str(instalments),
        "subscriber": "" if subscriber_id is None else str(subscriber_id),
        "bump": "1" if bump else "0",
    }


def _price_data(offer: Offer, cents: int, *, recurring: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"currency": offer.currency.lower(), "unit_amount": cents}
    if offer.stripe_product_id:
        data["product"] = offer.stripe_product_id
    else:
        data["product_data"] = {"name": offer.product}
    if recurring:
        data["recurring"] = {"interval": "month", "interval_count": 1}
    return data


def create_checkout_session(
    client: stripe.StripeClient,
    *,
    offer: Offer,
    plan: tuple[int, int],
    customer_email: str | None,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    now: datetime,
) -> tuple[str, str]:
    """The adapter: one Checkout Session (payment mode, or subscription mode for a plan)."""
    instalments, cents = plan
    line_items: list[dict[str, Any]] = [
        {"price_data": _price_data(offer, cents, recurring=instalments > 1), "quantity": 1}
    ]
    if metadata.get("bump") == "1" and offer.bump_name and offer.bump_cents:
        bump = {"currency": offer.currency.lower(), "unit_amount": offer.bump_cents}
        bump["product_data"] = {"name": offer.bump_name}
        line_items.append({"price_data": bump, "quantity": 1})
    params: dict[str, Any] = {
        "mode": "subscription" if instalments > 1 else "payment",
        "line_items": line_items,
        "metadata": metadata,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "expires_at": int((now + timedelta(hours=1)).timestamp()),
    }
    if metadata.get("subscriber"):
        params["client_reference_id"] = metadata["subscriber"]
    if customer_email:
        params["customer_email"] = customer_email
    if instalments > 1:
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    created = _stripe_call(
        "create a checkout session", client.v1.checkout.sessions.create, params=params
    )
    return created.id, created.url


@dataclass(frozen=True)
class CheckoutStart:
    """What the sales page needs to send a buyer to Stripe."""

    session_id: str
    url: str
    instalments: int


def start_checkout(
    session: Session,
    settings: Settings,
    client: stripe.StripeClient,
    offer_slug: str,
    *,
    plan: str | None,
    subscriber_id: int | None,
    email: str | None,
    bump: bool,
    now: datetime,
) -> CheckoutStart:
    """Check the cart is open, then create a Checkout Session for this offer and plan."""
    offer = get_offer(session, offer_slug)
    launch = session.get(Launch, offer.launch_id)
    assert launch is not None
    state = cart_state(launch, now, settings.checkout_grace)
    if state != "open":
        raise CartClosed(f'The cart of "{launch.slug}" is {state}: no checkout now.')
    instalments, cents = resolve_plan(offer, plan)
    metadata = checkout_metadata(offer, launch, instalments, subscriber_id, bump)
    base = settings.base_url.rstrip("/")
    session_id, url = create_checkout_session(
        client,
        offer=offer,
        plan=(instalments, cents),
        customer_email=email,
        metadata=metadata,
        success_url=f"{base}/buy/{offer.slug}/thanks?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/buy/{offer.slug}",
        now=now,
    )
    return CheckoutStart(session_id, url, instalments)


# --- webhook verification ---------------------------------------------------------------------


def verify_event(
    payload: bytes, sig_header: str | None, secret: str | None, *, now_ts: float | None = None
) -> dict[str, Any]:
    """Check the Stripe-Signature (HMAC and a +/-300 s window) and return the event dict."""
    if not secret:
        raise SignatureError("STRIPE_WEBHOOK_SECRET is not set; webhooks cannot be verified.")
    try:
        stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance=None)
        timestamp = int(
            dict(p.split("=", 1) for p in (sig_header or "").split(",") if "=" in p)["t"]
        )
    except (stripe.SignatureVerificationError, KeyError, ValueError) as e:
        raise SignatureError("Webhook signature is missing or does not match.") from e
    now_ts = time.time() if now_ts is None else now_ts
    if abs(now_ts - timestamp) > WEBHOOK_TOLERANCE:
        raise SignatureError("Webhook signature timestamp is outside the tolerance window.")
    try:
        event = json.loads(payload)
    except ValueError as e:
        raise SignatureError("Webhook body is not JSON.") from e
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise SignatureError("Webhook body is not a Stripe event.")
    return event


# --- reading event payloads (current API shape and the 2017 shape localstripe sends) ----------


class _Park(Exception):  # noqa: N818 (control flow, never leaves this module)
    """The event refers to a payment or subscription not known yet: keep it for later."""

    def __init__(self, ref: str | None):
        super().__init__(ref)
        self.ref = ref


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _ts(value: Any, default: datetime) -> datetime:
    return datetime.fromtimestamp(int(value), UTC) if value else default


def _invoice_subscription(inv: dict[str, Any]) -> str | None:
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    return _id(inv.get("subscription")) or _id(details.get("subscription"))


def _invoice_metadata(inv: dict[str, Any]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in (inv.get("lines") or {}).get("data") or []:
        meta.update(line.get("metadata") or {})
    meta.update(inv.get("subscription_details", {}).get("metadata") or {})
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    meta.update(details.get("metadata") or {})
    meta.update(inv.get("metadata") or {})
    return meta


def _invoice_payment_intent(inv: dict[str, Any]) -> str | None:
    if inv.get("payment_intent"):
        return _id(inv["payment_intent"])
    for item in (inv.get("payments") or {}).get("data") or []:
        found = _id((item.get("payment") or {}).get("payment_intent"))
        if found:
            return found
    charge = inv.get("charge")
    return _id(charge.get("payment_intent")) if isinstance(charge, dict) else None


# --- orders -----------------------------------------------------------------------------------


def get_order(session: Session, order_id: int | str) -> Order:
    """An order by its number, or NotFound."""
    try:
        order = session.get(Order, int(order_id))
    except (TypeError, ValueError):
        order = None
    if order is None:
        raise NotFound(f'Order "{order_id}" does not exist; see `launchkit orders`.')
    return order


def _find_order(
    session: Session, *, checkout: str | None = None, pi: str | None = None, sub: str | None = None
) -> Order | None:
    if checkout:
        found = session.scalar(select(Order).where(Order.stripe_checkout_session_id == checkout))
        if found:
            return found
    if pi:
        found = session.scalar(select(Order).where(Order.stripe_payment_intent_id == pi))
        found = found or session.scalar(
            select(Order).join(Payment).where(Payment.stripe_payment_intent_id == pi)
        )
        if found:
            return found
    if sub:
        return session.scalar(select(Order).where(Order.stripe_subscription_id == sub))
    return None


def _find_subscriber(
    session: Session, meta: dict[str, str], email: str | None
) -> Subscriber | None:
    ref = meta.get("subscriber") or ""
    if ref.isdigit():
        found = session.get(Subscriber, int(ref))
        if found:
            return found
    if email:
        return session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))
    return None


def _order_total(offer: Offer | None, instalments: int, bump: bool) -> int:
    if offer is None:
        return 0
    base = offer.price_cents
    for plan in offer.plans:
        if plan.instalments == instalments:
            base = plan.instalments * plan.instalment_cents
    return base + (offer.bump_cents or 0 if bump else 0)


def _order_from_metadata(
    session: Session,
    meta: dict[str, str],
    *,
    email: str | None,
    currency: str | None,
    now: datetime,
) -> Order | None:
    launch = session.scalar(select(Launch).where(Launch.slug == meta.get("launch", "")))
    if launch is None:
        return None
    offer = session.scalar(select(Offer).where(Offer.slug == meta.get("offer", "")))
    instalments = (
        int(meta.get("instalments") or 1) if str(meta.get("instalments", "1")).isdigit() else 1
    )
    bump = meta.get("bump") == "1"
    subscriber = _find_subscriber(session, meta, email)
    order = Order(
        launch_id=launch.id,
        offer_id=offer.id if offer else None,
        subscriber_id=subscriber.id if subscriber else None,
        email=(email or (subscriber.email if subscriber else "")).strip().lower(),
        source=subscriber.source if subscriber else None,
        plan_instalments=instalments,
        currency=(currency or (offer.currency if offer else launch.currency)).upper(),
        total_cents=_order_total(offer, instalments, bump),
        bump=bump,
        status=OrderStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    return order


def _fill(order: Order, **ids: str | None) -> None:
    for name, value in ids.items():
        if value and not getattr(order, name):
            setattr(order, name, value)


def _record_payment(
    session: Session,
    order: Order,
    *,
    stripe_id: str,
    pi: str | None,
    amount: int,
    currency: str | None,
    when: datetime,
) -> Payment | None:
    """Count one successful payment, once, whichever event reports it."""
    known = session.scalar(select(Payment).where(Payment.stripe_id == stripe_id))
    if known is None and pi:
        known = session.scalar(
            select(Payment).where(
                (Payment.stripe_payment_intent_id == pi) | (Payment.stripe_id == pi)
            )
        )
    if known is not None and known.status == "paid":
        known.stripe_payment_intent_id = known.stripe_payment_intent_id or pi
        return None
    recovered = _consecutive_failures(session, order) > 0
    payment = Payment(
        order_id=order.id,
        stripe_id=stripe_id,
        stripe_payment_intent_id=pi,
        instalment_number=order.instalments_paid + 1,
        amount_cents=amount,
        currency=(currency or order.currency).upper(),
        status="paid",
        recovered=recovered,
        refunded_cents=0,
        occurred_at=when,
    )
    session.add(payment)
    order.paid_cents += amount
    order.instalments_paid += 1
    order.paid_at = order.paid_at or when
    session.flush()
    return payment


def _consecutive_failures(session: Session, order: Order) -> int:
    statuses = session.scalars(
        select(Payment.status).where(Payment.order_id == order.id).order_by(Payment.id.desc())
    )
    count = 0
    for status in statuses:
        if status != "failed":
            break
        count += 1
    return count


def _derive_status(order: Order) -> OrderStatus:
    if order.disputed_at:
        return OrderStatus.DISPUTED
    if order.refunded_at:
        return OrderStatus.REFUNDED
    if order.instalments_paid == 0:
        return OrderStatus.PENDING
    if order.plan_instalments <= 1:
        return OrderStatus.PAID
    if order.instalments_paid >= order.plan_instalments:
        return OrderStatus.COMPLETED_PLAN
    if order.defaulted_at:
        return OrderStatus.DEFAULTED
    return OrderStatus.ACTIVE_PLAN


ACCESS_STATUSES = (OrderStatus.PAID, OrderStatus.ACTIVE_PLAN, OrderStatus.COMPLETED_PLAN)


def _add_tags(session: Session, subscriber_id: int | None, tags: Iterable[str]) -> None:
    if subscriber_id is None:
        return
    for tag in tags:
        if session.get(SubscriberTag, (subscriber_id, tag)) is None:
            session.add(SubscriberTag(subscriber_id=subscriber_id, tag=tag))
    session.flush()


def _settle(session: Session, order: Order, now: datetime) -> None:
    """Recompute status and access from the facts; tag buyers and refunded buyers."""
    refunded = sum(
        session.scalars(select(Payment.refunded_cents).where(Payment.order_id == order.id))
    )
    order.refunded_cents = max(order.refunded_cents, refunded)
    if order.refunded_cents and (
        order.refunded_cents >= order.paid_cents or order.plan_instalments > 1
    ):
        order.refunded_at = order.refunded_at or now
    order.status = _derive_status(order)
    order.access = order.status in ACCESS_STATUSES
    order.updated_at = now
    if order.instalments_paid > 0:
        launch = session.get(Launch, order.launch_id)
        _add_tags(session, order.subscriber_id, ["buyer", f"buyer:{launch.slug if launch else ''}"])
    if order.status == OrderStatus.REFUNDED:
        _add_tags(session, order.subscriber_id, ["refunded"])
    session.flush()


# --- event handlers ---------------------------------------------------------------------------


def _on_session_completed(session: Session, obj: dict[str, Any], now: datetime) -> Order | None:
    pi, sub = _id(obj.get("payment_intent")), _id(obj.get("subscription"))
    email = (obj.get("customer_details") or {}).get("email") or obj.get("customer_email")
    order = _find_order(session, checkout=obj["id"], pi=pi, sub=sub)
    if order is None:
        meta = obj.get("metadata") or {}
        order = _order_from_metadata(
            session, meta, email=email, currency=obj.get("currency"), now=now
        )
    if order is None:
        return None
    _fill(
        order,
        stripe_checkout_session_id=obj["id"],
        stripe_payment_intent_id=pi,
        stripe_subscription_id=sub,
        stripe_customer_id=_id(obj.get("customer")),
    )
    if email:  # the address the buyer typed at checkout is the one to keep
        order.email = email.strip().lower()
    if obj.get("mode") != "subscription" and obj.get("payment_status") == "paid":
        when = _ts(obj.get("created"), now)
        amount = int(obj.get("amount_total") or 0)
        _record_payment(
            session, order, stripe_id=pi or obj["id"], pi=pi, amount=amount,
            currency=obj.get("currency"), when=when,
        )  # fmt: skip
    return order


def _on_payment_intent_succeeded(
    session: Session, obj: dict[str, Any], now: datetime
) -> Order | None:
    meta = obj.get("metadata") or {}
    order = _find_order(session, pi=obj["id"])
    if order is None and meta.get("launch") and meta.get("instalments", "1") == "1":
        email = obj.get("receipt_email")
        order = _order_from_metadata(
            session, meta, email=email, currency=obj.get("currency"), now=now
        )
    if order is None or order.plan_instalments > 1:
        return None  # not ours, or an instalment (counted from its invoice)
    _fill(order, stripe_payment_intent_id=obj["id"], stripe_customer_id=_id(obj.get("customer")))
    amount = int(obj.get("amount_received") or obj.get("amount") or 0)
    _record_payment(
        session, order, stripe_id=obj["id"], pi=obj["id"], amount=amount,
        currency=obj.get("currency"), when=_ts(obj.get("created"), now),
    )  # fmt: skip
    return order


def _order_for_invoice(session: Session, inv: dict[str, Any], now: datetime) -> Order:
    sub = _invoice_subscription(inv)
    order = _find_order(session, pi=_invoice_payment_intent(inv), sub=sub)
    if order is None:
        meta = _invoice_metadata(inv)
        email = inv.get("customer_email")
        order = _order_from_metadata(
            session, meta, email=email, currency=inv.get("currency"), now=now
        )
    if order is None:
        raise _Park(sub)
    _fill(order, stripe_subscription_id=sub, stripe_customer_id=_id(inv.get("customer")))
    return order


def _on_invoice_paid(session: Session, inv: dict[str, Any], now: datetime) -> Order | None:
    if not _invoice_subscription(inv):
        return None
    order = _order_for_invoice(session, inv, now)
    amount = int(inv.get("amount_paid") or 0)
    if amount > 0:
        paid_at = (inv.get("status_transitions") or {}).get("paid_at") or inv.get("created")
        _record_payment(
            session, order, stripe_id=inv["id"], pi=_invoice_payment_intent(inv), amount=amount,
            currency=inv.get("currency"), when=_ts(paid_at, now),
        )  # fmt: skip
    return order


def _on_invoice_failed(session: Session, inv: dict[str, Any], now: datetime) -> Order | None:
    if not _invoice_subscription(inv):
        return None
    order = _order_for_invoice(session, inv, now)
    stripe_id = f"{inv['id']}:failed:{inv.get('attempt_count') or 1}"
    if session.scalar(select(Payment.id).where(Payment.stripe_id == stripe_id)) is None:
        session.add(
            Payment(
                order_id=order.id,
                stripe_id=stripe_id,
                instalment_number=order.instalments_paid + 1,
                amount_cents=int(inv.get("amount_due") or 0),
                currency=(inv.get("currency") or order.currency).upper(),
                status="failed",
                refunded_cents=0,
                update_url=inv.get("hosted_invoice_url"),
                occurred_at=_ts(inv.get("created"), now),
            )
        )
        order.instalments_failed += 1
        session.flush()
    final = inv.get("status") == "uncollectible"
    if final or _consecutive_failures(session, order) >= MAX_FAILED_INSTALMENTS:
        order.defaulted_at = order.defaulted_at or now
    return order


def _on_subscription_deleted(session: Session, obj: dict[str, Any], now: datetime) -> Order:
    order = _find_order(session, sub=obj["id"])
    if order is None:
        raise _Park(obj["id"])
    order.subscription_cancelled_at = order.subscription_cancelled_at or now
    unfinished = order.instalments_paid < order.plan_instalments
    if unfinished and not (order.refunded_at or order.disputed_at):
        order.defaulted_at = order.defaulted_at or now  # Stripe gave up collecting
    return order


def _on_charge_refunded(session: Session, charge: dict[str, Any], now: datetime) -> Order | None:
    pi = _id(charge.get("payment_intent"))
    order = _find_order(session, pi=pi)
    meta = charge.get("metadata") or {}
    if order is None and meta.get("launch") and meta.get("instalments", "1") == "1":
        order = _order_from_metadata(
            session, meta, email=(charge.get("billing_details") or {}).get("email"),
            currency=charge.get("currency"), now=now,
        )  # fmt: skip
        if order is not None:
            order.stripe_payment_intent_id = pi
    if order is None:
        raise _Park(pi)
    payment = session.scalar(
        select(Payment).where(
            (Payment.stripe_payment_intent_id == pi) | (Payment.stripe_id == (pi or ""))
        )
    )
    if payment is None:  # the refund is proof of the payment it refunds
        payment = _record_payment(
            session, order, stripe_id=pi or charge["id"], pi=pi, amount=int(charge["amount"]),
            currency=charge.get("currency"), when=_ts(charge.get("created"), now),
        )  # fmt: skip
    assert payment is not None
    payment.refunded_cents = max(payment.refunded_cents, int(charge.get("amount_refunded") or 0))
    for item in (charge.get("refunds") or {}).get("data") or []:
        _adopt_refund(session, order, payment, item, now)
    return order


def _on_dispute_created(session: Session, dispute: dict[str, Any], now: datetime) -> Order:
    pi = _id(dispute.get("payment_intent"))
    order = _find_order(session, pi=pi)
    if order is None:
        raise _Park(pi or _id(dispute.get("charge")))
    order.disputed_at = order.disputed_at or now
    return order


HANDLERS = {
    "checkout.session.completed": _on_session_completed,
    "checkout.session.async_payment_succeeded": _on_session_completed,
    "payment_intent.succeeded": _on_payment_intent_succeeded,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_succeeded": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_failed,
    "customer.subscription.deleted": _on_subscription_deleted,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_dispute_created,
}


def handle_event(
    session: Session,
    settings: Settings,
    event: dict[str, Any],
    *,
    now: datetime,
    messenger: Any = None,
    client: stripe.StripeClient | None = None,
) -> str:
    """Apply a verified event once: ``applied``, ``ignored``, ``parked`` or ``duplicate``.

    The event id is stored in the caller's transaction with its effects. With ``client``,
    plans that must stop are cancelled in Stripe; with ``messenger``, due emails go out.
    """
    if session.get(StripeEvent, event["id"]) is not None:
        return "duplicate"
    record = StripeEvent(
        id=event["id"],
        type=str(event.get("type"))[:100],
        created_at=_ts(event.get("created"), now),
        processed_at=now,
        status="applied",
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:
        return "duplicate"  # a concurrent delivery of the same event won the insert
    outcome = _apply(session, record, event, now)
    if client is not None:
        cancel_due_subscriptions(session, client, now=now)
    if messenger is not None:
        send_notifications(session, settings, messenger, now=now)
    return outcome


def _apply(session: Session, record: StripeEvent, event: dict[str, Any], now: datetime) -> str:
    handler = HANDLERS.get(str(event.get("type")))
    obj = (event.get("data") or {}).get("object") or {}
    if handler is None or not obj.get("id"):
        record.status = "ignored"
        return "ignored"
    try:
        order = handler(session, obj, now)
    except _Park as park:
        record.status, record.ref, record.payload = "parked", park.ref, event
        session.flush()
        return "parked"
    if order is None:
        record.status = "ignored"
        return "ignored"
    _settle(session, order, now)
    _replay_parked(session, order, now)
    return "applied"


def _replay_parked(session: Session, order: Order, now: datetime) -> None:
    refs = {order.stripe_payment_intent_id, order.stripe_subscription_id}
    refs |= set(
        session.scalars(
            select(Payment.stripe_payment_intent_id).where(Payment.order_id == order.id)
        )
    )
    refs.discard(None)
    if not refs:
        return
    parked = session.scalars(
        select(StripeEvent)
        .where(StripeEvent.status == "parked", StripeEvent.ref.in_(refs))
        .order_by(StripeEvent.created_at, StripeEvent.id)
    ).all()
    for record in parked:
        event = dict(record.payload or {})
        record.status, record.payload = "applied", None
        _apply(session, record, event, now)


def parked_events(session: Session) -> list[StripeEvent]:
    """Events still waiting for the order they refer to."""
    return list(session.scalars(select(StripeEvent).where(StripeEvent.status == "parked")))


# --- after the event: Stripe cancellations and emails (claim, then act) -----------------------


def cancel_due_subscriptions(
    session: Session, client: stripe.StripeClient, *, now: datetime
) -> list[str]:
    """Cancel in Stripe every plan that must stop: completed, refunded, disputed or defaulted."""
    stopping = (
        OrderStatus.COMPLETED_PLAN,
        OrderStatus.REFUNDED,
        OrderStatus.DISPUTED,
        OrderStatus.DEFAULTED,
    )
    due = session.scalars(
        select(Order).where(
            Order.stripe_subscription_id.is_not(None),
            Order.subscription_cancelled_at.is_(None),
            Order.status.in_(stopping),
        )
    ).all()
    for order in due:
        _cancel_subscription(client, order, now)
    session.flush()
    return [order.stripe_subscription_id or "" for order in due]


def _cancel_subscription(client: stripe.StripeClient, order: Order, now: datetime) -> None:
    sub = order.stripe_subscription_id
    if not sub or order.subscription_cancelled_at:
        return
    try:
        client.v1.subscriptions.cancel(sub)
    except stripe.InvalidRequestError as e:
        current = _stripe_call("read a subscription", client.v1.subscriptions.retrieve, sub)
        if current.to_dict().get("status") not in ("canceled", "incomplete_expired"):
            raise PaymentError(f"Stripe refused to cancel subscription {sub}: {e}") from e
    except stripe.StripeError as e:
        raise PaymentError(f"Stripe refused to cancel subscription {sub}: {e}") from e
    order.subscription_cancelled_at = now


def send_notifications(
    session: Session, settings: Settings, messenger: Any, *, now: datetime, env: Any = None
) -> int:
    """Send due receipts (once per order) and dunning emails (once per failed instalment)."""
    sent = 0
    orders = session.scalars(
        select(Order).where(
            Order.receipt_sent_at.is_(None),
            Order.instalments_paid > 0,
            Order.status.in_(ACCESS_STATUSES),
        )
    ).all()
    for order in orders:
        if _claim(session, Order, order.id, "receipt_sent_at", now):
            _email(
                settings,
                messenger,
                env,
                "receipt",
                session,
                order,
                _receipt_vars(order, settings),
                now,
            )
            sent += 1
    failed = session.scalars(
        select(Payment).where(Payment.status == "failed", Payment.notified_at.is_(None))
    ).all()
    for payment in failed:
        order = session.get(Order, payment.order_id)
        if order is None or order.status not in (OrderStatus.ACTIVE_PLAN, OrderStatus.DEFAULTED):
            continue
        if _claim(session, Payment, payment.id, "notified_at", now):
            variables = _dunning_vars(order, payment, settings)
            _email(settings, messenger, env, "dunning", session, order, variables, now, payment.id)
            sent += 1
    return sent


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


# --- refunds ----------------------------------------------------------------------------------

TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
REFUND_ATTEMPTS = 3


def guarantee_closes(session: Session, order: Order) -> datetime | None:
    """When the money-back guarantee of this order ends (None before any payment)."""
    if order.paid_at is None:
        return None
    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    return order.paid_at + timedelta(days=offer.guarantee_days if offer else 0)


def refund_order(
    session: Session,
    client: stripe.StripeClient,
    order_id: int | str,
    *,
    now: datetime,
    amount_cents: int | None = None,
    reason: str | None = None,
    force: bool = False,
    tz: Any = UTC,
) -> Refund:
    """Refund an order through Stripe within its guarantee (or with ``force``).

    Each request gets an idempotency key stored before Stripe is called; a request left
    ``requested`` (Stripe did not answer) is retried with the same key on the next call, after
    looking for a Stripe refund that already carries it. A plan refund also cancels the plan.
    """
    order = get_order(session, order_id)
    pending = _pending_refunds(session, order)
    if not pending:
        pending = _new_refunds(session, client, order, now, amount_cents, reason, force, tz)
    for refund in pending:
        _execute_refund(session, client, order, refund, now)
    if all(r.status == "succeeded" for r in pending):
        _settle(session, order, now)
        if order.status == OrderStatus.REFUNDED and order.stripe_subscription_id:
            _cancel_subscription(client, order, now)
    session.flush()
    return pending[0]


def _pending_refunds(session: Session, order: Order) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.order_id == order.id, Refund.status == "requested")
            .order_by(Refund.id)
        )
    )


def _new_refunds(
    session: Session,
    client: stripe.StripeClient,
    order: Order,
    now: datetime,
    amount_cents: int | None,
    reason: str | None,
    force: bool,
    tz: Any,
) -> list[Refund]:
    closes = _check_refundable(session, order, now, force, tz)
    _adopt_stripe_refunds(session, client, order, now)
    refundable = order.paid_cents - order.refunded_cents
    amount = refundable if amount_cents is None else amount_cents
    if refundable <= 0:
        raise PaymentError(f"Order {order.id} has nothing left to refund.")
    if amount <= 0 or amount > refundable:
        left = _money_plain(refundable, order.currency)
        raise PaymentError(f"Order {order.id}: a refund must be between 0.01 and {left}.")
    group = uuid.uuid4().hex[:16]
    refunds = []
    for index, (payment, part) in enumerate(_allocate(session, order, amount)):
        refund = Refund(
            order_id=order.id,
            payment_id=payment.id,
            idempotency_key=f"launchkit-refund-{order.id}-{group}-{index}",
            amount_cents=part,
            currency=order.currency,
            reason=reason,
            forced=force and now > closes,
            status="requested",
            requested_at=now,
        )
        session.add(refund)
        refunds.append(refund)
    session.flush()
    return refunds


def _money_plain(cents: int, currency: str) -> str:
    return f"{Decimal(cents) / 100:.2f} {currency}"


def _check_refundable(
    session: Session, order: Order, now: datetime, force: bool, tz: Any
) -> datetime:
    if order.disputed_at:
        raise PaymentError(
            f"Order {order.id} is disputed; it cannot be refunded (the dispute decides)."
        )
    closes = guarantee_closes(session, order)
    if closes is None or order.paid_cents <= 0:
        raise PaymentError(f"Order {order.id} has no payment to refund.")
    if now > closes and not force:
        day = closes.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        raise PaymentError(
            f"Order {order.id}: the guarantee window closed on {day}; use --force to refund anyway."
        )
    return closes


def _allocate(session: Session, order: Order, amount: int) -> list[tuple[Payment, int]]:
    """Spread a refund over the paid payments, newest first."""
    payments = session.scalars(
        select(Payment)
        .where(Payment.order_id == order.id, Payment.status == "paid")
        .order_by(Payment.id.desc())
    ).all()
    parts = []
    for payment in payments:
        room = payment.amount_cents - payment.refunded_cents
        if room > 0 and amount > 0:
            parts.append((payment, min(room, amount)))
            amount -= min(room, amount)
    return parts


def _refund_target(payment: Payment) -> dict[str, str]:
    if payment.stripe_payment_intent_id:
        return {"payment_intent": payment.stripe_payment_intent_id}
    if payment.stripe_id.startswith("pi_"):
        return {"payment_intent": payment.stripe_id}
    raise PaymentError(f"Payment {payment.stripe_id} has no Stripe payment intent to refund.")


def _execute_refund(
    session: Session, client: stripe.StripeClient, order: Order, refund: Refund, now: datetime
) -> None:
    payment = session.get(Payment, refund.payment_id)
    assert payment is not None
    target = _refund_target(payment)
    params = {
        **target,
        "amount": refund.amount_cents,
        "metadata": {"launchkit_refund": refund.idempotency_key, "launchkit_order": str(order.id)},
    }
    created = None
    for attempt in range(REFUND_ATTEMPTS):
        try:
            created = _find_stripe_refund(client, target, refund.idempotency_key)
            created = created or client.v1.refunds.create(
                params=params, options={"idempotency_key": refund.idempotency_key}
            )
            break
        except TRANSIENT:
            if attempt + 1 < REFUND_ATTEMPTS:
                time.sleep(0.2 * (attempt + 1))
        except stripe.StripeError as e:
            refund.status = "failed"
            raise PaymentError(f"Stripe refused the refund of order {order.id}: {e}") from e
    if created is None:
        return  # stays "requested": the next call retries with the same key
    refund.stripe_refund_id, refund.status, refund.refunded_at = created["id"], "succeeded", now
    payment.refunded_cents += refund.amount_cents
    session.flush()


def _find_stripe_refund(client: stripe.StripeClient, target: dict[str, str], key: str) -> Any:
    listing = client.v1.refunds.list(params={**target, "limit": 100})
    for item in (refund.to_dict() for refund in listing.data):
        if (item.get("metadata") or {}).get("launchkit_refund") == key:
            return item
    return None


def _adopt_stripe_refunds(
    session: Session, client: stripe.StripeClient, order: Order, now: datetime
) -> None:
    """Record refunds Stripe made for this order that we lost (a crash after the call)."""
    for payment in session.scalars(select(Payment).where(Payment.order_id == order.id)).all():
        if payment.status != "paid":
            continue
        target = _refund_target(payment)
        listing = _stripe_call(
            "list refunds", client.v1.refunds.list, params={**target, "limit": 100}
        )
        total = 0
        for item in (refund.to_dict() for refund in listing.data):
            if item.get("status") in (None, "succeeded", "pending"):
                total += int(item.get("amount") or 0)
            if (item.get("metadata") or {}).get("launchkit_order") == str(order.id):
                _adopt_refund(session, order, payment, item, now)
        payment.refunded_cents = max(payment.refunded_cents, total)
    _settle(session, order, now)


def _adopt_refund(
    session: Session, order: Order, payment: Payment, item: dict[str, Any], now: datetime
) -> None:
    if item.get("status") not in (None, "succeeded", "pending"):
        return
    if session.scalar(select(Refund.id).where(Refund.stripe_refund_id == item["id"])):
        return
    key = (item.get("metadata") or {}).get("launchkit_refund") or f"stripe:{item['id']}"
    known = session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if known is not None:
        known.stripe_refund_id, known.status = item["id"], "succeeded"
        known.refunded_at = known.refunded_at or now
        return
    amount = int(item.get("amount") or 0)
    session.add(
        Refund(
            order_id=order.id, payment_id=payment.id, idempotency_key=key,
            stripe_refund_id=item["id"], amount_cents=amount,
            currency=(item.get("currency") or order.currency).upper(),
            reason=item.get("reason"), status="succeeded", requested_at=now, refunded_at=now,
        )
    )  # fmt: skip
    session.flush()


# --- reports ----------------------------------------------------------------------------------


def list_orders(
    session: Session, launch_slug: str | None = None, failing: bool = False
) -> list[Order]:
    """Orders, newest first; ``failing``: plans with an unpaid failed instalment or defaulted."""
    query = select(Order).order_by(Order.id.desc())
    if launch_slug:
        query = query.where(Order.launch_id == get_launch(session, launch_slug).id)
    orders = list(session.scalars(query))
    if failing:
        orders = [
            o
            for o in orders
            if o.status == OrderStatus.DEFAULTED
            or (o.status == OrderStatus.ACTIVE_PLAN and _consecutive_failures(session, o) > 0)
        ]
    return orders


def order_as_dict(session: Session, order: Order) -> dict[str, Any]:
    """JSON-ready order with its refunds."""
    launch = session.get(Launch, order.launch_id)
    offer = session.get(Offer, order.offer_id) if order.offer_id else None
    refunds = session.scalars(select(Refund).where(Refund.order_id == order.id).order_by(Refund.id))
    closes = guarantee_closes(session, order)
    return {
        "id": order.id,
        "launch": launch.slug if launch else None,
        "offer": offer.slug if offer else None,
        "email": order.email,
        "subscriber_id": order.subscriber_id,
        "source": order.source,
        "status": order.status,
        "plan_instalments": order.plan_instalments,
        "instalments_paid": order.instalments_paid,
        "instalments_failed": order.instalments_failed,
        "currency": order.currency,
        "total_cents": order.total_cents,
        "paid_cents": order.paid_cents,
        "refunded_cents": order.refunded_cents,
        "fee_cents": order.fee_cents,
        "access": order.access,
        "paid_at": order.paid_at,
        "guarantee_until": closes,
        "refunds": [
            {
                "amount_cents": r.amount_cents,
                "reason": r.reason,
                "status": r.status,
                "forced": r.forced,
                "requested_at": r.requested_at,
                "refunded_at": r.refunded_at,
                "stripe_refund_id": r.stripe_refund_id,
            }
            for r in refunds
        ],
        "stripe_subscription_id": order.stripe_subscription_id,
        "stripe_payment_intent_id": order.stripe_payment_intent_id,
    }


def count_orders(session: Session) -> int:
    """Number of orders (used by reports and tests)."""
    return int(session.scalar(select(func.count(Order.id))) or 0)
