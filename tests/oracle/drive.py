"""Replay a ``World`` through launchkit: the library functions the CLI and web routes call,
and every Stripe event signed, verified and handled by the real webhook code, each in its own
transaction at its own time (``now`` is passed, never read)."""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import stripe
from sqlalchemy.orm import Session, sessionmaker

from launchkit import audience, checkout, launches, magnets, segments
from launchkit.analysis import analyze_launch
from launchkit.audience.importer import import_subscribers
from launchkit.config import Settings
from launchkit.models import Order as OrderRow
from launchkit.models import SuppressionReason
from launchkit.stripe_events import Purchase, encode, new_id, payment_intent_succeeded, sign_payload
from tests.fixtures.stripe import real_payment
from tests.oracle.world import EventSpec, Order, World

SECRET = "whsec_oracle_0123456789abcdef"


def _ts(when: datetime) -> int:
    return int(when.timestamp())


class Driver:
    def __init__(
        self,
        world: World,
        sessions: sessionmaker[Session],
        settings: Settings,
        folder: Path,
        client: stripe.StripeClient | None = None,
    ):
        self.w, self.sessions, self.settings, self.folder = world, sessions, settings, folder
        self.client = client  # Stripe (localstripe) for `launchkit refund`
        self.cli_refunds: dict[str, tuple[str, str]] = {}  # order ref -> (Stripe id, key)
        self.signups: dict[str, dict[str, int]] = {}
        self.purchases: dict[str, Purchase] = {}
        self.events: dict[tuple[str, int], dict[str, Any]] = {}

    # --- the timeline ------------------------------------------------------------------------

    def run(self) -> None:
        self.setup()
        timeline: list[tuple[datetime, int, Any]] = []
        for action in self.w.actions:
            timeline.append((action.at, len(timeline), ("action", action)))
        for order in self.w.orders:
            for at, index in order.deliveries:
                timeline.append((at, len(timeline), ("event", order, index)))
        for at, _, item in sorted(timeline, key=lambda t: (t[0], t[1])):
            assert at <= self.w.now, (at, item)
            with self.sessions.begin() as session:
                if item[0] == "action":
                    getattr(self, f"do_{item[1].kind}")(session, at, **item[1].args)
                else:
                    self.deliver(session, at, item[1], item[2])

    def setup(self) -> None:
        w, at = self.w, self.w.setup_at
        assert at is not None
        with self.sessions.begin() as s:
            launches.create_launch(
                s, w.slug, product="Cours", cart_open=w.cart_open, cart_close=w.cart_close,
                currency=w.currency, now=at, prelaunch_start=w.prelaunch_start,
            )  # fmt: skip
            for offer in w.offers.values():
                checkout.add_offer(
                    s, w.slug, offer.slug, product=offer.slug, price_cents=offer.price_cents,
                    currency=w.currency, plans=[offer.plan] if offer.plan else [],
                    guarantee_days=offer.guarantee_days, now=at,
                )  # fmt: skip
            slug, tags = w.magnet
            magnets.add_magnet(
                s, self.settings, slug, title="Guide", url="https://example.org/g.pdf",
                tags=list(tags), now=at,
            )  # fmt: skip
            for segment in w.segments:
                segments.save_segment(s, segment.name, segment.expression, now=at)

    # --- list actions ------------------------------------------------------------------------

    def do_import(self, s: Session, at: datetime, *, name: str, text: str, source: str) -> None:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        result = import_subscribers(s, path, now=at, source=source)
        assert result.invalid == 0, (name, result)

    def do_optin(self, s: Session, at: datetime, *, email: str) -> None:
        data, errors = magnets.validate_signup(
            {"email": email, "first_name": "Ana", "consent": "yes"}
        )
        assert data is not None, errors
        magnet = magnets.get_magnet(s, self.w.magnet[0])
        result = magnets.signup(
            s, self.settings, magnet, data, magnets.Visitor(None, None, None), now=at
        )
        self.signups[data.email] = {
            "s": result.subscriber.id,
            "m": magnet.id,
            "c": result.consent.id,
        }

    def do_confirm(self, s: Session, at: datetime, *, email: str) -> None:
        magnets.confirm_signup(s, self.settings, self.signups[email], ip=None, now=at)

    def do_unsubscribe(self, s: Session, at: datetime, *, email: str) -> None:
        subscriber = audience.get_subscriber(s, email)
        magnets.unsubscribe_subscriber(
            s, {"s": subscriber.id}, method="link", reason=None, ip=None, now=at
        )

    def do_suppress(self, s: Session, at: datetime, *, email: str, reason: str) -> None:
        audience.suppress(s, email, SuppressionReason(reason), now=at)

    def do_cli_refund(self, s: Session, at: datetime, *, order: str, amount: int) -> None:
        """`launchkit refund ORDER --amount ... --force` at ``at`` (the CLI's library call)."""
        assert self.client is not None, "a scenario with CLI refunds needs Stripe"
        pi = self.purchases[order].payment_intent
        row = s.scalar(sa.select(OrderRow.id).where(OrderRow.stripe_payment_intent_id == pi))
        assert row is not None, f"order {order} is not in the database at {at}"
        refund = checkout.refund_order(
            s, self.client, row, now=at, amount_cents=amount, force=True,
            reason="requested_by_customer",
        )  # fmt: skip
        assert refund.stripe_refund_id, refund.status
        self.cli_refunds[order] = (refund.stripe_refund_id, refund.idempotency_key)

    # --- Stripe ------------------------------------------------------------------------------

    def purchase(self, s: Session, order: Order) -> Purchase:
        if order.ref not in self.purchases:
            subscriber = audience.get_subscriber(s, order.subscriber) if order.subscriber else None
            metadata = {
                "launch": self.w.slug, "offer": order.offer,
                "plan": "full" if order.instalments == 1 else str(order.instalments),
                "instalments": str(order.instalments),
                "subscriber": str(subscriber.id) if subscriber else "", "bump": "0",
            }  # fmt: skip
            purchase = Purchase(
                metadata, order.typed_email, order.charge, self.w.currency, order.instalments
            )
            if any(r.via == "cli" for r in order.refunds):  # refunded through Stripe's API
                assert self.client is not None, "a scenario with CLI refunds needs Stripe"
                purchase.payment_intent = real_payment(
                    self.client, order.charge, metadata, order.typed_email.strip()
                )
            self.purchases[order.ref] = purchase
        return self.purchases[order.ref]

    def event(self, s: Session, order: Order, index: int) -> dict[str, Any]:
        key = (order.ref, index)
        if key not in self.events:
            self.events[key] = self.build(self.purchase(s, order), order, order.events[index])
        return self.events[key]

    def build(self, p: Purchase, order: Order, spec: EventSpec) -> dict[str, Any]:
        created, args = _ts(spec.created), spec.args
        if spec.kind == "session":
            event = p.completed(created)
            event["data"]["object"]["created"] = _ts(order.started)
            if args.get("unpaid"):
                event["data"]["object"]["payment_status"] = "unpaid"
            return event
        if spec.kind in ("pi", "pi_instalment"):
            number = args.get("number", 1)
            return payment_intent_succeeded(
                created=created, payment_intent=p.instalment_pi(number), amount=order.charge,
                currency=self.w.currency, metadata=p.metadata if spec.kind == "pi" else {},
            )  # fmt: skip
        if spec.kind in ("invoice_paid", "invoice_failed"):
            paid = spec.kind == "invoice_paid"
            event = p.invoice(args["number"], created, paid=paid, attempt=args["attempt"])
            event["type"] = args.get("type", event["type"])
            return event
        if spec.kind == "refund":
            return self.refund_event(p, order, spec)
        if spec.kind == "dispute":
            return p.disputed(created)
        assert spec.kind == "deleted", spec.kind
        return p.cancelled(created)

    def refund_event(self, p: Purchase, order: Order, spec: EventSpec) -> dict[str, Any]:
        number, amount = spec.args["number"], spec.args["amount"]
        event = p.refunded(_ts(spec.created), amount_refunded=amount, number=number)
        charge = event["data"]["object"]
        charge["created"] = _ts(next(x.at for x in order.payments if x.number == number))
        if spec.args["listed"]:
            refund_id, key = self.cli_refunds.get(order.ref, (new_id("re"), ""))
            refund = {
                "id": refund_id, "object": "refund", "amount": amount,
                "created": _ts(spec.args["at"]), "currency": self.w.currency.lower(),
                "status": "succeeded", "reason": "requested_by_customer",
                "payment_intent": charge["payment_intent"], "charge": charge["id"],
                "metadata": {"launchkit_refund": key} if key else {},
            }  # fmt: skip
            charge["refunds"] = {"object": "list", "data": [refund], "has_more": False}
        return event

    def deliver(self, s: Session, at: datetime, order: Order, index: int) -> None:
        body = encode(self.event(s, order, index))
        header = sign_payload(body, SECRET, _ts(at))
        verified = checkout.verify_event(body, header, SECRET, now_ts=_ts(at))
        checkout.handle_event(s, self.settings, verified, now=at)


def analyze(sessions: sessionmaker[Session], world: World, segment: str | None = None) -> dict:
    """``analyze --json`` of the world's launch at the world's ``now`` (passed when accepted)."""
    kwargs: dict[str, Any] = {"segment": segment}
    if "now" in inspect.signature(analyze_launch).parameters:
        kwargs["now"] = world.now
    with sessions.begin() as s:
        return analyze_launch(s, world.slug, **kwargs)
