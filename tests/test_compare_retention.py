"""`compare` puts membership launches' retention side by side (issue #16): two launches whose
members' cancellation months are drawn at random and known, the expected retention worked out
here from those months alone (not from the analysis code), on SQLite and PostgreSQL."""

from __future__ import annotations

import calendar
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from launchkit import analysis, checkout, launches, memberships
from launchkit.models import Launch
from launchkit.stripe_events import Member

NOW = datetime(2027, 4, 20, 12, 0, tzinfo=UTC)
MONTHS = (1, 2, 3, 6, 12)
# spring: joined 2026-03-02..05, every member has 12 months by NOW; autumn: joined 2026-10-05..08,
# 6 whole months by NOW (12 not yet reached)
LAUNCHES = {
    "spring-club": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    "autumn-club": datetime(2026, 10, 5, 9, 0, tzinfo=UTC),
}


def plus_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(
        year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
    )


def _members(seed: int, opened: datetime, count: int) -> list[tuple[datetime, int | None]]:
    """(first payment, whole months until the membership ended, or None: still a member)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        joined = opened + timedelta(hours=i * 2, minutes=rng.randrange(60))
        months = rng.choice([0, 1, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13, None, None, None])
        ends = None if months is None else plus_months(joined, months) + timedelta(days=10)
        out.append((joined, months if ends is not None and ends < NOW else None))
    return out


def _expected(members: list[tuple[datetime, int | None]]) -> dict[int, float | None]:
    """Retention at month k: reached when every member joined k whole months before NOW; then
    the share whose membership lasted k months or more."""
    out: dict[int, float | None] = {}
    for k in MONTHS:
        if any(plus_months(joined, k) > NOW for joined, _ in members):
            out[k] = None
        else:
            kept = sum(1 for _, lasted in members if lasted is None or lasted >= k)
            out[k] = kept / len(members)
    return out


def _monthly_churn(members: list[tuple[datetime, int | None]]) -> float:
    """Cancellations in each complete calendar month (first month of joining to the month
    before NOW's) over the members paying at its start, summed."""
    ends = [
        (joined, None if lasted is None else plus_months(joined, lasted) + timedelta(days=10))
        for joined, lasted in members
    ]
    start = min(joined for joined, _ in ends).replace(day=1, hour=0, minute=0)
    lost = exposed = 0
    while plus_months(start, 1) <= NOW.replace(day=1, hour=0, minute=0):
        nxt = plus_months(start, 1)
        paying = [end for joined, end in ends if joined <= start and (end is None or end > start)]
        exposed += len(paying)
        lost += sum(1 for end in paying if end is not None and end < nxt)
        start = nxt
    return lost / exposed


def _build(sessions, settings, slug: str, opened: datetime, members) -> None:
    with sessions.begin() as s:
        launches.create_launch(
            s, slug, product="Club", cart_open=opened, cart_close=opened + timedelta(days=7),
            currency="EUR", now=opened,
        )  # fmt: skip
        offer = memberships.add_membership_offer(
            s, slug, f"{slug}-offer", product="Club", currency="EUR",
            prices=[("month", 2900), ("year", 29000)], guarantee_days=14, now=opened,
        )  # fmt: skip
        meta = checkout.checkout_metadata(offer, s.get(Launch, offer.launch_id), 1, None, False)
        meta["membership"] = "month"
    for i, (joined, lasted) in enumerate(members):
        t = int(joined.timestamp())
        member = Member(meta, f"{slug}-{i}@example.org", 2900, "EUR", start=t)
        events = [member.completed(t), member.invoice(1, t)]
        if lasted is not None:
            ended = plus_months(joined, lasted) + timedelta(days=10)
            events.append(member.cancelled(int(ended.timestamp())))
        for event in events:
            with sessions.begin() as s:
                at = datetime.fromtimestamp(event["created"], UTC)
                checkout.handle_event(s, settings, event, now=at)


@pytest.fixture
def two_clubs(sessions, settings):
    built = {}
    for seed, (slug, opened) in enumerate(LAUNCHES.items()):
        built[slug] = _members(seed, opened, 24)
        _build(sessions, settings, slug, opened, built[slug])
    return built


def test_compare_shows_retention_side_by_side(two_clubs, sessions, cli, tmp_path: Path) -> None:
    with sessions.begin() as s:
        section = analysis.compare_launches(s, list(LAUNCHES), now=NOW)["membership_retention"]
    assert section["months"] == list(MONTHS)
    assert [row["launch"] for row in section["launches"]] == list(LAUNCHES)
    for row in section["launches"]:
        members = two_clubs[row["launch"]]
        expected = _expected(members)
        assert {m["month"]: m["rate"] for m in row["retention"]} == expected
        assert {m["month"]: m["reached"] for m in row["retention"]} == {
            k: v is not None for k, v in expected.items()
        }
        assert row["members_joined"] == row["paying_members"] == len(members)
        assert row["monthly_churn"] == pytest.approx(_monthly_churn(members), abs=1e-12)
    autumn = section["launches"][1]["retention"]
    assert autumn[-1] == {"month": 12, "reached": False, "retained": None, "rate": None}
    assert autumn[3]["reached"]  # 6 months: every autumn member has reached it
    assert section["comparable_months"] == [1, 2, 3, 6]

    r = cli("compare", *LAUNCHES, "--json", "--html", str(tmp_path / "c.html"),
            "--now", "2027-04-20 14:00")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["membership_retention"] == json.loads(json.dumps(section))
    page = (tmp_path / "c.html").read_text()
    assert 'id="retention"' in page and page.count("pas encore") + page.count("not yet") == 1
    r = cli("compare", *LAUNCHES, "--now", "2027-04-20 14:00")
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "autumn-club" in x and "not yet" in x)
    assert line.count("not yet") == 1
    assert "Months every launch's members have reached (comparable): 1, 2, 3, 6." in r.stdout


def test_no_membership_launch_no_retention_rows(sessions) -> None:
    with sessions.begin() as s:
        section = analysis.compare_launches(s, [], now=NOW)["membership_retention"]
    assert section == {"months": list(MONTHS), "comparable_months": [], "launches": []}
