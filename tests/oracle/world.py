"""The oracle's world: what really happened during a launch, as plain facts with their true times.

A ``World`` holds the people on the list (with every status change at its true time), the
imports and list actions that put them there, and the orders with their payments, failures,
refunds and disputes. ``tests.oracle.truth`` computes every figure from these facts alone;
``tests.oracle.drive`` replays them through the library (imports, opt-ins, suppressions,
signed Stripe webhooks) so ``analyze`` can be compared with the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DAY = timedelta(days=1)


def normalize(address: str) -> str:
    """An address as imports store it: trimmed, lowercased, domain in IDNA (ASCII) form."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local}@{domain.encode('idna').decode('ascii')}"


@dataclass
class Person:
    """One subscriber row, as the world knows it."""

    email: str  # normalized address: the person's identity
    source: str | None
    joined: datetime  # signed_up_at (every origin here carries a signup date)
    created: datetime  # when the row appears in the database
    changes: list[tuple[datetime, str]] = field(default_factory=list)  # (true time, status)
    tags: set[str] = field(default_factory=set)  # from imports and magnets (not purchases)
    origin: str = ""
    written: str = ""  # the address as its source file or form spells it

    def status_at(self, when: datetime) -> str | None:
        """The status set by the latest change at or before ``when`` (None: not on the list)."""
        status = None
        for at, new in sorted(self.changes, key=lambda c: c[0]):
            if at <= when:
                status = new
        return status


@dataclass
class Offer:
    slug: str
    price_cents: int
    guarantee_days: int
    plan: tuple[int, int] | None = None  # (instalments, cents each)


@dataclass
class Paid:
    number: int  # instalment number (1 for pay in full)
    amount: int
    at: datetime  # when the money moved


@dataclass
class RefundFact:
    amount: int
    at: datetime  # the refund's own time
    number: int  # the instalment whose charge it returns
    listed: bool  # charge.refunded carries the refunds list (else only amount_refunded)
    via: str = "dashboard"  # or "cli": `launchkit refund` at ``at`` (Stripe then sends the event)


@dataclass
class EventSpec:
    """One Stripe event of an order: built with real ids by the driver."""

    # session | pi | pi_instalment | invoice_paid | invoice_failed | refund | dispute | deleted
    kind: str
    created: datetime
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Order:
    ref: str
    offer: str
    instalments: int  # 1 = pay in full
    total: int  # booked amount
    charge: int  # amount of one charge (price or one instalment)
    typed_email: str  # what the buyer typed at checkout
    subscriber: str | None  # the subscriber named in the metadata (normalized email) or None
    started: datetime  # Checkout Session creation
    payments: list[Paid] = field(default_factory=list)
    failures: list[tuple[int, int, datetime]] = field(default_factory=list)  # number, attempt, at
    refunds: list[RefundFact] = field(default_factory=list)
    disputed_at: datetime | None = None
    cancelled_at: datetime | None = None
    events: list[EventSpec] = field(default_factory=list)
    deliveries: list[tuple[datetime, int]] = field(default_factory=list)  # (processing, event)


@dataclass
class Action:
    """A list action replayed at ``at``: import, optin, confirm, unsubscribe, suppress."""

    at: datetime
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Segment:
    name: str
    expression: str  # what the database evaluates
    tags_any: frozenset[str] = frozenset()  # what the truth evaluates: any of these tags
    sources_any: frozenset[str] = frozenset()  # ... or any of these sources

    def matches(self, tags: set[str], source: str | None) -> bool:
        return bool(self.tags_any & tags) or (source in self.sources_any)


@dataclass
class World:
    slug: str
    cart_open: datetime
    cart_close: datetime
    prelaunch_start: datetime
    now: datetime
    currency: str = "EUR"
    offers: dict[str, Offer] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    magnet: tuple[str, tuple[str, ...]] = ("guide-prix", ("guide",))
    setup_at: datetime | None = None
