"""The analysis of a membership launch: members joined, trial to paid, MRR and its monthly
movements, logo and revenue churn, retention by month since joining and by cohort, LTV, refunds
inside the guarantee. Definitions: docs/readme/60-analysis.md ("Membership launches").

``load_members`` reads three small frames with SQL (one row per membership, one per plan
switch, payments and refunds summed per membership); ``membership_figures`` computes every
figure from them with vectorised pandas/numpy. All times are UTC; MRR is in cents per month
(a yearly price counts /12), rounded to whole cents only when reported.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit.analysis.definitions import wilson_interval
from launchkit.analysis.load import _frame
from launchkit.models import (
    Launch,
    Membership,
    MembershipEvent,
    Offer,
    Order,
    Refund,
    Subscriber,
)

NEVER = np.datetime64("2262-01-01T00:00:00", "ns")
MOVEMENTS = ("new", "reactivated", "expansion", "contraction", "churned")


def monthly_cents(interval: Any, amount: Any) -> Any:
    """MRR of one price: the amount per month (a yearly amount /12)."""
    return np.where(np.asarray(interval) == "year", np.asarray(amount) / 12.0, np.asarray(amount))


def cents(mrr: Any) -> int:
    """An MRR amount (sums of prices and prices /12) in whole cents, rounded half up; counted in
    twelfths of a cent first, so float error cannot move a half cent either way."""
    return (int(round(float(mrr) * 12)) + 6) // 12


def _half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)) // 1)


# --- loading ----------------------------------------------------------------------------------


def load_members(session: Session, launch: Launch) -> dict[str, pd.DataFrame]:
    """Every membership (the launch's, and the others of the same people, for reactivations)
    with its order's person and paid total, the prices it had (joined, plan switches), and the
    refunds of membership orders. Rows come straight from the driver (see ``load._frame``)."""
    conn = session.connection()
    cols = [
        Membership.id, Membership.launch_id, Membership.started_at, Membership.paid_at,
        Membership.interval, Membership.amount_cents, Membership.trial_end, Membership.ended_at,
        Membership.currency, Order.subscriber_id, Order.email, Order.paid_cents,
        Offer.guarantee_days, Subscriber.email.label("subscriber_email"),
    ]  # fmt: skip
    members = _frame(
        conn, sa.select(*cols).join(Order, Order.id == Membership.order_id)
        .outerjoin(Offer, Offer.id == Membership.offer_id)
        .outerjoin(Subscriber, Subscriber.id == Order.subscriber_id),
        ("started_at", "paid_at", "trial_end", "ended_at"),
    )  # fmt: skip
    prices = (
        sa.select(MembershipEvent.membership_id, MembershipEvent.interval,
                  MembershipEvent.amount_cents, MembershipEvent.occurred_at)
        .where(MembershipEvent.kind.in_(["joined", "snapshot"]),
               MembershipEvent.interval.is_not(None))
    )  # fmt: skip
    plans = _frame(conn, prices, ("occurred_at",))
    refunds = _frame(
        conn,
        sa.select(Membership.id.label("membership_id"), Refund.amount_cents, Refund.refunded_at)
        .join(Refund, Refund.order_id == Membership.order_id)
        .where(Refund.status == "succeeded"),
        ("refunded_at",),
    )  # fmt: skip
    members["person"] = _persons(members)
    return {"members": members, "plans": plans, "refunds": refunds}


def _persons(members: pd.DataFrame) -> pd.Series:
    """A person: their address, the subscriber's when the order is linked to one, else the
    order's (stored normalized, as imports normalize it). The same person is found whether or
    not one of their orders was linked: someone who bought before joining the list and came
    back from it is one person, not two."""
    address = members["subscriber_email"].where(
        members["subscriber_email"].notna(), members["email"]
    )
    return "e" + address.astype(str)


# --- figures ----------------------------------------------------------------------------------


def _ns(values: Any) -> np.ndarray:
    """datetime-like values -> naive UTC datetime64[ns] (NaT kept)."""
    series = pd.to_datetime(pd.Series(values), utc=True)
    return series.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _month_starts(first: np.datetime64, now: np.datetime64) -> np.ndarray:
    start = pd.Timestamp(first).to_period("M").to_timestamp()
    end = pd.Timestamp(now).to_period("M").to_timestamp()
    return pd.date_range(start, end, freq="MS").to_numpy(dtype="datetime64[ns]")


def whole_months(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Whole calendar months from ``start`` to ``end`` (a month is complete when the same
    day of month and time of day is reached)."""
    s, e = pd.DatetimeIndex(start), pd.DatetimeIndex(end)
    months = (e.year - s.year) * 12 + (e.month - s.month)
    s_rest = (s - s.to_period("M").to_timestamp()).to_numpy()
    e_rest = (e - e.to_period("M").to_timestamp()).to_numpy()
    return np.asarray(months - (e_rest < s_rest), dtype="int64")


def mrr_matrix(members: pd.DataFrame, plans: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """MRR (cents, float) of each membership at each time: its price in force then, counted
    from its first payment (a trial is not revenue) until it ends."""
    ids = members["id"].to_numpy()
    paid = _ns(members["paid_at"])
    ended = _ns(members["ended_at"])
    ended = np.where(np.isnat(ended), NEVER, ended)
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    steps = plans[plans["membership_id"].isin(row_of.index)]
    steps = steps.assign(at=_ns(steps["occurred_at"]),
                         mrr=monthly_cents(steps["interval"], steps["amount_cents"]))  # fmt: skip
    steps = steps.sort_values(["membership_id", "at"], kind="stable")
    base = monthly_cents(members["interval"], members["amount_cents"]).astype(float)
    first = steps.drop_duplicates("membership_id", keep="first")  # the price at joining
    base[row_of[first["membership_id"]].to_numpy()] = first["mrr"].to_numpy()
    previous = steps.groupby("membership_id")["mrr"].shift()
    changes = steps[previous.notna() & (steps["mrr"] != previous)]  # plan switches only
    change_rows = row_of[changes["membership_id"]].to_numpy()
    change_at, change_mrr = changes["at"].to_numpy(), changes["mrr"].to_numpy()
    result = np.zeros((len(ids), len(times)))
    for col, t in enumerate(times):
        current = base.copy()
        before = change_at <= t  # sorted by membership then time: the last one wins
        current[change_rows[before]] = change_mrr[before]
        live = ~np.isnat(paid) & (paid <= t) & (t < ended)
        result[:, col] = np.where(live, current, 0.0)
    return result


def mrr_movements(
    members: pd.DataFrame, matrix: np.ndarray, bounds: np.ndarray, everyone: pd.DataFrame
) -> list[dict[str, Any]]:
    """Per month: each person's MRR at the month's start against its end (or now); a person
    whose first payment (any membership, any launch: ``everyone``) came before is reactivated."""
    person = pd.Series(members["person"].to_numpy())
    per_person = pd.DataFrame(matrix).groupby(person.to_numpy()).sum()
    first_paid = pd.Series(_ns(everyone["paid_at"])).groupby(everyone["person"].to_numpy()).min()
    first_paid = first_paid.reindex(per_person.index).to_numpy()
    out = []
    for k in range(len(bounds) - 1):
        before, after = per_person[k].to_numpy(), per_person[k + 1].to_numpy()
        starts = (before == 0) & (after > 0)
        new = starts & (first_paid >= bounds[k])
        up = (before > 0) & (after > before)
        down = (after > 0) & (after < before)
        gone = (before > 0) & (after == 0)
        out.append({
            "new": after[new].sum(), "reactivated": after[starts & ~new].sum(),
            "expansion": (after - before)[up].sum(), "contraction": (before - after)[down].sum(),
            "churned": before[gone].sum(),
        })  # fmt: skip
    return out


def churn_by_month(
    members: pd.DataFrame, matrix: np.ndarray, bounds: np.ndarray, moves: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Logo churn: memberships paying at the month's start whose end falls in the month, over
    those paying at its start; revenue churn: churned + contraction MRR over MRR at its start."""
    ended = _ns(members["ended_at"])
    out = []
    for k in range(len(bounds) - 1):
        paying = matrix[:, k] > 0
        gone = paying & ~np.isnat(ended) & (ended >= bounds[k]) & (ended < bounds[k + 1])
        start_mrr = matrix[:, k].sum()
        lost = moves[k]["churned"] + moves[k]["contraction"]
        out.append({
            "members_at_start": int(paying.sum()), "cancellations": int(gone.sum()),
            "logo_churn": float(gone.sum() / paying.sum()) if paying.any() else 0.0,
            "mrr_at_start": start_mrr,
            "revenue_churn": float(lost / start_mrr) if start_mrr > 0 else 0.0,
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
    cohort = pd.DatetimeIndex(start).strftime("%Y-%m").to_numpy()
    curve = []
    for k in range(int(observed.max()) + 1):
        eligible = observed >= k
        kept = eligible & (lived >= k)
        curve.append({"month": k, "eligible": int(eligible.sum()), "retained": int(kept.sum()),
                      "rate": float(kept.sum() / eligible.sum())})  # fmt: skip
    table = []
    for name in sorted(set(cohort)):
        inside = cohort == name
        rates = []
        for k in range(int(observed[inside].max()) + 1):
            eligible = inside & (observed >= k)
            rates.append(float(((lived >= k) & eligible).sum() / eligible.sum()))
        table.append({"cohort": name, "members": int(inside.sum()), "retention": rates})
    return curve, table


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
        {"month": m, **{k: cents(v) for k, v in moves[i].items()},
         **{**churn[i], "mrr_at_start": cents(churn[i]["mrr_at_start"])},
         "partial": i == len(months) - 1}
        for i, m in enumerate(months)
    ]  # fmt: skip
    return {
        "members_joined": int(len(members)),
        "paying_members": int(paid_at.notna().sum()),
        "members_now": int((matrix[:, -2] > 0).sum()),
        "trial": _trial(members, now64),
        "mrr_at_cart_close": cents(matrix[:, -1].sum()),
        "mrr_now": cents(matrix[:, -2].sum()),
        "mrr_by_month": monthly,
        "retention_curve": curve,
        "cohorts": cohorts,
        "ltv": _ltv(matrix[:, -2], churn[:-1]),
        "refunds_inside_guarantee": _guarantee_refunds(members, frames["refunds"]),
        "revenue_cents": int(members["paid_cents"].sum()),
    }  # fmt: skip


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
    twelfths = int(round(float(mrr_now.sum()) * 12))
    arpu = Fraction(twelfths, 12 * paying) if paying else Fraction(0)
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
