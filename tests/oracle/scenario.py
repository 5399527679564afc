"""A seeded launch scenario: a list built from several imports, double opt-ins, unsubscribes and
suppressions before and during the cart, then purchases whose Stripe events come in a random
order (10% redelivered), with refunds (with and without Stripe's refunds list), failed and
recovered instalments, a defaulted plan, a dispute and unpaid checkouts.

Everything is drawn from ``random.Random(seed)`` and recorded as facts in a ``World``.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta

from tests.oracle.world import (
    DAY,
    Action,
    EventSpec,
    Offer,
    Order,
    Paid,
    Person,
    RefundFact,
    Segment,
    World,
    normalize,
)

CART_OPEN = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CART_CLOSE = datetime(2026, 6, 8, 12, 0, tzinfo=UTC)
PRELAUNCH = datetime(2026, 5, 20, tzinfo=UTC)
AFTER = datetime(2026, 9, 20, 12, 0, tzinfo=UTC)  # analysis long after the plans ended
DURING = datetime(2026, 6, 6, 18, 0, tzinfo=UTC)  # analysis while the cart is open
FIRST = ["camille", "lea", "hugo", "ines", "jules", "manon", "louis", "chloe", "noah", "zoe"]
LAST = ["martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand"]
DOMAINS = ["example.fr", "mail.example.com", "exemple.org"]
H = timedelta(hours=1)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


class _Gen:
    def __init__(self, seed: int, now: datetime):
        self.r = random.Random(seed)
        self.n = 0
        self.w = World(
            slug="printemps", cart_open=CART_OPEN, cart_close=CART_CLOSE,
            prelaunch_start=PRELAUNCH, now=now, setup_at=datetime(2026, 3, 1, tzinfo=UTC),
        )  # fmt: skip
        self.w.offers = {
            "cours": Offer("cours", 49700, 14, (3, 17700)),
            "atelier": Offer("atelier", 9700, 30),
        }
        self.w.segments = [
            Segment(
                "chauds", "tag:webinar or source:kit", frozenset({"webinar"}), frozenset({"kit"})
            )
        ]
        self.touched: set[str] = set()  # people already given a leaving change

    # --- helpers ------------------------------------------------------------------------------

    def second(self, start: datetime, end: datetime) -> datetime:
        """A whole second uniformly in [start, end]."""
        span = int((end - start).total_seconds())
        return start + timedelta(seconds=self.r.randint(0, max(span, 0)))

    def address(self, domain: str | None = None) -> str:
        self.n += 1
        first, last = self.r.choice(FIRST), self.r.choice(LAST)
        return f"{first}.{last}{self.n}@{domain or self.r.choice(DOMAINS)}"

    def person(self, written: str, **kwargs) -> Person:  # type: ignore[no-untyped-def]
        person = Person(email=normalize(written), written=written, **kwargs)
        self.w.people[person.email] = person
        return person

    def import_action(self, at: datetime, name: str, rows: list[list[str]], source: str) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
        self.w.actions.append(
            Action(at, "import", {"name": name, "text": buffer.getvalue(), "source": source})
        )

    # --- the list -------------------------------------------------------------------------

    def mailchimp(self) -> None:
        at = datetime(2026, 4, 15, 9, tzinfo=UTC)
        rows = [["Email Address", "First Name", "Last Name", "OPTIN_TIME", "CONFIRM_TIME", "TAGS"]]
        for _ in range(60):
            optin = self.second(datetime(2025, 9, 1, tzinfo=UTC), datetime(2026, 4, 10, tzinfo=UTC))
            tags = {self.r.choice(["fr", "en"])} | (
                {"webinar"} if self.r.random() < 0.35 else set()
            )
            written = self.address()
            self.person(written, source="mailchimp", joined=optin, created=at,
                        changes=[(optin, "active")], tags=tags, origin="mailchimp")  # fmt: skip
            cell = ",".join(f'"{t}"' for t in sorted(tags))
            rows.append([written, "Prénom", "Nom", _stamp(optin), _stamp(optin), cell])
        self.import_action(at, "mailchimp_subscribed.csv", rows, "mailchimp")

    def kit(self) -> None:
        at = datetime(2026, 5, 10, 9, tzinfo=UTC)
        rows = [["email", "first_name", "created_at", "tags", "status"]]
        for _ in range(30):
            created = self.second(
                datetime(2025, 11, 1, tzinfo=UTC), datetime(2026, 5, 5, tzinfo=UTC)
            )
            status = self.r.choices(["active", "cancelled", "bounced"], [80, 12, 8])[0]
            tags = {"kit-eleve"} if self.r.random() < 0.3 else set()
            written = self.address()
            changes = [(created, "active")]
            if status != "active":  # left before the export (Kit gives no date; all before cart)
                left = "unsubscribed" if status == "cancelled" else "bounced"
                changes.append((self.second(created, at - H), left))
                self.touched.add(normalize(written))
            self.person(written, source="kit", joined=created, created=at, changes=changes,
                        tags=tags, origin="kit")  # fmt: skip
            rows.append([written, "Prénom", f"{created.isoformat()}", ",".join(tags), status])
        self.import_action(at, "kit_export.csv", rows, "kit")

    def optins(self) -> None:
        slug, magnet_tags = self.w.magnet
        for _ in range(40):
            at = self.second(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 7, tzinfo=UTC))
            if at > self.w.now:
                continue
            written = self.address().replace("camille", "Camille")
            person = self.person(written, source=None, joined=at, created=at,
                                 changes=[(at, "pending")], origin="optin")  # fmt: skip
            self.w.actions.append(Action(at, "optin", {"email": written}))
            if self.r.random() < 0.8:
                confirm = at + timedelta(seconds=self.r.randint(30, 3 * 86400))
                if confirm <= self.w.now:
                    person.changes.append((confirm, "active"))
                    person.tags |= {f"magnet:{slug}", *magnet_tags}
                    person.source = f"magnet:{slug}"
                    self.w.actions.append(Action(confirm, "confirm", {"email": person.email}))

    def generic(self) -> None:
        at = datetime(2026, 6, 3, 15, tzinfo=UTC)
        rows = [["Courriel", "Prénom", "Date d'inscription"]]
        for i in range(20):
            before = self.r.random() < 0.6
            start, end = (
                (datetime(2026, 3, 1, tzinfo=UTC), CART_OPEN) if before else (CART_OPEN, at - H)
            )
            joined = self.second(start, end)
            written = "Lea.Martin@Café.fr" if i == 0 else self.address()
            self.person(written, source="salon", joined=joined, created=at,
                        changes=[(joined, "active")], origin="generic")  # fmt: skip
            rows.append([f" {written} ", "Prénom", joined.isoformat()])
        self.import_action(at, "contacts_salon.csv", rows, "salon")

    def mailchimp_unsubscribed(self) -> None:
        at = datetime(2026, 6, 4, 10, tzinfo=UTC)
        header = ["Email Address", "First Name", "Last Name", "OPTIN_TIME", "UNSUB_TIME", "TAGS"]
        rows = [header]
        known = [p for p in self.w.people.values() if p.origin == "mailchimp"]
        for person in self.r.sample(known, 10):
            unsub = self.second(CART_OPEN - 20 * DAY, at - H)
            person.changes.append((unsub, "unsubscribed"))
            self.touched.add(person.email)
            rows.append([person.written, "", "", _stamp(person.joined), _stamp(unsub), ""])
        for _ in range(5):
            optin = self.second(datetime(2025, 10, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
            unsub = self.second(CART_OPEN - 30 * DAY, at - H)
            written = self.address()
            self.person(written, source="mailchimp", joined=optin, created=at, origin="mailchimp",
                        changes=[(optin, "active"), (unsub, "unsubscribed")])  # fmt: skip
            self.touched.add(normalize(written))
            rows.append([written, "", "", _stamp(optin), _stamp(unsub), ""])
        self.import_action(at, "mailchimp_unsubscribed.csv", rows, "mailchimp")

    def leavers(self) -> None:
        """Unsubscribes (link) and suppressions (bounced/complained) before and during the cart."""
        end = min(CART_CLOSE, self.w.now - H)
        for kind, count in (("unsubscribe", 8), ("suppress", 6)):
            for _ in range(count):
                at = self.second(datetime(2026, 5, 1, tzinfo=UTC), end)
                candidates = [
                    p for p in self.w.people.values()
                    if p.email not in self.touched and p.created < at
                    and p.status_at(at) == "active" and p.status_at(self.w.now) == "active"
                ]  # fmt: skip
                person = self.r.choice(candidates)
                self.touched.add(person.email)
                if kind == "unsubscribe":
                    person.changes.append((at, "unsubscribed"))
                    self.w.actions.append(Action(at, "unsubscribe", {"email": person.email}))
                else:
                    reason = self.r.choice(["bounced", "complained"])
                    person.changes.append((at, reason))
                    self.w.actions.append(
                        Action(at, "suppress", {"email": person.email, "reason": reason})
                    )

    def resubscribes(self) -> None:
        """Two people who unsubscribed by link opt in again and confirm (before or after open)."""
        slug, magnet_tags = self.w.magnet
        gone = [a for a in self.w.actions if a.kind == "unsubscribe"]
        for action in self.r.sample(gone, min(2, len(gone))):
            person = self.w.people[action.args["email"]]
            at = action.at + timedelta(seconds=self.r.randint(3600, 5 * 86400))
            confirm = at + timedelta(seconds=self.r.randint(60, 86400))
            if confirm > self.w.now - H:
                continue
            person.changes.append((confirm, "active"))
            person.tags |= {f"magnet:{slug}", *magnet_tags}
            person.source = person.source or f"magnet:{slug}"
            self.w.actions.append(Action(at, "optin", {"email": person.written}))
            self.w.actions.append(Action(confirm, "confirm", {"email": person.email}))

    # --- purchases ---------------------------------------------------------------------------

    def typed(self, person: Person) -> str:
        """How a buyer types their own address at checkout."""
        if person.written.lower().endswith("café.fr"):
            return person.written
        text = person.email
        if self.r.random() < 0.5:
            text = text[0].upper() + text[1:]
        if self.r.random() < 0.3:
            text = text.upper()
        if self.r.random() < 0.4:
            text = f"  {text} "
        return text

    def purchases(self) -> None:
        last = min(CART_CLOSE, self.w.now - 3 * H)
        idna = next(p for p in self.w.people.values() if "xn--" in p.email)
        buyers: list[Person | None] = [None] * 30 + [idna]  # None: anyone on the list by then
        strangers = [self.address("ailleurs.example.net") for _ in range(5)]
        count = 0
        for person in buyers:
            mode = "typed"  # the buyer types an address (no subscriber id in the metadata)
            if person is None:
                started = self.second(CART_OPEN + 10 * 60 * timedelta(seconds=1), last)
                pool = [p for p in self.w.people.values() if p.created < started - H]
                person = self.r.choice(pool)
                mode = self.r.choice(["metadata", "typed"])
            else:  # bought once on the list (not before the import that put them there)
                started = self.second(max(CART_OPEN, person.created + H), last)
            count += 1
            kind = self.r.choices(["cours", "plan", "atelier"], [45, 35, 20])[0]
            self.order(
                kind, started, self.typed(person), person.email if mode == "metadata" else None
            )
            if count == 1:  # this person buys a second time
                again = self.second(started + H, max(last, started + H))
                self.order("atelier", again, self.typed(person), None)
        for i, email in enumerate(strangers):
            started = self.second(CART_OPEN, last)
            self.order(self.r.choice(["cours", "plan", "atelier"]), started, email, None)
            if i == 0:
                self.order(
                    "atelier", self.second(started, max(last, started)), f" {email.upper()}", None
                )
        for _ in range(2):  # checkouts left unpaid (SEPA debit still processing)
            person = self.r.choice(list(self.w.people.values()))
            self.order("cours", self.second(CART_OPEN, last), self.typed(person), None, unpaid=True)
        self.w.orders.sort(key=lambda o: o.started)
        disputable = [
            o for o in self.w.orders if o.instalments == 1 and o.payments and not o.refunds
        ]
        if disputable:
            order = self.r.choice(disputable)
            at = order.payments[0].at + self.r.randint(3, 20) * DAY
            if at <= self.w.now - H:
                order.disputed_at = at
                order.events.append(EventSpec("dispute", at))
        for order in self.w.orders:
            self.deliveries(order)

    def order(
        self, kind: str, started: datetime, typed: str, subscriber: str | None, *, unpaid=False
    ) -> None:
        offer = self.w.offers["atelier" if kind == "atelier" else "cours"]
        plan = kind == "plan"
        instalments, each = offer.plan if plan and offer.plan else (1, offer.price_cents)
        order = Order(
            ref=f"o{len(self.w.orders) + 1}", offer=offer.slug, instalments=instalments,
            total=instalments * each, charge=each, typed_email=typed, subscriber=subscriber,
            started=started,
        )  # fmt: skip
        self.w.orders.append(order)
        pay = started + timedelta(seconds=self.r.randint(120, 900))
        if unpaid:
            order.events.append(
                EventSpec("session", started + 60 * timedelta(seconds=1), {"unpaid": True})
            )
            return
        order.events.append(EventSpec("session", pay + timedelta(seconds=3)))
        order.payments.append(Paid(1, each, pay))
        if not plan:
            order.events.append(EventSpec("pi", pay))
            self.refund(order, offer, 1)
            return
        self.paid_instalment(order, 1, pay, attempt=1)
        fate = self.r.choices(["normal", "recovered", "defaulted", "refunded"], [45, 25, 15, 15])[0]
        if fate == "refunded" and self.refund(order, offer, 1, end_days=26):
            return
        for number in (2, 3):
            due = pay + 30 * (number - 1) * DAY
            if fate == "defaulted" and number == 2:
                for attempt in (1, 2, 3):
                    at = due + 3 * (attempt - 1) * DAY
                    if at > self.w.now - H:
                        return
                    order.failures.append((2, attempt, at))
                    order.events.append(
                        EventSpec("invoice_failed", at, {"number": 2, "attempt": attempt})
                    )
                if at + H <= self.w.now - H:
                    order.cancelled_at = at + H
                    order.events.append(EventSpec("deleted", at + H))
                return
            attempt = 1
            if fate == "recovered" and number == 2:
                if due > self.w.now - H:
                    return
                order.failures.append((2, 1, due))
                order.events.append(EventSpec("invoice_failed", due, {"number": 2, "attempt": 1}))
                due, attempt = due + 3 * DAY, 2
            if due > self.w.now - H:
                return
            order.payments.append(Paid(number, each, due))
            self.paid_instalment(order, number, due, attempt=attempt)

    def paid_instalment(self, order: Order, number: int, at: datetime, *, attempt: int) -> None:
        order.events.append(EventSpec("invoice_paid", at, {"number": number, "attempt": attempt}))
        if self.r.random() < 0.5:  # Stripe also sends invoice.payment_succeeded
            args = {"number": number, "attempt": attempt, "type": "invoice.payment_succeeded"}
            order.events.append(EventSpec("invoice_paid", at, args))
        order.events.append(EventSpec("pi_instalment", at, {"number": number}))

    def refund(self, order: Order, offer: Offer, number: int, end_days: int | None = None) -> bool:
        """Maybe refund instalment ``number`` (always when ``end_days`` is given)."""
        if end_days is None and self.r.random() > 0.4:
            return False
        paid = order.payments[number - 1].at
        end = end_days or offer.guarantee_days + 12
        while True:  # keep clear of the guarantee boundary (a day within 0.05 of it)
            days = self.r.uniform(0.2, end)
            if abs(days - offer.guarantee_days) > 0.05:
                break
        at = paid + timedelta(seconds=int(days * 86400))
        if at > self.w.now - H:
            return False
        amount = (
            order.charge if order.instalments > 1 or self.r.random() < 0.8 else order.charge // 2
        )
        listed = self.r.random() < 0.5
        via = "cli" if order.instalments == 1 and self.r.random() < 0.35 else "dashboard"
        if via == "cli":  # `launchkit refund` through Stripe's API; Stripe's event lists it
            listed = True
            self.w.actions.append(Action(at, "cli_refund", {"order": order.ref, "amount": amount}))
        order.refunds.append(RefundFact(amount, at, number, listed, via))
        created = at + timedelta(seconds=5) if listed else at
        args = {"number": number, "amount": amount, "listed": listed, "at": at, "via": via}
        order.events.append(EventSpec("refund", created, args))
        if order.instalments > 1:  # the plan stops with its refund
            order.cancelled_at = at + 60 * timedelta(seconds=1)
            order.events.append(EventSpec("deleted", order.cancelled_at))
        return True

    def deliveries(self, order: Order) -> None:
        """The order's events in a random order, about 10% delivered twice (the event of a refund
        made with `launchkit refund` comes last: the operator refunds an order they can see)."""
        last = [i for i, e in enumerate(order.events) if e.args.get("via") == "cli"]
        sequence = [i for i in range(len(order.events)) if i not in last]
        self.r.shuffle(sequence)
        for index in list(sequence):
            if self.r.random() < 0.1:
                sequence.insert(self.r.randint(sequence.index(index) + 1, len(sequence)), index)
        sequence += last
        latest = previous = order.started
        for index in sequence:  # delivered in this order: each after its creation and the last
            latest = max(latest, order.events[index].created)
            at = max(latest, previous) + timedelta(seconds=self.r.randint(1, 60))
            order.deliveries.append((at, index))
            previous = at


def generate(seed: int, *, provisional: bool = False) -> World:
    """The world of ``seed``; ``provisional`` analyses it while the cart is still open."""
    gen = _Gen(seed, DURING if provisional else AFTER)
    gen.mailchimp()
    gen.kit()
    gen.optins()
    gen.generic()
    gen.mailchimp_unsubscribed()
    gen.leavers()
    gen.resubscribes()
    gen.purchases()
    return gen.w
