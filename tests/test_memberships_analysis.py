"""The membership section of `analyze` (issue #16): a small launch whose every figure is worked
out by hand in the comments, on SQLite and PostgreSQL, from signed-event-shaped payloads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from launchkit import analysis, checkout, memberships
from launchkit.analysis.memberships import whole_months
from launchkit.models import Launch
from launchkit.stripe_events import Member, charge_refunded
from tests.membership_data import create_membership_offer

DAY = 86400


def _meta(s, offer, email_sub=None):
    launch = s.get(Launch, offer.launch_id)
    meta = checkout.checkout_metadata(offer, launch, 1, email_sub, False)
    meta["membership"] = "month"
    return meta


@pytest.fixture
def club(sessions, settings, now):
    """Five members of launch "club" (t0 = now = 2026-11-20 10:00 UTC):

    A monthly 29, paid t0+1 s, ends t0+65 d (2027-01-24);
    B monthly 29, paid t0+2 s, switches to yearly 290 at t0+40 d (2026-12-30): MRR 24.1667;
    C trial 7 d from t0+3 s, renewal fails, ends t0+8 d (never paid);
    D trial 7 d from t0+5 s, pays 29 at t0+7 d+5 s (2026-11-27);
    E monthly 29, paid t0+4 s, refunded in full at t0+3 d (guarantee 14 d), ended then.
    """
    with sessions.begin() as s:
        offer = create_membership_offer(s, now)
        trial = memberships.add_membership_offer(
            s, "club", "club-trial", product="Club photo", currency="EUR",
            prices=[("month", 2900)], trial_days=7, guarantee_days=14, now=now,
        )  # fmt: skip
        meta, trial_meta = _meta(s, offer), _meta(s, trial)
    t = int(now.timestamp())
    a = Member(meta, "a@example.fr", 2900, "EUR", start=t)
    b = Member(meta, "b@example.fr", 2900, "EUR", start=t)
    c = Member(trial_meta, "c@example.fr", 2900, "EUR", start=t, trial_days=7)
    d = Member(trial_meta, "d@example.fr", 2900, "EUR", start=t, trial_days=7)
    e = Member(meta, "e@example.fr", 2900, "EUR", start=t)
    e_paid = e.invoice(1, t + 4)
    pi = e_paid["data"]["object"]["payments"]["data"][0]["payment"]["payment_intent"]
    events = [
        a.completed(t + 1), a.invoice(1, t + 1), a.cancelled(t + 65 * DAY),
        b.completed(t + 2), b.invoice(1, t + 2),
        b.updated(t + 40 * DAY, interval="year", amount=29000),
        c.completed(t + 3), c.invoice(0, t + 3), c.invoice(1, t + 7 * DAY + 3, paid=False),
        c.cancelled(t + 8 * DAY),
        d.completed(t + 5), d.invoice(0, t + 5), d.invoice(1, t + 7 * DAY + 5),
        e.completed(t + 4), e_paid,
        charge_refunded(created=t + 3 * DAY, payment_intent=pi, amount=2900,
                        amount_refunded=2900, currency="EUR"),
        e.cancelled(t + 3 * DAY + 60),
    ]  # fmt: skip
    for index, event in enumerate(events):
        with sessions.begin() as s:
            checkout.handle_event(s, settings, event, now=now + timedelta(seconds=index))
    return sessions


def test_membership_section(club, now):
    at = now.replace(year=2027, month=3, day=1)  # 2027-03-01 10:00 UTC
    with club.begin() as s:
        ms = analysis.analyze_launch(s, "club", now=at)["membership"]
    assert (ms["members_joined"], ms["paying_members"], ms["members_now"]) == (5, 4, 2)
    assert ms["trial"] | {"conversion_ci95": None} == {
        "trials": 2, "trials_over": 2, "converted": 1, "conversion_rate": 0.5,
        "conversion_ci95": None,
    }  # fmt: skip
    assert ms["mrr_at_cart_close"] == 5800  # A + B; D still trialing, E refunded
    assert ms["mrr_now"] == 5317  # B 29000/12 + D 2900
    months = {row["month"]: row for row in ms["mrr_by_month"]}
    assert list(months) == ["2026-11", "2026-12", "2027-01", "2027-02", "2027-03"]
    assert months["2026-11"]["new"] == 8700  # A, B, D (E came and went inside the month)
    assert months["2026-12"]["contraction"] == 483  # B: 2900 -> 2416.67
    assert months["2027-01"]["churned"] == 2900  # A
    assert months["2027-01"]["members_at_start"] == 3
    assert months["2027-01"]["cancellations"] == 1
    assert months["2027-01"]["logo_churn"] == pytest.approx(1 / 3)
    assert months["2027-01"]["revenue_churn"] == pytest.approx(2900 / (2900 + 29000 / 12 + 2900))
    assert months["2026-12"]["revenue_churn"] == pytest.approx((2900 - 29000 / 12) / 8700)
    assert months["2027-03"]["partial"] and not months["2027-02"]["partial"]
    assert [row["rate"] for row in ms["retention_curve"]] == [1.0, 0.75, 0.75, 0.5]
    assert ms["cohorts"] == [
        {"cohort": "2026-11", "members": 4, "retention": [1.0, 0.75, 0.75, 0.5]}
    ]
    # churn over the complete months: 1 cancellation / (0 + 3 + 3 + 2) member-months
    assert ms["ltv"]["monthly_churn"] == pytest.approx(1 / 8)
    assert ms["ltv"]["arpu_cents"] == 2658
    assert ms["ltv"]["ltv_cents"] == round((2900 + 29000 / 12) / 2 * 8)
    low, high = ms["ltv"]["ltv_ci95"]
    assert low < ms["ltv"]["ltv_cents"] < high
    assert ms["refunds_inside_guarantee"] == {"count": 1, "cents": 2900}
    assert ms["revenue_cents"] == 4 * 2900


def test_report_shows_the_retention_curve(club, now):
    at = now.replace(year=2027, month=3, day=1)
    with club.begin() as s:
        result = analysis.analyze_launch(s, "club", now=at)
    html = analysis.render_report(result, language="en")
    assert 'id="membership"' in html and "2026-11" in html
    # the retention chart, wide and narrow, with its axis titles
    assert html.count("<title>Retention by month since joining</title>") == 2
    assert "Months since joining (first payment)" in html and "Still members (%)" in html


def _section_order(html: str) -> list[str]:
    """The report's blocks in page order: ``membership``, ``cards`` and each section's h2."""
    import re

    found = re.finditer(r'<section id="membership">|<div class="cards">|<h2>([^<]*)</h2>', html)
    names = []
    for match in found:
        if match.group(0).startswith("<section"):
            names.append("membership")
        elif match.group(0).startswith("<div"):
            names.append("cards")
        elif match.group(1) != "Membership":
            names.append(match.group(1))
    return names


ONE_OFF_ORDER = ["cards", "Conversion by source", "Revenue", "Refunds"]


def test_a_membership_launch_report_opens_with_the_membership_section(club, now):
    """Only memberships sold: MRR, churn, retention and cohorts right after the headline, then
    the one-off sections in their usual order."""
    at = now.replace(year=2027, month=3, day=1)
    with club.begin() as s:
        result = analysis.analyze_launch(s, "club", now=at)
    assert result["membership_only"] is True
    order = _section_order(analysis.render_report(result, language="en"))
    assert order[: len(ONE_OFF_ORDER) + 1] == ["membership", *ONE_OFF_ORDER]
    assert order.count("membership") == 1


def test_a_launch_selling_a_one_off_offer_too_keeps_membership_last(club, now):
    """One one-off order beside the memberships: the report keeps its one-off order, the
    membership section last; a launch without members has none."""
    from launchkit.models import Order, OrderStatus

    at = now.replace(year=2027, month=3, day=1)
    with club.begin() as s:
        offer = checkout.add_offer(s, "club", "atelier", product="Atelier", price_cents=9700,
                                   plans=[], currency="EUR", now=now)  # fmt: skip
        s.add(Order(launch_id=offer.launch_id, offer_id=offer.id, email="f@example.fr",
                    currency="EUR", total_cents=9700, paid_cents=9700, status=OrderStatus.PAID,
                    created_at=now, paid_at=now, updated_at=now))  # fmt: skip
    with club.begin() as s:
        result = analysis.analyze_launch(s, "club", now=at)
    assert result["membership"] is not None and result["membership_only"] is False
    order = _section_order(analysis.render_report(result, language="en"))
    assert order[: len(ONE_OFF_ORDER)] == ONE_OFF_ORDER and order[-1] == "membership"
    assert order.count("membership") == 1


def test_one_off_launch_has_no_membership_section(sessions, now):
    from tests.fixtures.stripe import create_offer

    with sessions.begin() as s:
        create_offer(s, now)
        result = analysis.analyze_launch(s, "spring", now=now)
    assert result["membership"] is None and result["membership_only"] is False
    order = _section_order(analysis.render_report(result, language="en"))
    assert order[: len(ONE_OFF_ORDER)] == ONE_OFF_ORDER and "membership" not in order


def test_whole_months_compares_day_and_time():
    import numpy as np

    start = np.array(["2026-01-31T10:00", "2026-01-15T10:00", "2026-01-15T10:00"], "datetime64[ns]")
    end = np.array(["2026-02-28T10:00", "2026-02-15T09:59", "2026-02-15T10:00"], "datetime64[ns]")
    assert whole_months(start, end).tolist() == [0, 0, 1]


def test_a_member_who_comes_back_is_reactivated_not_new():
    """Pure figures on hand-made frames: one person, two memberships (ended, then again)."""
    import pandas as pd

    from launchkit.analysis.memberships import membership_figures

    t = pd.Timestamp
    jan10, mar5, jan12 = (t(day, tz="UTC") for day in ("2026-01-10", "2026-03-05", "2026-01-12"))
    members = pd.DataFrame({
        "id": [1, 2, 3], "launch_id": [1, 2, 1],
        "started_at": [jan10, mar5, jan12], "paid_at": [jan10, mar5, jan12],
        "interval": ["month", "year", "month"], "amount_cents": [2900, 29000, 2900],
        "trial_end": [pd.NaT] * 3, "ended_at": [t("2026-02-10", tz="UTC"), pd.NaT, pd.NaT],
        "currency": ["EUR"] * 3, "subscriber_id": [7, 7, None],
        "email": ["a@x.fr", "a@x.fr", "b@x.fr"], "paid_cents": [2900, 29000, 2900],
        "guarantee_days": [14, 14, 14], "person": ["s7", "s7", "eb@x.fr"],
    })  # fmt: skip
    plans = pd.DataFrame(columns=["membership_id", "interval", "amount_cents", "occurred_at"])
    refunds = pd.DataFrame(columns=["membership_id", "amount_cents", "refunded_at"])
    launch = type("L", (), {"id": 1, "cart_close": t("2026-01-15", tz="UTC").to_pydatetime()})
    frames = {"members": members, "plans": plans, "refunds": refunds}
    now = t("2026-04-01", tz="UTC").to_pydatetime()
    ours = membership_figures(frames, launch, now)
    months = {row["month"]: row for row in ours["mrr_by_month"]}
    assert months["2026-01"]["new"] == 5800 and months["2026-02"]["churned"] == 2900
    # launch 1's figures only count launch 1's memberships: A's return (launch 2) is not here
    assert months["2026-03"]["reactivated"] == 0
    launch2 = type("L", (), {"id": 2, "cart_close": t("2026-03-10", tz="UTC").to_pydatetime()})
    months2 = {r["month"]: r for r in membership_figures(frames, launch2, now)["mrr_by_month"]}
    assert months2["2026-03"]["reactivated"] == round(29000 / 12)
    assert months2["2026-03"]["new"] == 0


def test_no_churn_leaves_the_ltv_unbounded_above():
    """Wilson's lower bound with no success is exactly 0 (float error used to leave ~1e-17, so
    the LTV's upper end read 10^20 cents instead of null)."""
    import numpy as np

    from launchkit.analysis.definitions import wilson_interval
    from launchkit.analysis.memberships import _ltv

    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(7, 7)[1] == 1.0
    months = [{"cancellations": 0, "members_at_start": n} for n in (3, 5, 4)]
    ltv = _ltv(np.array([2900 * 12, 29000, 0]), months)  # MRR in twelfths of a cent
    assert ltv["ltv_cents"] is None and ltv["ltv_ci95"][1] is None
    assert ltv["ltv_ci95"][0] == round((2900 + 29000 / 12) / 2 / wilson_interval(0, 12)[1])
    assert ltv["arpu_cents"] == 2658  # 2658.33
