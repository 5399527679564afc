"""Build and sign Stripe webhook events the way Stripe documents them (for tests and the demo).

Stripe's test peer (localstripe) never sends ``checkout.session.*``, ``invoice.paid``,
``charge.refunded`` or ``charge.dispute.created``. These builders produce those payloads in the
shape of the pinned API version (``checkout.STRIPE_API_VERSION``), and ``sign_payload`` makes
the ``Stripe-Signature`` header with Stripe's scheme (HMAC-SHA256 of ``"{t}.{body}"``), so a
simulated purchase goes through exactly the code path of a real one. No network, no ``stripe``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2026-10-28.endive"


def new_id(prefix: str) -> str:
    """A Stripe-looking id such as ``cs_test_a1B2...``."""
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header for ``payload`` signed at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def encode(event: dict[str, Any]) -> bytes:
    """The JSON body Stripe would post."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def event(type_: str, obj: dict[str, Any], *, created: int, event_id: str | None = None) -> dict:
    """Wrap an API object into an event envelope."""
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        "data": {"object": obj},
    }


def checkout_session_completed(
    *,
    created: int,
    mode: str,
    metadata: dict[str, str],
    email: str,
    amount_total: int,
    currency: str,
    session_id: str | None = None,
    payment_intent: str | None = None,
    subscription: str | None = None,
    customer: str | None = None,
) -> dict:
    """``checkout.session.completed`` for payment or subscription mode."""
    obj = {
        "id": session_id or new_id("cs_test"),
        "object": "checkout.session",
        "mode": mode,
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "currency": currency.lower(),
        "created": created,
        "customer": customer,
        "customer_email": email,
        "customer_details": {"email": email, "name": None},
        "client_reference_id": metadata.get("subscriber") or None,
        "metadata": metadata,
        "payment_intent": payment_intent if mode == "payment" else None,
        "subscription": subscription if mode == "subscription" else None,
        "invoice": None,
        "livemode": False,
    }
    return event("checkout.session.completed", obj, created=created)


def payment_intent_succeeded(
    *, created: int, payment_intent: str, amount: int, currency: str, metadata: dict[str, str]
) -> dict:
    """``payment_intent.succeeded`` (pay in full: the metadata comes from payment_intent_data)."""
    obj = {
        "id": payment_intent,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": currency.lower(),
        "status": "succeeded",
        "created": created,
        "metadata": metadata,
        "latest_charge": new_id("ch"),
    }
    return event("payment_intent.succeeded", obj, created=created)


def _invoice(
    *,
    invoice_id: str,
    created: int,
    subscription: str,
    amount: int,
    currency: str,
    email: str,
    metadata: dict[str, str],
    paid: bool,
    attempt_count: int = 1,
    payment_intent: str | None = None,
    billing_reason: str = "subscription_cycle",
    charge: str | None = None,
) -> dict[str, Any]:
    payments = []
    if payment_intent:
        payment = {"type": "payment_intent", "payment_intent": payment_intent}
        payments.append({"object": "invoice_payment", "payment": payment, "status": "paid"})
    return {
        "id": invoice_id,
        "object": "invoice",
        "status": "paid" if paid else "open",
        "billing_reason": billing_reason,
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "charge": charge if paid else None,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": attempt_count,
        "attempted": True,
        "currency": currency.lower(),
        "customer_email": email,
        "created": created,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
        "next_payment_attempt": None if paid else created + 3 * 86400,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "metadata": metadata},
        },
        "payments": {"object": "list", "data": payments},
        "status_transitions": {"paid_at": created if paid else None},
        "lines": {"object": "list", "data": []},
    }


def invoice_paid(*, created: int, **kwargs: Any) -> dict:
    """``invoice.paid`` for one instalment (kwargs: invoice_id, subscription, amount, ...)."""
    obj = _invoice(created=created, paid=True, **kwargs)
    return event("invoice.paid", obj, created=created)


def invoice_payment_failed(*, created: int, **kwargs: Any) -> dict:
    """``invoice.payment_failed`` for one attempt at an instalment."""
    obj = _invoice(created=created, paid=False, **kwargs)
    return event("invoice.payment_failed", obj, created=created)


def charge_refunded(
    *,
    created: int,
    payment_intent: str,
    amount: int,
    amount_refunded: int,
    currency: str,
    metadata: dict[str, str] | None = None,
    charge_id: str | None = None,
) -> dict:
    """``charge.refunded``: the charge with its cumulative ``amount_refunded``."""
    obj = {
        "id": charge_id or new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "currency": currency.lower(),
        "created": created,
        "paid": True,
        "refunded": amount_refunded >= amount,
        "payment_intent": payment_intent,
        "metadata": metadata or {},
        "status": "succeeded",
    }
    return event("charge.refunded", obj, created=created)


def dispute_created(
    *, created: int, payment_intent: str, amount: int, currency: str, reason: str = "fraudulent"
) -> dict:
    """``charge.dispute.created``."""
    obj = {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "currency": currency.lower(),
        "charge": new_id("ch"),
        "payment_intent": payment_intent,
        "reason": reason,
        "status": "needs_response",
        "created": created,
    }
    return event("charge.dispute.created", obj, created=created)


def subscription_deleted(*, created: int, subscription: str, metadata: dict[str, str]) -> dict:
    """``customer.subscription.deleted``."""
    obj = {
        "id": subscription,
        "object": "subscription",
        "status": "canceled",
        "canceled_at": created,
        "ended_at": created,
        "metadata": metadata,
    }
    return event("customer.subscription.deleted", obj, created=created)


@dataclass
class Purchase:
    """The ids and events of one simulated purchase, consistent with each other."""

    metadata: dict[str, str]
    email: str
    amount: int
    currency: str
    instalments: int = 1
    session_id: str = field(default_factory=lambda: new_id("cs_test"))
    payment_intent: str = field(default_factory=lambda: new_id("pi"))
    subscription: str = field(default_factory=lambda: new_id("sub"))
    invoices: list[str] = field(default_factory=list)
    charges: dict[int, str] = field(default_factory=dict)

    def charge(self, number: int = 1) -> str:
        """The charge of the payment (or instalment ``number``): the same in every event."""
        return self.charges.setdefault(number, new_id("ch"))

    def completed(self, created: int) -> dict:
        """``checkout.session.completed``; ``amount`` is the full price or first instalment."""
        mode = "payment" if self.instalments == 1 else "subscription"
        return checkout_session_completed(
            created=created, mode=mode, metadata=self.metadata, email=self.email,
            amount_total=self.amount, currency=self.currency, session_id=self.session_id,
            payment_intent=self.payment_intent, subscription=self.subscription,
        )  # fmt: skip

    def paid(self, created: int, *, charge: str | None = None) -> dict:
        """``payment_intent.succeeded`` of a pay-in-full purchase (no ``receipt_email``)."""
        built = payment_intent_succeeded(
            created=created, payment_intent=self.payment_intent, amount=self.amount,
            currency=self.currency, metadata=self.metadata,
        )  # fmt: skip
        built["data"]["object"]["latest_charge"] = charge or self.charge(1)
        return built

    def instalment_pi(self, number: int) -> str:
        """The payment intent of instalment ``number`` (1-based)."""
        return self.payment_intent if number == 1 else f"{self.payment_intent}_{number}"

    def invoice(self, number: int, created: int, *, paid: bool = True, attempt: int = 1) -> dict:
        """``invoice.paid`` / ``invoice.payment_failed`` for instalment ``number``."""
        while len(self.invoices) < number:
            self.invoices.append(new_id("in"))
        builder = invoice_paid if paid else invoice_payment_failed
        return builder(
            created=created, invoice_id=self.invoices[number - 1], subscription=self.subscription,
            amount=self.amount, currency=self.currency, email=self.email, metadata=self.metadata,
            attempt_count=attempt, payment_intent=self.instalment_pi(number) if paid else None,
            charge=self.charge(number) if paid else None,
            billing_reason="subscription_create" if number == 1 else "subscription_cycle",
        )  # fmt: skip

    def refunded(self, created: int, amount_refunded: int | None = None, number: int = 1) -> dict:
        """``charge.refunded`` for the payment (or instalment ``number``)."""
        return charge_refunded(
            created=created, payment_intent=self.instalment_pi(number), amount=self.amount,
            amount_refunded=self.amount if amount_refunded is None else amount_refunded,
            currency=self.currency, metadata=self.metadata if self.instalments == 1 else {},
            charge_id=self.charge(number),
        )  # fmt: skip

    def disputed(self, created: int, number: int = 1) -> dict:
        """``charge.dispute.created`` on the payment (or instalment ``number``)."""
        return dispute_created(
            created=created, payment_intent=self.instalment_pi(number), amount=self.amount,
            currency=self.currency,
        )  # fmt: skip

    def cancelled(self, created: int) -> dict:
        """``customer.subscription.deleted``."""
        return subscription_deleted(
            created=created, subscription=self.subscription, metadata=self.metadata
        )


# --- memberships ------------------------------------------------------------------------------

INTERVAL_SECONDS = {"month": 30 * 86400, "year": 365 * 86400}


def subscription_object(
    *,
    subscription: str,
    created: int,
    status: str,
    interval: str,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    period_end: int,
    cancel_at_period_end: bool = False,
    trial_end: int | None = None,
    customer: str | None = None,
) -> dict[str, Any]:
    """A Subscription as the pinned API version shows it (period on the item, inline price)."""
    price = {
        "id": new_id("price"),
        "object": "price",
        "currency": currency.lower(),
        "unit_amount": amount,
        "recurring": {"interval": interval, "interval_count": 1},
    }
    item = {"id": new_id("si"), "object": "subscription_item", "price": price, "quantity": 1,
            "current_period_end": period_end,
            "current_period_start": period_end - INTERVAL_SECONDS[interval]}  # fmt: skip
    return {
        "id": subscription,
        "object": "subscription",
        "status": status,
        "customer": customer,
        "created": created,
        "currency": currency.lower(),
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": period_end if cancel_at_period_end else None,
        "trial_end": trial_end,
        "items": {"object": "list", "data": [item]},
        "metadata": metadata,
    }


@dataclass
class Member:
    """The ids and events of one simulated membership (monthly or yearly, optional trial)."""

    metadata: dict[str, str]
    email: str
    amount: int
    currency: str
    interval: str = "month"
    start: int = 0
    trial_days: int = 0
    session_id: str = field(default_factory=lambda: new_id("cs_test"))
    subscription: str = field(default_factory=lambda: new_id("sub"))
    customer: str = field(default_factory=lambda: new_id("cus"))
    invoices: dict[int, str] = field(default_factory=dict)

    def period_end(self, number: int) -> int:
        """The end of the ``number``-th paid period (1 = the first, after any trial)."""
        return self.start + self.trial_days * 86400 + number * INTERVAL_SECONDS[self.interval]

    def completed(self, created: int) -> dict:
        """``checkout.session.completed`` in subscription mode."""
        built = checkout_session_completed(
            created=created, mode="subscription", metadata=self.metadata, email=self.email,
            amount_total=0 if self.trial_days else self.amount, currency=self.currency,
            session_id=self.session_id, subscription=self.subscription, customer=self.customer,
        )  # fmt: skip
        return built

    def invoice(
        self, number: int, created: int, *, paid: bool = True, attempt: int = 1,
        amount: int | None = None,
    ) -> dict:  # fmt: skip
        """``invoice.paid`` / ``invoice.payment_failed`` for period ``number`` (0: the trial)."""
        invoice_id = self.invoices.setdefault(number, new_id("in"))
        builder = invoice_paid if paid else invoice_payment_failed
        due = (0 if number == 0 else self.amount) if amount is None else amount
        built = builder(
            created=created, invoice_id=invoice_id, subscription=self.subscription, amount=due,
            currency=self.currency, email=self.email, metadata=self.metadata,
            attempt_count=attempt, payment_intent=f"pi_{invoice_id}" if paid and due else None,
            billing_reason="subscription_create" if number <= 1 else "subscription_cycle",
        )  # fmt: skip
        end = self.period_end(number) if number else self.start + self.trial_days * 86400
        line = {"id": new_id("il"), "object": "line_item", "amount": due,
                "period": {"start": end - INTERVAL_SECONDS[self.interval], "end": end}}  # fmt: skip
        built["data"]["object"]["lines"]["data"] = [line]
        return built

    def renewed(self, number: int, created: int) -> dict:
        """``invoice.payment_succeeded`` (localstripe's name) for period ``number``."""
        built = self.invoice(number, created)
        built["type"] = "invoice.payment_succeeded"
        return built

    def updated(
        self, created: int, *, status: str = "active", cancel_at_period_end: bool = False,
        interval: str | None = None, amount: int | None = None, period: int = 1,
    ) -> dict:  # fmt: skip
        """``customer.subscription.updated``: the whole subscription at ``created``."""
        obj = subscription_object(
            subscription=self.subscription, created=self.start, status=status,
            interval=interval or self.interval, amount=self.amount if amount is None else amount,
            currency=self.currency, metadata=self.metadata, period_end=self.period_end(period),
            cancel_at_period_end=cancel_at_period_end, customer=self.customer,
            trial_end=self.start + self.trial_days * 86400 if self.trial_days else None,
        )  # fmt: skip
        return event("customer.subscription.updated", obj, created=created)

    def trial_will_end(self, created: int) -> dict:
        """``customer.subscription.trial_will_end`` (Stripe sends it 3 days before)."""
        built = self.updated(created, status="trialing", period=0)
        built["type"] = "customer.subscription.trial_will_end"
        return built

    def cancelled(self, created: int) -> dict:
        """``customer.subscription.deleted``."""
        return subscription_deleted(
            created=created, subscription=self.subscription, metadata=self.metadata
        )
