"""The demo's membership launch: a club whose doors opened in March 2026, and a year of its
members' renewals, failed payments, cancellations, guarantee refunds and plan switches.

The members are a seeded model (``MemberModel``, rates below); what happens to them reaches
launchkit the way it would in production: each member opens the sales page and starts a
Checkout Session in subscription mode through the web app (answered by ``SimulatedStripe``),
then Stripe's signed events are posted to ``/stripe/webhook`` (``checkout.session.completed``,
``invoice.paid``, ``invoice.payment_failed`` per attempt, ``customer.subscription.updated`` for
a cancellation at period end or a switch to yearly, ``customer.subscription.deleted``); a
guarantee refund goes through ``memberships.account.refund_membership``. Periods follow the
calendar, as Stripe's do (a monthly member who joined on the 3rd renews on the 3rd).

The model, per member:
- ``conversion`` of the list at doors open joins during the doors-open week (same open and
  close spikes as the course buyers), ``yearly_share`` of them on the yearly price; every
  member of this launch keeps the founding price;
- ``refund_rate`` ask for their money back inside the 14-day guarantee (ends the membership);
- each month a monthly member cancels with ``cancel_monthly`` (a yearly member, once a year,
  with ``cancel_yearly``): cancelled at period end, the membership ends when the period does;
- each renewal fails with ``renewal_failure``; Stripe retries (3 days later, then 7):
  ``recovery`` of the failures are paid on the first retry, the others end after the last one
  (involuntary churn);
- ``switch_rate`` of the monthly members move to the yearly price at a renewal (months 2-6).
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit import stripe_events
from launchkit.errors import PaymentError
from launchkit.memberships.account import refund_membership
from launchkit.models import Offer, Order, Subscriber, SubscriberStatus
from launchkit.orchestrator.replay import Replay, visitor_headers
from launchkit.orchestrator.simulate import BuyerModel, Prospect, SimEvent, _purchase_time
from launchkit.plan import Plan
from launchkit.stripe_sim import nested
from launchkit.tokens import Purpose, make_token

CLUB_SLUG = "club-printemps"
CLUB_OFFER = "club"
CLUB_PRODUCT = "Club Lancement"
# doors open Monday 2 March 2026 09:00 to Monday 9 March 23:59, Paris time (UTC+1)
CLUB_OPEN = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CLUB_CLOSE = datetime(2026, 3, 9, 22, 59, tzinfo=UTC)
PRICES = [("month", 2900), ("year", 29000)]
FOUNDING = [("month", 2400), ("year", 24000)]
GUARANTEE_DAYS = 14
RETRY_DAYS = (3, 7)  # Stripe's retries after a failed renewal
MONTHS = {"month": 1, "year": 12}


@dataclass(frozen=True)
class MemberModel:
    conversion: float = 0.04
    yearly_share: float = 0.25
    refund_rate: float = 0.07
    cancel_monthly: float = 0.05
    cancel_yearly: float = 0.3
    renewal_failure: float = 0.08
    recovery: float = 0.6
    switch_rate: float = 0.04


def club_plan(workspace: Any) -> Plan:
    """The membership launch as a plan: milestones only (no audience file, no sequence)."""
    return Plan(
        path=workspace / "club.toml",
        slug=CLUB_SLUG,
        product=CLUB_PRODUCT,
        cart_open=CLUB_OPEN,
        cart_close=CLUB_CLOSE,
    )


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` later (the month's last day when it is shorter)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# --- the model --------------------------------------------------------------------------------


def plan_memberships(
    prospects: list[Prospect], model: MemberModel, *, until: datetime, seed: int
) -> list[SimEvent]:
    """Every member's events from joining up to ``until``, sorted by time.

    ``plan`` is the months a period lasts (1 or 12); ``number`` the period a renewal starts;
    ``extra["end"]`` the end of the period (epoch seconds)."""
    rng = random.Random(seed + 16)
    window = BuyerModel()
    events: list[SimEvent] = []
    for prospect in prospects:
        if rng.random() >= model.conversion:
            continue
        joined = _purchase_time(rng, window, CLUB_OPEN, CLUB_CLOSE).replace(microsecond=0)
        months = 12 if rng.random() < model.yearly_share else 1
        events.append(_event(joined, "join", prospect, months, 1, add_months(joined, months)))
        if rng.random() < model.refund_rate:
            asked = joined + timedelta(days=0.5 + rng.random() * (GUARANTEE_DAYS - 1))
            events.append(_event(asked, "member_refund", prospect, months))
            continue
        events += _renewals(rng, model, prospect, joined, months, until)
    kept = [e for e in events if e.at <= until]  # a retry after ``until`` has not happened yet
    return sorted(kept, key=lambda e: (e.at, e.email, e.kind))


def _renewals(
    rng: random.Random,
    model: MemberModel,
    prospect: Prospect,
    joined: datetime,
    months: int,
    until: datetime,
) -> list[SimEvent]:
    events, start, number = [], joined, 1
    while True:
        end = add_months(start, months)
        if end > until:
            return events
        leaves = model.cancel_yearly if months == 12 else model.cancel_monthly
        if rng.random() < leaves:
            asked = start + (end - start) * (0.1 + 0.8 * rng.random())
            events.append(_event(asked, "member_cancel", prospect, months, number, end))
            events.append(_event(end, "member_end", prospect, months, number))
            return events
        number += 1
        if months == 1 and 2 <= number <= 6 and rng.random() < model.switch_rate:
            months = 12
            events.append(_event(end, "member_switch", prospect, months, number, end))
        following = add_months(end, months)
        if rng.random() < model.renewal_failure:
            recovered = rng.random() < model.recovery
            tries = (0,) if recovered else (0, *RETRY_DAYS)  # a recovered one: paid on retry 1
            for attempt, days in enumerate(tries, start=1):
                at = end + timedelta(days=days)
                events.append(
                    _event(
                        at, "renewal_failed", prospect, months, number, following, attempt=attempt
                    )
                )
            if not recovered:
                last = end + timedelta(days=RETRY_DAYS[-1], hours=1)
                events.append(_event(last, "member_end", prospect, months, number))
                return events
            paid = end + timedelta(days=RETRY_DAYS[0])
            events.append(_event(paid, "renewal", prospect, months, number, following))
        else:
            events.append(_event(end, "renewal", prospect, months, number, following))
        start = end


def _event(
    at: datetime,
    kind: str,
    prospect: Prospect,
    months: int,
    number: int = 0,
    end: datetime | None = None,
    attempt: int = 0,
) -> SimEvent:
    extra = {"end": int(end.timestamp())} if end is not None else {}
    if attempt:
        extra["attempt"] = attempt
    return SimEvent(
        at, kind, prospect.email, prospect.subscriber_id, months, number=number, extra=extra
    )


def club_prospects(session: Session) -> list[Prospect]:
    """Active subscribers who were on the list when the doors opened."""
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.source)
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.signed_up_at.is_not(None),
            Subscriber.signed_up_at <= CLUB_OPEN,
        )
        .order_by(Subscriber.id)
    )
    return [Prospect(*row) for row in rows]


# --- replaying the members through the web app and Stripe's events ---------------------------


@dataclass
class ClubMember:
    """One member's Stripe ids and current price."""

    member: stripe_events.Member
    interval: str
    amount: int


class ClubReplay:
    """The membership events of the model, turned into requests to the replay's web app."""

    def __init__(self, replay: Replay, offer: Offer):
        self.replay, self.offer = replay, offer
        self.members: dict[str, ClubMember] = {}
        self.stats = replay.stats
        self.founding = dict(FOUNDING)

    def actions(self) -> dict[str, Any]:
        return {
            "join": self.join,
            "renewal": self.renewal,
            "renewal_failed": self.renewal_failed,
            "member_cancel": self.cancel,
            "member_switch": self.switch,
            "member_end": self.end,
            "member_refund": self.refund,
        }

    def join(self, event: SimEvent) -> None:
        """Open the sales page, pick monthly or yearly, then Stripe's events of the checkout."""
        web, settings = self.replay.web, self.replay.settings
        token = make_token(settings, Purpose.CHECKOUT, {"s": event.subscriber_id})
        visitor = visitor_headers(event.email)
        page = web.get(f"/buy/{self.offer.slug}?t={token}", headers=visitor)
        interval = "year" if event.plan == 12 else "month"
        fields = {
            **_hidden(page.text),
            "plan": "yearly" if interval == "year" else "monthly",
            "email": event.email,
            "t": token,
        }
        answer = web.post(
            f"/buy/{self.offer.slug}", data=fields, follow_redirects=False, headers=visitor
        )
        session_id = answer.headers.get("location", "").rsplit("/", 1)[-1]
        created = self.replay.stripe.sessions.get(session_id)
        if created is None:
            self.stats["checkout_refused"] += 1
            return
        now = self._ts()
        amount = self.founding[interval]
        member = stripe_events.Member(
            nested(created, "metadata"),
            event.email,
            amount,
            "EUR",
            interval=interval,
            start=now,
            session_id=session_id,
        )
        deal = ClubMember(member, interval, amount)
        self.members[event.email] = deal
        self.replay.post(member.completed(now))
        self.replay.post(self._snapshot(deal, now, event.extra["end"]))
        self.replay.post(self._invoice(deal, 1, now, event.extra["end"]))
        self.stats["members_joined"] += 1

    def renewal(self, event: SimEvent) -> None:
        """``invoice.paid`` for the new period (on the due day, or on a retry)."""
        deal = self.members.get(event.email)
        if deal is None:
            return
        self.replay.post(self._invoice(deal, event.number, self._ts(), event.extra["end"]))
        self.stats["renewals"] += 1
        self.stats["renewals_recovered"] += event.at != _due(event)

    def renewal_failed(self, event: SimEvent) -> None:
        """One declined attempt at a renewal (Stripe retries; the last failure ends it)."""
        deal = self.members.get(event.email)
        if deal is None:
            return
        attempt = event.extra["attempt"]
        self.replay.post(
            self._invoice(
                deal, event.number, self._ts(), event.extra["end"], paid=False, attempt=attempt
            )
        )
        self.stats["renewal_attempts_failed"] += 1
        self.stats["renewals_failed"] += attempt == 1

    def cancel(self, event: SimEvent) -> None:
        """The member cancels (in Stripe's customer portal): at the end of the paid period."""
        deal = self.members.get(event.email)
        if deal is None:
            return
        self.replay.post(self._snapshot(deal, self._ts(), event.extra["end"], cancel=True))
        self.stats["cancellations"] += 1

    def switch(self, event: SimEvent) -> None:
        """A monthly member moves to the yearly price from the next renewal on."""
        deal = self.members.get(event.email)
        if deal is None:
            return
        deal.interval, deal.amount = "year", self.founding["year"]
        deal.member.amount, deal.member.interval = deal.amount, "year"
        end = int(add_months(event.at, 12).timestamp())
        self.replay.post(self._snapshot(deal, self._ts(), end))
        self.stats["plan_switches"] += 1

    def end(self, event: SimEvent) -> None:
        """``customer.subscription.deleted``: the period ran out, or the last retry failed."""
        deal = self.members.get(event.email)
        if deal is None:
            return
        self.replay.post(deal.member.cancelled(self._ts()))
        self.stats["memberships_ended"] += 1

    def refund(self, event: SimEvent) -> None:
        """The 14-day guarantee: refund the first payment, which ends the membership."""
        deal = self.members.get(event.email)
        if deal is None:
            return
        replay = self.replay
        try:
            with replay.sessions.begin() as session:
                order_id = session.scalar(
                    select(Order.id).where(
                        Order.stripe_checkout_session_id == deal.member.session_id
                    )
                )
                if order_id is None:
                    return
                refund = refund_membership(session, replay.client, order_id, now=replay.clock.now)
                amount = refund.amount_cents
        except PaymentError:
            self.stats["member_refunds_refused"] += 1
            return
        now, first = self._ts(), deal.member.invoices[1]
        replay.post(
            stripe_events.charge_refunded(
                created=now,
                payment_intent=f"pi_{first}",
                amount=deal.amount,
                amount_refunded=amount,
                currency="EUR",
            )
        )
        replay.post(deal.member.cancelled(now + 60))
        self.stats["member_refunds"] += 1

    # --- Stripe's objects -------------------------------------------------------------------

    def _invoice(
        self,
        deal: ClubMember,
        number: int,
        created: int,
        end: int,
        *,
        paid: bool = True,
        attempt: int = 1,
    ) -> dict[str, Any]:
        built = deal.member.invoice(number, created, paid=paid, attempt=attempt, amount=deal.amount)
        line = built["data"]["object"]["lines"]["data"][0]
        line["period"] = {"start": end - _period_seconds(deal, end), "end": end}
        return built

    def _snapshot(self, deal: ClubMember, created: int, end: int, cancel: bool = False) -> dict:
        obj = stripe_events.subscription_object(
            subscription=deal.member.subscription,
            created=deal.member.start,
            status="active",
            interval=deal.interval,
            amount=deal.amount,
            currency="EUR",
            metadata=deal.member.metadata,
            period_end=end,
            cancel_at_period_end=cancel,
            customer=deal.member.customer,
        )
        kind = "updated" if deal.member.invoices else "created"
        return stripe_events.event(f"customer.subscription.{kind}", obj, created=created)

    def _ts(self) -> int:
        return int(self.replay.clock.now.timestamp())


def _period_seconds(deal: ClubMember, end: int) -> int:
    finish = datetime.fromtimestamp(end, UTC)
    return end - int(add_months(finish, -MONTHS[deal.interval]).timestamp())


def _due(event: SimEvent) -> datetime:
    """When a renewal was due: the start of the period it pays for."""
    end = datetime.fromtimestamp(event.extra["end"], UTC)
    return add_months(end, -event.plan)


def _hidden(page: str) -> dict[str, str]:
    from launchkit.orchestrator.replay import HIDDEN

    return dict(HIDDEN.findall(page))


# --- the whole membership launch -------------------------------------------------------------


def create_club_offer(session: Session, now: datetime) -> None:
    """The membership offer: 29 EUR a month or 290 a year, founding price 24/240, 14-day
    guarantee (the launch itself comes from the plan)."""
    from launchkit.memberships import add_membership_offer

    if session.scalar(select(Offer.id).where(Offer.slug == CLUB_OFFER)) is None:
        add_membership_offer(
            session,
            CLUB_SLUG,
            CLUB_OFFER,
            product=CLUB_PRODUCT,
            currency="EUR",
            prices=PRICES,
            founding=FOUNDING,
            guarantee_days=GUARANTEE_DAYS,
            now=now,
        )


def run_club(replay: Replay, *, until: datetime, model: MemberModel, seed: int) -> None:
    """Open the club's doors on the replay's clock, then a year of its members up to ``until``."""
    from launchkit.orchestrator import Step, ensure_launch

    replay.through = Step.SEND_DUE
    with replay.sessions.begin() as session:
        ensure_launch(session, replay.plan, replay.settings, replay.clock.now)
        create_club_offer(session, replay.clock.now)
        offer = session.scalar(select(Offer).where(Offer.slug == CLUB_OFFER))
        prospects = club_prospects(session)
        session.expunge_all()
    replay.tick()
    club = ClubReplay(replay, offer)
    actions = club.actions()
    events = plan_memberships(prospects, model, until=until, seed=seed)
    replay.run_until(until, [(e.at, _bind(actions[e.kind], e)) for e in events])
    replay.through = None
    replay.tick()


def _bind(fn: Any, event: SimEvent) -> Any:
    return lambda: fn(event)
