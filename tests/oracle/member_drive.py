"""Replay a ``ClubWorld`` through launchkit: the launches and membership offers made by the
library calls the CLI makes, then every member's Stripe events (checkout in subscription mode,
``customer.subscription.created/updated/trial_will_end/deleted``, ``invoice.paid`` or
``invoice.payment_succeeded``, ``invoice.payment_failed``, ``charge.refunded``) signed, verified
and handled by the real webhook code, each in its own transaction at its delivery time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from launchkit import audience, checkout, launches, memberships
from launchkit.analysis import analyze_launch
from launchkit.audience.importer import import_subscribers
from launchkit.config import Settings
from launchkit.stripe_events import (
    charge_refunded,
    checkout_session_completed,
    encode,
    event,
    invoice_paid,
    invoice_payment_failed,
    new_id,
    sign_payload,
    subscription_deleted,
    subscription_object,
)
from tests.oracle.member_world import PRICES, ClubWorld, MemberFacts
from tests.oracle.world import EventSpec

SECRET = "whsec_oracle_members_0123456789"
CURRENCY = "EUR"


def _ts(when: datetime) -> int:
    return int(when.timestamp())


class MemberDriver:
    def __init__(
        self, world: ClubWorld, sessions: sessionmaker[Session], settings: Settings, folder: Path
    ):
        self.w, self.sessions, self.settings, self.folder = world, sessions, settings, folder
        self.meta: dict[str, dict[str, str]] = {}  # offer slug + interval -> metadata
        self.ids: dict[str, dict[str, str]] = {}  # member ref -> its Stripe ids
        self.built: dict[tuple[str, int], dict[str, Any]] = {}

    def run(self) -> None:
        self.setup()
        timeline: list[tuple[datetime, int, Any, Any]] = [
            (at, n, m, index)
            for n, m in enumerate(self.w.members, start=len(self.w.imports))
            for at, index in m.deliveries
        ]
        timeline += [(at, n, None, emails) for n, (at, emails) in enumerate(self.w.imports)]
        for at, _, m, item in sorted(timeline, key=lambda t: (t[0], t[1])):
            with self.sessions.begin() as s:
                if m is None:
                    self.join_list(s, at, item)
                else:
                    self.deliver(s, at, m, item)

    def join_list(self, s: Session, at: datetime, emails: list[str]) -> None:
        """People join the list: a CSV import (the real importer) at ``at``."""
        path = self.folder / f"list-{at:%Y%m%d}.csv"
        path.write_text("email\n" + "".join(f"{e}\n" for e in emails), encoding="utf-8")
        result = import_subscribers(s, path, now=at, source="newsletter")
        assert result.invalid == 0, result

    def setup(self) -> None:
        at = self.w.setup_at
        with self.sessions.begin() as s:
            for launch in self.w.launches.values():
                launches.create_launch(
                    s, launch.slug, product="Club", cart_open=launch.cart_open,
                    cart_close=launch.cart_close, currency=CURRENCY, now=at,
                )  # fmt: skip
            for o in self.w.offers.values():
                offer = memberships.add_membership_offer(
                    s, o.launch, o.slug, product="Club", currency=CURRENCY,
                    prices=list(PRICES.items()),
                    founding=[("month", o.founding_month)] if o.founding_month else None,
                    trial_days=o.trial_days, guarantee_days=o.guarantee_days, now=at,
                )  # fmt: skip
                launch_row = launches.get_launch(s, o.launch)
                for interval in PRICES:
                    meta = checkout.checkout_metadata(offer, launch_row, 1, None, False)
                    self.meta[f"{o.slug}:{interval}"] = {**meta, "membership": interval}

    def deliver(self, s: Session, at: datetime, m: MemberFacts, index: int) -> None:
        key = (m.ref, index)
        if key not in self.built:
            self.built[key] = self.build(m, m.events[index])
        body = encode(self.built[key])
        header = sign_payload(body, SECRET, _ts(at))
        verified = checkout.verify_event(body, header, SECRET, now_ts=_ts(at))
        checkout.handle_event(s, self.settings, verified, now=at)

    # --- building each event with the member's ids -----------------------------------------

    def member_ids(self, m: MemberFacts) -> dict[str, str]:
        if m.ref not in self.ids:
            self.ids[m.ref] = {
                "session": new_id("cs_test"), "sub": new_id("sub"), "customer": new_id("cus"),
            }  # fmt: skip
        return self.ids[m.ref]

    def subscriber_id(self, m: MemberFacts) -> str:
        with self.sessions.begin() as s:
            return str(audience.get_subscriber(s, m.email).id)

    def invoice_id(self, m: MemberFacts, number: int) -> str:
        return self.member_ids(m).setdefault(f"in{number}", new_id("in"))

    def build(self, m: MemberFacts, spec: EventSpec) -> dict[str, Any]:
        ids, meta = self.member_ids(m), self.meta[f"{m.offer}:{m.interval}"]
        created, args = _ts(spec.created), spec.args
        if m.ref in self.w.by_id:  # the checkout names the subscriber (its id, looked up once)
            meta = {**meta, "subscriber": ids.setdefault("subscriber", self.subscriber_id(m))}
        if spec.kind == "session":
            return checkout_session_completed(
                created=created, mode="subscription", metadata=meta, email=m.typed,
                amount_total=args["amount"], currency=CURRENCY, session_id=ids["session"],
                subscription=ids["sub"], customer=ids["customer"],
            )  # fmt: skip
        if spec.kind in ("paid", "failed"):
            return self.invoice(m, spec, meta)
        if spec.kind == "refund":
            return self.refund(m, spec)
        if spec.kind == "deleted":
            return subscription_deleted(created=created, subscription=ids["sub"], metadata=meta)
        obj = subscription_object(
            subscription=ids["sub"], created=_ts(m.joined), status=args["status"],
            interval=args["interval"], amount=args["amount"], currency=CURRENCY, metadata=meta,
            period_end=_ts(args["period_end"]), cancel_at_period_end=args["cancel"],
            trial_end=_ts(m.trial_end) if m.trial_end else None, customer=ids["customer"],
        )  # fmt: skip
        name = {"created": "customer.subscription.created",
                "trial_will_end": "customer.subscription.trial_will_end"}  # fmt: skip
        return event(name.get(spec.kind, "customer.subscription.updated"), obj, created=created)

    def invoice(self, m: MemberFacts, spec: EventSpec, meta: dict[str, str]) -> dict[str, Any]:
        ids, args, paid = self.member_ids(m), spec.args, spec.kind == "paid"
        invoice_id = self.invoice_id(m, args["number"])
        builder = invoice_paid if paid else invoice_payment_failed
        pays = paid and args["amount"] > 0
        built = builder(
            created=_ts(spec.created), invoice_id=invoice_id, subscription=ids["sub"],
            amount=args["amount"], currency=CURRENCY, email=m.typed, metadata=meta,
            attempt_count=args["attempt"], payment_intent=f"pi_{invoice_id}" if pays else None,
            charge=f"ch_{invoice_id}" if pays else None,
            billing_reason=args.get("reason", "subscription_cycle"),
        )  # fmt: skip
        if paid:
            end = args["period_end"]
            interval = args["interval"]
            start = end.replace(year=end.year - 1) if interval == "year" else None
            line = {"id": new_id("il"), "object": "line_item", "amount": args["amount"],
                    "period": {"start": _ts(start or spec.created), "end": _ts(end)}}  # fmt: skip
            built["data"]["object"]["lines"]["data"] = [line]
            if args.get("type") == "renewed":
                built["type"] = "invoice.payment_succeeded"
        return built

    def refund(self, m: MemberFacts, spec: EventSpec) -> dict[str, Any]:
        """``charge.refunded`` of the first payment (with Stripe's refunds list or without)."""
        first = next(e for e in m.events if e.kind == "paid" and e.args["amount"] > 0)
        invoice_id = self.invoice_id(m, first.args["number"])
        amount = spec.args["amount"]
        built = charge_refunded(
            created=_ts(spec.created), payment_intent=f"pi_{invoice_id}", amount=amount,
            amount_refunded=amount, currency=CURRENCY, charge_id=f"ch_{invoice_id}",
        )  # fmt: skip
        charge = built["data"]["object"]
        charge["created"] = _ts(first.created)
        if spec.args["listed"]:
            refund = {
                "id": f"re_{invoice_id}", "object": "refund", "amount": amount,
                "created": _ts(spec.args["at"]), "currency": CURRENCY.lower(),
                "status": "succeeded", "reason": "requested_by_customer",
                "payment_intent": charge["payment_intent"], "charge": charge["id"],
                "metadata": {},
            }  # fmt: skip
            charge["refunds"] = {"object": "list", "data": [refund], "has_more": False}
        return built


def analyze(sessions: sessionmaker[Session], world: ClubWorld, slug: str) -> dict | None:
    """The ``membership`` section of ``analyze --json`` for ``slug`` at the world's ``now``."""
    with sessions.begin() as s:
        return analyze_launch(s, slug, now=world.now)["membership"]
