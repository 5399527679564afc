"""The membership oracle's world (issue #16): two launches of a club (spring and autumn), whose
members join while the doors are open, renew monthly or yearly for about a year, fail renewals
(some recovered by Stripe's retries, some ending in deletion), cancel at period end (some undo
it), switch monthly <-> yearly, ask for the guarantee refund, and come back in autumn.

Every fact is kept at its true time (``MemberFacts``); each member's Stripe events are recorded
as ``EventSpec`` and delivered in a random order with ~10% redeliveries. Stripe's semantics as
modelled here: a period ends on the same day of month and time as it started (clamped to the
month's last day); a plan switch resets the billing cycle and is invoiced at once at the new
price (``proration_behavior=none``); a cancelled subscription is deleted at its period end; Stripe
gives up after the fourth failed attempt of a renewal and deletes the subscription; a guarantee
refund ends the membership; the creator's cancellation (the deletion) follows minutes or days
later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tests.oracle.world import EventSpec

DAY = timedelta(days=1)
PRICES = {"month": 2900, "year": 29000}
FOUNDING_MONTH = 1900  # the spring offer's founding monthly price
NOW = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


def add_months(when: datetime, months: int) -> datetime:
    """``when`` plus calendar months, the day clamped to the month's last day (Stripe's anchor)."""
    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) - DAY).day
    return when.replace(year=year, month=month, day=min(when.day, last))


def next_period(start: datetime, interval: str) -> datetime:
    return add_months(start, 1 if interval == "month" else 12)


@dataclass
class MemberOffer:
    slug: str
    launch: str
    trial_days: int
    guarantee_days: int = 14
    founding_month: int | None = None

    def price(self, interval: str) -> int:
        if interval == "month" and self.founding_month:
            return self.founding_month
        return PRICES[interval]


@dataclass
class ClubLaunch:
    slug: str
    cart_open: datetime
    cart_close: datetime


@dataclass
class MemberFacts:
    """One membership as it really happened."""

    ref: str
    launch: str
    offer: str
    email: str  # the person (normalized address)
    typed: str  # what they typed at checkout
    interval: str  # at checkout
    amount: int  # at checkout (founding price included)
    joined: datetime  # checkout completed
    trial_end: datetime | None = None
    payments: list[tuple[datetime, int]] = field(default_factory=list)  # (at, cents), > 0 only
    switches: list[tuple[datetime, str, int]] = field(default_factory=list)  # (at, interval, cents)
    failures: list[tuple[datetime, int]] = field(default_factory=list)  # (at, attempt)
    deleted: datetime | None = None  # customer.subscription.deleted (ended_at)
    refund: tuple[datetime, int] | None = None  # (Stripe's refund time, cents) of payment 1
    events: list[EventSpec] = field(default_factory=list)
    deliveries: list[tuple[datetime, int]] = field(default_factory=list)

    @property
    def first_paid(self) -> datetime | None:
        return min((at for at, cents in self.payments if cents > 0), default=None)

    @property
    def ended(self) -> datetime | None:
        """The end: the deletion, or the guarantee refund when it comes first (it ends it)."""
        ends = [t for t in (self.deleted, self.refund[0] if self.refund else None) if t]
        return min(ends) if ends else None


@dataclass
class ClubWorld:
    now: datetime
    launches: dict[str, ClubLaunch] = field(default_factory=dict)
    offers: dict[str, MemberOffer] = field(default_factory=dict)
    members: list[MemberFacts] = field(default_factory=list)
    setup_at: datetime = datetime(2025, 12, 1, tzinfo=UTC)
    imports: list[tuple[datetime, list[str]]] = field(default_factory=list)  # joining the list
    by_id: set[str] = field(default_factory=set)  # member refs whose checkout names the subscriber


class _Gen:
    def __init__(self, seed: int, size: int):
        self.r = random.Random(seed)
        self.lists = random.Random(seed + 1_000_003)  # who is on the list: its own stream
        self.size = size
        self.w = ClubWorld(now=NOW)
        self.w.launches = {
            "club-printemps": ClubLaunch(
                "club-printemps",
                datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
                datetime(2026, 1, 12, 21, 0, tzinfo=UTC),
            ),
            "club-automne": ClubLaunch(
                "club-automne",
                datetime(2026, 9, 7, 9, 0, tzinfo=UTC),
                datetime(2026, 9, 14, 21, 0, tzinfo=UTC),
            ),
        }
        self.w.offers = {
            "club-fondateur": MemberOffer(
                "club-fondateur", "club-printemps", 0, 14, FOUNDING_MONTH
            ),
            "club-essai": MemberOffer("club-essai", "club-printemps", 7, 14),
            "club-rentree": MemberOffer("club-rentree", "club-automne", 0, 30),
        }

    def when(self, launch: ClubLaunch) -> datetime:
        span = int((launch.cart_close - launch.cart_open).total_seconds())
        return launch.cart_open + timedelta(seconds=self.r.randint(60, span - 60))

    def typed(self, email: str) -> str:
        local, domain = email.split("@")
        return self.r.choice([email, f"{local.capitalize()}@{domain.upper()}", f" {email}"])

    def generate(self) -> ClubWorld:
        spring = self.w.launches["club-printemps"]
        emails = [f"membre{n}@club.example.fr" for n in range(self.size)]
        listed = {e for e in emails if self.lists.random() < 0.5}  # on the list before spring
        self.w.imports.append((self.w.setup_at + DAY, sorted(listed)))
        for email in emails:
            offer = self.w.offers["club-essai" if self.r.random() < 0.3 else "club-fondateur"]
            self.member(offer, email, self.when(spring), email in listed)
        autumn = self.w.launches["club-automne"]
        joins = autumn.cart_open - 2 * DAY  # the returners not on the list join it then
        gone = [m for m in self.w.members if m.ended and m.ended < joins - DAY]
        back = self.r.sample(gone, min(len(gone), max(2, len(gone) // 2)))
        late = sorted({m.email for m in back} - listed)  # their spring order stays unlinked
        self.w.imports.append((joins, late))
        newcomers = [f"rentree{n}@club.example.fr" for n in range(self.size // 2)]
        for email in [m.email for m in back] + newcomers:
            on_list = email in listed or email in late
            self.member(self.w.offers["club-rentree"], email, self.when(autumn), on_list)
        for m in self.w.members:
            self.deliveries(m)
        return self.w

    # --- one membership ---------------------------------------------------------------------

    def member(self, offer: MemberOffer, email: str, joined: datetime, listed: bool) -> None:
        interval = "year" if self.r.random() < 0.25 else "month"
        m = MemberFacts(
            ref=f"m{len(self.w.members)}", launch=offer.launch, offer=offer.slug, email=email,
            typed=self.typed(email), interval=interval, amount=offer.price(interval),
            joined=joined,
        )  # fmt: skip
        self.w.members.append(m)
        if listed and self.lists.random() < 0.5:  # from the sales page's subscriber link
            self.w.by_id.add(m.ref)
        trial = offer.trial_days > 0
        m.events.append(EventSpec("session", joined, {"amount": 0 if trial else m.amount}))
        start = joined
        if trial:
            m.trial_end = joined + offer.trial_days * DAY
            self.snapshot(m, joined, "trialing", interval, m.amount, m.trial_end, kind="created")
            m.events.append(EventSpec("paid", joined, {
                "number": 0, "amount": 0, "attempt": 1, "period_end": m.trial_end,
                "interval": interval, "reason": "subscription_create", "type": "paid",
            }))  # fmt: skip
            self.snapshot(m, m.trial_end - 3 * DAY, "trialing", interval, m.amount, m.trial_end,
                          kind="trial_will_end")  # fmt: skip
            start = m.trial_end
            if self.r.random() < 0.35:  # the trial ends unpaid: retries fail, Stripe deletes
                self.give_up(m, start, 1, m.amount)
                return
        else:
            self.snapshot(m, joined, "active", interval, m.amount, next_period(joined, interval),
                          kind="created")  # fmt: skip
        self.pay(m, start, m.amount, next_period(start, interval), interval,
                 reason="subscription_create" if not trial else "subscription_cycle")  # fmt: skip
        if self.r.random() < 0.15:  # the guarantee (or a refund past it: the creator accepts)
            at = start + timedelta(hours=self.r.randint(6, 20 * 24))
            m.refund = (at, m.amount)
            listed = self.r.random() < 0.5
            created = at + timedelta(seconds=self.r.randint(1, 30)) if listed else at
            m.events.append(EventSpec("refund", created, {"amount": m.amount, "at": at,
                                                          "listed": listed}))  # fmt: skip
            # the creator cancels the subscription at once (`launchkit refund` does) or days
            # later from the Dashboard: the refund has ended the membership either way
            later = self.r.choice([timedelta(minutes=2), timedelta(days=self.r.randint(1, 4))])
            self.delete(m, at + later)
            return
        self.renewals(m, start, interval, m.amount)

    def renewals(self, m: MemberFacts, start: datetime, interval: str, amount: int) -> None:
        """Period after period until now, the end, a cancellation or Stripe giving up."""
        switched = False
        while True:
            end = next_period(start, interval)
            roll = self.r.random()
            if roll < 0.07:  # cancel at period end (sometimes undone before the end)
                at = start + (end - start) * self.r.uniform(0.1, 0.9)
                if at > self.w.now:
                    return
                self.snapshot(m, at, "active", interval, amount, end, cancel=True)
                if self.r.random() < 0.3:
                    undo = at + (end - at) * self.r.uniform(0.1, 0.9)
                    if undo <= self.w.now:
                        self.snapshot(m, undo, "active", interval, amount, end)
                else:
                    if end <= self.w.now:
                        self.delete(m, end)
                    return
            elif roll < (0.37 if interval == "year" else 0.14) and not switched:
                # plan switch (yearly members more often: they have fewer periods to do it in):
                # a new billing cycle, invoiced at once
                at = start + (end - start) * self.r.uniform(0.1, 0.9)
                if at > self.w.now:
                    return
                interval = "year" if interval == "month" else "month"
                amount = PRICES[interval]
                switched = True
                m.switches.append((at, interval, amount))
                end = next_period(at, interval)
                self.snapshot(m, at, "active", interval, amount, end)
                self.pay(m, at, amount, end, interval, reason="subscription_update")
                start = at
                continue
            if end > self.w.now:
                return
            if self.r.random() < 0.12:  # the renewal fails
                if self.r.random() < 0.5:
                    self.give_up(m, end, None, amount, interval)
                    return
                self.fail(m, end, 1, amount)
                self.snapshot(m, end + timedelta(seconds=5), "past_due", interval, amount,
                              next_period(end, interval))  # fmt: skip
                later = end + timedelta(days=self.r.choice([1, 3, 5]), hours=self.r.randint(0, 9))
                if later > self.w.now:
                    return
                self.pay(m, later, amount, next_period(end, interval), interval, attempt=2)
                self.snapshot(m, later + timedelta(seconds=5), "active", interval, amount,
                              next_period(end, interval))  # fmt: skip
            else:
                self.pay(m, end, amount, next_period(end, interval), interval)
            start = end

    def give_up(
        self, m: MemberFacts, due: datetime, number: int | None, amount: int,
        interval: str | None = None,
    ) -> None:  # fmt: skip
        """Four failed attempts (days 0, 3, 5, 7), then Stripe deletes the subscription."""
        number = number or self.number(m)
        for attempt, days in enumerate((0, 3, 5, 7), start=1):
            at = due + days * DAY + timedelta(seconds=attempt)
            if at > self.w.now:
                return
            self.fail(m, at, attempt, amount, number)
            if attempt == 1 and interval:
                self.snapshot(m, at + timedelta(seconds=5), "past_due", interval, amount,
                              next_period(due, interval))  # fmt: skip
        end = due + 7 * DAY + timedelta(minutes=5)
        if end <= self.w.now:
            self.delete(m, end)

    # --- events -----------------------------------------------------------------------------

    def number(self, m: MemberFacts) -> int:
        """The next invoice number (one per billed period or switch)."""
        return 1 + max((e.args.get("number", 0) for e in m.events if e.kind == "paid"), default=0)

    def pay(
        self, m: MemberFacts, at: datetime, amount: int, period_end: datetime, interval: str,
        *, attempt: int = 1, reason: str = "subscription_cycle",
    ) -> None:  # fmt: skip
        failed = [e for e in m.events if e.kind == "failed" and not e.args.get("settled")]
        number = failed[-1].args["number"] if attempt > 1 and failed else self.number(m)
        for e in failed:
            e.args["settled"] = True
        m.payments.append((at, amount))
        kind = "renewed" if self.r.random() < 0.2 else "paid"  # localstripe's event name
        m.events.append(EventSpec("paid", at, {
            "number": number, "amount": amount, "attempt": attempt, "period_end": period_end,
            "interval": interval, "reason": reason, "type": kind,
        }))  # fmt: skip

    def fail(
        self, m: MemberFacts, at: datetime, attempt: int, amount: int, number: int | None = None
    ) -> None:
        m.failures.append((at, attempt))
        number = number or self.number(m)
        m.events.append(EventSpec("failed", at, {"number": number, "amount": amount,
                                                 "attempt": attempt}))  # fmt: skip

    def snapshot(
        self, m: MemberFacts, at: datetime, status: str, interval: str, amount: int,
        period_end: datetime, *, cancel: bool = False, kind: str = "updated",
    ) -> None:  # fmt: skip
        m.events.append(EventSpec(kind, at, {
            "status": status, "interval": interval, "amount": amount, "period_end": period_end,
            "cancel": cancel,
        }))  # fmt: skip

    def delete(self, m: MemberFacts, at: datetime) -> None:
        if at <= self.w.now:
            m.deleted = at
            m.events.append(EventSpec("deleted", at))

    def deliveries(self, m: MemberFacts) -> None:
        """The member's events in a random order, about 10% delivered twice."""
        sequence = list(range(len(m.events)))
        self.r.shuffle(sequence)
        for index in list(sequence):
            if self.r.random() < 0.1:
                sequence.insert(self.r.randint(sequence.index(index) + 1, len(sequence)), index)
        latest = previous = m.joined
        for index in sequence:
            latest = max(latest, m.events[index].created)
            at = max(latest, previous) + timedelta(seconds=self.r.randint(1, 60))
            m.deliveries.append((min(at, self.w.now), index))
            previous = at


def generate(seed: int, size: int = 10) -> ClubWorld:
    """The club of ``seed``: ``size`` spring members, then autumn's returners and newcomers."""
    return _Gen(seed, size).generate()
