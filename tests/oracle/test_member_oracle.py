"""The membership oracle (issue #16): seeded clubs replayed through launchkit on SQLite and
PostgreSQL, every figure of the ``membership`` section of ``analyze --json`` (both launches: the
spring one, and the autumn one whose returning members are reactivations) compared with the
world's own truth. A failure prints one table per launch: figure, expected, got."""

from __future__ import annotations

import os

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
    for slug in world.launches:
        wanted = member_truth.flatten(member_truth.membership_section(world, slug))
        got = member_truth.flatten(member_drive.analyze(sessions, world, slug))
        diffs = [
            (name, value, got.get(name, compare.MISSING))
            for name, value in wanted.items()
            if not compare.same(name, value, got.get(name, compare.MISSING))
        ]
        extra = sorted(set(got) - set(wanted))
        diffs += [(name, compare.MISSING, got[name]) for name in extra]
        reports.append(compare.table(f"seed {seed} {slug}", diffs, len(wanted)))
        failed = failed or bool(diffs)
    if failed:
        pytest.fail("\n\n".join(reports), pytrace=False)
