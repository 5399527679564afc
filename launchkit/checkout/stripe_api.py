"""The Stripe adapter: the only module of launchkit that imports ``stripe``.

Pinned to the API version of the installed library (``STRIPE_API_VERSION``). Prices are inline
(``price_data``), so ``sync_offers`` keeps Stripe *Products* only; creating a Checkout Session is
one small adapter, ``create_checkout_session``; webhook signatures are checked here.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.checkout.payloads import InvalidEvent, SignatureError, validate_event
from launchkit.config import Settings
from launchkit.errors import PaymentError
from launchkit.models import Offer, Order

STRIPE_API_VERSION = "2026-10-28.endive"  # stripe-python 16.1's version; payloads read both shapes
WEBHOOK_TOLERANCE = 300  # seconds, either side of now
TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
REFUND_ATTEMPTS = 3
StripeClient = stripe.StripeClient


# --- Stripe client and product sync -----------------------------------------------------------


def make_client(settings: Settings, *, http_client: Any = None) -> StripeClient:
    """A StripeClient on ``settings.stripe_api_base``, pinned to ``STRIPE_API_VERSION``."""
    if not settings.stripe_api_key:
        raise PaymentError("No Stripe key: set STRIPE_API_KEY (sk_test_... for test mode).")
    return StripeClient(
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


def sync_offers(session: Session, client: StripeClient, *, now: datetime) -> list[dict]:
    """Create or update one Stripe Product per offer, found by metadata ``launchkit_offer``."""
    existing: dict[str, Any] = {}
    products = _stripe_call("list products", client.v1.products.list, params={"limit": 100})
    for product in products.auto_paging_iter():
        product = product.to_dict()
        slug = (product.get("metadata") or {}).get("launchkit_offer")
        if slug and slug not in existing:
            existing[slug] = product
    results = []
    for offer in session.scalars(select(Offer).order_by(Offer.id)).all():
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


def _price_data(offer: Offer, cents: int, *, recurring: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"currency": offer.currency.lower(), "unit_amount": cents}
    if offer.stripe_product_id:
        data["product"] = offer.stripe_product_id
    else:
        data["product_data"] = {"name": offer.product}
    if recurring:
        data["recurring"] = {"interval": "month", "interval_count": 1}
    if offer.tax_behavior:
        data["tax_behavior"] = offer.tax_behavior
    return data


def create_checkout_session(
    client: StripeClient,
    *,
    offer: Offer,
    plan: tuple[int, int],
    customer_email: str | None,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    now: datetime,
    discounts: list[dict[str, str]] | None = None,
    allow_promotion_codes: bool = False,
    automatic_tax: bool = False,
    expires_at: datetime | None = None,
) -> tuple[str, str]:
    """The adapter: one Checkout Session (payment mode, or subscription mode for a plan).

    The session expires after an hour, or at ``expires_at`` (an evergreen buyer's deadline).

    ``discounts`` applies a promotion code; ``allow_promotion_codes`` lets the buyer type one
    (Stripe accepts one or the other); ``automatic_tax`` turns on Stripe Tax with the buyer's
    billing address and tax id collected.
    """
    instalments, cents = plan
    line_items: list[dict[str, Any]] = [
        {"price_data": _price_data(offer, cents, recurring=instalments > 1), "quantity": 1}
    ]
    if metadata.get("bump") == "1" and offer.bump_name and offer.bump_cents:
        bump = {"currency": offer.currency.lower(), "unit_amount": offer.bump_cents}
        bump["product_data"] = {"name": offer.bump_name}
        if offer.tax_behavior:
            bump["tax_behavior"] = offer.tax_behavior
        line_items.append({"price_data": bump, "quantity": 1})
    params: dict[str, Any] = {
        "mode": "subscription" if instalments > 1 else "payment",
        "line_items": line_items,
        "metadata": metadata,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "expires_at": int((expires_at or now + timedelta(hours=1)).timestamp()),
    }
    if metadata.get("subscriber"):
        params["client_reference_id"] = metadata["subscriber"]
    if metadata.get("language"):
        params["locale"] = metadata["language"]  # Stripe's page in the sales page's language
    if customer_email:
        params["customer_email"] = customer_email
    _selling_params(params, discounts, allow_promotion_codes, automatic_tax)
    if instalments > 1:
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    created = _stripe_call(
        "create a checkout session", client.v1.checkout.sessions.create, params=params
    )
    return created.id, created.url


def _selling_params(
    params: dict[str, Any],
    discounts: list[dict[str, str]] | None,
    allow_promotion_codes: bool,
    automatic_tax: bool,
) -> None:
    if discounts:
        params["discounts"] = discounts
    elif allow_promotion_codes:
        params["allow_promotion_codes"] = True
    if automatic_tax:
        params["automatic_tax"] = {"enabled": True}
        params["billing_address_collection"] = "required"
        params["tax_id_collection"] = {"enabled": True}


def create_promotion_code(
    client: StripeClient, *, coupon: dict[str, Any], code: str, extra: dict[str, Any]
) -> tuple[str, str]:
    """A Stripe Coupon, then its customer-facing PromotionCode ``code``: (coupon id, promo id).

    The coupon's id is given (``coupon["id"]``) and both calls carry an idempotency key derived
    from the code, so a retry after a lost answer creates nothing twice.
    """
    created = _stripe_call(
        "create a coupon", client.v1.coupons.create, params=coupon,
        options={"idempotency_key": f"launchkit-coupon-{code}"},
    )  # fmt: skip
    params = {**extra, "code": code, "promotion": {"type": "coupon", "coupon": created.id}}
    promo = _stripe_call(
        "create a promotion code", client.v1.promotion_codes.create, params=params,
        options={"idempotency_key": f"launchkit-promo-{code}"},
    )  # fmt: skip
    return created.id, promo.id


# --- webhook verification ---------------------------------------------------------------------


def verify_event(
    payload: bytes, sig_header: str | None, secret: str | None, *, now_ts: float | None = None
) -> dict[str, Any]:
    """Check the Stripe-Signature (HMAC and a +/-300 s window) and return the valid event.

    The header carries exactly one ``t=`` (the signed timestamp, also the one whose age is
    checked) and one or more ``v1=`` (several during a secret rotation).
    """
    if not secret:
        raise SignatureError("STRIPE_WEBHOOK_SECRET is not set; webhooks cannot be verified.")
    timestamp = _signed_timestamp(sig_header)
    try:
        stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance=None)
    except (stripe.SignatureVerificationError, ValueError) as e:
        raise SignatureError("Webhook signature is missing or does not match.") from e
    now_ts = time.time() if now_ts is None else now_ts
    if abs(now_ts - timestamp) > WEBHOOK_TOLERANCE:
        raise SignatureError("Webhook signature timestamp is outside the tolerance window.")
    try:
        event = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise InvalidEvent("Webhook body is not JSON (or holds NaN or Infinity).") from e
    return validate_event(event)


def _signed_timestamp(sig_header: str | None) -> int:
    """The one ``t=`` of a Stripe-Signature header; two of them (a replay trick) are refused."""
    pairs = [part.strip().split("=", 1) for part in (sig_header or "").split(",")]
    stamps = [pair[1] for pair in pairs if len(pair) == 2 and pair[0] == "t"]
    signatures = [pair[1] for pair in pairs if len(pair) == 2 and pair[0] == "v1"]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit() or not signatures:
        raise SignatureError("Webhook signature is missing or does not match.")
    return int(stamps[0])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _cancel_subscription(client: StripeClient, order: Order, now: datetime) -> None:
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


def _create_refund(
    client: StripeClient, target: dict[str, str], params: dict[str, Any], key: str, order_id: int
) -> Any:
    """The Stripe refund carrying ``key`` (found, or created), or None if Stripe did not answer."""
    for attempt in range(REFUND_ATTEMPTS):
        try:
            found = _find_stripe_refund(client, target, key)
            return found or client.v1.refunds.create(
                params=params, options={"idempotency_key": key}
            )
        except TRANSIENT:
            if attempt + 1 < REFUND_ATTEMPTS:
                time.sleep(0.2 * (attempt + 1))
        except stripe.StripeError as e:
            raise PaymentError(f"Stripe refused the refund of order {order_id}: {e}") from e
    return None


def _find_stripe_refund(client: StripeClient, target: dict[str, str], key: str) -> Any:
    listing = client.v1.refunds.list(params={**target, "limit": 100})
    for item in (refund.to_dict() for refund in listing.data):
        if (item.get("metadata") or {}).get("launchkit_refund") == key:
            return item
    return None


def charge_fee(client: StripeClient, charge_id: str) -> int | None:
    """Stripe's fee on a charge, in cents, from its balance transaction (None if not settled)."""
    charge = _stripe_call(
        "read a charge",
        client.v1.charges.retrieve,
        charge_id,
        params={"expand": ["balance_transaction"]},
    ).to_dict()
    txn = charge.get("balance_transaction")
    if isinstance(txn, str):  # a peer that does not expand: read it by id
        txn = _stripe_call(
            "read a balance transaction", client.v1.balance_transactions.retrieve, txn
        ).to_dict()
    fee = txn.get("fee") if isinstance(txn, dict) else None
    return fee if isinstance(fee, int) and not isinstance(fee, bool) and fee >= 0 else None


def charge_refunds(client: StripeClient, charge_id: str) -> list[dict[str, Any]]:
    """The refunds of a charge, as Stripe lists them."""
    listing = _stripe_call(
        "list refunds", client.v1.refunds.list, params={"charge": charge_id, "limit": 100}
    )
    return [item.to_dict() for item in listing.data]


# --- memberships ------------------------------------------------------------------------------


def create_membership_session(
    client: StripeClient,
    *,
    offer: Offer,
    interval: str,
    cents: int,
    trial_days: int,
    customer_email: str | None,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    now: datetime,
) -> tuple[str, str]:
    """The membership adapter: a Checkout Session in subscription mode with an inline recurring
    price (``price_data.recurring``) and no end; the metadata rides on the subscription."""
    price = _price_data(offer, cents, recurring=False)
    price["recurring"] = {"interval": interval, "interval_count": 1}
    subscription_data: dict[str, Any] = {"metadata": metadata}
    if trial_days > 0:
        subscription_data["trial_period_days"] = trial_days
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price_data": price, "quantity": 1}],
        "metadata": metadata,
        "subscription_data": subscription_data,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "expires_at": int((now + timedelta(hours=1)).timestamp()),
    }
    if metadata.get("subscriber"):
        params["client_reference_id"] = metadata["subscriber"]
    if metadata.get("language"):
        params["locale"] = metadata["language"]
    if customer_email:
        params["customer_email"] = customer_email
    created = _stripe_call(
        "create a checkout session", client.v1.checkout.sessions.create, params=params
    )
    return created.id, created.url


def cancel_at_period_end(client: StripeClient, subscription: str) -> dict[str, Any]:
    """Ask Stripe to end a subscription at the end of its paid period; the subscription."""
    updated = _stripe_call(
        "cancel the membership at period end",
        client.v1.subscriptions.update,
        subscription,
        params={"cancel_at_period_end": True},
    )
    return updated.to_dict()


def end_subscription_now(client: StripeClient, subscription: str) -> None:
    """Cancel a subscription at once (a guarantee refund ends the membership)."""
    try:
        client.v1.subscriptions.cancel(subscription)
    except stripe.InvalidRequestError as e:
        read = client.v1.subscriptions.retrieve
        current = _stripe_call("read a subscription", read, subscription)
        if current.to_dict().get("status") not in ("canceled", "incomplete_expired"):
            raise PaymentError(f"Stripe refused to cancel subscription {subscription}: {e}") from e
    except stripe.StripeError as e:
        raise PaymentError(f"Stripe refused to cancel subscription {subscription}: {e}") from e
