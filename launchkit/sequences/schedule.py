"""Attach sequence folders to launches, resolve send times, and keep the delivery ledger.

The ledger (``sends``) gets one row per (email, eligible subscriber). Rows are created
set-based (``INSERT ... SELECT`` of the missing pairs, one statement per email and distinct
due time), so scheduling 100,000 subscribers is a handful of statements, and rerunning it only
adds subscribers who joined since. Moving a milestone moves the due time of every row not sent.
An evergreen launch times each row from that entrant's own milestones (``_insert_entrants``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from launchkit import evergreen
from launchkit.config import Settings
from launchkit.db import UTCDateTime
from launchkit.errors import AlreadyExists, InputError, InvalidTransition, NotFound
from launchkit.launches import check_slug, get_launch, milestones
from launchkit.models import (
    Email,
    EvergreenEntry,
    Launch,
    LaunchSequence,
    Send,
    SendStatus,
    SequenceStatus,
    Subscriber,
    SubscriberStatus,
)
from launchkit.sequences.audience_glue import not_suppressed, segment_clause
from launchkit.sequences.timing import SendAt, Window, due_time, parse_send_at, zone_or

EMAIL_SUFFIXES = (".md", ".html")

TRANSITIONS: dict[str, set[str]] = {
    SequenceStatus.ACTIVE: {
        SequenceStatus.RUNNING,
        SequenceStatus.PAUSED,
        SequenceStatus.CANCELLED,
    },
    SequenceStatus.RUNNING: {
        SequenceStatus.PAUSED,
        SequenceStatus.FINISHED,
        SequenceStatus.CANCELLED,
    },
    SequenceStatus.PAUSED: {SequenceStatus.ACTIVE, SequenceStatus.CANCELLED},
    SequenceStatus.FINISHED: {SequenceStatus.RUNNING, SequenceStatus.CANCELLED},
    SequenceStatus.CANCELLED: set(),
}
SENDABLE = (SequenceStatus.ACTIVE, SequenceStatus.RUNNING, SequenceStatus.FINISHED)


def set_status(session: Session, seq: LaunchSequence, new: SequenceStatus) -> None:
    """Move a sequence to ``new`` if the transitions table allows it."""
    if new == seq.status:
        return
    if new not in TRANSITIONS[SequenceStatus(seq.status)]:
        raise InvalidTransition(
            f'Sequence "{seq.name}" is {seq.status} and cannot become {new}'
            + ("; resume it first." if seq.status == SequenceStatus.PAUSED else ".")
        )
    seq.status = new
    if new == SequenceStatus.ACTIVE:
        seq.consecutive_failures = 0
    session.flush()


def sequence_folder(settings: Settings, name: str) -> Path:
    """The folder of a sequence under the workspace's emails directory."""
    check_slug(name, "Sequence")
    folder = settings.emails_dir / name
    if not folder.is_dir():
        raise NotFound(f'Sequence folder "{folder}" does not exist.')
    return folder


def email_files(folder: Path) -> list[Path]:
    """One email per .md/.html file, ordered by file name."""
    files = sorted(p for p in folder.iterdir() if p.suffix in EMAIL_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f'Sequence folder "{folder}" has no .md or .html email.')
    return files


def load_sources(settings: Settings, name: str) -> list[Any]:
    """Parse every email file of a sequence (render.parse_email_file) and check its send_at."""
    from launchkit import render

    sources = []
    for path in email_files(sequence_folder(settings, name)):
        source = render.parse_email_file(path)
        send_at = source.meta.get("send_at")
        if not send_at:
            raise InputError(f"{path}: front matter has no send_at (e.g. send_at: cart_open +0h).")
        parse_send_at(str(send_at), where=str(path))
        segment_clause(source.meta.get("segment"))
        segment_clause(source.meta.get("skip_if"))
        sources.append(source)
    return sources


def attach_sequence(
    session: Session,
    settings: Settings,
    launch_slug: str,
    name: str,
    *,
    now: datetime,
    segment: str | None = None,
) -> LaunchSequence:
    """Bind the sequence folder ``name`` to a launch and create its emails."""
    launch = get_launch(session, launch_slug)
    segment_clause(segment)
    sources = load_sources(settings, name)
    found = session.scalar(
        select(LaunchSequence).where(
            LaunchSequence.launch_id == launch.id, LaunchSequence.name == name
        )
    )
    if found is not None:
        raise AlreadyExists(f'Sequence "{name}" is already attached to launch "{launch.slug}".')
    seq = LaunchSequence(
        launch_id=launch.id,
        name=name,
        segment=segment or None,
        status=SequenceStatus.ACTIVE,
        consecutive_failures=0,
        created_at=now,
    )
    session.add(seq)
    session.flush()
    sync_emails(session, seq, sources)
    return seq


def sync_emails(session: Session, seq: LaunchSequence, sources: list[Any]) -> list[Email]:
    """Create or update the Email rows of a sequence from its parsed files."""
    existing = {
        e.step: e for e in session.scalars(select(Email).where(Email.sequence_id == seq.id))
    }
    emails = []
    for position, source in enumerate(sources, start=1):
        email = existing.get(source.step) or Email(sequence_id=seq.id, step=source.step)
        meta = source.meta
        email.position = position
        email.subject = source.subject
        email.send_at = str(meta.get("send_at"))
        email.local_time = bool(meta.get("local", False))
        email.kind = str(meta.get("kind") or "content")
        email.segment = meta.get("segment") or None
        email.skip_if = meta.get("skip_if") or None
        session.add(email)
        emails.append(email)
    session.flush()
    return emails


def launch_sequences(session: Session, launch: Launch) -> list[LaunchSequence]:
    """Sequences attached to a launch, in attachment order."""
    query = select(LaunchSequence).where(LaunchSequence.launch_id == launch.id)
    return list(session.scalars(query.order_by(LaunchSequence.id)))


def get_sequence(session: Session, launch: Launch, name: str) -> LaunchSequence:
    """One attached sequence, or NotFound."""
    for seq in launch_sequences(session, launch):
        if seq.name == name:
            return seq
    raise NotFound(f'Sequence "{name}" is not attached to launch "{launch.slug}".')


def sequence_emails(session: Session, seq: LaunchSequence) -> list[Email]:
    """Emails of a sequence in file order."""
    query = select(Email).where(Email.sequence_id == seq.id).order_by(Email.position)
    return list(session.scalars(query))


@dataclass
class ScheduleResult:
    """What scheduling did: emails resolved, ledger rows added and moved."""

    emails: int = 0
    added: int = 0
    moved: int = 0


def schedule_launch(
    session: Session,
    settings: Settings,
    launch: Launch,
    *,
    sync: bool = True,
    now: datetime | None = None,
) -> ScheduleResult:
    """Re-read the sequence files, resolve send times, move unsent rows, add missing rows.

    An evergreen launch first records its new entrants (up to ``now``), then gives each
    entrant's rows that person's own due times (``_schedule_evergreen``).

    Every send run calls this in full: whoever is eligible now (tags, segments, status,
    suppressions as they are) and has no row gets one, whatever changed since the last run.
    """
    result = ScheduleResult()
    if evergreen.is_evergreen(launch):
        return _schedule_evergreen(session, settings, launch, sync=sync, now=now)
    zones = _timezone_values(session)
    window = Window.parse(settings.send_window)
    marks = milestones(launch)
    for seq, emails in _plan(session, settings, launch, sync=sync):
        for email in emails:
            added, moved = _schedule_email(session, settings, seq, email, marks, zones, window)
            result.emails += 1
            result.added += added
            result.moved += moved
    return result


def _plan(
    session: Session, settings: Settings, launch: Launch, *, sync: bool
) -> list[tuple[LaunchSequence, list[Email]]]:
    plan = []
    for seq in launch_sequences(session, launch):
        if seq.status == SequenceStatus.CANCELLED:
            continue
        emails = (
            sync_emails(session, seq, load_sources(settings, seq.name))
            if sync
            else sequence_emails(session, seq)
        )
        plan.append((seq, emails))
    return plan


def _schedule_evergreen(
    session: Session, settings: Settings, launch: Launch, *, sync: bool, now: datetime | None
) -> ScheduleResult:
    """Per person: each entrant's rows are due at that person's own milestones."""
    result = ScheduleResult()
    if now is not None:
        evergreen.record_entries(session, launch, tz=settings.tz, now=now)
    window = Window.parse(settings.send_window)
    for seq, emails in _plan(session, settings, launch, sync=sync):
        for email in emails:
            spec = parse_send_at(email.send_at or "", where=f"{seq.name}/{email.step}")
            _refuse_signup(seq, email, spec)
            email.scheduled_at = None  # one time per person, on the ledger rows
            email.deadline_at = None
            result.emails += 1
            result.added += _insert_entrants(session, settings, launch, seq, email, spec, window)
    return result


def _insert_entrants(
    session: Session,
    settings: Settings,
    launch: Launch,
    seq: LaunchSequence,
    email: Email,
    spec: SendAt,
    window: Window,
) -> int:
    """Rows for the eligible entrants who have none, each due at their own time.

    The due time depends on the person's entry, zone, the send window and DST, which portable
    SQL cannot compute; so the missing (entrant, zone) pairs are read in one query and written
    in one multi-row INSERT that ignores conflicts (the UNIQUE (email, subscriber) keeps it
    exactly once even when two schedulers race)."""
    already = select(Send.subscriber_id).where(Send.email_id == email.id)
    query = (
        select(
            EvergreenEntry.subscriber_id,
            EvergreenEntry.entered_at,
            EvergreenEntry.cart_open_at,
            EvergreenEntry.cart_close_at,
            Subscriber.timezone,
        )
        .join(Subscriber, Subscriber.id == EvergreenEntry.subscriber_id)
        .where(EvergreenEntry.launch_id == launch.id, eligible_clause(seq, email))
        .where(EvergreenEntry.subscriber_id.not_in(already))
    )
    rows = []
    for sid, entered, opens, closes, zone in session.execute(query):
        marks = {"entry": entered, "prelaunch_start": entered, "cart_open": opens}
        marks["cart_close"] = closes
        due = _due(spec, marks, settings, zone, email.local_time, window)
        deadline = closes if spec.has_deadline else None
        rows.append({"email_id": email.id, "subscriber_id": sid, "status": SendStatus.QUEUED,
                     "due_at": due, "attempts": 0, "deadline_at": deadline})  # fmt: skip
    return _insert_rows(session, rows)


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(Send.__table__).on_conflict_do_nothing()
    else:  # the Table, not the class: a Core executemany, not the ORM's bulk path (5x)
        stmt = insert(Send.__table__).prefix_with("OR IGNORE")
    # rowcount of an executemany is not reliable across drivers: count the email's rows
    before = session.scalar(select(func.count(Send.id)).where(Send.email_id == rows[0]["email_id"]))
    session.execute(stmt, rows)
    after = session.scalar(select(func.count(Send.id)).where(Send.email_id == rows[0]["email_id"]))
    return int(after or 0) - int(before or 0)


def _refuse_signup(seq: LaunchSequence, email: Email, spec: SendAt) -> None:
    if spec.milestone == "signup":
        raise InputError(
            f'{seq.name}/{email.step}: "signup" timing is for lead-magnet sequences, '
            "not launch sequences."
        )


def reschedule_launch(session: Session, settings: Settings, launch_slug: str) -> ScheduleResult:
    """After milestones moved: every email not yet sent moves with them."""
    launch = get_launch(session, launch_slug)
    return schedule_launch(session, settings, launch, sync=False)


def _timezone_values(session: Session) -> list[str | None]:
    query = select(Subscriber.timezone).where(Subscriber.status == SubscriberStatus.ACTIVE)
    return list(session.scalars(query.distinct()))


def _schedule_email(
    session: Session,
    settings: Settings,
    seq: LaunchSequence,
    email: Email,
    marks: dict[str, datetime | None],
    zones: list[str | None],
    window: Window,
) -> tuple[int, int]:
    spec = parse_send_at(email.send_at or "", where=f"{seq.name}/{email.step}")
    _refuse_signup(seq, email, spec)
    if spec.milestone == "entry":
        raise InputError(
            f'{seq.name}/{email.step}: "entry" timing is for evergreen launches '
            "(launch create --evergreen)."
        )
    email.scheduled_at = _due(spec, marks, settings, None, email.local_time, window)
    email.deadline_at = marks.get("cart_close") if spec.has_deadline else None
    if email.scheduled_at is None:
        return 0, 0
    groups: dict[datetime, list[str | None]] = defaultdict(list)
    for zone in zones:
        due = _due(spec, marks, settings, zone, email.local_time, window)
        if due is not None:
            groups[due].append(zone)
    moved = sum(_move_queued(session, email, due, names) for due, names in groups.items())
    return _insert_missing(session, seq, email, groups), moved


def _due(
    spec: SendAt,
    marks: dict[str, datetime | None],
    settings: Settings,
    zone: str | None,
    local: bool,
    window: Window,
) -> datetime | None:
    tz: ZoneInfo | None = zone_or(zone, settings.tz) if zone else None
    return due_time(
        spec, marks, workspace_tz=settings.tz, subscriber_tz=tz, local=local, window=window
    )


def _zone_clause(names: list[str | None]) -> Any:
    named = [n for n in names if n is not None]
    clause = Subscriber.timezone.in_(named) if named else None
    if None in names:
        null = Subscriber.timezone.is_(None)
        clause = null if clause is None else or_(clause, null)
    return clause


def eligible_clause(seq: LaunchSequence, email: Email) -> Any:
    """Active, in the sequence's and the email's segment, not suppressed."""
    return and_(
        Subscriber.status == SubscriberStatus.ACTIVE,
        segment_clause(seq.segment),
        segment_clause(email.segment),
        not_suppressed(),
    )


def _insert_missing(
    session: Session,
    seq: LaunchSequence,
    email: Email,
    groups: dict[datetime, list[str | None]],
) -> int:
    """One INSERT ... SELECT for the email: each missing subscriber gets the due time of
    their timezone's group (a CASE on the timezone)."""
    if not groups:
        return 0
    # NOT IN (hashed subplan on PostgreSQL) rather than NOT EXISTS: its plan does not degrade
    # to a quadratic nested loop when the table statistics are stale (fresh ledgers)
    already = Subscriber.id.in_(select(Send.subscriber_id).where(Send.email_id == email.id))
    clauses = [(_zone_clause(names), literal(due, UTCDateTime())) for due, names in groups.items()]
    due_at = clauses[0][1] if len(clauses) == 1 else case(*clauses)
    rows = select(
        literal(email.id),
        Subscriber.id,
        literal(SendStatus.QUEUED.value),
        due_at,
        literal(0),
    ).where(eligible_clause(seq, email), or_(*(clause for clause, _ in clauses)), ~already)
    columns = ["email_id", "subscriber_id", "status", "due_at", "attempts"]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(Send).from_select(columns, rows).on_conflict_do_nothing()
        inserted = stmt.returning(Send.id).cte("inserted")
        return int(session.scalar(select(func.count()).select_from(inserted)) or 0)
    else:
        stmt = insert(Send).from_select(columns, rows).prefix_with("OR IGNORE")
    return int(session.execute(stmt).rowcount or 0)


def _move_queued(session: Session, email: Email, due: datetime, names: list[str | None]) -> int:
    in_zone = select(Subscriber.id).where(_zone_clause(names))
    stmt = (
        update(Send)
        .where(
            Send.email_id == email.id,
            Send.status == SendStatus.QUEUED,
            Send.due_at != due,
            Send.subscriber_id.in_(in_zone),
        )
        .values(due_at=due)
    )
    return int(session.execute(stmt).rowcount or 0)


def ledger_counts(session: Session, email_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per email: counts by status, audience size and the range of due times."""
    out: dict[int, dict[str, Any]] = {
        i: {"counts": {}, "audience": 0, "due_min": None, "due_max": None} for i in email_ids
    }
    if not email_ids:
        return out
    query = (
        select(
            Send.email_id, Send.status, func.count(), func.min(Send.due_at), func.max(Send.due_at)
        )
        .where(Send.email_id.in_(email_ids))
        .group_by(Send.email_id, Send.status)
    )
    for email_id, status, count, low, high in session.execute(query):
        entry = out[email_id]
        entry["counts"][status] = count
        entry["audience"] += count
        entry["due_min"] = low if entry["due_min"] is None else min(entry["due_min"], low)
        entry["due_max"] = high if entry["due_max"] is None else max(entry["due_max"], high)
    return out
