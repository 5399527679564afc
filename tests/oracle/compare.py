"""Compare the oracle's figures with ``analyze --json``: one mapping table, a readable diff.

``JSON_PATHS`` maps each figure named in DEFINITIONS.md (issue #14) to where ``analyze --json``
puts it. Keys that do not exist yet are written under their DEFINITIONS.md name, so aligning
after the ``figures`` branch lands means editing this table only. ``GROUPS`` maps the per-group
rows (``by_source``...) to the JSON list and the field that names each row.
"""

from __future__ import annotations

import math
from typing import Any

JSON_PATHS: dict[str, tuple[str, ...]] = {
    # audience and buyers (definitions 4-7)
    "audience_size": ("audience_size",),
    "buyers": ("buyers",),
    "buyers_in_audience": ("buyers_in_audience",),
    "buyers_on_list_outside_audience": ("buyers_on_list_outside_audience",),  # not yet in JSON
    "buyers_not_on_list": ("buyers_not_on_list",),  # not yet in JSON
    "conversion_rate": ("conversion_rate",),
    "conversion_ci95": ("conversion_ci95",),
    "provisional": ("provisional",),  # definition 11, not yet in JSON
    # people who left during the launch window (definition 12)
    "unsubscribes": ("emails", "unsubscribed"),
    "complaints": ("emails", "complaints"),
    # orders and revenue (definitions 5 and 10)
    "orders": ("orders",),
    "pending_orders": ("pending_orders",),  # not yet in JSON
    "gross_revenue_cents": ("gross_revenue_cents",),
    "refunded_cents": ("refunded_cents",),
    "fees_cents": ("fees_cents",),  # null when no fee is known
    "fees_known_orders": ("fees_known_orders",),
    "net_revenue_cents": ("net_revenue_cents",),
    "booked_revenue_cents": ("booked_revenue_cents",),
    # refunds (definition 9)
    "refund_count": ("refunds", "count"),
    "refund_rate": ("refunds", "rate"),
    "refund_amount_cents": ("refunds", "amount_cents"),
    "refunds_inside_guarantee": ("refunds", "inside_guarantee"),
    "refunds_outside_guarantee": ("refunds", "outside_guarantee"),
    "refund_timing_unknown": ("refunds", "timing_unknown"),
    "refund_days": ("refunds", "days"),
    # payment plans
    "plan_orders": ("payment_plans", "orders"),
    "plan_instalments_expected": ("payment_plans", "instalments_expected"),
    "plan_instalments_paid": ("payment_plans", "instalments_paid"),
    "plans_completed": ("payment_plans", "completed"),
    "plans_active": ("payment_plans", "active"),
    "plans_defaulted": ("payment_plans", "defaulted"),
    "plan_completion_rate": ("payment_plans", "completion_rate"),
    "plan_failed_payments": ("payment_plans", "failed_payments"),
    "plan_recovered_payments": ("payment_plans", "recovered_payments"),
}
GROUPS: dict[str, tuple[tuple[str, ...], str]] = {  # prefix -> (JSON list, field naming rows)
    "by_source": (("by_source",), "source"),
    "by_cohort": (("by_cohort",), "cohort"),
    "by_tag": (("by_tag",), "tag"),
    "by_magnet": (("by_magnet",), "magnet"),
    "by_segment": (("by_segment",), "segment"),
    "plan_by_instalment": (("payment_plans", "by_instalment"), "instalment"),
}
RATE_TOLERANCE = 1e-9
DAYS_TOLERANCE = 0.005 + 1e-9  # the JSON rounds days to 2 decimals
MISSING = "<missing>"


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return data


def actual(result: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The JSON's value for every figure the oracle computed."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for prefix, (path, label) in GROUPS.items():
        found = _lookup(result, path)
        rows[prefix] = {str(r[label]): r for r in found} if isinstance(found, list) else {}
    got: dict[str, Any] = {}
    for name in wanted:
        if name in JSON_PATHS:
            got[name] = _lookup(result, JSON_PATHS[name])
        elif name.endswith(":labels"):
            prefix = name.removesuffix(":labels")
            found = _lookup(result, GROUPS[prefix][0])
            got[name] = sorted(rows[prefix]) if isinstance(found, list) else MISSING
        else:  # by_x[label].field
            prefix, rest = name.split("[", 1)
            label, field = rest.rsplit("].", 1)
            got[name] = rows[prefix].get(label, {}).get(field, MISSING)
    return got


def same(name: str, expected: Any, got: Any) -> bool:
    if got is MISSING or isinstance(got, str) and got == MISSING:
        return False
    if expected is None or got is None:
        return expected is None and got is None
    if name == "refund_days":
        return len(expected) == len(got) and all(
            abs(e - g) <= DAYS_TOLERANCE for e, g in zip(expected, got, strict=True)
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(expected) == len(got)
            and all(same(name, e, g) for e, g in zip(expected, got, strict=True))
        )
    if isinstance(expected, bool) or isinstance(expected, str):
        return expected == got
    if isinstance(expected, float):
        return isinstance(got, int | float) and math.isclose(
            expected, got, rel_tol=0, abs_tol=RATE_TOLERANCE
        )
    return type(got) is int and expected == got  # cents and counts: exact integers


def differences(wanted: dict[str, Any], result: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    got = actual(result, wanted)
    return [(n, wanted[n], got[n]) for n in wanted if not same(n, wanted[n], got[n])]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return str(value)


def table(title: str, diffs: list[tuple[str, Any, Any]], total: int) -> str:
    """A readable table: figure, expected, got."""
    lines = [f"{title}: {len(diffs)} of {total} figures differ"]
    if not diffs:
        return lines[0]
    width = max(len(n) for n, _, _ in diffs)
    lines.append(f"  {'figure'.ljust(width)}  expected | got")
    for name, expected, got in diffs:
        lines.append(f"  {name.ljust(width)}  {_show(expected)} | {_show(got)}")
    return "\n".join(lines)
