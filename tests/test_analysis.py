"""Analysis library: every figure of a hand-computed launch, empty and edge launches, compare,
forecast and the Stripe payments import, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from launchkit.analysis import (
    analyze_launch,
    compare_launches,
    fit_line,
    forecast_launch,
    import_payments,
    render_compare,
    render_report,
    to_minor_units,
    wilson_interval,
)
from launchkit.analysis.report import Formatter, email_subjects
from launchkit.config import Settings
from launchkit.errors import InputError, NotFound
from launchkit.models import Email, Order, Refund, Subscriber, SubscriberTag
from tests.analysis_data import CLOSE, OPEN, build_small_launch, make_launch

NOW = datetime(2027, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def wilson(x: int, n: int) -> tuple[float, float]:
    """Wilson score interval, written out independently of the library."""
    z = 1.959963984540054
    p = x / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    margin = (z / (1 + z**2 / n)) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - margin, centre + margin


def conv(key: str, label: str, audience: int, buyers: int) -> dict:
    low, high = wilson(buyers, audience)
    return {
        key: label,
        "audience": audience,
        "buyers": buyers,
        "conversion_rate": pytest.approx(buyers / audience),
        "ci95_low": pytest.approx(low),
        "ci95_high": pytest.approx(high),
    }


@pytest.fixture
def small(session) -> dict:
    build_small_launch(session)
    session.flush()
    return analyze_launch(session, "spring", now=NOW)


def test_wilson_matches_textbook_values() -> None:
    # 8/200: worked by hand (p=0.04, z^2=3.8415): centre 0.04826, half-width 0.02786
    low, high = wilson_interval(8, 200)
    assert (round(low, 4), round(high, 4)) == (0.0204, 0.0769)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 10)[0] == 0.0


def test_headline_figures(small) -> None:
    r = small
    assert r["currency"] == "EUR"
    assert r["launch"]["slug"] == "spring"
    assert r["audience_size"] == 200  # 211 rows minus late, unsubscribed, pending, suppressed
    assert r["buyers"] == 8  # 7 subscribers + 1 buyer not on the list
    split = (
        r["buyers_in_audience"],
        r["buyers_on_list_outside_audience"],
        r["buyers_not_on_list"],
    )
    assert split == (7, 0, 1)
    assert r["pending_orders"] == 1  # order 9: checkout started, never paid
    # conversion counts only the buyers who were in the audience (not the one off the list)
    assert r["conversion_rate"] == pytest.approx(7 / 200)
    assert r["conversion_ci95"] == pytest.approx(list(wilson(7, 200)))
    assert r["benchmark"]["position"] == "established"  # 3.5% is in the 2-4% band
    assert r["benchmark"]["bands"]["typical"] == {"low": 0.005, "high": 0.02}
    # gross: 5 x 497 + 354 (2 of 3 instalments) + 531 + 547 (with bump)
    assert r["gross_revenue_cents"] == 5 * 49700 + 35400 + 53100 + 54700 == 391700
    assert r["refunded_cents"] == 2 * 49700
    assert r["fees_cents"] == 1500 * 4 + 1200 + 1800 + 1650 == 10650  # order 5: fee unknown
    assert r["fees_known_orders"] == 7
    assert (r["fees_known"], r["fees_unknown_orders"]) == (False, 1)
    # the fee ratio is over the orders whose fee is known (order 5's gross left out)
    assert r["fee_ratio"] == pytest.approx(10650 / (391700 - 49700))
    assert r["net_revenue_cents"] == 391700 - 99400 - 10650 == 281650
    assert r["booked_revenue_cents"] == 5 * 49700 + 2 * 53100 + 54700 == 409400
    assert r["orders"] == 8
    assert r["average_order_cents"] == 409400 // 8 == 51175
    assert r["net_revenue_per_subscriber_cents"] == pytest.approx(281650 / 200)
    assert r["mix"] == {
        "pay_in_full": {"orders": 6, "booked_cents": 303200, "collected_cents": 303200},
        "plan": {"orders": 2, "booked_cents": 106200, "collected_cents": 88500},
    }
    assert r["refund_rate"] == pytest.approx(2 / 8)


def test_conversion_breakdowns(small) -> None:
    assert small["by_source"] == [
        conv("source", "instagram", 100, 3),
        conv("source", "podcast", 60, 2),
        conv("source", "webinar", 40, 2),
    ]
    # magnet:guide is also on subscriber 201, who joined after cart open: not counted
    assert small["by_magnet"] == [
        conv("magnet", "checklist", 70, 5),
        conv("magnet", "guide", 40, 2),
    ]
    assert small["by_tag"] == [conv("tag", "vip", 10, 3)]
    assert small["by_cohort"] == [
        conv("cohort", "2026-09", 100, 3),
        conv("cohort", "2026-10", 60, 2),
        conv("cohort", "2026-11", 40, 2),
    ]


def test_refunds(small) -> None:
    refunds = small["refunds"]
    assert refunds["count"] == 2
    assert refunds["rate"] == pytest.approx(0.25)
    assert refunds["amount_cents"] == 99400
    assert refunds["guarantee_days"] == 30
    assert (refunds["inside_guarantee"], refunds["outside_guarantee"]) == (1, 1)
    assert refunds["timing_unknown"] == 0
    assert refunds["days"] == [10.0, 40.0]
    assert refunds["median_days"] == 25.0
    hist = {row["day"]: row["refunds"] for row in refunds["histogram"]}
    assert len(hist) == 41 and hist[10] == 1 and hist[40] == 1 and sum(hist.values()) == 2
    # the failed refund on order 1 is neither a refund nor a reason
    assert refunds["reasons"] == [
        {"reason": "changed mind", "count": 1},
        {"reason": "not for me", "count": 1},
    ]


def test_payment_plans(small) -> None:
    plans = small["payment_plans"]
    assert plans["orders"] == 2
    assert plans["instalments_expected"] == 6
    assert plans["instalments_paid"] == 5
    assert plans["instalments_failed"] == 2
    assert (plans["completed"], plans["active"], plans["defaulted"]) == (1, 0, 1)
    assert plans["completion_rate"] == 0.5
    assert (plans["failed_payments"], plans["recovered_payments"]) == (2, 1)
    assert plans["recovered_share"] == 0.5
    assert plans["by_instalment"] == [
        {
            "instalment": 1,
            "orders": 2,
            "paid": 2,
            "failed": 0,
            "recovered": 0,
            "defaulted": 0,
            "default_rate": 0.0,
        },
        {
            "instalment": 2,
            "orders": 2,
            "paid": 2,
            "failed": 1,
            "recovered": 1,
            "defaulted": 0,
            "default_rate": 0.0,
        },
        {
            "instalment": 3,
            "orders": 2,
            "paid": 1,
            "failed": 1,
            "recovered": 0,
            "defaulted": 1,
            "default_rate": 0.5,
        },
    ]
    assert (plans["booked_cents"], plans["collected_cents"]) == (106200, 88500)
    assert plans["refund_rate_plan"] == 0.0
    assert plans["refund_rate_pay_in_full"] == pytest.approx(2 / 6)


def test_timing(small) -> None:
    timing = small["timing"]
    assert timing["open_hours"] == 168.0
    assert (timing["orders_before_open"], timing["orders_after_close"]) == (0, 0)
    assert timing["share_first_24h"] == pytest.approx(2 / 8)  # open+1h, open+2h30
    assert timing["share_last_48h"] == pytest.approx(3 / 8)  # close-30h, -10h, -1h
    hours = [(row["hour"], row["orders"]) for row in timing["per_hour"]]
    assert hours == [(1, 1), (2, 1), (26, 1), (72, 1), (120, 1), (138, 1), (158, 1), (167, 1)]
    days = [(row["day"], row["orders"], row["booked_cents"]) for row in timing["per_day"]]
    assert days == [
        (0, 2, 99400),
        (1, 1, 53100),
        (2, 0, 0),
        (3, 1, 53100),
        (4, 0, 0),
        (5, 2, 99400),
        (6, 2, 104400),
    ]
    before_close = {row["hours_before_close"] for row in timing["per_hour_before_close"]}
    assert {1, 10, 30} <= before_close  # whole hours left: close-1h, -10h, -30h


def test_emails_and_attribution(small) -> None:
    emails = small["emails"]
    assert emails["sent"] == 198 + 197 + 195 == emails["delivered"]
    assert emails["bounced"] == 2
    assert emails["unsubscribed"] == 5  # 50 and 190 in the audience, 206-208 before cart open
    assert emails["complaints"] == 1  # 191: status and suppression row count once
    assert emails["left"] == 6  # every leaving change in the window (211 left before it)
    assert (emails["sales_page_visits"], emails["checkout_starts"]) == (30, 12)
    assert emails["checkout_start_rate"] == pytest.approx(0.4)
    assert (emails["orders_without_email"], emails["revenue_without_email_cents"]) == (1, 49700)
    rows = {row["step"]: row for row in emails["per_email"]}
    # E1 precedes orders 1, 2, 3; E2 orders 4 and 6; E3 orders 5 and 7
    expected = {
        "e1": (198, 2, 3, 134800, 152500, 1, 0),
        "e2": (197, 0, 2, 102800, 102800, 1, 1),
        "e3": (195, 0, 2, 104400, 104400, 0, 0),
    }
    for step, (sent, bounced, orders, revenue, booked, unsubs, complaints) in expected.items():
        row = rows[step]
        assert (row["sent"], row["bounced"], row["orders"]) == (sent, bounced, orders)
        assert (row["revenue_cents"], row["booked_cents"]) == (revenue, booked)
        assert row["revenue_per_send_cents"] == round(revenue / sent, 2)
        assert (row["unsubscribes"], row["complaints"]) == (unsubs, complaints)


def test_empty_launch_has_zero_rates_and_renders(session) -> None:
    make_launch(session, "empty")
    session.execute(
        sa.insert(Subscriber),
        [
            {
                "email": f"e{i}@example.com",
                "status": "active",
                "source": "ads",
                "signed_up_at": datetime(2026, 10, 1, tzinfo=UTC),
                "created_at": datetime(2026, 10, 1, tzinfo=UTC),
                "updated_at": datetime(2026, 10, 1, tzinfo=UTC),
            }
            for i in range(5)
        ],
    )
    r = analyze_launch(session, "empty")
    assert (r["audience_size"], r["buyers"], r["conversion_rate"]) == (5, 0, 0.0)
    assert r["conversion_ci95"][0] == 0.0 and 0 < r["conversion_ci95"][1] < 1
    assert (r["gross_revenue_cents"], r["net_revenue_cents"], r["average_order_cents"]) == (0, 0, 0)
    assert r["refund_rate"] == 0.0 and r["refunds"]["count"] == 0
    assert r["payment_plans"]["completion_rate"] == 0.0
    assert r["timing"]["per_hour"] == [] and r["timing"]["share_last_48h"] == 0.0
    assert r["emails"]["sales_page_visits"] is None and r["emails"]["per_email"] == []
    assert r["currency"] == "EUR" and r["benchmark"]["position"] == "below"
    html = render_report(r, language="en")
    assert "No orders for this launch yet." in html and "<svg" in html


def test_launch_with_no_audience_at_all(session) -> None:
    make_launch(session, "nobody")
    r = analyze_launch(session, "nobody")
    assert r["audience_size"] == 0 and r["conversion_ci95"] is None and r["by_source"] == []
    assert "<html" in render_report(r, language="fr")


def _order(launch_id: int, i: int, currency: str = "EUR", **extra) -> dict:
    at = OPEN + (i + 1) * (CLOSE - OPEN) / 10
    return {
        "launch_id": launch_id,
        "email": f"o{i}@example.com",
        "currency": currency,
        "total_cents": 10000,
        "paid_cents": 10000,
        "refunded_cents": 0,
        "status": "paid",
        "plan_instalments": 1,
        "created_at": at,
        "paid_at": at,
        "updated_at": at,
        **extra,
    }


def test_launch_with_only_refunds(session) -> None:
    launch_id = make_launch(session, "refunded")
    session.execute(
        sa.insert(Order),
        [
            _order(
                launch_id,
                i,
                refunded_cents=10000,
                status="refunded",
                fee_cents=300,
                refunded_at=OPEN + (i + 2) * (CLOSE - OPEN) / 10,
            )
            for i in range(3)
        ],
    )
    r = analyze_launch(session, "refunded")
    assert r["buyers"] == 3 and r["audience_size"] == 0 and r["conversion_rate"] == 0.0
    assert r["gross_revenue_cents"] == 30000 and r["refunded_cents"] == 30000
    assert r["net_revenue_cents"] == -900  # fees are not given back
    assert r["refund_rate"] == 1.0 and r["refunds"]["inside_guarantee"] == 3
    assert r["refunds"]["reasons"] == []
    assert r["refunds"]["days"] == [pytest.approx(16.8 / 24)] * 3
    assert "<svg" in render_report(r, language="en")


def test_mixed_currencies_are_refused_unless_picked(session) -> None:
    launch_id = make_launch(session, "mixed")
    session.execute(
        sa.insert(Order),
        [
            _order(launch_id, 0, "EUR"),
            _order(launch_id, 1, "USD", total_cents=20000, paid_cents=20000),
            _order(launch_id, 2, "EUR"),
        ],
    )
    with pytest.raises(InputError) as caught:
        analyze_launch(session, "mixed")
    assert str(caught.value) == "Launch mixed has orders in EUR and USD; pick one with --currency"
    usd = analyze_launch(session, "mixed", currency="usd")
    assert (usd["currency"], usd["orders"], usd["gross_revenue_cents"]) == ("USD", 1, 20000)
    eur = analyze_launch(session, "mixed", currency="EUR")
    assert (eur["orders"], eur["gross_revenue_cents"]) == (2, 20000)


def test_unknown_launch(session) -> None:
    with pytest.raises(NotFound):
        analyze_launch(session, "nope")


def test_compare_fits_a_line_from_three_launches(session) -> None:
    build_small_launch(session)
    session.flush()
    result = compare_launches(session, now=NOW)
    slugs = [row["launch"] for row in result["launches"]]
    assert slugs == ["spring", "other"]  # oldest first
    spring = result["launches"][0]
    assert (spring["audience_size"], spring["buyers"], spring["net_revenue_cents"]) == (
        200,
        8,
        281650,
    )
    assert spring["provisional"] is False
    # two launches: no line (it would pass through both points with r2 = 1)
    assert result["fit"] is None
    make_launch(session, "third", cart_open=OPEN + 80 * DAY, cart_close=OPEN + 87 * DAY)
    session.flush()
    result = compare_launches(session, now=NOW)
    rows = result["launches"]
    assert [row["launch"] for row in rows] == ["spring", "other", "third"]
    fit = result["fit"]
    x = [float(row["audience_size"]) for row in rows]
    y = [row["conversion_rate"] for row in rows]
    mx, my = sum(x) / 3, sum(y) / 3
    sxx = sum((v - mx) ** 2 for v in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    intercept = my - slope * mx
    residual = sum((b - slope * a - intercept) ** 2 for a, b in zip(x, y, strict=True))
    half = 12.706 * math.sqrt(residual / 1 / sxx)  # t(0.975, 1 degree of freedom)
    assert fit["launches"] == 3
    assert fit["slope"] == pytest.approx(slope)
    assert fit["intercept"] == pytest.approx(intercept)
    assert fit["slope_ci95"] == pytest.approx([slope - half, slope + half])
    page = render_compare(result, language="en")
    assert "likely between" in page and "3 launches" in page
    assert fit_line([100, 200], [0.01, 0.02]) is None
    assert fit_line([100, 100, 100], [0.01, 0.02, 0.03]) is None


def test_compare_and_forecast_leave_out_open_carts_unless_named(session) -> None:
    build_small_launch(session)
    session.flush()
    during = CLOSE - DAY  # spring's cart is still open; "other" has not opened
    assert compare_launches(session, now=during)["launches"] == []
    named = compare_launches(session, ["spring"], now=during)["launches"]
    assert [(row["launch"], row["provisional"]) for row in named] == [("spring", True)]
    after = CLOSE + DAY  # spring closed, "other" still to come
    assert [row["launch"] for row in compare_launches(session, now=after)["launches"]] == ["spring"]
    kwargs = {"audience": 1000, "price_cents": 49700, "simulations": 200}
    assert forecast_launch(session, now=during, **kwargs)["based_on"] == []
    assert forecast_launch(session, now=after, **kwargs)["based_on"] == ["spring"]
    named_forecast = forecast_launch(session, now=during, from_launches=["spring"], **kwargs)
    assert named_forecast["based_on"] == ["spring"]


def test_forecast_from_past_launches_is_seeded(session) -> None:
    build_small_launch(session)
    session.flush()
    first = forecast_launch(
        session, audience=12000, from_launches=["spring"], seed=7, simulations=5000, now=NOW
    )
    again = forecast_launch(
        session, audience=12000, from_launches=["spring"], seed=7, simulations=5000, now=NOW
    )
    assert first == again
    assert first["method"] == "monte-carlo" and first["based_on"] == ["spring"]
    assert first["assumptions"]["price_cents"] == 51175  # past average order
    for key in ("buyers", "net_revenue_cents", "conversion_rate"):
        band = first[key]
        assert band["p10"] <= band["mean"] <= band["p90"]
    # 7/200 past conversion (buyers in the audience) -> Beta(8, 194), mean 4.0% of 12,000
    assert 350 < first["buyers"]["mean"] < 600
    # fee ratio over the orders whose fee is known only (order 5's gross left out)
    assert first["assumptions"]["fee_ratio"] == pytest.approx(10650 / (391700 - 49700))
    assert first["assumptions"]["fee_orders"] == 7
    assert first["net_revenue_cents"]["mean"] < first["buyers"]["mean"] * 51175


def test_forecast_without_past_uses_benchmark(session) -> None:
    result = forecast_launch(
        session, audience=10000, price_cents=49700, seed=1, simulations=4000, now=NOW
    )
    assert result["method"] == "monte-carlo-benchmark" and result["based_on"] == []
    assert 0.005 <= result["conversion_rate"]["p10"] <= result["conversion_rate"]["p90"] <= 0.02
    assert 50 <= result["buyers"]["p10"] < result["buyers"]["mean"] < result["buyers"]["p90"] <= 200
    with pytest.raises(InputError, match="--price is required"):
        forecast_launch(session, audience=10000, now=NOW)
    with pytest.raises(InputError, match="--audience"):
        forecast_launch(session, audience=0, price_cents=100, now=NOW)


STRIPE_HEADER = (
    "id,Description,Seller Message,Created date (UTC),Amount,Amount Refunded,Currency,Captured,"
    "Converted Amount,Converted Amount Refunded,Fee,Tax,Converted Currency,Status,"
    "Customer ID,Customer Description,Customer Email\n"
)


def _export(tmp_path: Path, rows: list[str], name: str = "unified_payments.csv") -> Path:
    path = tmp_path / name
    path.write_text(STRIPE_HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


ROWS = [
    "ch_1,Cours photo,Payment complete.,2026-12-01 10:15:00,497.00,0.00,eur,true,497.00,0.00,"
    "7.21,0.00,eur,Paid,cus_1,Ann,S1@Example.com ",
    'ch_2,Cours photo,Payment complete.,2026-12-02 11:00:00,"1,497.00",1497.00,eur,true,'
    "1497.00,1497.00,21.21,0.00,eur,Refunded,cus_2,Bob,stranger@example.org",
    "ch_3,Cours photo,Declined,2026-12-02 12:00:00,497.00,0.00,eur,false,0.00,0.00,0.00,0.00,"
    "eur,Failed,cus_3,Cy,s2@example.com",
    "ch_4,Cours photo,Payment complete.,2026-12-03 08:00:00,497.00,100.00,eur,true,540.00,"
    "108.70,8.10,0.00,usd,Paid,cus_4,Di,s2@example.com",
]


def test_import_payments_matches_and_reports_unmatched(session, tmp_path: Path) -> None:
    build_small_launch(session)
    path = _export(tmp_path, ROWS)
    result = import_payments(session, path, launch="other", now=NOW)
    assert result == {
        "launch": "other",
        "file": "unified_payments.csv",
        "rows": 4,
        "imported": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "skipped_failed": 1,
        "matched": 2,
        "unmatched_count": 1,
        "unmatched": ["stranger@example.org"],
    }
    orders = {
        o.external_id: o
        for o in session.scalars(sa.select(Order).where(Order.external_id.is_not(None)))
    }
    assert orders["ch_1"].subscriber_id == 1 and orders["ch_1"].email == "s1@example.com"
    assert (orders["ch_1"].paid_cents, orders["ch_1"].fee_cents) == (49700, 721)
    assert orders["ch_2"].subscriber_id is None and orders["ch_2"].email == "stranger@example.org"
    assert (orders["ch_2"].total_cents, orders["ch_2"].refunded_cents) == (149700, 149700)
    assert orders["ch_2"].status == "refunded"
    assert orders["ch_4"].fee_cents is None  # fee reported in USD for a EUR charge
    assert (orders["ch_4"].refunded_cents, orders["ch_4"].status) == (10000, "paid")
    # re-import: idempotent; a newer export with a refund updates the order
    again = import_payments(session, path, launch="other", now=NOW)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    newer = _export(
        tmp_path, [ROWS[0].replace("497.00,0.00,eur,true", "497.00,497.00,eur,true")], "newer.csv"
    )
    third = import_payments(session, newer, launch="other", now=NOW)
    assert (third["created"], third["updated"]) == (0, 1)
    assert orders["ch_1"].refunded_cents == 49700 and orders["ch_1"].status == "refunded"
    analyzed = analyze_launch(session, "other")
    assert analyzed["orders"] == 4  # the three imports + one order inserted by the fixture


def test_import_payments_bad_rows_name_row_and_field(session, tmp_path: Path) -> None:
    make_launch(session, "spring")
    bad_amount = _export(tmp_path, [ROWS[0].replace("497.00,0.00,eur", "49.7.00,0.00,eur")])
    with pytest.raises(InputError, match=r"unified_payments.csv, row 2, field Amount: "):
        import_payments(session, bad_amount, launch="spring", now=NOW)
    (tmp_path / "x.csv").write_text("id,Amount\nch_1,5.00\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column"):
        import_payments(session, tmp_path / "x.csv", launch="spring", now=NOW)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_minor_units_are_exact() -> None:
    assert to_minor_units("0.29", "EUR", where="x") == 29  # float would give 28.999...
    assert to_minor_units("1,234.56", "USD", where="x") == 123456
    assert to_minor_units("500", "JPY", where="x") == 500
    assert to_minor_units("1.234", "KWD", where="x") == 1234
    with pytest.raises(InputError, match="more decimals"):
        to_minor_units("1.005", "EUR", where="x")


def test_segments_saved_and_narrowing(session) -> None:
    from launchkit.models import Segment

    build_small_launch(session)
    session.execute(
        sa.insert(Segment),
        [
            {"name": "podcasters", "expression": "source:podcast", "created_at": NOW},
            {"name": "checklist", "expression": "magnet:checklist", "created_at": NOW},
        ],
    )
    r = analyze_launch(session, "spring")
    assert sorted(r["by_segment"], key=lambda row: row["segment"]) == [
        conv("segment", "checklist", 70, 5),
        conv("segment", "podcasters", 60, 2),
    ]
    narrowed = analyze_launch(session, "spring", segment="podcasters")
    assert (narrowed["audience_size"], narrowed["buyers_in_audience"]) == (60, 2)
    assert narrowed["segment"] == "podcasters" and narrowed["by_segment"] == []
    expression = analyze_launch(session, "spring", segment="tag:vip")
    assert (expression["audience_size"], expression["buyers_in_audience"]) == (10, 3)
    with pytest.raises(NotFound):
        analyze_launch(session, "spring", segment="nosuchsegment")


# --- status history: every change keeps its time ------------------------------------------------


def _history(session, email: str) -> list[tuple[str, datetime, str]]:
    from launchkit.models import SubscriberStatusChange

    rows = session.execute(
        sa.select(
            SubscriberStatusChange.status,
            SubscriberStatusChange.changed_at,
            SubscriberStatusChange.source,
        )
        .join(Subscriber, Subscriber.id == SubscriberStatusChange.subscriber_id)
        .where(Subscriber.email == email)
        .order_by(SubscriberStatusChange.changed_at, SubscriberStatusChange.id)
    )
    return [tuple(row) for row in rows]


def _audience(session, at: datetime) -> int:
    from launchkit.analysis.definitions import audience_size

    return audience_size(session.connection(), at)


def test_every_status_change_keeps_its_time(session, tmp_path: Path) -> None:
    from launchkit import audience, magnets
    from launchkit.config import settings_for_test
    from launchkit.models import SuppressionReason

    jan = datetime(2026, 1, 10, tzinfo=UTC)
    people = tmp_path / "people.csv"
    people.write_text("email,signed_up_at\na@x.org,2026-01-01\nb@x.org,2026-01-01\n", "utf-8")
    audience.import_subscribers(session, people, now=jan)
    assert _history(session, "a@x.org") == []  # active from the join time: no row needed
    # a bounce, an unsubscribe, a manual suppression: each at the time it happened
    audience.suppress(session, "a@x.org", SuppressionReason.BOUNCED, now=jan + 5 * DAY)
    b = audience.get_subscriber(session, "b@x.org")
    audience.unsubscribe(session, b.id, now=jan + 7 * DAY, method="link")
    audience.unsubscribe(session, b.id, now=jan + 9 * DAY, method="link")  # replay: no row
    assert _history(session, "a@x.org") == [("bounced", jan + 5 * DAY, "bounce")]
    assert _history(session, "b@x.org") == [("unsubscribed", jan + 7 * DAY, "unsubscribe")]
    assert [_audience(session, jan + d * DAY) for d in (4, 6, 8)] == [2, 1, 0]
    # double opt-in: pending from signup until confirmation, then active; a resubscription
    settings = settings_for_test(tmp_path)
    magnet = magnets.add_magnet(session, settings, "m", title="M", url="https://e.org", now=jan)
    visitor = magnets.Visitor(None, None, None)
    signed = jan + 10 * DAY
    for email, confirm_after in (("c@x.org", 2), ("b@x.org", 3)):
        data = magnets.SignupInput(email=email, first_name="")
        result = magnets.signup(session, settings, magnet, data, visitor, now=signed)
        payload = {"s": result.subscriber.id, "m": magnet.id, "c": result.consent.id}
        magnets.confirm_signup(
            session, settings, payload, ip=None, now=signed + confirm_after * DAY
        )
    session.flush()
    assert _history(session, "c@x.org") == [
        ("pending", signed, "optin"),
        ("active", signed + 2 * DAY, "confirm"),
    ]
    assert _history(session, "b@x.org")[-1] == ("active", signed + 3 * DAY, "resubscribe")
    assert [_audience(session, signed + d * DAY) for d in (1, 2, 3)] == [0, 1, 2]


def test_imported_unsubscribes_keep_the_exports_time(session, tmp_path: Path) -> None:
    from launchkit import audience

    mailchimp = tmp_path / "unsubscribed.csv"
    mailchimp.write_text(
        '"Email Address","OPTIN_TIME","UNSUB_TIME"\n'
        '"m@x.org","2026-09-01 10:00:00","2026-11-25 08:00:00"\n',
        encoding="utf-8",
    )
    kit = tmp_path / "kit.csv"
    kit.write_text(
        "email,first_name,created_at,status,cancelled_at\n"
        "k@x.org,K,2026-09-01 10:00:00 UTC,cancelled,2026-11-26 08:00:00 UTC\n",
        encoding="utf-8",
    )
    generic = tmp_path / "generic.csv"
    generic.write_text(
        "email,signed_up_at,unsubscribed_at\ng@x.org,2026-09-01,2026-11-27 08:00\n"
        "h@x.org,2026-09-01,\n",
        encoding="utf-8",
    )
    during_the_cart = OPEN + 2 * DAY  # imported while the cart is open
    for path in (mailchimp, kit, generic):
        audience.import_subscribers(session, path, now=during_the_cart)
    at = datetime(2026, 11, 25, 8, tzinfo=UTC)
    assert _history(session, "m@x.org") == [("unsubscribed", at, "import")]
    assert _history(session, "k@x.org") == [("unsubscribed", at + DAY, "import")]
    assert _history(session, "g@x.org") == [("unsubscribed", at + 2 * DAY, "import")]
    assert _history(session, "h@x.org") == []
    assert audience.get_subscriber(session, "g@x.org").unsubscribed_at == at + 2 * DAY
    # their leaving predates the launch window (from 2026-11-28): not this launch's unsubscribes
    make_launch(session, "late", prelaunch_start=datetime(2026, 11, 28, tzinfo=UTC))
    session.flush()
    r = analyze_launch(session, "late", now=NOW)
    assert r["emails"]["unsubscribed"] == 0
    assert r["audience_size"] == 1  # h@x.org only: the others had left at cart open


def test_migration_backfills_the_status_history(db_url: str) -> None:
    """0003 writes the history of existing rows with portable SQL (both databases)."""
    from alembic import command

    from launchkit.db import alembic_config, make_engine, upgrade_database
    from launchkit.models import Consent, Suppression

    t = datetime(2026, 3, 1, tzinfo=UTC)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        cfg = alembic_config(db_url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001_initial")
    people = {
        "p@x.org": ("pending", None, None),  # double opt-in, not confirmed yet
        "c@x.org": ("active", t + DAY, None),  # double opt-in confirmed
        "u@x.org": ("unsubscribed", None, t + 2 * DAY),
        "b@x.org": ("bounced", None, None),  # bounced: its suppression's time
        "a@x.org": ("active", t, None),  # imported, confirmed elsewhere: no history needed
    }
    with engine.begin() as conn:
        for number, (email, (status, confirmed, unsubscribed)) in enumerate(people.items(), 1):
            row = {"id": number, "email": email, "first_name": "", "last_name": ""}
            row |= {"status": status, "confirmed_at": confirmed, "unsubscribed_at": unsubscribed}
            row |= {"signed_up_at": t, "created_at": t, "updated_at": t + 9 * DAY}
            conn.execute(sa.insert(Subscriber.__table__).values(**row))
        conn.execute(
            sa.insert(Consent.__table__),
            [{"subscriber_id": i, "method": "optin"} for i in (1, 2)]
            + [{"subscriber_id": 5, "method": "import"}],
        )
        conn.execute(
            sa.insert(Suppression.__table__).values(
                email="b@x.org", reason="bounced", created_at=t + 3 * DAY
            )
        )
    upgrade_database(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT s.email, c.status, c.changed_at, c.source FROM subscriber_status_changes c"
                " JOIN subscribers s ON s.id = c.subscriber_id ORDER BY s.email, c.changed_at"
            )
        ).all()
    engine.dispose()
    found = [(e, st, pd_utc(at), src) for e, st, at, src in rows]
    assert found == [
        ("b@x.org", "bounced", t + 3 * DAY, "backfill"),
        ("c@x.org", "pending", t, "optin"),
        ("c@x.org", "active", t + DAY, "confirm"),
        ("p@x.org", "pending", t, "optin"),
        ("u@x.org", "unsubscribed", t + 2 * DAY, "backfill"),
    ]


def pd_utc(value: object) -> datetime:
    """A raw timestamp (SQLite text or PostgreSQL datetime) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def test_refund_timing_counts_from_the_payment_it_returns(session) -> None:
    """A refund of a plan's third instalment is timed from that instalment, not the first."""
    from launchkit.models import Payment, Refund

    build_small_launch(session)
    third = session.scalar(
        sa.select(Payment.id).where(Payment.order_id == 4, Payment.instalment_number == 3)
    )
    at = OPEN + 65 * DAY
    refund = {"order_id": 4, "payment_id": third, "idempotency_key": "r4", "currency": "EUR"}
    refund |= {"amount_cents": 17700, "reason": "late", "forced": False, "status": "succeeded"}
    session.execute(sa.insert(Refund).values(**refund, requested_at=at, refunded_at=at))
    session.execute(sa.update(Order).where(Order.id == 4).values(refunded_cents=17700))
    session.flush()
    refunds = analyze_launch(session, "spring", now=NOW)["refunds"]
    assert refunds["count"] == 3
    assert 2.0 in refunds["days"]  # 63 days after the first payment, 2 after the third
    assert refunds["inside_guarantee"] == 2  # order 2 (10 days) and order 4 (2 days)


def test_buyers_are_distinct_people() -> None:
    """Two orders of one subscriber are one buyer; an unlinked order with that subscriber's
    address is the same person; unlinked orders are told apart by their normalized address."""
    from launchkit.analysis.definitions import count_buyers, person_keys

    orders = [  # (subscriber id, order email, subscriber email), in the audience
        (1, "a@x.org", "a@x.org", True),
        (1, "a@x.org", "a@x.org", True),
        (None, " A@X.org ", None, False),  # the same person, unlinked
        (2, "b@x.org", "b@x.org", False),  # joined after cart open
        (None, "Out@Example.COM", None, False),
        (None, "out@example.com ", None, False),  # the same outsider
    ]
    keys = person_keys((sid, email, sub) for sid, email, sub, _ in orders)
    assert keys[:3] == ["id:1"] * 3 and keys[4] == keys[5] == "email:out@example.com"
    buyers = count_buyers(zip(keys, [row[3] for row in orders], strict=True))
    assert buyers.as_dict() == {
        "buyers": 3,
        "buyers_in_audience": 1,
        "buyers_on_list_outside_audience": 1,
        "buyers_not_on_list": 1,
    }


def with_checkout_outcomes(session) -> None:
    """The small launch as checkout and Stripe leave it: ``buyer``, ``buyer:<launch>`` and
    ``refunded`` tags on every buyer, one refund with Stripe's ``requested_by_customer`` reason
    (the other keeps a free-text reason), subjects written as templates, a long source name."""
    build_small_launch(session)
    buyers = set(session.scalars(sa.select(Order.subscriber_id).where(Order.subscriber_id > 0)))
    session.execute(
        sa.insert(SubscriberTag),
        [
            {"subscriber_id": b, "tag": t}
            for b in buyers
            for t in ("buyer", "buyer:spring", "refunded")
        ],
    )
    session.execute(
        sa.update(Refund).where(Refund.order_id == 2).values(reason="requested_by_customer")
    )
    session.execute(sa.update(Email).values(subject="{{ product }} est ouvert"))
    long_name = "instagram-bio-lien-campagne-novembre"
    session.execute(sa.update(Subscriber).where(Subscriber.id <= 100).values(source=long_name))
    session.flush()


def _section(html: str, title: str) -> str:
    start = html.index(f"<h3>{title}</h3>")
    return html[start : html.index("</table>", start)]


def test_numbers_in_the_workspace_language() -> None:
    fr, en = Formatter("fr", "EUR"), Formatter("en", "EUR")
    assert fr.pct(0.029) == "2,9\u00a0%" and en.pct(0.029) == "2.9%"
    assert fr.money(123456) == "1\u202f234,56\u00a0€" and en.money(123456) == "€1,234.56"
    assert fr.num(1234) == "1\u202f234" and en.num(1234) == "1,234"
    assert fr.ci_words(0.025, 0.034) == "entre 2,5 et 3,4\u00a0%, 95 fois sur 100"
    assert en.ci_words(0.025, 0.034) == "between 2.5 and 3.4%, 95 times out of 100"
    assert (fr.ci_range(0.025, 0.034), en.ci_range(None, 0.1)) == ("2,5 à 3,4\u00a0%", "—")
    assert fr.reason("requested_by_customer") == "à la demande du client"
    assert en.reason("duplicate") == "duplicate payment" and en.reason("other") == "other"


@pytest.mark.parametrize("language", ["fr", "en"])
def test_report_speaks_plainly(session, language: str) -> None:
    with_checkout_outcomes(session)
    result = analyze_launch(session, "spring", now=OPEN + 2 * DAY)
    # the outcome tags are in the figures (the CSV keeps them) but not in the report's table
    assert {"buyer", "buyer:spring", "refunded", "vip"} <= {r["tag"] for r in result["by_tag"]}
    html = render_report(result, language=language, timezone="Europe/Paris")
    words = {
        "fr": ("Conversion par tag", "95 fois sur 100", "à la demande du client", "Provisoire"),
        "en": (
            "Conversion by tag",
            "95 times out of 100",
            "requested by the customer",
            "Provisional",
        ),
    }[language]
    tags = _section(html, words[0])
    assert "vip" in tags and "buyer" not in tags and "refunded" not in tags
    assert words[1] in html and "<details" in html and "Wilson" in html
    assert "Intervalle" not in html and "95% interval" not in html
    assert words[2] in html and "requested_by_customer" not in html
    assert "changed mind" in html  # a reason Stripe does not define is shown as written
    assert "Cours photo est ouvert" in html and "{{" not in html
    assert 'id="provisional"' in html and words[3] in html
    closed = render_report(analyze_launch(session, "spring", now=NOW), language=language)
    assert 'id="provisional"' not in closed


def test_french_report_keeps_numbers_together(session) -> None:
    with_checkout_outcomes(session)
    html = render_report(analyze_launch(session, "spring", now=NOW), language="fr")
    assert "3\u202f917,00\u00a0€" in html  # gross, grouped and spaced the French way
    assert "3,5\u00a0%" in html and "entre 1,7 et 7,0\u00a0%, 95 fois sur 100" in html
    assert re.search(r"\d %|\d,\d+%", html) is None  # never a breakable or missing space


def test_subjects_render_like_the_sender(session, tmp_path: Path) -> None:
    build_small_launch(session)
    subjects = ["{{ product }} est ouvert", "{{ first_name }}, un mot de {{ creator_name }}"]
    ids = session.scalars(sa.select(Email.id).order_by(Email.position)).all()
    for email_id, subject in zip(ids, [*subjects, "{{ missing }} {% if %}"], strict=True):
        session.execute(sa.update(Email).where(Email.id == email_id).values(subject=subject))
    result = analyze_launch(session, "spring", now=NOW)
    shown = email_subjects(result, Settings(workspace=tmp_path, emails_dir=tmp_path))
    assert [shown[i] for i in ids] == [
        "Cours photo est ouvert",
        "[first_name], un mot de [creator_name]",
        "{{ missing }} {% if %}",  # a subject that does not render is shown as written
    ]
    named = Settings(workspace=tmp_path, emails_dir=tmp_path, sender_name="Élodie")
    assert email_subjects(result, named)[ids[1]] == "[first_name], un mot de Élodie"
    html = render_report(result, language="fr", settings=named)
    assert "Cours photo est ouvert" in html and "un mot de Élodie" in html
