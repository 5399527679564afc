"""An in-memory stand-in for the few Stripe endpoints the demo and rehearsal reach.

It plugs in below the official ``stripe`` library (``StripeClient(http_client=...)``), so the
checkout code runs unchanged: Checkout Sessions are answered with an id and URL (their
metadata kept, so the simulation can send the matching signed webhook events), refunds are
created and listed, subscriptions cancelled. No network is touched.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe


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

    def request(
        self, method: str, url: str, headers: Any, post_data: Any = None, *, _usage: Any = None
    ) -> tuple[str, int, dict[str, str]]:
        method, parts = method.upper(), urlsplit(url)
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
            found = [r for r in self.refunds if r["payment_intent"] == fields.get("payment_intent")]
            return {"object": "list", "data": found, "has_more": False, "url": "/v1/refunds"}, 200
        if path.startswith("subscriptions/"):
            sub = path.split("/", 1)[1]
            if method in ("DELETE", "POST"):
                self.cancelled.add(sub)
            status = "canceled" if sub in self.cancelled else "active"
            return {"id": sub, "object": "subscription", "status": status}, 200
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

    def _session(self, fields: dict[str, str]) -> dict[str, Any]:
        session_id = f"cs_sim_{secrets.token_hex(10)}"
        self.sessions[session_id] = fields
        return {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }

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
