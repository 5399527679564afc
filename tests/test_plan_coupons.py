"""``[[coupons]]`` in launch.toml (#18): parsed and checked with the plan, created once by the
sync_offers step of `launchkit run` through ``add_coupon``.

Coupons go to localstripe; it has no promotion codes, so those are answered by the recording
client (as in tests/test_selling_coupons.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from launchkit.config import Settings
from launchkit.models import Coupon, LaunchStep
from launchkit.orchestrator import Step, StepFailed, run_plan
from launchkit.plan import PlanInvalid, load_plan
from tests.test_orchestrator import START, _ctx, _sessions, make_plan
from tests.test_selling_coupons import PromoClient, _client


class Promos(PromoClient):
    """PromoClient giving each promotion code its own id (``promo_<code>``)."""

    def __init__(self) -> None:
        super().__init__(local=("promotion_codes", "coupons"))  # localstripe refuses applies_to

    def request(self, method, url, headers, post_data=None, *, _usage=None):  # noqa: ANN001
        body, status, extra = super().request(method, url, headers, post_data, _usage=_usage)
        if url.split("?")[0].endswith("/v1/promotion_codes") and method.upper() == "POST":
            body = body.replace('"promo_123"', f'"promo_{self.requests[-1][3]["code"]}"')
        return body, status, extra


COUPONS = """
[[coupons]]
code = "ami20"
percent = 20
until = "2026-12-08 23:59"
max_uses = 50
offer = "atelier"

[[coupons]]
code = "MOINS50"
amount = "50.00"
"""


def _plan(settings: Settings, extra: str) -> None:
    path = make_plan(settings.workspace)
    path.write_text(path.read_text() + extra)


def test_plan_coupons_are_parsed(settings: Settings) -> None:
    _plan(settings, COUPONS)
    plan = load_plan(settings.workspace / "launch.toml", settings)
    first, second = plan.coupons
    assert (first.code, first.percent, first.amount_cents, first.max_uses, first.offer) == (
        "AMI20", 20, None, 50, "atelier",
    )  # fmt: skip
    assert first.until == datetime(2026, 12, 8, 22, 59, tzinfo=UTC)  # Paris time, in UTC
    assert (second.code, second.percent, second.amount_cents, second.until) == (
        "MOINS50", None, 5000, None,
    )  # fmt: skip


BAD = """
[[coupons]]
code = "A"
percent = 120
until = "next week"
max_uses = 0
offer = "nope"

[[coupons]]
code = "BOTH"
percent = 10
amount = "5"

[[coupons]]
percent = 10
amount = "-5"
"""


def test_bad_plan_coupons_name_each_field(settings: Settings) -> None:
    _plan(settings, BAD)
    with pytest.raises(PlanInvalid) as caught:
        load_plan(settings.workspace / "launch.toml", settings)
    problems = [str(p) for p in caught.value.problems]
    for field in ("code", "percent", "until", "max_uses", "offer"):
        assert any(f"coupons[0].{field}: " in p for p in problems), (field, problems)
    assert any(p.endswith("coupons[1]: give exactly one of percent and amount") for p in problems)
    assert any("coupons[2].code: is required" in p for p in problems)
    assert any('"nope" is not one of the plan\'s offers (atelier)' in p for p in problems)
    assert "\n" not in str(caught.value)


def test_plan_check_cli_reports_coupon_problems_on_one_line(cli, settings: Settings) -> None:
    _plan(settings, COUPONS)
    result = cli("plan", "check")
    assert result.exit_code == 0, result.output
    assert "1 offer(s), 2 coupon(s), 2 sequence(s)." in result.stdout
    _plan(settings, '\n[[coupons]]\ncode = "AMI20"\npercent = 0\n')
    result = cli("plan", "check")
    assert result.exit_code == 1
    assert "launch.toml: coupons[0].percent: must be a whole number between 1 and 100" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_creates_plan_coupons_once(stripe_settings: Settings) -> None:
    _plan(stripe_settings, COUPONS)
    http = Promos()
    client = _client(stripe_settings, http)
    engine, sessions = _sessions(stripe_settings)
    try:
        first = run_plan(sessions, _ctx(stripe_settings, START, stripe_client=client))
        result = {r.step: r for r in first}[Step.SYNC_OFFERS]
        assert result.status == "done", result.message
        assert result.detail["coupons_added"] == ["AMI20", "MOINS50"]
        with sessions.begin() as s:
            rows = s.execute(
                select(Coupon.code, Coupon.percent_off, Coupon.amount_off_cents, Coupon.max_uses,
                       Coupon.currency, Coupon.offer_id.is_not(None)).order_by(Coupon.code)
            ).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [
            ("AMI20", 20, None, 50, "EUR", True),
            ("MOINS50", None, 5000, None, "EUR", False),
        ]
        posted = [u for m, u, h, f in http.requests if u.endswith("/v1/promotion_codes")]
        assert len(posted) == 2
        with sessions.begin() as s:  # run the step again, as a re-run after a failure would
            s.execute(LaunchStep.__table__.delete().where(LaunchStep.step == "sync_offers"))
        again = run_plan(sessions, _ctx(stripe_settings, START, stripe_client=client))
        assert {r.step: r for r in again}[Step.SYNC_OFFERS].detail["coupons_added"] == []
        with sessions.begin() as s:
            assert s.scalar(select(func.count()).select_from(Coupon)) == 2
        assert len([u for m, u, h, f in http.requests if u.endswith("/v1/promotion_codes")]) == 2
    finally:
        engine.dispose()


def test_run_refuses_a_code_that_exists_with_other_terms(stripe_settings: Settings) -> None:
    _plan(stripe_settings, COUPONS)
    client = _client(stripe_settings, Promos())
    engine, sessions = _sessions(stripe_settings)
    try:
        run_plan(sessions, _ctx(stripe_settings, START, stripe_client=client))
        path = stripe_settings.workspace / "launch.toml"
        path.write_text(path.read_text().replace("percent = 20", "percent = 30"))
        with sessions.begin() as s:
            s.execute(LaunchStep.__table__.delete().where(LaunchStep.step == "sync_offers"))
        with pytest.raises(StepFailed, match='Coupon "AMI20" already exists with other terms'):
            run_plan(sessions, _ctx(stripe_settings, START, stripe_client=client))
        with sessions.begin() as s:
            assert s.scalar(select(Coupon.percent_off).where(Coupon.code == "AMI20")) == 20
    finally:
        engine.dispose()


def test_rehearse_passes_with_plan_coupons(settings: Settings, db_url: str) -> None:
    from launchkit.db import make_engine
    from launchkit.orchestrator.rehearse import rehearse_plan

    _plan(settings, COUPONS)
    engine = make_engine(db_url)
    try:
        report = rehearse_plan(
            settings, engine, load_plan(settings.workspace / "launch.toml", settings), seed=3
        )
    finally:
        engine.dispose()
    assert report["broken"] == [], report["broken"]


def test_simulated_stripe_run_creates_plan_coupons_once(settings: Settings) -> None:
    """The demo/rehearsal path: offline run against the simulated Stripe."""
    from dataclasses import replace

    from launchkit.orchestrator.replay import Replay, SimClock
    from launchkit.orchestrator.simulate import BuyerModel

    _plan(settings, COUPONS)
    settings = replace(settings, stripe_api_key="sk_test_simulated", email_backend="file")
    plan = load_plan(settings.workspace / "launch.toml", settings)
    engine, sessions = _sessions(settings)
    try:
        replay = Replay(settings, sessions, plan, SimClock(START), BuyerModel(), 3)
        replay.tick(until=Step.SYNC_OFFERS)
        with sessions.begin() as s:  # a second pass of the step creates nothing
            s.execute(LaunchStep.__table__.delete().where(LaunchStep.step == "sync_offers"))
        replay.tick(until=Step.SYNC_OFFERS)
        with sessions.begin() as s:
            rows = s.execute(
                select(Coupon.code, Coupon.offer_id.is_not(None), Coupon.stripe_promotion_code_id)
                .order_by(Coupon.code)
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    assert [(code, limited) for code, limited, _ in rows] == [("AMI20", True), ("MOINS50", False)]
    assert set(replay.stripe.promotion_codes) == {promo for _, _, promo in rows}
    assert replay.stripe.percent_off(rows[0][2]) == 20
