"""The membership oracle (issue #16): seeded clubs replayed through launchkit on SQLite and
PostgreSQL, every figure of the ``membership`` section of ``analyze --json`` (both launches: the
spring one, and the autumn one whose returning members are reactivations) compared with the
world's own truth. A failure prints one table per launch: figure, expected, got."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime

import pytest

from tests.oracle import compare, member_drive, member_truth, member_world

# two seeds in CI (~1,000 deliveries over both databases); LAUNCHKIT_TEST_SCALE >= 2 adds three
SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1"))
SEEDS = [15, 22] + ([11, 12, 17] if SCALE >= 2 else [])


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_every_membership_figure_matches_the_ground_truth(sessions, settings, tmp_path, seed):
    world = member_world.generate(seed)
    member_drive.MemberDriver(world, sessions, settings, tmp_path).run()
    reports, failed = [], False
    # today, and as of a moment while the autumn cart is open (the library's ``now``; the facts
    # after it are in the database and must not move the time-based figures: MRR, movements,
    # churn, retention, trials over; counts of memberships and revenue are the database's)
    moments = [world, dataclasses.replace(world, now=datetime(2026, 9, 10, 18, 0, tzinfo=UTC))]
    for at, slug in [(w, slug) for w in moments for slug in world.launches]:
        wanted = member_truth.flatten(member_truth.membership_section(at, slug))
        got = member_truth.flatten(member_drive.analyze(sessions, at, slug))
        diffs = [
            (name, value, got.get(name, compare.MISSING))
            for name, value in wanted.items()
            if not compare.same(name, value, got.get(name, compare.MISSING))
        ]
        extra = sorted(set(got) - set(wanted))
        diffs += [(name, compare.MISSING, got[name]) for name in extra]
        title = f"seed {seed} {slug} at {at.now:%Y-%m-%d %H:%M}"
        reports.append(compare.table(title, diffs, len(wanted)))
        failed = failed or bool(diffs)
    if failed:
        pytest.fail("\n\n".join(reports), pytrace=False)
