"""Forecast a launch by Monte Carlo simulation from past launches (or the field benchmark).

Each of ``simulations`` draws (seeded, so a forecast is reproducible):

1. pick one past launch at random (so the spread between launches is kept), and draw its
   conversion rate from the Beta(1 + buyers, 1 + audience - buyers) posterior; with no past
   launch, draw it uniformly from the field band (0.5% to 2% of the list);
2. buyers ~ Binomial(audience, rate);
3. refunds ~ Binomial(buyers, refund rate), the refund rate drawn from Beta(1 + refunded orders,
   1 + orders - refunded orders) pooled over the past launches (benchmark: Beta(2, 38), mean 5%);
4. among the others, plan buyers ~ Binomial(kept, plan share) and defaulters ~ Binomial(plan
   buyers, default rate), both from Beta posteriors of past counts (benchmark: no plans);
   a defaulter is counted as paying one instalment of three (a third of the price);
5. net revenue = price x (kept buyers - defaulters + defaulters x collected share), less the
   past fee ratio (known fees / gross of the orders whose fee is known) applied to everything
   collected, refunded sales included.

The conversion rate is the past launches' buyers in the audience over their audience. Launches
whose cart has not closed are left out unless named.

The 80% interval is the 10th and 90th percentiles of the draws.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from launchkit.analysis.analyze import analyze_launch
from launchkit.analysis.compare import pick_launches, summarize
from launchkit.analysis.metrics import BENCHMARK_BANDS
from launchkit.errors import InputError

SIMULATIONS = 20_000
BENCHMARK_REFUND = (2, 38)  # Beta prior with mean 5%, used when there is no past launch
DEFAULT_DEFAULT_SHARE = 1 / 3


def _past_rows(
    session: Session, slugs: list[str] | None, now: datetime | None
) -> list[dict[str, Any]]:
    """The launches named, else every launch whose cart has closed, with an audience."""
    chosen = pick_launches(session, slugs, now)
    rows = [summarize(analyze_launch(session, slug, now=now)) for slug in chosen]
    return [row for row in rows if row["audience_size"] > 0]


def _draw_rates(rng: np.random.Generator, past: list[dict[str, Any]], n: int) -> np.ndarray:
    if not past:
        low, high = BENCHMARK_BANDS["typical"]
        return rng.uniform(low, high, n)
    buyers = np.array([min(r["buyers_in_audience"], r["audience_size"]) for r in past], float)
    audience = np.array([r["audience_size"] for r in past], float)
    pick = rng.integers(0, len(past), n)
    return rng.beta(1 + buyers[pick], 1 + audience[pick] - buyers[pick])


def _pooled_beta(
    rng: np.random.Generator, hits: int, trials: int, n: int, prior: tuple[float, float]
) -> np.ndarray:
    return rng.beta(prior[0] + hits, prior[1] + trials - hits, n)


def _assumptions(past: list[dict[str, Any]], price_cents: int | None) -> dict[str, Any]:
    total = lambda key: sum(row[key] for row in past)  # noqa: E731
    if price_cents is None:
        if not past or total("orders") == 0:
            raise InputError("--price is required when no past launch has orders.")
        price_cents = round(total("booked_revenue_cents") / total("orders"))
    return {
        "price_cents": int(price_cents),
        "orders": total("orders"),
        "refunded_orders": total("refunded_orders"),
        "plan_orders": total("plan_orders"),
        "plan_defaulted": total("plan_defaulted"),
        "default_collected_share": DEFAULT_DEFAULT_SHARE,
        "fee_orders": total("fees_known_orders"),
        "fee_ratio": _fee_ratio(past),
    }


def _fee_ratio(past: list[dict[str, Any]]) -> float:
    """Known fees over the gross of the same orders, across the past launches (0.0 when no
    fee is known: the forecast then leaves fees out, and says so with ``fee_orders`` 0)."""
    fees = sum(row["fees_cents"] or 0 for row in past)
    gross = sum(row["fees_gross_cents"] for row in past)
    return fees / gross if gross else 0.0


def _interval(values: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {
        "mean": float(values.mean()),
        "median": float(p50),
        "p10": float(p10),
        "p90": float(p90),
    }


def simulate(
    audience: int, past: list[dict[str, Any]], a: dict[str, Any], *, seed: int, n: int
) -> dict[str, np.ndarray]:
    """The Monte Carlo draws: rate, buyers, refunds, defaulters, net revenue (cents)."""
    rng = np.random.default_rng(seed)
    rate = _draw_rates(rng, past, n)
    buyers = rng.binomial(audience, rate)
    prior = (1.0, 1.0) if past else BENCHMARK_REFUND
    refund_rate = _pooled_beta(rng, a["refunded_orders"], a["orders"], n, prior)
    refunds = rng.binomial(buyers, refund_rate)
    kept = buyers - refunds
    plan_share = _pooled_beta(rng, a["plan_orders"], a["orders"], n, (1, 1)) if past else 0.0
    plan_buyers = rng.binomial(kept, plan_share)
    default_rate = _pooled_beta(rng, a["plan_defaulted"], a["plan_orders"], n, (1, 1))
    defaulters = rng.binomial(plan_buyers, default_rate)
    price = a["price_cents"]
    collected = price * (kept - defaulters) + price * a["default_collected_share"] * defaulters
    fees = a["fee_ratio"] * (collected + price * refunds)
    return {
        "rate": rate,
        "buyers": buyers,
        "refunds": refunds,
        "defaulters": defaulters,
        "net": collected - fees,
    }


def forecast_launch(
    session: Session,
    *,
    audience: int,
    price_cents: int | None = None,
    from_launches: list[str] | None = None,
    seed: int = 0,
    simulations: int = SIMULATIONS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Expected buyers and net revenue for a list of ``audience`` people, with 80% intervals.

    Learns from the launches named in ``from_launches``, else from every launch whose cart has
    closed at ``now`` (an open cart's figures are provisional)."""
    if audience <= 0:
        raise InputError("--audience must be a positive number of subscribers.")
    past = _past_rows(session, from_launches, now)
    a = _assumptions(past, price_cents)
    draws = simulate(audience, past, a, seed=seed, n=simulations)
    return {
        "audience": audience,
        "method": "monte-carlo" if past else "monte-carlo-benchmark",
        "based_on": [row["launch"] for row in past],
        "simulations": simulations,
        "seed": seed,
        "assumptions": a,
        "conversion_rate": _interval(draws["rate"]),
        "buyers": _interval(draws["buyers"].astype(float)),
        "refunds": _interval(draws["refunds"].astype(float)),
        "plan_defaults": _interval(draws["defaulters"].astype(float)),
        "net_revenue_cents": _interval(draws["net"]),
        "interval": 0.8,
    }
