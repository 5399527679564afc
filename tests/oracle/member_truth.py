"""Every membership figure of a launch, from the ``ClubWorld``'s facts alone (no database, no
launchkit), by the definitions of docs/readme/60-analysis.md ("Membership launches").

Money is computed exactly (``Fraction``: a yearly price /12) and rounded half up to whole cents
only where the JSON reports cents; "k months after joining" is the moment the k-th calendar
month since the first payment is complete (the same day of month and time of day, or the start
of the next month when that day does not exist), and a member counts as still there at a
moment when that moment falls inside [first payment, end).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from tests.oracle.member_world import ClubWorld, MemberFacts
from tests.oracle.truth import wilson

MOVEMENTS = ("new", "reactivated", "expansion", "contraction", "churned")


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def monthly(interval: str, cents: int) -> Fraction:
    return Fraction(cents, 12) if interval == "year" else Fraction(cents)


def price_at(m: MemberFacts, when: datetime) -> Fraction:
    interval, cents = m.interval, m.amount
    for at, new_interval, new_cents in sorted(m.switches):
        if at <= when:
            interval, cents = new_interval, new_cents
    return monthly(interval, cents)


def mrr(m: MemberFacts, when: datetime) -> Fraction:
    """The membership's MRR at ``when``: its price then, from the first payment to its end."""
    first, end = m.first_paid, m.ended
    if first is None or when < first or (end is not None and when >= end):
        return Fraction(0)
    return price_at(m, when)


def month_start(when: datetime) -> datetime:
    return datetime(when.year, when.month, 1, tzinfo=UTC)


def _rest(when: datetime) -> tuple[int, int, int, int, int]:
    return (when.day, when.hour, when.minute, when.second, when.microsecond)


def whole_months(start: datetime, end: datetime) -> int:
    """Complete calendar months from ``start`` to ``end`` (same day of month and time reached)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (_rest(end) < _rest(start))


def months_after(start: datetime, k: int) -> datetime:
    """The moment ``k`` whole months after ``start``: the same day of month and time, or the
    start of the next month when that month has no such day."""
    index = start.year * 12 + start.month - 1 + k
    year, month = divmod(index, 12)
    try:
        return start.replace(year=year, month=month + 1)
    except ValueError:  # no such day: the month completes when the next one starts
        year, month = divmod(index + 1, 12)
        return datetime(year, month + 1, 1, tzinfo=UTC)


def still_member(m: MemberFacts, k: int) -> bool:
    """Whether the member is still a member ``k`` whole months after joining."""
    assert m.first_paid is not None
    return m.ended is None or m.ended > months_after(m.first_paid, k)


def _persons_first_paid(world: ClubWorld) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for m in world.members:
        if m.first_paid is not None:
            first[m.email] = min(first.get(m.email, m.first_paid), m.first_paid)
    return first


def _bounds(members: list[MemberFacts], now: datetime) -> list[datetime]:
    start = month_start(min(m.joined for m in members))
    bounds = []
    while start <= now:
        bounds.append(start)
        start = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return [*bounds, now]


def _movements(world: ClubWorld, members: list[MemberFacts], a: datetime, b: datetime):
    first_paid = _persons_first_paid(world)
    by_person: dict[str, list[MemberFacts]] = defaultdict(list)
    for m in members:
        by_person[m.email].append(m)
    moves = dict.fromkeys(MOVEMENTS, Fraction(0))
    for person, held in by_person.items():
        before = sum((mrr(m, a) for m in held), Fraction(0))
        after = sum((mrr(m, b) for m in held), Fraction(0))
        if before == 0 and after > 0:
            moves["new" if first_paid[person] >= a else "reactivated"] += after
        elif before > 0 and after == 0:
            moves["churned"] += before
        elif after > before > 0:
            moves["expansion"] += after - before
        elif before > after > 0:
            moves["contraction"] += before - after
    return moves


def _month_rows(world: ClubWorld, members: list[MemberFacts]) -> list[dict[str, Any]]:
    bounds = _bounds(members, world.now)
    rows = []
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        moves = _movements(world, members, a, b)
        paying = [m for m in members if mrr(m, a) > 0]
        gone = [m for m in paying if m.ended is not None and a <= m.ended < b]
        start_mrr = sum((mrr(m, a) for m in paying), Fraction(0))
        lost = moves["churned"] + moves["contraction"]
        rows.append({
            "month": a.strftime("%Y-%m"), **{name: half_up(v) for name, v in moves.items()},
            "members_at_start": len(paying), "cancellations": len(gone),
            "logo_churn": len(gone) / len(paying) if paying else 0.0,
            "mrr_at_start": half_up(start_mrr),
            "revenue_churn": float(lost / start_mrr) if start_mrr else 0.0,
            "partial": k == len(bounds) - 2,
        })  # fmt: skip
    return rows


def _retention(world: ClubWorld, members: list[MemberFacts]) -> tuple[list, list]:
    paying = [m for m in members if m.first_paid is not None]
    if not paying:
        return [], []

    def curve_of(group: list[MemberFacts]) -> list[tuple[int, int]]:
        observed = [whole_months(m.first_paid, world.now) for m in group]  # type: ignore[arg-type]
        out = []
        for k in range(max(observed) + 1):
            eligible = [m for m, seen in zip(group, observed, strict=True) if seen >= k]
            out.append((len(eligible), sum(still_member(m, k) for m in eligible)))
        return out

    curve = [
        {"month": k, "eligible": e, "retained": r, "rate": r / e}
        for k, (e, r) in enumerate(curve_of(paying))
    ]
    cohorts: dict[str, list[MemberFacts]] = defaultdict(list)
    for m in paying:
        cohorts[m.first_paid.strftime("%Y-%m")].append(m)  # type: ignore[union-attr]
    table = [
        {"cohort": name, "members": len(group),
         "retention": [r / e for e, r in curve_of(group)]}
        for name, group in sorted(cohorts.items())
    ]  # fmt: skip
    return curve, table


def _ltv(world: ClubWorld, members: list[MemberFacts], rows: list[dict]) -> dict[str, Any]:
    now_mrr = [mrr(m, world.now) for m in members]
    paying = sum(v > 0 for v in now_mrr)
    arpu = sum(now_mrr, Fraction(0)) / paying if paying else Fraction(0)
    complete = rows[:-1]
    lost = sum(r["cancellations"] for r in complete)
    exposed = sum(r["members_at_start"] for r in complete)
    churn = Fraction(lost, exposed) if exposed else Fraction(0)
    ci = wilson(lost, exposed)
    interval = None
    if ci is not None:
        low = 0.0 if lost == 0 else ci[0]  # Wilson's lower bound with no success is exactly 0
        interval = [
            half_up(arpu / Fraction(ci[1])) if ci[1] > 0 else None,
            half_up(arpu / Fraction(low)) if low > 0 else None,  # unbounded: null
        ]
    return {
        "arpu_cents": half_up(arpu), "monthly_churn": float(churn),
        "ltv_cents": half_up(arpu / churn) if churn > 0 else None, "ltv_ci95": interval,
    }  # fmt: skip


def _trial(world: ClubWorld, members: list[MemberFacts]) -> dict[str, Any]:
    trials = [m for m in members if m.trial_end is not None]
    over = [m for m in trials if m.trial_end <= world.now]  # type: ignore[operator]
    converted = sum(m.first_paid is not None for m in over)
    ci = wilson(converted, len(over))
    return {
        "trials": len(trials), "trials_over": len(over), "converted": converted,
        "conversion_rate": converted / len(over) if over else 0.0,
        "conversion_ci95": list(ci) if ci else None,
    }  # fmt: skip


def _guarantee(world: ClubWorld, members: list[MemberFacts]) -> dict[str, int]:
    inside = []
    for m in members:
        if m.refund is None or m.first_paid is None:
            continue
        days = (m.refund[0] - m.first_paid).total_seconds() / 86400
        if days <= world.offers[m.offer].guarantee_days:
            inside.append(m)
    return {"count": len(inside), "cents": sum(m.refund[1] for m in inside)}  # type: ignore[index]


def membership_section(world: ClubWorld, slug: str) -> dict[str, Any] | None:
    """The expected ``membership`` section of ``analyze --json`` for launch ``slug``."""
    members = [m for m in world.members if m.launch == slug]
    if not members:
        return None
    close = world.launches[slug].cart_close
    rows = _month_rows(world, members)
    curve, cohorts = _retention(world, members)
    return {
        "members_joined": len(members),
        "paying_members": sum(m.first_paid is not None for m in members),
        "members_now": sum(mrr(m, world.now) > 0 for m in members),
        "trial": _trial(world, members),
        "mrr_at_cart_close": half_up(sum((mrr(m, close) for m in members), Fraction(0))),
        "mrr_now": half_up(sum((mrr(m, world.now) for m in members), Fraction(0))),
        "mrr_by_month": rows,
        "retention_curve": curve,
        "cohorts": cohorts,
        "ltv": _ltv(world, members, rows),
        "refunds_inside_guarantee": _guarantee(world, members),
        "revenue_cents": sum(cents for m in members for _, cents in m.payments),
    }


def flatten(section: Any, prefix: str = "membership") -> dict[str, Any]:
    """Leaves of a section by path; rows of lists keyed by their month or cohort."""
    out: dict[str, Any] = {}
    if isinstance(section, dict):
        for key, value in section.items():
            out.update(flatten(value, f"{prefix}.{key}"))
    elif isinstance(section, list) and section and isinstance(section[0], dict):
        label = "cohort" if "cohort" in section[0] else "month"
        out[f"{prefix}:labels"] = [str(row[label]) for row in section]
        for row in section:
            out.update(flatten({k: v for k, v in row.items() if k != label},
                               f"{prefix}[{row[label]}]"))  # fmt: skip
    else:
        out[prefix] = section
    return out
