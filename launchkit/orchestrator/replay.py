"""Replay a launch on a simulated clock through the real code paths (demo and rehearsal).

The web app runs in-process on the simulated clock: opt-ins are posted to ``/m/{slug}`` and
confirmed from the email in the file outbox; buyers open ``/buy/{offer}`` and post it, which
creates a Checkout Session through the checkout code (answered by ``SimulatedStripe``); the
payments then arrive as the signed webhook events Stripe would send, posted to
``/stripe/webhook``. Refund requests go through ``checkout.refund_order`` and its guarantee
check. Between events, the orchestrator's ``run --tick`` sends whatever is due.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from launchkit import checkout, stripe_events
from launchkit.clicks import CHECKOUT
from launchkit.config import Settings
from launchkit.errors import PaymentError
from launchkit.mailer import FileMessenger
from launchkit.models import Link, Offer, Order, Send, SendStatus, Subscriber, SubscriberStatus
from launchkit.orchestrator import RunContext, Step, run_plan
from launchkit.orchestrator.simulate import (
    COUPON,
    BuyerModel,
    Prospect,
    SimEvent,
    plan_purchases,
)
from launchkit.plan import Plan
from launchkit.stripe_sim import SimulatedStripe, nested
from launchkit.tokens import Purpose, make_token, unsubscribe_url
from launchkit.web import create_app

SIM_CLIENT = "x-launchkit-sim-client"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
CONFIRM_LINK = re.compile(r"(https?://\S+/confirm/[A-Za-z0-9_.\-]+)")


@dataclass
class SimClock:
    """The simulated time, callable like ``utcnow``."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


class RecordingOutbox(FileMessenger):
    """A file outbox that also notes where each message it is handed goes (once per push)."""

    def __init__(self, outbox: Path, written: list[Path]):
        super().__init__(outbox)
        self.written = written

    def push(self, msg: Any, raw: bytes) -> None:
        super().push(msg, raw)
        self.written.append(self.path_for(msg))


@dataclass
class Replay:
    """One simulated launch: its clock, web client, Stripe stand-in and counters."""

    settings: Settings
    sessions: sessionmaker[Session]
    plan: Plan
    clock: SimClock
    model: BuyerModel = field(default_factory=BuyerModel)
    seed: int = 2026
    stats: Counter[str] = field(default_factory=Counter)
    through: Step | None = None  # the last step each tick runs (None: all of them)

    def __post_init__(self) -> None:
        self.stripe = SimulatedStripe()
        self.client = checkout.make_client(self.settings, http_client=self.stripe)
        self.messenger = FileMessenger(self.settings.outbox_dir)
        self.web_mail: list[Path] = []  # what the web app wrote to the outbox, in order
        app = create_app(self.settings, clock=self.clock, messenger_factory=self._web_outbox)
        app.state.stripe_client = self.client
        self.web = InProcessWeb(SimulatedVisitors(app), self.settings.base_url)
        self.deals: dict[str, stripe_events.Purchase] = {}

    def _web_outbox(self, settings: Settings) -> FileMessenger:
        return RecordingOutbox(settings.outbox_dir, self.web_mail)

    @contextmanager
    def web_open(self) -> Iterator[None]:
        """Keep the in-process web app's event loop up for a series of requests (reentrant)."""
        with self.web.open():
            yield

    # --- the orchestrator on the simulated clock --------------------------------------------

    def tick(self, until: Step | None = None) -> None:
        """Run the plan as `launchkit run --tick` would at the simulated time."""
        ctx = RunContext(
            self.settings,
            self.plan,
            self.clock.now,
            messenger=self.messenger,
            stripe_client=self.client,
            extra={"offline": True},
        )
        run_plan(self.sessions, ctx, until=until, only_due=True)

    def next_due(self) -> datetime | None:
        """When the next queued email is due."""
        with self.sessions.begin() as session:
            return session.scalar(
                select(func.min(Send.due_at)).where(
                    Send.status == SendStatus.QUEUED, Send.due_at > self.clock.now
                )
            )

    # --- lead magnet opt-ins ----------------------------------------------------------------

    def signup(self, slug: str, first_name: str, address: str, confirms: bool) -> None:
        """Open the opt-in page, post the form, then confirm from the email in the outbox."""
        visitor = visitor_headers(address)
        page = self.web.get(f"/m/{slug}", headers=visitor)
        form = dict(HIDDEN.findall(page.text))
        before = len(self.web_mail)
        form.update(first_name=first_name, email=address, consent="yes", website="")
        answer = self.web.post(f"/m/{slug}", data=form, follow_redirects=False, headers=visitor)
        self.stats["signups"] += answer.status_code in (302, 303)
        if not confirms:
            return
        for path in self.web_mail[before:]:
            link = _confirm_link(path.read_bytes())
            if link:
                page = link.replace(self.settings.base_url.rstrip("/"), "")
                self.web.get(page, headers=visitor)  # the page; its script posts the form
                self.web.post(page, headers=visitor)
                self.stats["confirmations"] += 1
                return

    # --- buying -----------------------------------------------------------------------------

    def tracked_checkout(self, subscriber_id: int | None) -> str | None:
        """The ``/c/TOKEN`` path of the checkout link in the latest launch email this
        subscriber was sent (what their click opens), or None (no tracked link yet)."""
        if subscriber_id is None or not self.settings.track_clicks:
            return None
        with self.sessions.begin() as session:
            link_id = session.scalar(
                select(Link.id)
                .join(Send, Send.email_id == Link.email_id)
                .where(
                    Send.subscriber_id == subscriber_id,
                    Send.status == SendStatus.SENT,
                    Send.sent_at <= self.clock.now,
                    Link.personal == CHECKOUT,
                )
                .order_by(Send.sent_at.desc(), Link.id)
                .limit(1)
            )
        if link_id is None:
            return None
        return f"/c/{make_token(self.settings, Purpose.CLICK, {'l': link_id, 's': subscriber_id})}"

    def open_checkout(self, event: SimEvent, slug: str) -> tuple[httpx.Response, str]:
        """Open the sales page as the subscriber would: through the tracked link of their
        latest email when there is one, else the direct link; (page, its checkout token)."""
        visitor = visitor_headers(event.email)
        coupon = event.extra.get("coupon")  # a partner's link carrying the code, not an email's
        tracked = None if coupon else self.tracked_checkout(event.subscriber_id)
        if tracked is not None:
            redirect = self.web.get(tracked, follow_redirects=False, headers=visitor)
            target = redirect.headers.get("location", "")
            self.stats["clicks"] += 1
            path = target.removeprefix(self.settings.base_url.rstrip("/"))
            return self.web.get(path, headers=visitor), path.partition("?t=")[2]
        payload = {"s": event.subscriber_id}
        if "deadline" in event.extra:  # evergreen: the person's own deadline
            payload["d"] = event.extra["deadline"]
        token = make_token(self.settings, Purpose.CHECKOUT, payload)
        query = f"?t={token}" + (f"&coupon={COUPON}" if coupon else "")
        return self.web.get(f"/buy/{slug}{query}", headers=visitor), token

    def browse(self, event: SimEvent, offer: Offer) -> None:
        """Click the latest launch email's link and look at the sales page, no purchase."""
        if self.tracked_checkout(event.subscriber_id) is not None:
            self.open_checkout(event, offer.slug)

    def actions(self, events: list[SimEvent], offer: Offer) -> list[tuple[datetime, Any]]:
        """The simulated buyers' events as (time, action) pairs for ``run_until`` (a recovery
        email goes out at the first tick after its delay, as from cron)."""
        kinds = {
            "purchase": lambda e: self.purchase(e, offer),
            "browse": lambda e: self.browse(e, offer),
            "abandon": lambda e: self.abandon(e, offer),
            "instalment": self.instalment,
            "instalment_failed": self.instalment,
            "refund_request": self.refund_request,
            "unsubscribe": self.unsubscribe,
        }
        return [(e.at, _bind(kinds[e.kind], e)) for e in events]

    def _start_checkout(self, event: SimEvent, offer: Offer) -> tuple[str, dict[str, str]] | None:
        """Open the sales page (``open_checkout``: the email's tracked link, or the coupon
        link for some) and post the checkout form: the Checkout Session id and its fields, or
        None when the checkout was refused."""
        page, token = self.open_checkout(event, offer.slug)
        visitor = visitor_headers(event.email)
        fields = {
            **dict(HIDDEN.findall(page.text)),  # the CSRF token (and the coupon)
            "plan": "full" if event.plan == 1 else str(event.plan),
            "email": event.email,
            "t": token,
            **({"bump": "1"} if event.bump else {}),
        }
        answer = self.web.post(
            f"/buy/{offer.slug}", data=fields, follow_redirects=False, headers=visitor
        )
        session_id = answer.headers.get("location", "").rsplit("/", 1)[-1]
        created = self.stripe.sessions.get(session_id)
        if created is None:
            self.stats["checkout_refused"] += 1
            return None
        return session_id, created

    def abandon(self, event: SimEvent, offer: Offer) -> None:
        """Start a checkout and leave it (Stripe's session simply expires)."""
        if self._start_checkout(event, offer) is not None:
            self.stats["checkouts_abandoned"] += 1

    def purchase(self, event: SimEvent, offer: Offer) -> None:
        """Visit the sales page, start the checkout, then deliver Stripe's events."""
        started = self._start_checkout(event, offer)
        if started is None:
            return
        session_id, created = started
        metadata = nested(created, "metadata")
        terms = _terms(self.stripe, offer, created, event)
        deal = stripe_events.Purchase(
            metadata,
            event.email,
            terms["amount"],
            offer.currency,
            instalments=event.plan,
            session_id=session_id,
        )
        self.deals[event.email] = deal
        self.stripe.purchases.append(deal)  # its charges carry the simulated card fee
        now = self._ts()
        completed = deal.completed(now)
        completed["data"]["object"].update(terms["session"])
        if event.plan == 1:
            self.post(completed)
            self.post(deal.paid(now))
        else:
            self.post(deal.invoice(1, now))
            self.post(completed)
        self.stats["purchases"] += 1
        self.stats["coupon_links"] += bool(event.extra.get("coupon"))
        self.stats["coupon_purchases"] += "discounts" in terms["session"]

    def instalment(self, event: SimEvent) -> None:
        """A later instalment: paid, or failed (3 attempts, then Stripe cancels the plan)."""
        deal = self.deals.get(event.email)
        if deal is None:
            return
        now = self._ts()
        if event.kind == "instalment":
            self.post(deal.invoice(event.number, now))
            self.stats["instalments_paid"] += 1
            return
        attempts = 1 if event.recovered else 3
        for attempt in range(1, attempts + 1):
            self.post(deal.invoice(event.number, now + attempt * 3600, paid=False, attempt=attempt))
        self.stats["instalments_failed"] += 1
        if not event.recovered:
            self.post(deal.cancelled(now + 4 * 3600))
            self.stats["plans_defaulted"] += 1

    def refund_request(self, event: SimEvent) -> None:
        """The buyer asks for their money back: honoured only inside the guarantee."""
        deal = self.deals.get(event.email)
        if deal is None:
            return
        try:
            with self.sessions.begin() as session:
                order_id = session.scalar(
                    select(Order.id).where(Order.stripe_checkout_session_id == deal.session_id)
                )
                if order_id is None:
                    return
                refund = checkout.refund_order(
                    session,
                    self.client,
                    order_id,
                    now=self.clock.now,
                    reason="requested_by_customer",
                )
                amount = refund.amount_cents
        except PaymentError:
            self.stats["refunds_refused"] += 1
            return
        self.post(deal.refunded(self._ts(), amount_refunded=amount))
        self.stats["refunds"] += 1

    def unsubscribe(self, event: SimEvent) -> None:
        """One-click unsubscribe (RFC 8058) from the link every email carries."""
        if event.subscriber_id is None:
            return
        url = unsubscribe_url(self.settings, event.subscriber_id)
        path = url.replace(self.settings.base_url.rstrip("/"), "")
        answer = self.web.post(
            path, data={"List-Unsubscribe": "One-Click"}, headers=visitor_headers(event.email)
        )
        self.stats["unsubscribes"] += answer.status_code < 400

    def post(self, event: dict[str, Any]) -> None:
        """Sign an event as Stripe does and post it to the webhook endpoint."""
        payload = stripe_events.encode(event)
        header = stripe_events.sign_payload(
            payload, self.settings.stripe_webhook_secret or "", self._ts()
        )
        answer = self.web.post(
            "/stripe/webhook",
            content=payload,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        self.stats["webhooks"] += 1
        self.stats["webhooks_rejected"] += answer.status_code >= 400

    def _ts(self) -> int:
        return int(self.clock.now.timestamp())

    # --- the whole launch -------------------------------------------------------------------

    def prospects(self) -> list[Prospect]:
        """Active subscribers at cart open."""
        with self.sessions.begin() as session:
            rows = session.execute(
                select(Subscriber.id, Subscriber.email, Subscriber.source)
                .where(Subscriber.status == SubscriberStatus.ACTIVE)
                .order_by(Subscriber.id)
            )
            return [Prospect(*row) for row in rows]

    def buyer_events(self) -> tuple[list[SimEvent], Offer]:
        """The simulated purchases for the plan's first offer."""
        with self.sessions.begin() as session:
            offer = session.scalar(select(Offer).where(Offer.slug == self.plan.offers[0].slug))
            assert offer is not None
            longest = max((p.instalments for p in offer.plans), default=1)
            session.expunge_all()
        events = plan_purchases(
            self.prospects(),
            self.model,
            cart_open=self.plan.cart_open,
            cart_close=self.plan.cart_close,
            plan_instalments=longest,
            guarantee_days=offer.guarantee_days,
            seed=self.seed,
        )
        return events, offer

    def run_until(self, end: datetime, events: list[tuple[datetime, Any]]) -> None:
        """Advance the clock event by event (and email by email) up to ``end``."""
        with self.web_open():
            self._advance(end, sorted(events, key=lambda item: item[0]))

    def _advance(self, end: datetime, pending: list[tuple[datetime, Any]]) -> None:
        index = 0
        while True:
            due = self.next_due()
            upcoming = pending[index][0] if index < len(pending) else None
            moments = [m for m in (due, upcoming) if m is not None and m <= end]
            if not moments:
                break
            self.clock.now = min(moments)
            while index < len(pending) and pending[index][0] <= self.clock.now:
                pending[index][1]()
                index += 1
            if due is not None and due <= self.clock.now:
                self.tick(until=self.through)
        self.clock.now = max(self.clock.now, end)
        self.tick(until=self.through)


class SimulatedVisitors:
    """ASGI wrapper used only by the replay: each simulated person gets their own client
    address (from the IPv6 documentation prefix), as real visitors come from their own
    machines; without it every simulated buyer would share one address and the web app's
    per-address rate limit would turn away the cart-close rush."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == SIM_CLIENT.encode():
                    scope = {**scope, "client": (value.decode(), 50000)}
                    break
        await self.app(scope, receive, send)


def visitor_headers(address: str) -> dict[str, str]:
    """The header giving a simulated person their own (documentation-range) IP address."""
    digest = hashlib.sha256(address.lower().encode()).hexdigest()
    groups = ":".join(digest[i : i + 4] for i in range(0, 24, 4))
    return {SIM_CLIENT: f"2001:db8:{groups}"}


class InProcessWeb:
    """A synchronous HTTP client that calls the ASGI app directly, in this thread's own event
    loop: no server, no socket, no thread hand-off per request (Starlette's TestClient runs a
    portal thread and costs ~2 ms a request, this ~0.4 ms)."""

    def __init__(self, app: Any, base_url: str):
        self.app, self.base_url = app, base_url
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: httpx.AsyncClient | None = None

    @contextmanager
    def open(self) -> Iterator[None]:
        """Keep the loop and the client (its cookies) for a series of requests (reentrant)."""
        if self.loop is not None:
            yield
            return
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=self.base_url,
            follow_redirects=True,
        )
        try:
            yield
        finally:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
            self.loop = self.client = None

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        if self.loop is None or self.client is None:
            with self.open():
                return self.request(method, url, **options)
        return self.loop.run_until_complete(self.client.request(method, url, **options))

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self.request("POST", url, **options)


def _amount(offer: Offer, instalments: int, bump: bool, tier_cents: int | None = None) -> int:
    if instalments == 1:
        price = offer.price_cents if tier_cents is None else tier_cents
        return price + ((offer.bump_cents or 0) if bump else 0)
    plan = next(p for p in offer.plans if p.instalments == instalments)
    return plan.instalment_cents


SIMULATED_VAT = (20, 120)  # French VAT, prices stated tax-inclusive: 20/120 of the amount


def _terms(
    stripe: SimulatedStripe, offer: Offer, created: dict[str, str], event: SimEvent
) -> dict[str, Any]:
    """What Stripe charges for the session: the tier's price (stated on the session), less the
    promotion code's percentage, VAT included when Stripe Tax is on; and the session fields
    that tell it (``total_details``, ``discounts``, ``automatic_tax``)."""
    tier_cents = created.get("metadata[tier_cents]")
    base = _amount(offer, event.plan, event.bump, int(tier_cents) if tier_cents else None)
    promo = created.get("discounts[0][promotion_code]")
    discount = round(base * stripe.percent_off(promo) / 100)
    amount = base - discount
    taxed = created.get("automatic_tax[enabled]") in ("true", "True")
    rate, whole = SIMULATED_VAT
    session: dict[str, Any] = {
        "total_details": {
            "amount_discount": discount,
            "amount_shipping": 0,
            "amount_tax": round(amount * rate / whole) if taxed else 0,
        }
    }
    if promo and discount:
        session["discounts"] = [{"promotion_code": promo}]
    if taxed:
        session["automatic_tax"] = {"enabled": True, "status": "complete"}
    return {"amount": amount, "session": session}


def _bind(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


def _confirm_link(raw: bytes) -> str | None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    match = CONFIRM_LINK.search(part.get_content() if part else "")
    return match.group(1) if match else None


def later(moment: datetime, **delta: float) -> datetime:
    """``moment + timedelta(**delta)``."""
    return moment + timedelta(**delta)
