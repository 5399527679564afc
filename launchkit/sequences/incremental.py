"""Keep the per-run schedule cheap: each send run re-schedules its launches (late joiners get
their rows), but only does the work that changed since this process last scheduled the launch.

After a committed schedule, the process remembers the timing inputs (milestones, send times,
window, segments, timezones in use) and a probe of the audience: per (source, timezone) counts
and id sums of active subscribers, the highest subscriber id and ``updated_at``, the tags that
segments in play refer to, the suppression list and the size of the ledger. The next run
compares:

- timing inputs changed (or nothing remembered): full schedule, rows moved and added;
- someone already there changed timezone: rows are moved (the adds follow the rules below);
- a referenced tag changed, a suppression was lifted, an active group grew with nobody new or
  updated, or the ledger changed behind our back: every missing row is added (one
  INSERT ... SELECT per email);
- otherwise, if anyone was added or updated (status changes always set ``updated_at``): only
  subscribers created or updated since the last schedule are considered;
- nothing changed: nothing to do.

Every ``FULL_EVERY``-th run that adds rows considers everyone again, whatever the probe says
(a safety net, e.g. for an update committed with an older ``updated_at`` than the probe saw).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from launchkit.models import (
    Email,
    LaunchSequence,
    Send,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
    Suppression,
)

FULL_EVERY = 10


@dataclass(frozen=True)
class Probe:
    """Aggregates of the audience and ledger that the schedule depends on."""

    active: dict[tuple[str, str], tuple[int, int]]  # (source, timezone) -> (count, id sum)
    zones: tuple[tuple[str, int, int], ...]  # timezone -> count, id sum (every status)
    newest: tuple[int, datetime | None]  # highest subscriber id, latest updated_at
    emails: int  # id-weighted sum of address lengths
    tags: tuple[tuple[Any, ...], ...]  # referenced tags: count, id sum
    blocked: tuple[int, int]  # suppressions: count, highest id
    ledger: tuple[int, int]  # sends: count, highest id


@dataclass(frozen=True)
class Work:
    """What a schedule run must do: skip, move rows, and which subscribers may need rows."""

    skip: bool = False
    move: bool = True
    since: Probe | None = None  # only subscribers new or updated since this probe

    def partial_runs(self, last: tuple[Any, Probe, int] | None) -> int:
        """The count to remember after this run: partial adds since the last full one."""
        if self.skip and last is not None:
            return last[2]
        return last[2] + 1 if self.since is not None and last is not None else 0


_MEMO: dict[tuple[str, int], tuple[Any, Probe, int]] = {}
_LOCK = threading.Lock()


def recall(key: tuple[str, int]) -> tuple[Any, Probe, int] | None:
    """The timing inputs, probe and number of partial adds since the last full one, as of the
    last committed schedule of this launch."""
    with _LOCK:
        return _MEMO.get(key)


def remember_on_commit(
    session: Session, key: tuple[str, int], state: tuple[Any, Probe, int]
) -> None:
    """Remember ``state`` only once the schedule's transaction has committed."""
    from sqlalchemy import event

    def remember(_session: Session) -> None:
        with _LOCK:
            _MEMO[key] = state

    event.listen(session, "after_commit", remember, once=True)


def decide(last: tuple[Any, Probe, int] | None, inputs: Any, probe: Probe | None) -> Work:
    """The work a schedule run must do, from what changed since ``last``."""
    if last is None or probe is None or last[0] != inputs:
        return Work()
    before = last[1]
    if before == probe:
        return Work(skip=True)
    move = before.zones != probe.zones
    grew = any(
        probe.active[group][0] > before.active.get(group, (0, 0))[0] for group in probe.active
    )
    full = (
        (grew and before.newest == probe.newest)  # growth that no new or updated row explains
        or before.tags != probe.tags
        or before.emails != probe.emails
        or probe.blocked[0] < before.blocked[0]
        or before.ledger != probe.ledger
        or last[2] + 1 >= FULL_EVERY
    )
    return Work(move=move, since=None if full else before)


def since_clause(before: Probe) -> ColumnElement[bool]:
    """Subscribers created or updated since ``before`` was taken."""
    highest, updated = before.newest
    clause = Subscriber.id > highest
    return clause if updated is None else or_(clause, Subscriber.updated_at >= updated)


def zones_moved(session: Session, before: Probe) -> bool:
    """Whether anyone who existed at ``before`` changed timezone (new people need no move)."""
    rows = session.execute(
        select(Subscriber.timezone, func.count(), func.sum(Subscriber.id))
        .where(Subscriber.id <= before.newest[0])
        .group_by(Subscriber.timezone)
    )
    zones: dict[str, list[int]] = {}
    for zone, count, total in rows:
        entry = zones.setdefault(zone or "", [0, 0])
        entry[0] += count
        entry[1] += int(total or 0)
    return tuple(sorted((zone, *counts) for zone, counts in zones.items())) != before.zones


def take_probe(session: Session, tags: set[str] | None) -> Probe:
    """Probe the audience (``tags``: the tags segments refer to; None: every tag)."""
    active: dict[tuple[str, str], tuple[int, int]] = {}
    zones: dict[str, list[int]] = {}
    rows = session.execute(
        select(
            Subscriber.status,
            Subscriber.source,
            Subscriber.timezone,
            func.count(),
            func.sum(Subscriber.id),
        ).group_by(Subscriber.status, Subscriber.source, Subscriber.timezone)
    )
    for status, source, zone, count, total in rows:
        entry = zones.setdefault(zone or "", [0, 0])
        entry[0] += count
        entry[1] += int(total or 0)
        if status == SubscriberStatus.ACTIVE:
            active[(source or "", zone or "")] = (count, int(total or 0))
    newest = session.execute(
        select(
            func.coalesce(func.max(Subscriber.id), 0),
            func.max(Subscriber.updated_at),
            func.sum(Subscriber.id * func.length(Subscriber.email)),
        )
    ).one()
    return Probe(
        active,
        tuple(sorted((zone, *counts) for zone, counts in zones.items())),
        (int(newest[0]), newest[1]),
        int(newest[2] or 0),
        _tag_probe(session, tags),
        _pair(session.execute(select(func.count(), func.max(Suppression.id))).one()),
        _pair(session.execute(select(func.count(), func.max(Send.id))).one()),
    )


def _tag_probe(session: Session, tags: set[str] | None) -> tuple[tuple[Any, ...], ...]:
    if tags is not None and not tags:
        return ()
    query = select(SubscriberTag.tag, func.count(), func.sum(SubscriberTag.subscriber_id))
    if tags is not None:
        query = query.where(SubscriberTag.tag.in_(sorted(tags)))
    rows = session.execute(query.group_by(SubscriberTag.tag))
    return tuple(sorted((tag, count, int(total or 0)) for tag, count, total in rows))


def _pair(row: Any) -> tuple[int, int]:
    return int(row[0] or 0), int(row[1] or 0)


def referenced_tags(plan: list[tuple[LaunchSequence, list[Email]]]) -> set[str] | None:
    """The tags the sequences' and emails' segments test (None: cannot tell, probe all)."""
    from launchkit.segments import BoolOp, Condition, Not, parse_segment

    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Not):
            walk(node.operand)
        elif isinstance(node, BoolOp):
            for item in node.operands:
                walk(item)
        elif isinstance(node, Condition) and node.field == "tag":
            found.add(node.value)

    expressions = [seq.segment for seq, _ in plan]
    expressions += [e.segment for _, emails in plan for e in emails]
    try:
        for expr in expressions:
            if expr and str(expr).strip():
                walk(parse_segment(str(expr)))
    except Exception:  # an expression we cannot read: watch every tag
        return None
    return found
