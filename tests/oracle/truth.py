"""Every figure of a launch computed from the world's facts alone (no database, no launchkit).

The definitions are those of ``/work/wt/_notes/DEFINITIONS.md`` (issue #14), applied to what
really happened: the figure names are the ones agreed there; ``compare.JSON_PATHS`` says where
each one is read in ``analyze --json``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from tests.oracle.world import DAY, Order, Person, World, normalize

Z95 = 1.959963984540054
MAX_FAILED = 3  # consecutive failed attempts after which Stripe gives up (the plan defaults)
UNKNOWN = "(unknown)"
INSTALMENT_FIELDS = ("orders", "paid", "failed", "recovered", "defaulted")


def wilson(successes: int, trials: int) -> tuple[float, float] | None:
    """The Wilson score interval, straight from the formula."""
    if trials == 0:
        return None
    z2, p = Z95 * Z95, successes / trials
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return centre - half, centre + half


def rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


# --- orders ----------------------------------------------------------------------------------


def order_status(order: Order) -> str:
    paid = sum(p.amount for p in order.payments)
    refunded = sum(r.amount for r in order.refunds)
    if order.disputed_at is not None:
        return "disputed"
    if order.refunds and (refunded >= paid or order.instalments > 1):
        return "refunded"
    if not order.payments:
        return "pending"
    if order.instalments == 1:
        return "paid"
    if len(order.payments) >= order.instalments:
        return "completed_plan"
    if order.cancelled_at is not None or _trailing_failures(order) >= MAX_FAILED:
        return "defaulted"
    return "active_plan"


def _trailing_failures(order: Order) -> int:
    """Failed attempts since the last successful payment."""
    last_paid = max((p.at for p in order.payments), default=None)
    return sum(1 for _, _, at in order.failures if last_paid is None or at > last_paid)


def linked_person(world: World, order: Order) -> Person | None:
    """The subscriber of an order: the metadata id, else the typed email normalized."""
    if order.subscriber is not None:
        return world.people[order.subscriber]
    return world.people.get(normalize(order.typed_email))


def buyer_key(world: World, order: Order) -> str:
    person = linked_person(world, order)
    return person.email if person is not None else normalize(order.typed_email)


def tags_now(world: World, person: Person) -> set[str]:
    """The person's tags at analysis time: their own plus what purchases added."""
    tags = set(person.tags)
    for order in world.orders:
        if linked_person(world, order) is not person or not order.payments:
            continue
        tags |= {"buyer", f"buyer:{world.slug}"}
        if order_status(order) == "refunded":
            tags.add("refunded")
    return tags


# --- the figures -----------------------------------------------------------------------------


def audience(world: World) -> list[Person]:
    """Joined at or before cart open and active at cart open (definition 4)."""
    co = world.cart_open
    return [p for p in world.people.values() if p.joined <= co and p.status_at(co) == "active"]


def figures(world: World, segment: str | None = None) -> dict[str, Any]:
    """Every figure, flat: name -> value (group rows as ``by_x[label].field``)."""
    chosen = next((s for s in world.segments if s.name == segment), None) if segment else None

    def in_segment(person: Person | None) -> bool:
        if chosen is None:
            return True
        return person is not None and chosen.matches(tags_now(world, person), person.source)

    members = [p for p in audience(world) if in_segment(p)]
    member_ids = {p.email for p in members}
    counted = [
        o
        for o in world.orders
        if order_status(o) != "pending" and in_segment(linked_person(world, o))
    ]
    pending = [o for o in world.orders if order_status(o) == "pending"]
    buyers = {buyer_key(world, o): linked_person(world, o) for o in counted}
    in_aud = {k for k in buyers if k in member_ids}
    on_list = {k for k, p in buyers.items() if p is not None and k not in member_ids}
    not_on_list = {k for k, p in buyers.items() if p is None}
    ci = wilson(len(in_aud), len(members))
    out: dict[str, Any] = {
        "audience_size": len(members),
        "buyers": len(buyers),
        "buyers_in_audience": len(in_aud),
        "buyers_on_list_outside_audience": len(on_list),
        "buyers_not_on_list": len(not_on_list),
        "conversion_rate": rate(len(in_aud), len(members)),
        "conversion_ci95": list(ci) if ci else None,
        "provisional": world.now < world.cart_close,
        **_revenue(counted),
    }
    if chosen is None:
        out["pending_orders"] = len(pending)
        out.update(_leavers(world))
        out.update(_refunds(world, counted))
        out.update(_plans(counted))
        out.update(_groups(world, members, in_aud))
    return out


def _revenue(counted: list[Order]) -> dict[str, Any]:
    gross = sum(p.amount for o in counted for p in o.payments)
    refunded = sum(r.amount for o in counted for r in o.refunds)
    return {
        "orders": len(counted),
        "gross_revenue_cents": gross,
        "refunded_cents": refunded,
        "fees_cents": None,  # no fee was ever captured: unknown, not 0
        "fees_known_orders": 0,
        "net_revenue_cents": gross - refunded,
        "booked_revenue_cents": sum(o.total for o in counted),
    }


def _leavers(world: World) -> dict[str, Any]:
    """People who unsubscribed / complained within the launch window (definition 12)."""
    start, end = world.prelaunch_start or world.cart_open - 7 * DAY, world.cart_close

    def count(status: str) -> int:
        return sum(
            any(new == status and start <= at <= end for at, new in p.changes)
            for p in world.people.values()
        )

    return {"unsubscribes": count("unsubscribed"), "complaints": count("complained")}


def _refunds(world: World, counted: list[Order]) -> dict[str, Any]:
    refunded = [o for o in counted if o.refunds or order_status(o) == "refunded"]
    days, inside = [], 0
    for order in refunded:
        guarantee = world.offers[order.offer].guarantee_days
        for refund in order.refunds:
            paid = next(p for p in order.payments if p.number == refund.number)
            d = (refund.at - paid.at) / DAY
            days.append(d)
            inside += d <= guarantee
    return {
        "refund_count": len(refunded),
        "refund_rate": rate(len(refunded), len(counted)),
        "refund_amount_cents": sum(r.amount for o in refunded for r in o.refunds),
        "refunds_inside_guarantee": inside,
        "refunds_outside_guarantee": len(days) - inside,
        "refund_timing_unknown": 0,
        "refund_days": sorted(days),
    }


def _plans(counted: list[Order]) -> dict[str, Any]:
    plans = [o for o in counted if o.instalments > 1]
    status = [order_status(o) for o in plans]
    recovered = 0
    for order in plans:
        for paid in order.payments:
            recovered += any(n == paid.number and at < paid.at for n, _, at in order.failures)
    completed = sum(len(o.payments) >= o.instalments for o in plans)
    return {
        **_by_instalment(plans),
        "plan_orders": len(plans),
        "plan_instalments_expected": sum(o.instalments for o in plans),
        "plan_instalments_paid": sum(len(o.payments) for o in plans),
        "plans_completed": completed,
        "plans_active": status.count("active_plan"),
        "plans_defaulted": status.count("defaulted"),
        "plan_completion_rate": rate(completed, len(plans)),
        "plan_failed_payments": sum(len(o.failures) for o in plans),
        "plan_recovered_payments": recovered,
    }


def _by_instalment(plans: list[Order]) -> dict[str, Any]:
    """Per instalment number: orders charged (paid or failed), paid, failed, recovered (paid
    after a failure) and defaulted (failed, never paid, and the plan defaulted: a failure still
    being retried is not a default)."""
    rows: dict[int, dict[str, Any]] = {}
    for order in plans:
        gave_up = order_status(order) == "defaulted"
        for number in range(1, order.instalments + 1):
            paid = [p.at for p in order.payments if p.number == number]
            failed = [at for n, _, at in order.failures if n == number]
            if not paid and not failed:
                continue
            row = rows.setdefault(number, dict.fromkeys(INSTALMENT_FIELDS, 0))
            row["orders"] += 1
            row["paid"] += bool(paid)
            row["failed"] += bool(failed)
            row["recovered"] += bool(paid and failed and min(failed) < paid[0])
            row["defaulted"] += bool(failed and not paid and gave_up)
    out: dict[str, Any] = {"plan_by_instalment:labels": sorted(str(n) for n in rows)}
    for number, row in rows.items():
        row["default_rate"] = rate(row["defaulted"], row["orders"])
        for name, value in row.items():
            out[f"plan_by_instalment[{number}].{name}"] = value
    return out


def _groups(world: World, members: list[Person], buyers: set[str]) -> dict[str, Any]:
    groups: dict[str, dict[str, list[Person]]] = defaultdict(lambda: defaultdict(list))
    for person in members:
        tags = tags_now(world, person)
        groups["by_source"][person.source or UNKNOWN].append(person)
        groups["by_cohort"][person.joined.strftime("%Y-%m")].append(person)
        for tag in tags:
            if tag.startswith("magnet:"):
                groups["by_magnet"][tag.removeprefix("magnet:")].append(person)
            else:
                groups["by_tag"][tag].append(person)
        for segment in world.segments:
            if segment.matches(tags, person.source):
                groups["by_segment"][segment.name].append(person)
    out: dict[str, Any] = {}
    for key in ("by_source", "by_cohort", "by_tag", "by_magnet", "by_segment"):
        out[f"{key}:labels"] = sorted(groups[key])
        for label, people in groups[key].items():
            n, b = len(people), sum(p.email in buyers for p in people)
            ci = wilson(b, n)
            assert ci is not None
            row = {"audience": n, "buyers": b, "conversion_rate": rate(b, n)}
            row |= {"ci95_low": ci[0], "ci95_high": ci[1]}
            for name, value in row.items():
                out[f"{key}[{label}].{name}"] = value
    return out
