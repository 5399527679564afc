"""An in-memory stand-in for the few Stripe endpoints the demo and rehearsal reach.

It plugs in below the official ``stripe`` library (``StripeClient(http_client=...)``), so the
checkout code runs unchanged: Checkout Sessions are answered with an id and URL (their
metadata kept, so the simulation can send the matching signed webhook events), refunds are
created and listed, subscriptions cancelled, and the charges of registered purchases read with
their balance transaction, whose fee is Stripe's EU card fee (1.5% + 0.25 EUR). No network is
touched.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe


def eu_card_fee(amount_cents: int) -> int:
    """Stripe's fee on a European card: 1.5% + 0.25 EUR, in cents (rounded half up)."""
    return (amount_cents * 15 + 500) // 1000 + 25


def _form(post_data: Any) -> dict[str, str]:
    raw = post_data.decode() if isinstance(post_data, bytes) else post_data or ""
    return dict(parse_qsl(raw))


def nested(fields: dict[str, str], prefix: str) -> dict[str, str]:
    """``metadata[launch]=x`` style fields under ``prefix`` as a dict."""
    start = f"{prefix}["
    return {
        k[len(start) : -1]: v
        for k, v in fields.items()
        if k.startswith(start) and k.endswith("]") and "[" not in k[len(start) : -1]
    }


class SimulatedStripe(stripe.HTTPXClient):
    """Answers Checkout Sessions, Refunds and Subscriptions in memory."""

    def __init__(self) -> None:
        super().__init__(allow_sync_methods=True)
        self.sessions: dict[str, dict[str, str]] = {}
        self.refunds: list[dict[str, Any]] = []
        self.cancelled: set[str] = set()
        self.purchases: list[Any] = []  # stripe_events.Purchase: their charges can be read
        self.seen: list[tuple[str, str]] = []  # (method, url) of every request
        self.coupons: dict[str, dict[str, str]] = {}  # id -> fields
        self.promotion_codes: dict[str, str] = {}  # promotion code id -> coupon id

    def request(
        self, method: str, url: str, headers: Any, post_data: Any = None, *, _usage: Any = None
    ) -> tuple[str, int, dict[str, str]]:
        method, parts = method.upper(), urlsplit(url)
        self.seen.append((method, url))
        path = parts.path.removeprefix("/v1/")
        fields = _form(post_data) if method == "POST" else dict(parse_qsl(parts.query))
        body, status = self._route(method, path, fields)
        return json.dumps(body), status, {"request-id": f"req_{secrets.token_hex(6)}"}

    def _route(self, method: str, path: str, fields: dict[str, str]) -> tuple[dict[str, Any], int]:
        if path == "checkout/sessions" and method == "POST":
            return self._session(fields), 200
        if path == "refunds" and method == "POST":
            return self._refund(fields), 200
        if path == "refunds" and method == "GET":
            key = "charge" if "charge" in fields else "payment_intent"
            found = [r for r in self.refunds if r.get(key) == fields.get(key)]
            return {"object": "list", "data": found, "has_more": False, "url": "/v1/refunds"}, 200
        if path.startswith("charges/") and method == "GET":
            return self._charge(path.split("/", 1)[1])
        if path.startswith("subscriptions/"):
            sub = path.split("/", 1)[1]
            if method in ("DELETE", "POST"):
                self.cancelled.add(sub)
            status = "canceled" if sub in self.cancelled else "active"
            return {"id": sub, "object": "subscription", "status": status}, 200
        if path in ("coupons", "promotion_codes") and method == "POST":
            return self._promotion(path, fields), 200
        if path == "products" and method == "GET":
            return {"object": "list", "data": [], "has_more": False, "url": "/v1/products"}, 200
        if path.startswith("products"):
            return {
                "id": f"prod_{secrets.token_hex(6)}",
                "object": "product",
                "metadata": {},
                "data": [],
                "has_more": False,
            }, 200
        return {
            "error": {
                "type": "invalid_request_error",
                "message": f"Simulated Stripe has no {method} /v1/{path}",
            }
        }, 404

    def _charge(self, charge_id: str) -> tuple[dict[str, Any], int]:
        for deal in self.purchases:
            if charge_id in deal.charges.values():
                fee = eu_card_fee(deal.amount)
                txn = {"id": f"txn_{charge_id}", "object": "balance_transaction", "fee": fee}
                body = {"id": charge_id, "object": "charge", "amount": deal.amount}
                return {**body, "balance_transaction": txn}, 200
        error = {"type": "invalid_request_error", "message": f"No such charge: {charge_id}"}
        return {"error": error}, 404

    def _session(self, fields: dict[str, str]) -> dict[str, Any]:
        session_id = f"cs_sim_{secrets.token_hex(10)}"
        self.sessions[session_id] = fields
        return {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }

    def _promotion(self, path: str, fields: dict[str, str]) -> dict[str, Any]:
        """A coupon (kept by its given id) or a promotion code of one."""
        if path == "coupons":
            self.coupons[fields["id"]] = fields
            return {"id": fields["id"], "object": "coupon", "valid": True}
        promo_id = f"promo_sim_{secrets.token_hex(6)}"
        self.promotion_codes[promo_id] = fields.get("promotion[coupon]", "")
        return {"id": promo_id, "object": "promotion_code", "code": fields.get("code")}

    def percent_off(self, promotion_code: str | None) -> int:
        """The percentage a promotion code takes off (0: none or unknown)."""
        coupon = self.coupons.get(self.promotion_codes.get(promotion_code or "", ""), {})
        return int(coupon.get("percent_off") or 0)

    def _refund(self, fields: dict[str, str]) -> dict[str, Any]:
        refund = {
            "id": f"re_{secrets.token_hex(10)}",
            "object": "refund",
            "amount": int(fields["amount"]),
            "payment_intent": fields.get("payment_intent"),
            "charge": fields.get("charge"),
            "metadata": nested(fields, "metadata"),
            "status": "succeeded",
            "currency": "eur",
        }
        self.refunds.append(refund)
        return refund
