"""Audience lists: import, normalization, suppression, consent, tags, segments, stats, exports.

The importer lives in ``launchkit.audience.importer`` and address rules in
``launchkit.audience.addresses``; both are re-exported here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from launchkit import privacy
from launchkit.audience.addresses import fast_valid, neutralize_cell, normalize_email
from launchkit.audience.importer import (
    CHUNK_SIZE,
    IN_BATCH,
    ImportResult,
    _batches,
    import_subscribers,
)
from launchkit.audience.parsing import (
    _RANK,
    FORMATS,
    INACTIVE,
    MAP_FIELDS,
    check_headers,
    map_columns,
    open_records,
    parse_datetime,
    scan_file,
)
from launchkit.errors import InputError, NotFound
from launchkit.files import write_csv
from launchkit.models import (
    Consent,
    StatusSource,
    Subscriber,
    SubscriberStatus,
    SubscriberStatusChange,
    SubscriberTag,
    Suppression,
    SuppressionReason,
)
from launchkit.segments import resolve_segment, segment_filter

__all__ = [
    "CHUNK_SIZE", "EXPORT_COLUMNS", "FORMATS", "MAP_FIELDS", "ImportResult", "SuppressResult",
    "add_tags", "audience_stats", "count_subscribers", "export_subscribers", "fast_valid",
    "get_subscriber", "import_subscribers", "is_suppressed", "iter_subscribers",
    "neutralize_cell", "normalize_email", "parse_datetime", "remove_tags", "scan_file",
    "record_status", "segment_ids", "set_status", "suppress", "suppress_file", "unsubscribe",
]  # fmt: skip

_REASON_STATUS = {
    SuppressionReason.UNSUBSCRIBED: SubscriberStatus.UNSUBSCRIBED,
    SuppressionReason.MANUAL: SubscriberStatus.UNSUBSCRIBED,
    SuppressionReason.BOUNCED: SubscriberStatus.BOUNCED,
    SuppressionReason.COMPLAINED: SubscriberStatus.COMPLAINED,
}
_REASON_SOURCE = {
    SuppressionReason.UNSUBSCRIBED: StatusSource.UNSUBSCRIBE,
    SuppressionReason.MANUAL: StatusSource.SUPPRESS,
    SuppressionReason.BOUNCED: StatusSource.BOUNCE,
    SuppressionReason.COMPLAINED: StatusSource.COMPLAINT,
}


# --- status history ----------------------------------------------------------------------------


def record_status(
    session: Session, subscriber_id: int, status: str, *, at: datetime, source: str
) -> None:
    """Append one status change to a subscriber's history (the subscriber row is untouched)."""
    session.add(
        SubscriberStatusChange(
            subscriber_id=subscriber_id,
            status=SubscriberStatus(status),
            changed_at=at,
            source=StatusSource(source),
        )
    )


def set_status(
    session: Session, subscriber: Subscriber, status: str, *, at: datetime, source: str
) -> bool:
    """Change a subscriber's status and record the change at its true time ``at``.

    Every status write goes through here (suppression, unsubscribe, bounce, complaint, opt-in
    confirmation, resubscription), so the audience of a past launch can be rebuilt. Returns
    False (and records nothing) when the status is already ``status``.
    """
    status = SubscriberStatus(status)
    if subscriber.status == status:
        return False
    subscriber.status = status
    if status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ACTIVE):
        subscriber.unsubscribed_at = at if status == SubscriberStatus.UNSUBSCRIBED else None
    subscriber.updated_at = max(subscriber.updated_at or at, at)
    if subscriber.id is None:
        session.flush()
    record_status(session, subscriber.id, status, at=at, source=source)
    return True


# --- suppression, unsubscribe, tags ------------------------------------------------------------


def _normalized_or_lower(email: str) -> str:
    try:
        return normalize_email(email)
    except InputError:
        return email.strip().lower()


def is_suppressed(session: Session, email: str) -> bool:
    """True when the address must not be mailed (suppression list or an inactive subscriber)."""
    email = _normalized_or_lower(email)
    keys = [email, privacy.erased_key(email)]  # an erased address is kept as a hash only
    if session.scalar(select(Suppression.id).where(Suppression.email.in_(keys))) is not None:
        return True
    status = session.scalar(select(Subscriber.status).where(Subscriber.email == email))
    return status in INACTIVE


def suppress(
    session: Session,
    email: str,
    reason: SuppressionReason,
    *,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Add an address to the suppression list (idempotent) and update a matching subscriber."""
    email = normalize_email(email)
    reason = SuppressionReason(reason)
    if session.scalar(select(Suppression.id).where(Suppression.email == email)) is None:
        session.add(Suppression(email=email, reason=reason, detail=detail, created_at=now))
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is not None and _RANK[subscriber.status] < _RANK[_REASON_STATUS[reason]]:
        status, source = _REASON_STATUS[reason], _REASON_SOURCE[reason]
        set_status(session, subscriber, status, at=now, source=source)
        _withdraw_consents(session, subscriber.id, now, f"suppressed: {reason}")
    session.flush()


def _withdraw_consents(session: Session, subscriber_id: int, now: datetime, method: str) -> int:
    result = session.execute(
        update(Consent)
        .where(Consent.subscriber_id == subscriber_id, Consent.withdrawn_at.is_(None))
        .values(withdrawn_at=now, withdrawal_method=method)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def unsubscribe(
    session: Session, subscriber_id: int, *, now: datetime, method: str, reason: str | None = None
) -> bool:
    """Unsubscribe a subscriber (idempotent); True when something changed."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound(f"No subscriber has id {subscriber_id}.")
    changed = False
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        set_status(
            session,
            subscriber,
            SubscriberStatus.UNSUBSCRIBED,
            at=now,
            source=StatusSource.UNSUBSCRIBE,
        )
        changed = True
    if session.scalar(select(Suppression.id).where(Suppression.email == subscriber.email)) is None:
        detail = f"{method}: {reason}" if reason else method
        session.add(
            Suppression(
                email=subscriber.email,
                reason=SuppressionReason.UNSUBSCRIBED,
                detail=detail,
                created_at=now,
            )
        )
        changed = True
    changed = _withdraw_consents(session, subscriber.id, now, method) > 0 or changed
    session.flush()
    return changed


def get_subscriber(session: Session, email: str) -> Subscriber:
    """A subscriber by address (any spelling of it)."""
    normalized = _normalized_or_lower(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == normalized))
    if subscriber is None:
        raise NotFound(f'No subscriber has the address "{email.strip()}".')
    return subscriber


def _clean_tags(tags: Iterable[str]) -> list[str]:
    return sorted({t.strip().lower() for t in tags if t.strip()})


def add_tags(
    session: Session,
    subscriber_ids: Iterable[int],
    tags: Iterable[str],
    *,
    at: datetime | None = None,
) -> int:
    """Tag subscribers (tags are trimmed and lowercased); returns how many pairs were added.

    ``at`` is recorded as the time each new tag was added (an evergreen launch's entry); a tag
    already there keeps its time."""
    ids, wanted = sorted(set(subscriber_ids)), _clean_tags(tags)
    have: set[tuple[int, str]] = set()
    for batch in _batches(ids, IN_BATCH):
        query = select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
            SubscriberTag.subscriber_id.in_(batch), SubscriberTag.tag.in_(wanted)
        )
        have.update((sid, tag) for sid, tag in session.execute(query))
    rows = [
        {"subscriber_id": i, "tag": t, "tagged_at": at}
        for i in ids
        for t in wanted
        if (i, t) not in have
    ]
    if rows:
        session.execute(insert(SubscriberTag), rows)
    return len(rows)


def remove_tags(session: Session, subscriber_ids: Iterable[int], tags: Iterable[str]) -> int:
    """Remove tags from subscribers; returns how many (subscriber, tag) pairs were removed."""
    ids, wanted, removed = sorted(set(subscriber_ids)), _clean_tags(tags), 0
    for batch in _batches(ids, IN_BATCH):
        result = session.execute(
            delete(SubscriberTag).where(
                SubscriberTag.subscriber_id.in_(batch), SubscriberTag.tag.in_(wanted)
            )
        )
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed


@dataclass
class SuppressResult:
    added: int = 0
    already: int = 0
    invalid: int = 0
    invalid_rows: list[str] = field(default_factory=list)


def suppress_file(
    session: Session,
    path: Path,
    *,
    now: datetime,
    reason: SuppressionReason = SuppressionReason.MANUAL,
) -> SuppressResult:
    """Suppress every address of a file: one per line, or a CSV with an email column."""
    info = scan_file(path)
    result = SuppressResult()
    for number, raw in _addresses(path, info.encoding):
        try:
            email = normalize_email(raw)
        except InputError as e:
            result.invalid += 1
            result.invalid_rows.append(f"row {number}: {e}")
            continue
        if is_suppressed(session, email) and session.scalar(
            select(Suppression.id).where(Suppression.email == email)
        ):
            result.already += 1
            continue
        suppress(session, email, reason, now=now, detail=f"suppressed from {path.name}")
        result.added += 1
    return result


def _addresses(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    handle, records, _ = open_records(path, encoding)
    with handle:
        first = next(records, None)
        if not first:
            raise InputError(f"{path.name}: the file is empty.")
        first[0] = first[0].lstrip("\ufeff")
        if len(first) == 1 and "@" in first[0]:
            yield 1, first[0]
            position = 0
        else:
            check_headers(path.name, first)
            position = map_columns(path.name, first, "generic", None).index["email"]
        for number, record in enumerate(records, start=2):
            if record and position < len(record) and record[position].strip():
                yield number, record[position]


# --- reading the list --------------------------------------------------------------------------


def _where(session: Session, segment: str | None, statuses: Sequence[str] | None) -> list[Any]:
    clauses: list[Any] = []
    if segment:
        clauses.append(segment_filter(resolve_segment(session, segment)))
    if statuses:
        clauses.append(Subscriber.status.in_(list(statuses)))
    return clauses


def count_subscribers(
    session: Session, segment: str | None = None, statuses: Sequence[str] | None = ("active",)
) -> int:
    """How many subscribers match a segment (saved name or expression) and statuses."""
    query = select(func.count()).select_from(Subscriber).where(*_where(session, segment, statuses))
    return int(session.scalar(query) or 0)


def segment_ids(
    session: Session, segment: str | None, statuses: Sequence[str] | None = None
) -> list[int]:
    """Ids of the subscribers in a segment."""
    query = select(Subscriber.id).where(*_where(session, segment, statuses)).order_by(Subscriber.id)
    return list(session.scalars(query))


EXPORT_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "status",
    "source",
    "timezone",
    "language",
    "signed_up_at",
    "confirmed_at",
    "unsubscribed_at",
    "tags",
)


def iter_subscribers(
    session: Session,
    segment: str | None = None,
    *,
    statuses: Sequence[str] | None = None,
    limit: int | None = None,
    batch: int = 2_000,
) -> Iterator[dict[str, Any]]:
    """Subscribers as dicts (``EXPORT_COLUMNS``, tags as a sorted list), streamed by id."""
    where, last_id, left = _where(session, segment, statuses), 0, limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        query = select(Subscriber).where(Subscriber.id > last_id, *where)
        rows = list(session.scalars(query.order_by(Subscriber.id).limit(size)))
        if not rows:
            return
        tags: dict[int, list[str]] = {}
        tag_query = select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
            SubscriberTag.subscriber_id.in_([r.id for r in rows])
        )
        for sid, tag in session.execute(tag_query.order_by(SubscriberTag.tag)):
            tags.setdefault(sid, []).append(tag)
        for row in rows:
            item = {name: getattr(row, name, None) for name in EXPORT_COLUMNS[:-1]}
            yield {"id": row.id, **item, "tags": tags.get(row.id, [])}
        last_id = rows[-1].id
        left = None if left is None else left - len(rows)
        session.expunge_all()


def export_subscribers(
    session: Session,
    path: Path,
    segment: str | None = None,
    statuses: Sequence[str] | None = None,
) -> int:
    """Write subscribers to a UTF-8 CSV safe to open in a spreadsheet; returns the row count."""
    items = iter_subscribers(session, segment, statuses=statuses)
    rows = ([_export_cell(item[name]) for name in EXPORT_COLUMNS] for item in items)
    return write_csv(path, EXPORT_COLUMNS, rows)


def _export_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _counts(session: Session, query: Any) -> dict[str, int]:
    return {str(key): int(count) for key, count in session.execute(query)}


def audience_stats(session: Session) -> dict[str, Any]:
    """Counts by status (everyone) and, for active subscribers, by source, tag and signup month."""
    active = Subscriber.status == SubscriberStatus.ACTIVE
    source = func.coalesce(Subscriber.source, "")
    by_status = _counts(
        session, select(Subscriber.status, func.count()).group_by(Subscriber.status)
    )
    by_source = _counts(session, select(source, func.count()).where(active).group_by(source))
    by_tag = _counts(
        session,
        select(SubscriberTag.tag, func.count())
        .join(Subscriber)
        .where(active)
        .group_by(SubscriberTag.tag),
    )
    months: Counter[str] = Counter()
    query = select(Subscriber.signed_up_at).where(active).execution_options(yield_per=10_000)
    for signed in session.execute(query).scalars():
        months[signed.strftime("%Y-%m") if signed else "unknown"] += 1
    return {
        "total": sum(by_status.values()),
        "by_status": {s.value: by_status.get(s, 0) for s in SubscriberStatus},
        "by_source": _sorted_counts(by_source),
        "by_tag": _sorted_counts(by_tag),
        "by_month": dict(sorted(months.items())),
    }


def _sorted_counts(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
