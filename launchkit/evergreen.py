"""Evergreen launches: the same sequence, cart and deadline, run per person from their entry.

An evergreen launch names an *entry* (``magnet:SLUG``: the person's first confirmed opt-in to
that magnet; ``tag:TAG``: the time the tag was added) and two offsets from it, written like a
``send_at``: ``entry +7d`` (cart open) and ``entry +10d`` (cart close). The launch's own
``cart_open``/``cart_close`` are the period in which entrants are taken.

- ``record_entries`` writes one ``evergreen_entries`` row per new entrant (set-based, once): the
  entry time and that person's cart open and close. An entry never moves afterwards.
- the scheduler times each email from the person's own milestones (``entry``,
  ``prelaunch_start`` = entry, ``cart_open``, ``cart_close``), see ``sequences.schedule``;
- the checkout link in those emails carries the person's deadline, signed
  (``checkout_token``); ``/buy`` refuses an evergreen offer without it or after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.errors import InputError, NotFound
from launchkit.models import Consent, EvergreenEntry, Launch, Magnet, SubscriberTag
from launchkit.sequences.timing import SendAt, parse_send_at, resolve_time

EVERGREEN = "evergreen"
FIXED = "fixed"
ENTRY = re.compile(r"^(?P<kind>magnet|tag):(?P<value>[a-z0-9][a-z0-9:_-]{0,99})$")
DEFAULT_PERIOD = timedelta(days=365)


@dataclass(frozen=True)
class Entry:
    """What makes a person enter: ``magnet:SLUG`` or ``tag:TAG``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_entry(text: str, *, where: str = "--entry") -> Entry:
    """``magnet:guide`` / ``tag:webinar-2026``; InputError naming ``where``."""
    match = ENTRY.match(str(text or "").strip().lower())
    if not match:
        raise InputError(
            f'{where}: "{text}" must be "magnet:SLUG" or "tag:TAG" (e.g. magnet:guide).'
        )
    return Entry(match["kind"], match["value"])


def parse_offset(text: str, *, where: str) -> SendAt:
    """``entry +7d`` (optionally ``entry +7d 09:00``): a time after each person's entry."""
    spec = parse_send_at(text, where=where)
    if spec.milestone != "entry" or spec.offset < timedelta(0) or spec.days < 0:
        raise InputError(f'{where}: "{text}" must be a time after the entry, e.g. "entry +7d".')
    return spec


def person_milestones(launch: Launch, entered_at: datetime, tz: ZoneInfo) -> dict[str, datetime]:
    """This person's milestones: entry (= pre-launch start), cart open, cart close."""
    opens = parse_offset(launch.entry_cart_open or "", where=f'Launch "{launch.slug}" cart_open')
    closes = parse_offset(launch.entry_cart_close or "", where=f'Launch "{launch.slug}" cart_close')
    return {
        "entry": entered_at,
        "prelaunch_start": entered_at,
        "cart_open": resolve_time(opens, entered_at, tz),
        "cart_close": resolve_time(closes, entered_at, tz),
    }


def configure(
    session: Session,
    launch: Launch,
    *,
    entry: str,
    cart_open: str,
    cart_close: str,
    tz: ZoneInfo,
    check_magnet: bool = True,
) -> Launch:
    """Make ``launch`` evergreen: check the entry exists (``check_magnet``: a plan creates its
    magnets in a later step) and the cart opens before it closes."""
    parsed = parse_entry(entry)
    if parsed.kind == "magnet" and check_magnet:
        found = session.scalar(sa.select(Magnet.id).where(Magnet.slug == parsed.value))
        if found is None:
            raise NotFound(f'--entry: magnet "{parsed.value}" does not exist.')
    opens = parse_offset(cart_open, where="--cart-open")
    closes = parse_offset(cart_close, where="--cart-close")
    sample = datetime(2026, 1, 5, 12, tzinfo=UTC)
    if resolve_time(closes, sample, tz) <= resolve_time(opens, sample, tz):
        raise InputError(f'Launch "{launch.slug}": the cart must open before it closes.')
    launch.mode = EVERGREEN
    launch.entry = str(parsed)
    launch.entry_cart_open = opens.text
    launch.entry_cart_close = closes.text
    session.flush()
    return launch


def create_evergreen_launch(
    session: Session,
    slug: str,
    *,
    product: str,
    entry: str,
    cart_open: str,
    cart_close: str,
    currency: str,
    tz: ZoneInfo,
    now: datetime,
    until: datetime | None = None,
) -> Launch:
    """An evergreen launch taking entrants from ``now`` until ``until`` (default: a year)."""
    from launchkit.launches import create_launch

    parse_entry(entry)
    parse_offset(cart_open, where="--cart-open")
    parse_offset(cart_close, where="--cart-close")
    launch = create_launch(
        session, slug, product=product, cart_open=now, cart_close=until or now + DEFAULT_PERIOD,
        currency=currency, now=now,
    )  # fmt: skip
    return configure(
        session, launch, entry=entry, cart_open=cart_open, cart_close=cart_close, tz=tz
    )


def is_evergreen(launch: Launch) -> bool:
    """True for a launch run per person from their entry."""
    return launch.mode == EVERGREEN


def _entry_times(session: Session, launch: Launch) -> Any:
    """SQL: (subscriber_id, entered_at) of everyone who entered during the launch's period."""
    entry = parse_entry(launch.entry or "", where=f'Launch "{launch.slug}" entry')
    if entry.kind == "magnet":
        magnet = session.scalar(sa.select(Magnet.id).where(Magnet.slug == entry.value))
        at = sa.func.min(Consent.confirmed_at)
        query = (
            sa.select(Consent.subscriber_id.label("sid"), at.label("entered_at"))
            .where(Consent.magnet_id == magnet, Consent.method == "optin")
            .where(Consent.confirmed_at.is_not(None))
            .group_by(Consent.subscriber_id)
        )
    else:
        query = sa.select(
            SubscriberTag.subscriber_id.label("sid"), SubscriberTag.tagged_at.label("entered_at")
        ).where(SubscriberTag.tag == entry.value, SubscriberTag.tagged_at.is_not(None))
    return query.subquery("entry_times")


def record_entries(session: Session, launch: Launch, *, tz: ZoneInfo, now: datetime) -> int:
    """Add an ``evergreen_entries`` row for everyone who entered since the last run (entry in
    the launch's period and not after ``now``); returns how many were added. Idempotent."""
    times = _entry_times(session, launch)
    known = sa.select(EvergreenEntry.subscriber_id).where(EvergreenEntry.launch_id == launch.id)
    query = sa.select(times.c.sid, times.c.entered_at).where(
        times.c.entered_at >= launch.cart_open,
        times.c.entered_at <= launch.cart_close,
        times.c.entered_at <= now,
        times.c.sid.not_in(known),
    )
    rows = []
    for sid, entered_at in session.execute(query):
        marks = person_milestones(launch, entered_at, tz)
        rows.append(
            {
                "launch_id": launch.id,
                "subscriber_id": sid,
                "entered_at": entered_at,
                "cart_open_at": marks["cart_open"],
                "cart_close_at": marks["cart_close"],
            }
        )
    if rows:  # two schedulers racing (PostgreSQL): the first entry row wins, once
        session.execute(_insert_ignoring_conflicts(session), rows)
    return len(rows)


def _insert_ignoring_conflicts(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(EvergreenEntry.__table__).on_conflict_do_nothing()
    return sa.insert(EvergreenEntry.__table__).prefix_with("OR IGNORE")


def get_entry(session: Session, launch: Launch, subscriber_id: int) -> EvergreenEntry | None:
    """This person's entry in this launch, if any."""
    return session.scalar(
        sa.select(EvergreenEntry).where(
            EvergreenEntry.launch_id == launch.id, EvergreenEntry.subscriber_id == subscriber_id
        )
    )


def token_deadline(data: dict[str, Any]) -> datetime | None:
    """The deadline in a verified CHECKOUT token payload (None when it carries none)."""
    value = data.get("d")
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def session_expiry(now: datetime, deadline: datetime) -> datetime:
    """A Checkout Session's ``expires_at``: one hour, cut to the deadline, but never under the
    30 minutes Stripe requires."""
    wanted = min(now + timedelta(hours=1), deadline)
    return max(wanted, now + timedelta(minutes=30))


# --- promises (checked by `launchkit rehearse`) --------------------------------------------

LATE_ORDER = timedelta(hours=1)  # grace + the life of a session started inside it, rounded up


def emails_after_deadline(session: Session, launch: Launch) -> list[tuple[str, str, str]]:
    """Cart emails sent to a person after their own cart close: (email, address, detail)."""
    from launchkit.models import Email, LaunchSequence, Send, SendStatus, Subscriber

    rows = session.execute(
        sa.select(LaunchSequence.name, Email.step, Subscriber.email, Send.sent_at, Send.deadline_at)
        .join(Email, Email.id == Send.email_id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .join(Subscriber, Subscriber.id == Send.subscriber_id)
        .where(LaunchSequence.launch_id == launch.id, Send.status == SendStatus.SENT)
        .where(Send.deadline_at.is_not(None), Send.sent_at > Send.deadline_at)
    ).all()
    return [
        (f"{name}/{step}", email, f"sent {sent:%Y-%m-%d %H:%M}, own close {close:%Y-%m-%d %H:%M}")
        for name, step, email, sent, close in rows
    ]


def checkouts_after_deadline(
    session: Session, launch: Launch, grace: timedelta
) -> list[tuple[str, str, str]]:
    """Checkouts started after the person's own deadline (+ grace), checkouts started without a
    person, and orders created more than ``LATE_ORDER`` after the person's deadline."""
    from launchkit.models import Offer, Order, Subscriber, WebEvent

    entry = EvergreenEntry
    starts = session.execute(
        sa.select(Offer.slug, Subscriber.email, WebEvent.occurred_at, entry.cart_close_at)
        .join(Offer, Offer.id == WebEvent.offer_id)
        .outerjoin(Subscriber, Subscriber.id == WebEvent.subscriber_id)
        .outerjoin(
            entry,
            sa.and_(entry.subscriber_id == WebEvent.subscriber_id, entry.launch_id == launch.id),
        )  # fmt: skip
        .where(Offer.launch_id == launch.id, WebEvent.kind == "checkout_start")
    ).all()
    found = [
        (f"checkout/{slug}", email or "(anonymous)", f"started {at:%Y-%m-%d %H:%M}, "
         + ("no personal deadline" if close is None else f"own close {close:%Y-%m-%d %H:%M}"))
        for slug, email, at, close in starts
        if close is None or at > close + grace
    ]  # fmt: skip
    orders = session.execute(
        sa.select(Order.email, Order.created_at, entry.cart_close_at)
        .join(
            entry,
            sa.and_(entry.subscriber_id == Order.subscriber_id, entry.launch_id == Order.launch_id),
        )  # fmt: skip
        .where(Order.launch_id == launch.id, Order.created_at > entry.cart_close_at)
    ).all()
    found += [
        ("order", email, f"ordered {at:%Y-%m-%d %H:%M}, own close {close:%Y-%m-%d %H:%M}")
        for email, at, close in orders
        if at > close + LATE_ORDER
    ]
    return found
