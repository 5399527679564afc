"""Time-based membership emails, due from stored facts and sent by the commands run on a
schedule (``launchkit send``, ``launchkit run``), not only when a Stripe event comes in:

- the renewal reminder, ``settings.renewal_reminder_days`` before a yearly renewal;
- the trial-ending email, ``TRIAL_NOTICE`` before a trial ends (Stripe's own
  ``trial_will_end`` event may bring it first: both share one key, so it goes once).

Never for a membership cancelled at period end, past due or ended, never once the date has
passed, in the member's language. Each email is one ``membership_events`` row with a unique key
per (membership, renewal date): claimed in its own committed transaction before the SMTP
transaction (a concurrent run then finds the key taken), marked sent right after the 250. A
claim left by a run that died is taken over once it is older than ``LEASE`` and sent with the
same Message-ID, so a copy sent just before the crash is recognisable as the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit.config import Settings
from launchkit.errors import DeliveryError
from launchkit.models import (
    Launch,
    Membership,
    MembershipEvent,
    MembershipStatus,
    Order,
    SuppressionReason,
)

TRIAL_NOTICE = timedelta(days=3)  # when Stripe sends customer.subscription.trial_will_end
LEASE = timedelta(minutes=5)  # a claim not marked sent for this long belongs to a dead run
CLAIMED = "email_claimed"  # the row's kind while the email is being sent; "email" once sent
BOUNCED = "email_bounced"  # the server refused it for good (5xx)


@dataclass(frozen=True)
class DueReminder:
    """One email due now: which membership, which template, its once-only key."""

    membership_id: int
    template: str  # renewal-reminder | trial-ending
    key: str
    email: str
    date: datetime  # the renewal or the trial's end it announces


@dataclass
class ReminderReport:
    """What one pass did (``reminders`` lists what a dry run would send)."""

    sent: int = 0
    failed: int = 0
    taken: int = 0  # claimed by another run first
    dry_run: bool = False
    reminders: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        verb = "would send" if self.dry_run else "sent"
        count = len(self.reminders) if self.dry_run else self.sent
        line = f"membership reminders: {verb} {count}"
        return line + (f", failed {self.failed} (retried next run)" if self.failed else "")


def reminder_key(m: Membership, now: datetime, reminder_days: int) -> str | None:
    """The renewal reminder's key when one is due now for this membership, else None."""
    end = m.current_period_end
    if (
        m.interval != "year" or m.status != MembershipStatus.ACTIVE or m.cancel_at_period_end
        or m.ended_at is not None or end is None
    ):  # fmt: skip
        return None
    if not end - timedelta(days=reminder_days) <= now < end:
        return None
    return f"email:reminder:{ref(m)}:{stamp(end)}"


def trial_key(m: Membership, now: datetime) -> str | None:
    """The trial-ending email's key when it is due now for this membership, else None."""
    end = m.trial_end
    if m.status != MembershipStatus.TRIALING or m.cancel_at_period_end or end is None:
        return None
    if not end - TRIAL_NOTICE <= now < end:
        return None
    return f"email:trial-ending:{ref(m)}:{stamp(end)}"


def due_reminders(
    session: Session, settings: Settings, *, now: datetime, launch: str | None = None
) -> list[DueReminder]:
    """Every time-based membership email due now and not claimed yet (reads only)."""
    query = (
        select(Membership, Order.email)
        .join(Order, Order.id == Membership.order_id)
        .where(
            Membership.status.in_([MembershipStatus.ACTIVE, MembershipStatus.TRIALING]),
            Membership.cancel_at_period_end.is_(False),
            Membership.ended_at.is_(None),
            Order.email != "",
        )
        .order_by(Membership.id)
    )
    if launch is not None:
        query = query.join(Launch, Launch.id == Membership.launch_id).where(Launch.slug == launch)
    due = []
    for m, address in session.execute(query):
        found = _due_for(m, now, settings.renewal_reminder_days)
        if found is None or _taken(session, m, found[1]):
            continue
        template, key, date = found
        due.append(DueReminder(m.id, template, key, address, date))
    return due


def _due_for(m: Membership, now: datetime, days: int) -> tuple[str, str, datetime] | None:
    key = reminder_key(m, now, days)
    if key is not None:
        assert m.current_period_end is not None
        return "renewal-reminder", key, m.current_period_end
    key = trial_key(m, now)
    if key is not None:
        assert m.trial_end is not None
        return "trial-ending", key, m.trial_end
    return None


def _taken(session: Session, m: Membership, key: str) -> bool:
    """The key is recorded (sent or being sent); or, for a trial, Stripe's ``trial_will_end``
    event already brought its email (recorded under that event's key)."""
    if session.scalar(select(MembershipEvent.id).where(MembershipEvent.key == key)):
        return True
    if not key.startswith("email:trial-ending:"):
        return False
    notified = select(MembershipEvent.id).where(
        MembershipEvent.membership_id == m.id,
        MembershipEvent.kind == "trial_will_end",
        MembershipEvent.notified_at.is_not(None),
    )
    return session.scalar(notified.limit(1)) is not None


def send_due_reminders(
    engine: Engine,
    settings: Settings,
    messenger: Any = None,
    *,
    now: datetime,
    launch: str | None = None,
    dry_run: bool = False,
    env: Any = None,
) -> ReminderReport:
    """Send every due renewal reminder and trial-ending email once; each in its own
    transactions (claim committed, send, mark sent committed). ``messenger``: the settings'
    backend when None, opened only when something is due."""
    from launchkit.db import make_sessionmaker

    reads = make_sessionmaker(engine)
    report = ReminderReport(dry_run=dry_run)
    with reads.begin() as session:
        due = due_reminders(session, settings, now=now, launch=launch)
        due += _orphans(session, now, settings.renewal_reminder_days)
    if dry_run:
        report.reminders = [_as_dict(r) for r in due]
        return report
    if not due:
        return report
    own = messenger is None
    if own:
        from launchkit import mailer

        messenger = mailer.messenger_from_settings(settings)
    sessions = _Sessions(reads, make_sessionmaker(engine, immediate=True))
    try:
        for reminder in due:
            _send_one(sessions, settings, messenger, env, reminder, now, report)
    finally:
        if own:
            messenger.close()
    return report


@dataclass(frozen=True)
class _Sessions:
    reads: Any  # plain transactions: composing an email holds no lock during SMTP
    writes: Any  # SQLite: BEGIN IMMEDIATE, so two runs' claims queue instead of failing


def _send_one(
    sessions: _Sessions, settings: Settings, messenger: Any, env: Any, reminder: DueReminder,
    now: datetime, report: ReminderReport,
) -> None:  # fmt: skip
    if not _claim(sessions.writes, reminder, now, settings.renewal_reminder_days):
        report.taken += 1
        return
    from launchkit.mailer import InDoubt, PermanentFailure

    try:
        with sessions.reads() as session:
            _compose_and_push(session, settings, messenger, env, reminder, now)
    except DeliveryError as e:
        report.failed += 1
        if isinstance(e, PermanentFailure):  # refused for good: not retried, never mailed again
            _settle(sessions.writes, reminder, kind=BOUNCED, now=now, reason=str(e))
        elif not isinstance(e, InDoubt):  # never handed over: free the key for the next run
            _release(sessions.writes, reminder.key)
        return  # in doubt: the claim stays; a later run resends it with the same Message-ID
    _settle(sessions.writes, reminder, kind="email", now=now)
    report.sent += 1


def _claim(sessions: Any, reminder: DueReminder, now: datetime, days: int) -> bool:
    """Record the key (committed) while the email is still due; False when another run has
    it. A claim older than ``LEASE`` still unsent belongs to a dead run: taken over."""
    try:
        with sessions.begin() as session:
            m = session.get(Membership, reminder.membership_id)
            if m is None or _due_for(m, now, days) is None:
                return False
            row = session.scalar(select(MembershipEvent).where(MembershipEvent.key == reminder.key))
            if row is None:
                session.add(MembershipEvent(membership_id=m.id, key=reminder.key, kind=CLAIMED,
                                            occurred_at=now))  # fmt: skip
                return True
            if row.kind != CLAIMED or row.occurred_at > now - LEASE:
                return False
            taken = session.execute(
                update(MembershipEvent)
                .where(MembershipEvent.id == row.id, MembershipEvent.occurred_at == row.occurred_at)
                .values(occurred_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(taken.rowcount)
    except IntegrityError:  # a concurrent run inserted the same key first
        return False


def _orphans(session: Session, now: datetime, days: int) -> list[DueReminder]:
    """Claims left by a run that died before marking them sent (older than ``LEASE``), while
    their email is still due."""
    rows = session.execute(
        select(MembershipEvent, Order.email)
        .join(Membership, Membership.id == MembershipEvent.membership_id)
        .join(Order, Order.id == Membership.order_id)
        .where(MembershipEvent.kind == CLAIMED, MembershipEvent.occurred_at <= now - LEASE)
    ).all()
    found = []
    for row, address in rows:
        m = session.get(Membership, row.membership_id)
        due = _due_for(m, now, days) if m is not None else None
        if m is not None and due is not None and due[1] == row.key:
            found.append(DueReminder(m.id, due[0], row.key, address, due[2]))
    return found


def _compose_and_push(
    session: Session, settings: Settings, messenger: Any, env: Any, reminder: DueReminder,
    now: datetime,
) -> None:  # fmt: skip
    from launchkit.memberships.notify import send_member_email

    m = session.get(Membership, reminder.membership_id)
    assert m is not None
    order = session.get(Order, m.order_id)
    assert order is not None
    send_member_email(session, settings, messenger, env, (reminder.template, reminder.key),
                      m, order, {}, now)  # fmt: skip


def _settle(
    sessions: Any, reminder: DueReminder, *, kind: str, now: datetime, reason: str = ""
) -> None:
    """Mark the claim sent or bounced: its key stays, so it never goes again. A bounce also
    suppresses the address, as a launch email's bounce does (same transaction)."""
    with sessions.begin() as session:
        row = session.scalar(select(MembershipEvent).where(MembershipEvent.key == reminder.key))
        if row is not None:
            row.kind, row.notified_at = kind, (now if kind != BOUNCED else None)
        if kind == BOUNCED:
            from launchkit.sequences.audience_glue import suppress_address

            suppress_address(session, reminder.email, SuppressionReason.BOUNCED, now, detail=reason)
            return
        m = session.get(Membership, reminder.membership_id)
        if m is not None and reminder.template == "renewal-reminder":
            m.reminder_period_end = reminder.date


def _release(sessions: Any, key: str) -> None:
    with sessions.begin() as session:
        row = session.scalar(select(MembershipEvent).where(MembershipEvent.key == key))
        if row is not None and row.kind == CLAIMED:
            session.delete(row)


def _as_dict(reminder: DueReminder) -> dict[str, Any]:
    return {
        "membership": reminder.membership_id,
        "email": reminder.template,
        "to": reminder.email,
        "date": reminder.date.isoformat(),
    }


def stamp(when: datetime | None) -> str:
    """A key's date part: ``20261203T091500``."""
    return when.strftime("%Y%m%dT%H%M%S") if when else "none"


def ref(m: Membership) -> str:
    """What names a membership in an email's key: its Stripe subscription when known."""
    return m.stripe_subscription_id or f"membership-{m.id}"
