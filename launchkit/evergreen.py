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

from launchkit.errors import InputError, InvalidTransition, NotFound
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
    opens, closes = _check_offsets(launch, cart_open, cart_close, tz)
    launch.mode = EVERGREEN
    launch.entry = str(parsed)
    launch.entry_cart_open = opens.text
    launch.entry_cart_close = closes.text
    session.flush()
    return launch


def _check_offsets(
    launch: Launch, cart_open: str, cart_close: str, tz: ZoneInfo
) -> tuple[SendAt, SendAt]:
    opens = parse_offset(cart_open, where="--cart-open")
    closes = parse_offset(cart_close, where="--cart-close")
    sample = datetime(2026, 1, 5, 12, tzinfo=UTC)
    if resolve_time(closes, sample, tz) <= resolve_time(opens, sample, tz):
        raise InputError(
            f'--cart-close: "{closes.text}" is not after --cart-open "{opens.text}" '
            f'(launch "{launch.slug}"): the cart must open before it closes.'
        )
    return opens, closes


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


@dataclass(frozen=True)
class OffsetsChange:
    """What ``update_offsets`` did to the people already entered."""

    moved: int  # got the new offsets (their unsent emails are rescheduled)
    kept: int  # keep the dates they have (cart opened, or an email of the launch went out)


def update_offsets(
    session: Session,
    launch: Launch,
    *,
    tz: ZoneInfo,
    now: datetime,
    entry: str | None = None,
    cart_open: str | None = None,
    cart_close: str | None = None,
    check_magnet: bool = True,
) -> OffsetsChange:
    """Change an evergreen launch's entry rule and per-person cart offsets.

    The rule never breaks a date already promised: any email can print the person's
    ``cart_open``/``cart_close`` and carries their signed deadline, so a person keeps their
    dates once an email of this launch went out to them, or once their cart has opened. Every
    other entrant gets dates recomputed from their entry, unless the new cart would already be
    open (no cart opens in the past); their queued emails are dropped here and re-added by the
    scheduler at the new times. A new entry rule counts from ``now``: whoever entered by the
    old rule is recorded first, then entries are taken by the new rule only from ``now`` on.
    """
    if not is_evergreen(launch):
        raise InputError(f'--cart-open: launch "{launch.slug}" is not evergreen.')
    opens, closes = _check_offsets(
        launch,
        cart_open or launch.entry_cart_open or "",
        cart_close or launch.entry_cart_close or "",
        tz,
    )
    same = (opens.text, closes.text) == (launch.entry_cart_open, launch.entry_cart_close)
    if entry is not None and str(parse_entry(entry)) != launch.entry:
        record_entries(session, launch, tz=tz, now=now)  # by the old rule, up to now
        configure(
            session,
            launch,
            entry=entry,
            cart_open=launch.entry_cart_open or "",
            cart_close=launch.entry_cart_close or "",
            tz=tz,
            check_magnet=check_magnet,
        )
        launch.cart_open = max(launch.cart_open, now)
    if same:
        return OffsetsChange(moved=0, kept=0)
    launch.entry_cart_open, launch.entry_cart_close = opens.text, closes.text
    return _move_entrants(session, launch, tz=tz, now=now)


def _move_entrants(
    session: Session, launch: Launch, *, tz: ZoneInfo, now: datetime
) -> OffsetsChange:
    from launchkit.launches import WENT_OUT
    from launchkit.models import Send, SendStatus

    emails = _launch_email_ids(launch)
    # Lock the queued rows first (PostgreSQL): a sender claiming one now waits for this
    # transaction and then finds it moved or gone; one claimed before is "sending", so told.
    # SQLite serialises writers: a claim committed after this read makes the update's write fail.
    queued = sa.select(Send.id).where(Send.email_id.in_(emails), Send.status == SendStatus.QUEUED)
    session.execute(queued.with_for_update()).all()
    told = sa.select(Send.subscriber_id).where(Send.email_id.in_(emails), Send.status.in_(WENT_OUT))
    entries = session.scalars(
        sa.select(EvergreenEntry).where(EvergreenEntry.launch_id == launch.id)
    ).all()
    frozen = set(session.scalars(told.distinct()))
    moved, kept = [], 0
    for row in entries:
        marks = person_milestones(launch, row.entered_at, tz)
        if row.subscriber_id in frozen or min(row.cart_open_at, marks["cart_open"]) <= now:
            kept += 1
            continue
        if (row.cart_open_at, row.cart_close_at) != (marks["cart_open"], marks["cart_close"]):
            row.cart_open_at, row.cart_close_at = marks["cart_open"], marks["cart_close"]
            moved.append(row.subscriber_id)
    for chunk in range(0, len(moved), 500):
        ids = moved[chunk : chunk + 500]
        session.execute(
            sa.delete(Send).where(
                Send.email_id.in_(emails),
                Send.subscriber_id.in_(ids),
                Send.status == SendStatus.QUEUED,
            )
        )
    session.flush()
    return OffsetsChange(moved=len(moved), kept=kept)


def _launch_email_ids(launch: Launch) -> Any:
    """The ids of the launch's emails (a subquery)."""
    from launchkit.models import Email, LaunchSequence

    query = sa.select(Email.id).join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
    return query.where(LaunchSequence.launch_id == launch.id)


def switch_mode(
    session: Session,
    launch: Launch,
    *,
    flag: str,
    tz: ZoneInfo,
    now: datetime,
    evergreen: dict[str, Any] | None = None,
) -> None:
    """Turn a launch evergreen (``evergreen``: entry, cart_open, cart_close offsets) or back
    to fixed (the caller then sets its dates), only while nothing of it was sent or sold; its
    queued emails are dropped for the scheduler to re-add under the new timing."""
    from launchkit.launches import WENT_OUT
    from launchkit.models import Order, Send, SendStatus

    emails = _launch_email_ids(launch)
    orders = session.scalar(sa.select(sa.func.count(Order.id)).where(Order.launch_id == launch.id))
    went = session.scalar(
        sa.select(sa.func.count(Send.id)).where(
            Send.email_id.in_(emails), Send.status.in_(WENT_OUT)
        )
    )
    if orders or went:
        raise InvalidTransition(
            f'{flag}: launch "{launch.slug}" has {orders} order(s) and {went} email(s) sent; '
            "it cannot switch between fixed and evergreen (create a new launch)."
        )
    session.execute(
        sa.delete(Send).where(Send.email_id.in_(emails), Send.status == SendStatus.QUEUED)
    )
    if evergreen is not None:
        configure(session, launch, tz=tz, **evergreen)
        return
    session.execute(sa.delete(EvergreenEntry).where(EvergreenEntry.launch_id == launch.id))
    launch.mode, launch.entry = FIXED, None
    launch.entry_cart_open = launch.entry_cart_close = None
    session.flush()


@dataclass(frozen=True)
class TimingUpdate:
    """``launch update`` on an evergreen launch, or a switch between fixed and evergreen."""

    product: str | None = None
    entry: str | None = None
    cart_open: str | None = None  # an offset ("entry +7d")
    cart_close: str | None = None
    until: datetime | None = None  # the last entry taken


def update_evergreen_launch(
    session: Session, launch: Launch, change: TimingUpdate, *, tz: ZoneInfo, now: datetime
) -> OffsetsChange:
    """Apply ``change`` to an evergreen launch (or make a fixed one evergreen); the caller then
    reschedules. A switch to fixed is ``switch_mode`` then ``launches.update_launch``."""
    if change.product is not None:
        launch.product = change.product.strip() or launch.product
    if not is_evergreen(launch):
        if not change.entry:
            raise InputError("--evergreen needs --entry magnet:SLUG or --entry tag:TAG.")
        offsets = {
            "entry": change.entry,
            "cart_open": change.cart_open or "",
            "cart_close": change.cart_close or "",
        }
        switch_mode(session, launch, flag="--evergreen", tz=tz, now=now, evergreen=offsets)
        launch.prelaunch_start, launch.cart_open = None, now
        launch.cart_close = change.until or now + DEFAULT_PERIOD
        launch.updated_at = now
        return OffsetsChange(moved=0, kept=0)
    if change.until is not None:
        if change.until <= max(now, launch.cart_open):
            raise InputError("--until: the last entry must be after now and after the start.")
        launch.cart_close = change.until
    result = update_offsets(
        session, launch, tz=tz, now=now, entry=change.entry,
        cart_open=change.cart_open, cart_close=change.cart_close,
    )  # fmt: skip
    launch.updated_at = now
    session.flush()
    return result


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
