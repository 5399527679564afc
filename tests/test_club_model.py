"""The demo's member model (launchkit/orchestrator/club.py): calendar periods, seeded, and each
member's story consistent (nothing after the end, renewals one period after another)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from launchkit.orchestrator.club import (
    CLUB_CLOSE,
    CLUB_OPEN,
    MemberModel,
    add_months,
    plan_memberships,
)
from launchkit.orchestrator.simulate import Prospect

UNTIL = datetime(2027, 3, 13, 22, 59, tzinfo=UTC)
BUSY = MemberModel(conversion=0.5, refund_rate=0.2, renewal_failure=0.3, switch_rate=0.3)


def test_add_months_follows_the_calendar() -> None:
    assert add_months(datetime(2026, 1, 31, 9, tzinfo=UTC), 1) == datetime(
        2026, 2, 28, 9, tzinfo=UTC
    )
    assert add_months(datetime(2026, 3, 2, 8, tzinfo=UTC), 12) == datetime(
        2027, 3, 2, 8, tzinfo=UTC
    )
    assert add_months(datetime(2026, 12, 5, tzinfo=UTC), 1) == datetime(2027, 1, 5, tzinfo=UTC)
    assert add_months(datetime(2027, 1, 5, tzinfo=UTC), -1) == datetime(2026, 12, 5, tzinfo=UTC)


def _stories(seed: int) -> dict[str, list]:
    prospects = [Prospect(i, f"p{i}@example.org", None) for i in range(300)]
    stories = defaultdict(list)
    for event in plan_memberships(prospects, BUSY, until=UNTIL, seed=seed):
        stories[event.email].append(event)
    return stories


def test_each_member_story_is_consistent_and_seeded() -> None:
    stories = _stories(7)
    assert stories == _stories(7) and stories != _stories(8)
    kinds = {event.kind for story in stories.values() for event in story}
    assert kinds == {"join", "renewal", "renewal_failed", "member_cancel", "member_end",
                     "member_switch", "member_refund"}  # fmt: skip
    for story in stories.values():
        join = story[0]
        assert join.kind == "join" and CLUB_OPEN <= join.at <= CLUB_CLOSE
        assert all(e.at <= UNTIL for e in story)
        if any(e.kind in ("member_end", "member_refund") for e in story):
            assert story[-1].kind in ("member_end", "member_refund")
        period_end = datetime.fromtimestamp(join.extra["end"], UTC)
        renewals = [e for e in story if e.kind == "renewal"]
        for number, renewal in enumerate(renewals, start=2):
            assert renewal.number == number
            # paid on the day the previous period ends, or on Stripe's first retry 3 days later
            assert (renewal.at - period_end).days in (0, 3)
            assert datetime.fromtimestamp(renewal.extra["end"], UTC) == add_months(
                period_end, renewal.plan
            )
            period_end = datetime.fromtimestamp(renewal.extra["end"], UTC)
