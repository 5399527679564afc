"""The membership oracle's truth checked by hand: a tiny club whose figures are worked out in
the comments (no database), the calendar helpers, and the generator's coverage of the seeds the
suite runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from tests.oracle import member_truth, member_world
from tests.oracle.member_world import ClubLaunch, ClubWorld, MemberFacts, MemberOffer
from tests.oracle.test_member_oracle import SEEDS

D = timedelta(days=1)
U = datetime(2026, 1, 1, tzinfo=UTC)


def test_calendar_months_follow_stripe_and_the_written_definition():
    jan31 = datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert member_world.add_months(jan31, 1) == datetime(2026, 2, 28, 10, tzinfo=UTC)  # Stripe
    assert member_world.add_months(jan31, 13) == datetime(2027, 2, 28, 10, tzinfo=UTC)
    # a month is complete when the same day and time is reached; Feb has no 31st: March 1st
    assert member_truth.months_after(jan31, 1) == datetime(2026, 3, 1, tzinfo=UTC)
    assert member_truth.whole_months(jan31, datetime(2026, 2, 28, 10, tzinfo=UTC)) == 0
    jan15 = datetime(2026, 1, 15, 10, tzinfo=UTC)
    assert member_truth.whole_months(jan15, datetime(2026, 2, 15, 9, 59, tzinfo=UTC)) == 0
    assert member_truth.whole_months(jan15, datetime(2026, 2, 15, 10, tzinfo=UTC)) == 1
    assert member_truth.half_up(Fraction(61625, 2)) == 30813  # a tie goes up
    assert member_truth.half_up(Fraction(29000, 12)) == 2417


def club() -> ClubWorld:
    """One launch (cart 5-12 Jan), analysed on 1 May 10:00:

    a: monthly 29, paid 5 Jan 10:00, cancels at period end: deleted 5 Mar 10:00 (2 months);
    b: monthly 29, paid 6 Jan 10:00, switches to yearly 290 on 20 Feb (MRR 24.1667);
    c: trial 7 d from 7 Jan, never pays (deleted 18 Jan);
    d: monthly 19 (founding), paid 8 Jan, refunded 10 Jan (inside 14 d), deleted 14 Jan;
    e: yearly 290, paid 9 Jan, still there.
    """
    w = ClubWorld(now=datetime(2026, 5, 1, 10, tzinfo=UTC))
    w.launches = {"c": ClubLaunch("c", U + 4 * D, U + 11 * D)}
    w.offers = {"o": MemberOffer("o", "c", 0, 14), "t": MemberOffer("t", "c", 7, 14)}

    def member(ref: str, day: int, interval: str, cents: int, offer: str = "o") -> MemberFacts:
        at = datetime(2026, 1, day, 10, tzinfo=UTC)
        m = MemberFacts(ref, "c", offer, f"{ref}@x.fr", ref, interval, cents, at)
        w.members.append(m)
        return m

    a = member("a", 5, "month", 2900)
    a.payments = [(a.joined, 2900), (a.joined + 31 * D, 2900)]
    a.deleted = datetime(2026, 3, 5, 10, tzinfo=UTC)
    b = member("b", 6, "month", 2900)
    b.payments = [(b.joined, 2900), (datetime(2026, 2, 6, 10, tzinfo=UTC), 2900)]
    b.switches = [(datetime(2026, 2, 20, tzinfo=UTC), "year", 29000)]
    c = member("c", 7, "month", 2900, "t")
    c.trial_end, c.deleted = c.joined + 7 * D, c.joined + 11 * D
    d = member("d", 8, "month", 1900)
    d.payments, d.refund = [(d.joined, 1900)], (d.joined + 2 * D, 1900)
    d.deleted = d.joined + 6 * D
    e = member("e", 9, "year", 29000)
    e.payments = [(e.joined, 29000)]
    return w


def test_tiny_club_by_hand():
    section = member_truth.membership_section(club(), "c")
    assert section is not None
    assert (section["members_joined"], section["paying_members"], section["members_now"]) == (
        5, 4, 2,
    )  # fmt: skip
    assert section["trial"]["trials_over"] == 1 and section["trial"]["converted"] == 0
    assert section["mrr_at_cart_close"] == 2900 + 2900 + 2417  # a, b, e (d refunded on the 10th)
    assert section["mrr_now"] == 4833  # b and e yearly: 2 x 29000 / 12 = 4833.33
    months = {row["month"]: row for row in section["mrr_by_month"]}
    assert months["2026-01"]["new"] == 2900 + 2900 + 2417  # d came and went in January
    assert months["2026-02"]["contraction"] == 483  # b: 2900 -> 2416.67
    assert months["2026-03"]["churned"] == 2900 and months["2026-03"]["cancellations"] == 1
    assert months["2026-03"]["members_at_start"] == 3
    # a ended exactly two months after joining: retained at month 1, not at month 2
    curve = {row["month"]: row for row in section["retention_curve"]}
    assert curve[1]["retained"] == 3 and curve[2]["retained"] == 2  # of a, b, d, e
    assert curve[0]["retained"] == 4 and curve[0]["eligible"] == 4
    assert section["refunds_inside_guarantee"] == {"count": 1, "cents": 1900}
    assert section["revenue_cents"] == 2900 * 4 + 1900 + 29000
    # LTV: ARPU 2416.67, churn = 1 (a in March) / (0 + 3 + 3 + 2) (January..April)
    assert section["ltv"]["monthly_churn"] == pytest.approx(1 / 8)
    assert section["ltv"]["ltv_cents"] == member_truth.half_up(Fraction(29000, 12) * 8)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_seeds_cover_every_membership_path(seed):
    w = member_world.generate(seed)
    members = w.members
    switches = [s[1] for m in members for s in m.switches]
    kinds = {e.kind for m in members for e in m.events}
    assert {"session", "created", "paid", "failed", "updated", "deleted", "refund"} <= kinds
    assert "year" in switches  # expansion... and contraction somewhere in the CI seeds
    assert any(e.args.get("attempt", 1) > 1 for m in members for e in m.events if e.kind == "paid")
    assert any(e.args.get("cancel") for m in members for e in m.events)
    assert any(m.refund and m.deleted and m.deleted - m.refund[0] >= D for m in members)
    assert any(m.launch == "club-automne" and m.email.startswith("membre") for m in members)
    assert sum(len(m.deliveries) for m in members) > sum(len(m.events) for m in members)


def test_the_ci_seeds_switch_both_ways():
    switches = {s[1] for seed in SEEDS for m in member_world.generate(seed).members
                for s in m.switches}  # fmt: skip
    assert switches == {"month", "year"}


def test_the_generator_is_deterministic():
    a, b = member_world.generate(15), member_world.generate(15)
    assert [(m.email, m.payments, m.deleted) for m in a.members] == [
        (m.email, m.payments, m.deleted) for m in b.members
    ]


def test_the_ci_seeds_have_a_returner_who_joined_the_list_between_launches():
    late = [e for seed in SEEDS for _, e in member_world.generate(seed).imports[1:]]
    assert any(late)
