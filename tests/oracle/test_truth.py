"""The oracle checked by hand: tiny worlds whose figures are worked out in the comments, so the
ground truth the suite compares ``analyze`` with is itself trustworthy (no database here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.oracle import compare, scenario, truth
from tests.oracle.world import Offer, Order, Paid, Person, RefundFact, Segment, World, normalize

CO = datetime(2026, 2, 10, 12, tzinfo=UTC)  # cart open
CC = datetime(2026, 2, 17, 12, tzinfo=UTC)  # cart close
JAN = datetime(2026, 1, 5, tzinfo=UTC)
D = timedelta(days=1)


def world(now: datetime = CC + 60 * D) -> World:
    w = World(slug="hiver", cart_open=CO, cart_close=CC, prelaunch_start=CO - 10 * D, now=now)
    w.offers = {"cours": Offer("cours", 50000, 14, (3, 18000)), "mini": Offer("mini", 10000, 30)}
    return w


def add(w: World, email: str, joined: datetime = JAN, *changes, source="csv", tags=()) -> Person:  # type: ignore[no-untyped-def]
    person = Person(
        normalize(email), source, joined, joined, [(joined, "active"), *changes], set(tags)
    )
    w.people[person.email] = person
    return person


def buy(w: World, typed: str, *, offer="mini", subscriber=None, at=CO + D, plan=False) -> Order:  # type: ignore[no-untyped-def]
    o = w.offers[offer]
    n, each = o.plan if plan and o.plan else (1, o.price_cents)
    order = Order(f"o{len(w.orders)}", offer, n, n * each, each, typed, subscriber, at)
    order.payments.append(Paid(1, each, at + timedelta(minutes=5)))
    w.orders.append(order)
    return order


def test_wilson_matches_the_closed_form_and_published_values():
    # Wilson (1927) closed form: (2np + z^2 -/+ z sqrt(z^2 + 4np(1-p))) / (2(n + z^2))
    z = truth.Z95
    for x, n in [(0, 10), (1, 4), (7, 7), (3, 71), (50, 100)]:
        p = x / n
        root = z * (z * z + 4 * n * p * (1 - p)) ** 0.5
        low, high = (
            (2 * n * p + z * z - root) / (2 * (n + z * z)),
            (2 * n * p + z * z + root) / (2 * (n + z * z)),
        )
        assert truth.wilson(x, n) == pytest.approx((low, high), abs=1e-12)
    assert truth.wilson(1, 4) == pytest.approx((0.0456, 0.6994), abs=1e-4)  # textbook value
    assert truth.wilson(0, 0) is None


def test_issue_repro_bounce_after_cart_open_keeps_the_person_in_the_audience():
    # 3 people signed up in January, cart in February, one bounced today: audience 3 (issue #14)
    w = world()
    add(w, "a@x.fr")
    add(w, "b@x.fr")
    add(w, "c@x.fr", JAN, (CO + 2 * D, "bounced"))
    assert truth.figures(w)["audience_size"] == 3
    # bounced, complained or unsubscribed at or before cart open: out
    add(w, "d@x.fr", JAN, (CO - D, "bounced"))
    add(w, "e@x.fr", JAN, (CO, "unsubscribed"))
    add(w, "f@x.fr", JAN, (CO - D, "unsubscribed"), (CO - D / 2, "active"))  # came back: in
    assert truth.figures(w)["audience_size"] == 4


def test_double_opt_in_counts_from_its_confirmation_and_join_time_from_signup():
    w = world()
    pending = Person("p@x.fr", "magnet:g", CO - 3 * D, CO - 3 * D, [(CO - 3 * D, "pending")])
    late = Person(
        "l@x.fr", "magnet:g", CO - 3 * D, CO - 3 * D, [(CO - 3 * D, "pending"), (CO + D, "active")]
    )
    early = Person(
        "e@x.fr", "magnet:g", CO - 3 * D, CO - 3 * D, [(CO - 3 * D, "pending"), (CO - D, "active")]
    )
    after = add(w, "n@x.fr", CO + D)  # joined during the cart: never in the audience
    for p in (pending, late, early):
        w.people[p.email] = p
    assert [p.email for p in truth.audience(w)] == ["e@x.fr"]
    assert after.status_at(CO) is None
    figures = truth.figures(w)
    assert figures["by_cohort:labels"] == ["2026-02"]  # the signup month, not the confirmation's


def test_buyers_are_people_split_three_ways_and_conversion_uses_the_audience_ones():
    w = world()
    a, b = add(w, "Anne@X.fr"), add(w, "bob@x.fr")
    add(w, "cat@x.fr"), add(w, "dan@x.fr")
    late = add(w, "lea@café.fr", CO + D)  # on the list, joined during the cart
    buy(w, "  ANNE@x.FR ")  # typed, different case and spaces: still Anne
    buy(w, "anne@x.fr", offer="cours", plan=True)  # Anne again: one buyer
    buy(w, "someone@else.fr", subscriber=b.email)  # metadata names Bob, whatever was typed
    buy(w, "Lea@Café.fr")  # IDNA domain typed in Unicode: the list's lea@xn--caf-dma.fr
    buy(w, "zed@nowhere.fr")
    buy(w, " ZED@nowhere.fr")  # the same stranger twice
    unpaid = buy(w, "cat@x.fr")
    unpaid.payments.clear()  # checkout started, never paid: pending, not a buyer
    f = truth.figures(w)
    assert (f["audience_size"], f["buyers"], f["buyers_in_audience"]) == (4, 4, 2)
    assert (f["buyers_on_list_outside_audience"], f["buyers_not_on_list"]) == (1, 1)
    assert (f["orders"], f["pending_orders"]) == (6, 1)
    assert f["conversion_rate"] == 0.5
    assert f["conversion_ci95"] == list(truth.wilson(2, 4))
    assert late.email == "lea@xn--caf-dma.fr" and truth.linked_person(w, w.orders[3]) is late
    assert a.email in {p.email for p in truth.audience(w)}
    # gross: 5 paid x 100.00 + the first instalment 180.00; booked counts the plan's 3 x 180.00
    assert f["gross_revenue_cents"] == 5 * 10000 + 18000
    assert f["booked_revenue_cents"] == 5 * 10000 + 3 * 18000
    assert (f["fees_cents"], f["fees_known_orders"], f["net_revenue_cents"]) == (None, 0, 68000)
    # groups: the audience's tags now include the purchase tags
    assert f["by_tag[buyer].audience"] == 2 and f["by_tag[buyer].buyers"] == 2
    assert f["by_source[csv].audience"] == 4 and f["by_source[csv].buyers"] == 2


def test_refund_timing_from_the_refunded_payment_against_the_guarantee():
    w = world()
    add(w, "a@x.fr")
    inside = buy(w, "a@x.fr", offer="cours")  # guarantee 14 days
    inside.refunds.append(RefundFact(50000, inside.payments[0].at + 3 * D, 1, listed=False))
    outside = buy(w, "b@x.fr", offer="cours")
    outside.refunds.append(RefundFact(20000, outside.payments[0].at + 20 * D, 1, listed=True))
    plan = buy(w, "c@x.fr", offer="cours", plan=True)
    plan.payments.append(Paid(2, 18000, plan.payments[0].at + 30 * D))
    plan.refunds.append(
        RefundFact(18000, plan.payments[1].at + 2 * D, 2, listed=True)
    )  # 2 days after instalment 2
    buy(w, "d@x.fr", offer="mini")
    f = truth.figures(w)
    assert (f["refund_count"], f["refund_rate"], f["refund_amount_cents"]) == (3, 0.75, 88000)
    assert f["refund_days"] == pytest.approx([2.0, 3.0, 20.0])
    assert (f["refunds_inside_guarantee"], f["refunds_outside_guarantee"]) == (2, 1)
    assert (
        f["refunded_cents"] == 88000
        and f["net_revenue_cents"] == 50000 + 50000 + 36000 + 10000 - 88000
    )
    assert [truth.order_status(o) for o in w.orders] == ["refunded", "paid", "refunded", "paid"]


def test_plans_completed_recovered_defaulted_and_active():
    w = world()
    done = buy(w, "a@x.fr", offer="cours", plan=True)
    start = done.payments[0].at
    done.failures.append((2, 1, start + 30 * D))
    done.payments += [Paid(2, 18000, start + 33 * D), Paid(3, 18000, start + 60 * D)]
    gone = buy(w, "b@x.fr", offer="cours", plan=True)
    gone.failures += [(2, a, gone.payments[0].at + (30 + 3 * a) * D) for a in (1, 2, 3)]
    running = buy(w, "c@x.fr", offer="cours", plan=True)
    running.failures.append((2, 1, running.payments[0].at + 30 * D))
    f = truth.figures(w)
    assert (f["plan_orders"], f["plans_completed"], f["plans_defaulted"], f["plans_active"]) == (
        3,
        1,
        1,
        1,
    )
    assert (f["plan_instalments_expected"], f["plan_instalments_paid"]) == (9, 5)
    assert (f["plan_failed_payments"], f["plan_recovered_payments"]) == (5, 1)
    assert f["plan_completion_rate"] == pytest.approx(1 / 3)
    # per instalment: the second failed for all three, was recovered once, defaulted once (the
    # plan still being retried has not defaulted)
    row = {k: f[f"plan_by_instalment[2].{k}"] for k in (*truth.INSTALMENT_FIELDS, "default_rate")}
    assert row == {"orders": 3, "paid": 1, "failed": 3, "recovered": 1, "defaulted": 1,
                   "default_rate": 1 / 3}  # fmt: skip
    assert f["plan_by_instalment[1].orders"] == 3 and f["plan_by_instalment[1].failed"] == 0
    assert f["plan_by_instalment:labels"] == ["1", "2", "3"]


def test_segment_narrows_audience_buyers_and_revenue():
    w = world()
    w.segments = [Segment("hot", "tag:hot", frozenset({"hot"}))]
    hot = add(w, "h@x.fr", tags={"hot"})
    add(w, "c@x.fr")
    add(w, "h2@x.fr", CO + D, tags={"hot"})
    buy(w, "h@x.fr", subscriber=hot.email)
    buy(w, "c@x.fr")
    buy(w, "h2@x.fr")
    buy(w, "out@nowhere.fr")
    f = truth.figures(w, "hot")
    assert (f["audience_size"], f["buyers"], f["buyers_in_audience"]) == (1, 2, 1)
    assert (f["buyers_on_list_outside_audience"], f["buyers_not_on_list"]) == (1, 0)
    assert (f["orders"], f["gross_revenue_cents"], f["conversion_rate"]) == (2, 20000, 1.0)
    assert truth.figures(w)["by_segment[hot].audience"] == 1


def test_provisional_and_leavers_in_the_window():
    w = world(now=CC - D)
    add(w, "u@x.fr", JAN, (CO - 5 * D, "unsubscribed"))  # inside the window (pre-launch)
    add(w, "old@x.fr", JAN, (CO - 30 * D, "unsubscribed"))  # before the window
    add(w, "k@x.fr", JAN, (CO + D, "complained"))
    f = truth.figures(w)
    assert f["provisional"] is True and truth.figures(world())["provisional"] is False
    assert (f["unsubscribes"], f["complaints"]) == (1, 1)


def test_comparator_reports_each_figure_with_expected_and_got():
    wanted = {
        "audience_size": 3, "conversion_rate": 0.1, "fees_cents": None,
        "by_source[a].buyers": 1, "by_source:labels": ["a"], "refund_days": [1.234],
    }  # fmt: skip
    result = {
        "audience_size": 3, "conversion_rate": 0.1 + 1e-12, "fees_cents": 0,
        "by_source": [{"source": "a", "buyers": 2}], "refunds": {"days": [1.23]},
    }  # fmt: skip
    diffs = compare.differences(wanted, result)
    assert [d[0] for d in diffs] == ["fees_cents", "by_source[a].buyers"]
    text = compare.table("t", diffs, len(wanted))
    assert "2 of 6 figures differ" in text and "fees_cents" in text and "None | 0" in text
    assert compare.differences({"pending_orders": 1}, {}) == [
        ("pending_orders", 1, compare.MISSING)
    ]


def test_generator_is_seeded_and_consistent():
    one, again, other = scenario.generate(1), scenario.generate(1), scenario.generate(2)
    assert truth.figures(one) == truth.figures(again)
    assert [o.typed_email for o in one.orders] == [o.typed_email for o in again.orders]
    assert truth.figures(one) != truth.figures(other)
    for w in (one, scenario.generate(3, provisional=True)):
        for order in w.orders:
            assert {i for _, i in order.deliveries} == set(range(len(order.events)))
            times = [at for at, _ in order.deliveries]
            assert times == sorted(times) and len(set(times)) == len(times)  # the drawn order
            for at, index in order.deliveries:
                assert order.events[index].created <= at <= w.now
        assert all(a.at <= w.now for a in w.actions)
        statuses = {truth.order_status(o) for o in w.orders}
        assert {"paid", "pending"} <= statuses
    statuses = {truth.order_status(o) for o in one.orders}
    assert {"refunded", "completed_plan", "defaulted", "disputed"} <= statuses
    assert any(r.listed for o in one.orders for r in o.refunds)
    assert any(not r.listed for o in one.orders for r in o.refunds)
    assert any(r.via == "cli" for o in one.orders for r in o.refunds)
    assert any(r.amount < o.charge for o in one.orders for r in o.refunds)  # a partial refund
