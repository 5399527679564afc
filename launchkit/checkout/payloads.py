"""Reading Stripe event payloads (the current API shape and the 2017 shape localstripe sends),
and validating them at the edge: a validly signed event with an absurd value is refused whole.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from launchkit.errors import InputError

MAX_CENTS = 10**11  # a billion in any currency: more is a broken or hostile payload
MIN_TS, MAX_TS = 946_684_800, 4_102_444_800  # 2000-01-01 .. 2100-01-01
MAX_ID = 255
_AMOUNTS = (
    "amount", "amount_total", "amount_subtotal", "amount_received", "amount_paid", "amount_due",
    "amount_remaining", "amount_refunded", "amount_captured", "fee", "attempt_count",
)  # fmt: skip
_TIMES = ("created", "paid_at", "canceled_at", "ended_at")
_IDS = (
    "payment_intent", "subscription", "customer", "charge", "invoice", "latest_charge",
    "balance_transaction",
)  # fmt: skip


class SignatureError(InputError):
    "A webhook's Stripe-Signature header is missing, wrong or outside the tolerance window."


class InvalidEvent(SignatureError):
    "A validly signed webhook event carries a value launchkit cannot accept (answered 400)."


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _ts(value: Any, default: datetime) -> datetime:
    return datetime.fromtimestamp(int(value), UTC) if value else default


def invoice_subscription(inv: dict[str, Any]) -> str | None:
    """The subscription an invoice belongs to (top level or ``parent.subscription_details``)."""
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    return _id(inv.get("subscription")) or _id(details.get("subscription"))


def invoice_metadata(inv: dict[str, Any]) -> dict[str, str]:
    """The checkout metadata carried by an invoice, wherever this API version puts it."""
    meta: dict[str, str] = {}
    for line in (inv.get("lines") or {}).get("data") or []:
        meta.update(line.get("metadata") or {})
    meta.update((inv.get("subscription_details") or {}).get("metadata") or {})
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    meta.update(details.get("metadata") or {})
    meta.update(inv.get("metadata") or {})
    return meta


def invoice_payment_intent(inv: dict[str, Any]) -> str | None:
    """The payment intent that paid an invoice (top level, ``payments`` list, or charge)."""
    if inv.get("payment_intent"):
        return _id(inv["payment_intent"])
    for item in (inv.get("payments") or {}).get("data") or []:
        found = _id((item.get("payment") or {}).get("payment_intent"))
        if found:
            return found
    charge = inv.get("charge")
    return _id(charge.get("payment_intent")) if isinstance(charge, dict) else None


# --- validation -------------------------------------------------------------------------------


def validate_event(event: Any) -> dict[str, Any]:
    """The event if every value launchkit reads is sane; ``InvalidEvent`` naming the field."""
    if not isinstance(event, dict):
        raise InvalidEvent("Webhook body is not a Stripe event.")
    for key in ("id", "type"):
        _check_id(event.get(key), key, required=True)
    _check_time(event.get("created"), "created")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("Webhook event has no data.object.")
    _check_object(data["object"], "data.object", depth=0)
    return event


def _fail(path: str, why: str) -> InvalidEvent:
    return InvalidEvent(f"Webhook event field {path} {why}.")


def _check_id(value: Any, path: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise _fail(path, "must be a non-empty string of at most 255 characters")


def _check_int(value: Any, path: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(path, "is not a finite number")
        raise _fail(path, f"must be a whole number between {low} and {high}")


def _check_time(value: Any, path: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    _check_int(value, path, MIN_TS, MAX_TS)


def _check_object(obj: dict[str, Any], path: str, depth: int) -> None:
    if depth == 0:
        _check_id(obj.get("id"), f"{path}.id", required=True)
    low = 0 if depth == 0 else -MAX_CENTS  # invoice lines may be credits
    for key in _AMOUNTS:
        if obj.get(key) is not None:
            _check_int(obj[key], f"{path}.{key}", low, MAX_CENTS)
    for key in _TIMES:
        _check_time(obj.get(key), f"{path}.{key}")
    for key in _IDS:
        value = obj.get(key)
        if value is not None and not isinstance(value, dict):
            _check_id(value, f"{path}.{key}")
    for key in ("email", "customer_email", "receipt_email", "currency", "mode", "status"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise _fail(f"{path}.{key}", "must be a string")
    meta = obj.get("metadata")
    if meta is not None and (
        not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values())
    ):
        raise _fail(f"{path}.metadata", "must map names to strings")
    if depth < 4:
        for key, value in obj.items():
            if isinstance(value, dict):
                _check_object(value, f"{path}.{key}", depth + 1)
            elif isinstance(value, list):
                for index, item in enumerate(value[:100]):
                    if isinstance(item, dict):
                        _check_object(item, f"{path}.{key}[{index}]", depth + 1)
