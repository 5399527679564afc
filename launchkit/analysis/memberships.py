"""The analysis of a membership launch: members joined, trial to paid, MRR and its monthly
movements, logo and revenue churn, retention by month since joining and by cohort, LTV, refunds
inside the guarantee. Definitions: docs/readme/60-analysis.md ("Membership launches").

``load_members`` reads three small frames with SQL (one row per membership, one per plan
switch, payments and refunds summed per membership); ``membership_figures`` computes every
figure from them with vectorised numpy (no Python loop over members). All times are UTC; MRR
is in cents per month (a yearly price counts /12), computed in whole twelfths of a cent so that
every sum is exact whatever its order, and rounded to whole cents only when reported.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from launchkit.analysis.definitions import wilson_interval
from launchkit.db import UTCDateTime
from launchkit.models import Launch, Membership, MembershipEvent, Offer, Order, Refund, Subscriber

NEVER = np.datetime64("2262-01-01T00:00:00", "ns")
MOVEMENTS = ("new", "reactivated", "expansion", "contraction", "churned")
TWELFTHS = 12  # MRR is counted in twelfths of a cent: a yearly price /12 stays whole


def monthly_twelfths(interval: Any, amount: Any) -> np.ndarray:
    """MRR of prices in twelfths of a cent: a monthly amount x 12, a yearly amount as is."""
    amount = np.asarray(amount, dtype="int64")
    return np.where(np.asarray(interval) == "year", amount, amount * TWELFTHS)


def _half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)) // 1)


# --- loading ----------------------------------------------------------------------------------

# the type of each loaded column: numbers (NaN for NULL), text (object), or UTC times
_NUMBER, _TEXT, _TIME = "number", "text", "time"


def load_members(session: Session, launch: Launch) -> dict[str, pd.DataFrame]:
    """Every membership (the launch's, and the others of the same people, for reactivations)
    with its order's person and paid total, the prices it had (joined, plan switches), and the
    refunds of membership orders: one query per frame, only the columns the figures use."""
    conn = session.connection()
    members = _read(conn, _MEMBERS)
    members["person"] = _persons(members)
    return {"members": members, "plans": _read(conn, _PLANS), "refunds": _read(conn, _REFUNDS)}


_MEMBERS = (
    sa.select(
        Membership.id,
        Membership.launch_id,
        Membership.started_at,
        Membership.paid_at,
        Membership.interval,
        Membership.amount_cents,
        Membership.trial_end,
        Membership.ended_at,
        Order.subscriber_id,
        Order.email,
        Order.paid_cents,
        Offer.guarantee_days,
        Subscriber.email.label("subscriber_email"),
    )  # fmt: skip
    .join(Order, Order.id == Membership.order_id)
    .outerjoin(Offer, Offer.id == Membership.offer_id)
    .outerjoin(Subscriber, Subscriber.id == Order.subscriber_id)
)
_PLANS = sa.select(
    MembershipEvent.membership_id,
    MembershipEvent.interval,
    MembershipEvent.amount_cents,
    MembershipEvent.occurred_at,
).where(MembershipEvent.kind.in_(["joined", "snapshot"]), MembershipEvent.interval.is_not(None))
_REFUNDS = (
    sa.select(Membership.id.label("membership_id"), Refund.amount_cents, Refund.refunded_at)
    .join(Refund, Refund.order_id == Membership.order_id)
    .where(Refund.status == "succeeded")
)


def _read(conn: Connection, stmt: sa.Select[Any]) -> pd.DataFrame:
    """Run one query and build its frame column by column from the driver's rows (no ORM
    objects, no per-row processing): numbers as int64 (float with NaN when one is NULL), text
    as objects, times parsed to UTC in one pass (ISO text on SQLite, datetimes on PostgreSQL)."""
    result = conn.execute(stmt)
    names = list(result.keys())
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    table = np.array(rows, dtype=object).reshape(len(rows), len(names))
    kinds = [_kind(column.type) for column in stmt.selected_columns]
    return pd.DataFrame({name: _column(kinds[i], table[:, i]) for i, name in enumerate(names)})


def _kind(column_type: Any) -> str:
    """How a column of this SQL type is loaded."""
    if isinstance(column_type, UTCDateTime | sa.DateTime):
        return _TIME
    if isinstance(column_type, sa.Integer | sa.Numeric):
        return _NUMBER
    return _TEXT


def _column(kind: str, values: np.ndarray) -> Any:
    """One loaded column from the driver's values (an object array)."""
    if kind == _TIME:  # cache=False: a cache only pays with few distinct times
        return pd.to_datetime(values, utc=True, format="ISO8601", cache=False)
    if kind == _NUMBER:
        try:
            return values.astype("int64")
        except TypeError:  # a NULL: floats, NaN for NULL
            return values.astype(float)
    return pd.Series(values, dtype=object)


def _persons(members: pd.DataFrame) -> np.ndarray:
    """A person, as an integer code of their address: the subscriber's when the order is linked
    to one, else the order's (stored normalized, as imports normalize it). The same person is
    found whether or not one of their orders was linked: someone who bought before joining the
    list and came back from it is one person, not two."""
    linked = members["subscriber_email"].to_numpy(dtype=object)
    address = np.where(pd.isna(linked), members["email"].to_numpy(dtype=object), linked)
    return pd.factorize(address)[0].astype("int64")


# --- figures ----------------------------------------------------------------------------------


def _ns(values: Any) -> np.ndarray:
    """datetime-like values -> naive UTC datetime64[ns] (NaT kept)."""
    series = pd.to_datetime(pd.Series(values), utc=True)
    return series.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _month_starts(first: np.datetime64, now: np.datetime64) -> np.ndarray:
    start, end = np.datetime64(first, "M"), np.datetime64(now, "M")
    return np.arange(start, end + 1).astype("datetime64[ns]")


def whole_months(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Whole calendar months from ``start`` to ``end`` (a month is complete when the same
    day of month and time of day is reached)."""
    s, e = np.asarray(start, "datetime64[ns]"), np.asarray(end, "datetime64[ns]")
    s_month, e_month = s.astype("datetime64[M]"), e.astype("datetime64[M]")
    months = (e_month - s_month).astype("int64")
    s_rest = s - s_month.astype("datetime64[ns]")
    e_rest = e - e_month.astype("datetime64[ns]")
    return months - (e_rest < s_rest)


def mrr_matrix(members: pd.DataFrame, plans: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """MRR of each membership (rows) at each time (columns), in twelfths of a cent (int64): its
    price in force then, counted from its first payment (a trial is not revenue) until it ends.
    Column-major: the memberships of one time are contiguous."""
    paid = _ns(members["paid_at"])
    ended = _ns(members["ended_at"])
    ended = np.where(np.isnat(ended), NEVER, ended)
    base, (change_rows, change_at, change_mrr) = _prices(members, plans)
    when = np.asarray(times, "datetime64[ns]")[:, None]
    live = ~np.isnat(paid) & (paid <= when) & (when < ended)  # (times, memberships)
    result = np.where(live, base, 0)
    for col, t in enumerate(when[:, 0]):
        before = change_at <= t  # sorted by membership then time: its last one is in force
        rows, mrr = change_rows[before], change_mrr[before]
        last = np.append(rows[1:] != rows[:-1], True) if len(rows) else rows.astype(bool)
        rows, mrr = rows[last], mrr[last]
        in_force = live[col, rows]
        result[col, rows[in_force]] = mrr[in_force]
    return result.T


def _prices(
    members: pd.DataFrame, plans: pd.DataFrame
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each membership's MRR at joining (its first price on record, else its price now), and
    its plan switches (row, time, new MRR) sorted by membership then time; in twelfths."""
    ids = members["id"].to_numpy(dtype="int64")
    order = np.argsort(ids, kind="stable")
    known = plans["membership_id"].to_numpy(dtype="int64")
    rows = order[np.minimum(np.searchsorted(ids, known, sorter=order), len(ids) - 1)]
    inside = ids[rows] == known
    rows, at = rows[inside], _ns(plans["occurred_at"])[inside]
    mrr = monthly_twelfths(plans["interval"].to_numpy()[inside],
                           plans["amount_cents"].to_numpy()[inside])  # fmt: skip
    steps = np.lexsort((at, rows))  # by membership, then time (ties: as loaded)
    rows, at, mrr = rows[steps], at[steps], mrr[steps]
    base = monthly_twelfths(members["interval"].to_numpy(), members["amount_cents"].to_numpy())
    first = np.append(True, rows[1:] != rows[:-1]) if len(rows) else rows.astype(bool)
    base[rows[first]] = mrr[first]
    switch = ~first
    switch[1:] &= mrr[1:] != mrr[:-1]  # a new price: a plan switch
    return base, (rows[switch], at[switch], mrr[switch])


def mrr_movements(
    members: pd.DataFrame, matrix: np.ndarray, bounds: np.ndarray, everyone: pd.DataFrame
) -> list[dict[str, int]]:
    """Per month, in twelfths of a cent: each person's MRR at the month's start against its
    end (or now); a person whose first payment (any membership, any launch: ``everyone``) came
    before the month is reactivated, else new."""
    codes, people = pd.factorize(
        np.concatenate([everyone["person"].to_numpy(), members["person"].to_numpy()])
    )
    own, theirs = codes[len(everyone) :], codes[: len(everyone)]
    per_person = np.stack([  # exact: whole numbers of twelfths, far below 2**53
        np.bincount(own, weights=matrix[:, k], minlength=len(people))
        for k in range(matrix.shape[1])
    ])  # fmt: skip
    never = np.iinfo("int64").max  # no payment yet (a person who starts paying has one)
    paid = _ns(everyone["paid_at"])
    first_paid = np.full(len(people), never)
    np.minimum.at(first_paid, theirs, np.where(np.isnat(paid), never, paid.view("int64")))
    out = []
    for k in range(len(bounds) - 1):
        before, after = per_person[k], per_person[k + 1]
        starts = (before == 0) & (after > 0)
        new = starts & (first_paid >= bounds[k].astype("datetime64[ns]").view("int64"))
        up = (before > 0) & (after > before)
        down = (after > 0) & (after < before)
        gone = (before > 0) & (after == 0)
        out.append({
            "new": after[new].sum(), "reactivated": after[starts & ~new].sum(),
            "expansion": (after - before)[up].sum(), "contraction": (before - after)[down].sum(),
            "churned": before[gone].sum(),
        })  # fmt: skip
    return [{name: int(value) for name, value in month.items()} for month in out]


def churn_by_month(
    members: pd.DataFrame, matrix: np.ndarray, bounds: np.ndarray, moves: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Logo churn: memberships paying at the month's start whose end falls in the month, over
    those paying at its start; revenue churn: churned + contraction MRR over MRR at its start
    (``mrr_at_start`` in twelfths of a cent, as ``matrix`` and ``moves``)."""
    ended = _ns(members["ended_at"])
    month_of_end = np.searchsorted(bounds, ended, side="right") - 1  # NaT sorts last
    month_of_end[np.isnat(ended)] = -1
    out = []
    for k in range(len(bounds) - 1):
        paying = matrix[:, k] > 0
        gone = paying & (month_of_end == k)
        start_mrr = int(matrix[:, k].sum())
        lost = moves[k]["churned"] + moves[k]["contraction"]
        out.append({
            "members_at_start": int(paying.sum()), "cancellations": int(gone.sum()),
            "logo_churn": float(gone.sum() / paying.sum()) if paying.any() else 0.0,
            "mrr_at_start": start_mrr,
            "revenue_churn": lost / start_mrr if start_mrr > 0 else 0.0,
        })  # fmt: skip
    return out


def retention(members: pd.DataFrame, now: np.datetime64) -> tuple[list, list]:
    """Retention by whole months since the first payment: of the paying members observed for
    at least k months, the share still members k months after joining; and per cohort."""
    paying = members[members["paid_at"].notna()]
    if paying.empty:
        return [], []
    start = _ns(paying["paid_at"])
    ended = _ns(paying["ended_at"])
    observed = whole_months(start, np.full(len(start), now))
    # still a member k months after joining: the end comes after that moment, so the months
    # are counted to just before the end (a period ending on the day and time it renews
    # would otherwise count the month the member did not stay for)
    before_end = np.where(np.isnat(ended), now, ended - np.timedelta64(1, "ns"))
    lived = np.where(np.isnat(ended), observed, whole_months(start, before_end))
    kept = np.minimum(observed, lived)  # retained at k: observed >= k and lived >= k
    curve = [
        {"month": k, "eligible": e, "retained": r, "rate": float(r / e)}
        for k, (e, r) in enumerate(_at_least(observed, kept, int(observed.max()) + 1))
    ]
    month = start.astype("datetime64[M]")
    table = []
    for name in np.unique(month):
        inside = month == name
        counts = _at_least(observed[inside], kept[inside], int(observed[inside].max()) + 1)
        table.append({"cohort": str(name), "members": int(inside.sum()),
                      "retention": [float(r / e) for e, r in counts]})  # fmt: skip
    return curve, table


def _at_least(observed: np.ndarray, kept: np.ndarray, months: int) -> list[tuple[int, int]]:
    """(how many observed >= k, how many kept >= k) for k = 0 .. months - 1."""

    def counts(values: np.ndarray) -> np.ndarray:
        found = np.bincount(np.clip(values, -1, months - 1) + 1, minlength=months + 1)
        return found[::-1].cumsum()[::-1][1:]  # k >= 0 only

    return list(zip(counts(observed).tolist(), counts(kept).tolist(), strict=True))


def membership_figures(
    frames: dict[str, pd.DataFrame], launch: Launch, now: datetime
) -> dict[str, Any] | None:
    """Every membership figure of ``launch`` (None when it sold no membership)."""
    everyone = frames["members"]
    members = everyone[everyone["launch_id"] == launch.id].reset_index(drop=True)
    if members.empty:
        return None
    now64 = _ns([now])[0]
    close64 = _ns([launch.cart_close])[0]
    paid_at = members["paid_at"]
    first = _ns(members["started_at"]).min()
    bounds = np.concatenate([_month_starts(first, now64), [now64]])
    matrix = mrr_matrix(members, frames["plans"], np.concatenate([bounds, [close64]]))
    moves = mrr_movements(members, matrix[:, :-1], bounds, everyone)
    churn = churn_by_month(members, matrix[:, :-1], bounds, moves)
    curve, cohorts = retention(members, now64)
    months = pd.DatetimeIndex(bounds[:-1]).strftime("%Y-%m")
    monthly = [
        {"month": m, **{k: _cents(v) for k, v in moves[i].items()},
         **{**churn[i], "mrr_at_start": _cents(churn[i]["mrr_at_start"])},
         "partial": i == len(months) - 1}
        for i, m in enumerate(months)
    ]  # fmt: skip
    return {
        "members_joined": int(len(members)),
        "paying_members": int(paid_at.notna().sum()),
        "members_now": int((matrix[:, -2] > 0).sum()),
        "trial": _trial(members, now64),
        "mrr_at_cart_close": _cents(matrix[:, -1].sum()),
        "mrr_now": _cents(matrix[:, -2].sum()),
        "mrr_by_month": monthly,
        "retention_curve": curve,
        "cohorts": cohorts,
        "ltv": _ltv(matrix[:, -2], churn[:-1]),
        "refunds_inside_guarantee": _guarantee_refunds(members, frames["refunds"]),
        "revenue_cents": int(members["paid_cents"].sum()),
    }  # fmt: skip


def _cents(twelfths: Any) -> int:
    """Twelfths of a cent -> whole cents (rounded half up, once, when reported)."""
    return (int(twelfths) + TWELFTHS // 2) // TWELFTHS


def _trial(members: pd.DataFrame, now: np.datetime64) -> dict[str, Any]:
    """Trials over by now, and how many became paying members."""
    trial_end = _ns(members["trial_end"])
    over = ~np.isnat(trial_end) & (trial_end <= now)
    paid = members["paid_at"].notna().to_numpy()
    converted = int((over & paid).sum())
    ci = wilson_interval(converted, int(over.sum()))
    return {"trials": int((~np.isnat(trial_end)).sum()), "trials_over": int(over.sum()),
            "converted": converted,
            "conversion_rate": float(converted / over.sum()) if over.any() else 0.0,
            "conversion_ci95": list(ci) if ci else None}  # fmt: skip


def _ltv(mrr_now: np.ndarray, complete: list[dict[str, Any]]) -> dict[str, Any]:
    """ARPU now over the average monthly logo churn of the complete months (Wilson 95 %),
    computed exactly (MRR in twelfths of a cent) and rounded half up to whole cents."""
    paying = int((mrr_now > 0).sum())
    arpu = Fraction(int(mrr_now.sum()), TWELFTHS * paying) if paying else Fraction(0)
    lost = sum(row["cancellations"] for row in complete)
    exposed = sum(row["members_at_start"] for row in complete)
    churn = lost / exposed if exposed else 0.0
    ci = wilson_interval(lost, exposed)
    ltv = _half_up(arpu * exposed / lost) if lost else None
    interval = None
    if ci is not None:
        high = _half_up(arpu / Fraction(ci[0])) if ci[0] > 0 else None
        interval = [_half_up(arpu / Fraction(ci[1])) if ci[1] > 0 else None, high]
    return {"arpu_cents": _half_up(arpu), "monthly_churn": churn, "ltv_cents": ltv,
            "ltv_ci95": interval}  # fmt: skip


def _guarantee_refunds(members: pd.DataFrame, refunds: pd.DataFrame) -> dict[str, int]:
    """Refunds of memberships within the offer's guarantee days of the first payment."""
    if refunds.empty:
        return {"count": 0, "cents": 0}
    merged = refunds.merge(
        members[["id", "paid_at", "guarantee_days"]], left_on="membership_id", right_on="id"
    )
    if merged.empty:
        return {"count": 0, "cents": 0}
    days = (_ns(merged["refunded_at"]) - _ns(merged["paid_at"])) / np.timedelta64(1, "D")
    inside = days <= merged["guarantee_days"].fillna(0).to_numpy()
    return {"count": int(merged.loc[inside, "membership_id"].nunique()),
            "cents": int(merged.loc[inside, "amount_cents"].sum())}  # fmt: skip


def analyze_memberships(session: Session, launch: Launch, now: datetime) -> dict[str, Any] | None:
    """The ``membership`` section of ``analyze --json`` (None for a launch without members)."""
    return membership_figures(load_members(session, launch), launch, now)
