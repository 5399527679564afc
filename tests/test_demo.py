"""`launchkit demo`: a whole simulated launch, small and seeded, checked against the database."""

from __future__ import annotations

import email
import json
import os
import shlex
import sys
from datetime import datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from launchkit import analysis
from launchkit.cli import app
from launchkit.cli.orchestrator import launchkit_command, print_demo_places
from launchkit.db import make_engine, make_sessionmaker
from launchkit.mailer import archive_message_ids, read_mbox_archive
from launchkit.models import (
    Launch,
    LinkClick,
    Membership,
    MembershipStatus,
    Order,
    Payment,
    Refund,
    Send,
    SendStatus,
)
from launchkit.orchestrator.club import CLUB_SLUG, MemberModel
from launchkit.orchestrator.demo import run_demo
from launchkit.orchestrator.simulate import BuyerModel

# at 600 people the field's rates give a handful of buyers; this model makes every path of a
# launch happen at that size (plans, failed instalments, refunds inside and outside the window)
BUSY = BuyerModel(
    conversion=0.12,
    plan_share=0.5,
    refund_rate=0.4,
    refund_late_share=0.5,
    instalment_failure=0.35,
    recovery=0.5,
)
# the same for the membership launch: refunds, failed renewals recovered or not, switches
BUSY_CLUB = MemberModel(
    conversion=0.15,
    refund_rate=0.2,
    renewal_failure=0.25,
    recovery=0.5,
    switch_rate=0.25,
    cancel_monthly=0.1,
)


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _counts(sessions) -> dict[str, int]:
    with sessions.begin() as session:
        return {
            "sent": session.scalar(
                select(func.count()).select_from(Send).where(Send.status == SendStatus.SENT)
            ),
            "sends": session.scalar(select(func.count()).select_from(Send)),
            "orders": session.scalar(select(func.count()).select_from(Order)),
            "payments": session.scalar(select(func.count()).select_from(Payment)),
            "refunds": session.scalar(select(func.count()).select_from(Refund)),
        }


@pytest.mark.timeout(600)  # two launches replayed: the course, then a year of the membership
def test_demo_runs_a_whole_launch_and_matches_analyze(
    tmp_path: Path, db_url: str, cli_runner_env: dict[str, str]
) -> None:
    result = run_demo(
        tmp_path / "demo", seed=7, audience=600, model=BUSY, database_url=db_url,
        member_model=BUSY_CLUB,
    )  # fmt: skip
    workspace = Path(result["workspace"])
    stats = result["simulation"]
    engine = make_engine(db_url)
    try:
        sessions = make_sessionmaker(engine)
        # the figures printed are exactly what `launchkit analyze` computes from the database
        with sessions.begin() as session:
            fresh = analysis.analyze_launch(session, result["launch"])
        assert _same(result["analysis"], fresh)
        assert result["analysis"]["buyers"] == stats["purchases"] > 0
        assert Path(result["report"]).is_file()

        # every launch email sent is one whole message in the compressed mbox, none twice,
        # and none is an .eml file (the web app's confirmations and receipts are)
        # (plus one abandoned-checkout email each, sent by the same tick, without a `sends` row)
        counts = _counts(sessions)
        archived = list(read_mbox_archive(Path(result["archive"])))
        recoveries = result["recovery_emails"]
        assert counts["sent"] == result["messages"] == len(archived) - recoveries > 600 * 5
        with sessions.begin() as session:
            sent_ids = set(
                session.scalars(select(Send.message_id).where(Send.status == SendStatus.SENT))
            )
        others = set(archive_message_ids(Path(result["archive"]))) - sent_ids
        assert len(others) == recoveries and all("tx-checkout-recovery" in m for m in others)

        # the selling features: an early-bird tier, a coupon, recovered checkouts, VAT
        figures = result["analysis"]
        assert {row["tier"] for row in figures["by_tier"]} == {None, "early"}
        (coupon,) = figures["by_coupon"]
        assert coupon["coupon"] == "AMI20" and coupon["orders"] == stats["coupon_purchases"] > 0
        assert figures["recovery"]["emails_sent"] == recoveries > 0
        assert 0 < figures["recovery"]["recovered_orders"] <= stats["checkouts_abandoned"]
        assert 0 < figures["tax_cents"] <= figures["gross_revenue_cents"] / 6
        for raw in archived[:: len(archived) // 50]:
            parsed = email.message_from_bytes(raw, policy=policy.default)
            assert not parsed.defects and parsed.get_body(("plain",)) is not None
        assert not list(Path(result["outbox"]).glob("lk.email-*.eml"))
        assert result["outbox_files"] == len(list(Path(result["outbox"]).glob("*.eml"))) > 0
        assert result["archive_bytes"] < len(archived) * 2_000  # ~12 KB each, uncompressed

        with sessions.begin() as session:
            plans = dict(
                session.execute(
                    select(Order.plan_instalments, func.count()).group_by(Order.plan_instalments)
                ).all()
            )
            failed = session.scalar(
                select(func.count()).select_from(Payment).where(Payment.status == "failed")
            )
            course = select(Launch.id).where(Launch.slug == result["launch"]).scalar_subquery()
            refunds = session.execute(
                select(Refund.requested_at, Order.created_at, Refund.status)
                .join(Order, Order.id == Refund.order_id)
                .where(Order.launch_id == course)  # the membership launch's are checked below
            ).all()
        assert plans.get(1, 0) > 0 and plans.get(3, 0) > 0  # pay in full and 3 instalments
        assert failed > 0 and stats["instalments_failed"] > 0
        inside = [r for r in refunds if r.requested_at - r.created_at <= timedelta(days=30)]
        assert inside and all(r.status == "succeeded" for r in inside)
        assert stats["refunds_refused"] > 0  # asked after the 30-day guarantee: refused
        assert len(refunds) == stats["refunds"]
        assert stats.get("checkout_refused", 0) == 0 and stats["webhooks_rejected"] == 0

        # buyers and browsers open the sales page through their latest email's tracked link
        funnel = result["analysis"]["click_funnel"]
        with sessions.begin() as session:
            recorded = session.scalar(select(func.count()).select_from(LinkClick))
        assert recorded == stats["clicks"] >= sum(row["clicks"] for row in funnel) > 0
        assert sum(row["bought"] for row in funnel) > 0
        assert all(row["sales_page"] <= row["clicked"] <= row["delivered"] for row in funnel)

        _check_membership_launch(sessions, result["membership"])

        # `launchkit run --tick` afterwards (cron keeps running): nothing left to do for the
        # launches; only the club's membership reminders that fall due by then go out, each
        # once, and they are exactly what the run reports
        before = set(Path(result["outbox"]).glob("*.eml"))
        env = {**cli_runner_env, "LAUNCHKIT_DATABASE_URL": db_url}
        tick = ["-w", str(workspace), "run", "--tick", "--now", "2027-04-01 10:00", "--json"]
        answer = CliRunner().invoke(app, tick, env=env)
        assert answer.exit_code == 0, answer.output
        assert _counts(sessions) == counts
        (reminders,) = [s for s in json.loads(answer.output) if s["step"] == "membership_reminders"]
        added = set(Path(result["outbox"]).glob("*.eml")) - before
        assert len(added) == reminders["detail"]["sent"]
        kinds = (".member-renewal-reminder-", ".member-trial-ending-")
        assert all(any(kind in path.name for kind in kinds) for path in added), added
        again = CliRunner().invoke(app, tick, env=env)  # the same tick again: nothing new
        assert again.exit_code == 0, again.output
        assert set(Path(result["outbox"]).glob("*.eml")) == before | added
    finally:
        engine.dispose()


def _check_membership_launch(sessions, club: dict) -> None:
    """The membership launch went through every path, and its figures are analyze's."""
    stats, headline = club["simulation"], club["headline"]
    assert club["launch"] == CLUB_SLUG and stats["webhooks_rejected"] == 0
    for path in ("member_refunds", "renewals_recovered", "cancellations", "plan_switches"):
        assert stats.get(path, 0) > 0, path
    assert stats["renewal_attempts_failed"] > stats["renewals_failed"] > 0  # retries, then ends
    at = datetime.fromisoformat(club["measured_at"])
    with sessions.begin() as session:
        fresh = analysis.analyze_launch(session, CLUB_SLUG, now=at)
        statuses = dict(
            session.execute(
                select(Membership.status, func.count()).group_by(Membership.status)
            ).all()
        )
    ms = fresh["membership"]
    assert _same(club["analysis"]["membership"], ms)
    assert ms["members_joined"] == stats["members_joined"] == sum(statuses.values())
    assert statuses.get(MembershipStatus.ENDED, 0) > 0 and statuses.get(MembershipStatus.ACTIVE)
    assert ms["refunds_inside_guarantee"]["count"] == stats["member_refunds"]
    assert headline["members_joined"] == ms["members_joined"]
    assert headline["retention_12"] == ms["retention_curve"][12]["rate"]
    assert 0 < headline["retention_12"] < 1 and 0 < headline["monthly_churn"] < 1
    assert headline["mrr_now_cents"] == ms["mrr_now"] > 0
    assert any(row["contraction"] for row in ms["mrr_by_month"])  # monthly -> yearly switches
    page = Path(club["report"]).read_text()
    assert 'id="membership"' in page and page.count("<title>Rétention par mois") == 2


@pytest.fixture
def cli_runner_env() -> dict[str, str]:
    """The environment without the caller's launchkit/Stripe settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHKIT_", "STRIPE_"))}
    return {**dict.fromkeys(set(os.environ) - set(clean), ""), **clean, "COLUMNS": "200"}


def test_cli_demo_json(tmp_path: Path, cli_runner_env: dict[str, str]) -> None:
    """`launchkit demo --json` (its own SQLite file in the demo workspace, never another DB)."""
    target = tmp_path / "demo"
    answer = CliRunner().invoke(
        app,
        ["demo", "--dir", str(target), "--audience", "600", "--seed", "3", "--json"],
        env=cli_runner_env,
    )
    assert answer.exit_code == 0, answer.output
    data = json.loads(answer.stdout)
    assert {"workspace", "report", "analysis", "membership"} <= set(data)
    assert data["membership"]["headline"]["members_joined"] > 0
    assert Path(data["workspace"]) == target.resolve() or Path(data["workspace"]) == target
    assert Path(data["report"]).is_file() and data["analysis"]["audience_size"] > 0
    again = CliRunner().invoke(app, ["demo", "--dir", str(target)], env=cli_runner_env)
    assert again.exit_code == 1 and "already holds a workspace" in again.output


def test_next_lines_use_the_command_that_started_launchkit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "launchkit").write_text("#!/bin/sh\n")
    (venv / "launchkit").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [".venv/bin/launchkit", "demo"])  # the README's install
    assert launchkit_command() == ".venv/bin/launchkit"
    monkeypatch.setenv("PATH", f"{venv}:/usr/bin:/bin")  # an activated venv
    assert launchkit_command() == "launchkit"
    monkeypatch.setattr(sys, "argv", ["/src/launchkit/__main__.py"])
    assert launchkit_command() == f"{shlex.quote(sys.executable)} -m launchkit"

    monkeypatch.setattr(sys, "argv", [".venv/bin/launchkit", "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    print_demo_places(
        {
            "workspace": "/tmp/my demo",
            "messages": 48789,
            "archive": "/tmp/my demo/outbox/launch-emails.mbox.gz",
            "archive_bytes": 9_400_000,
            "outbox_files": 212,
            "outbox": "/tmp/my demo/outbox",
            "report": "/tmp/my demo/reports/atelier-hiver.html",
            "launch": "atelier-hiver",
        }
    )
    out = capsys.readouterr().out
    assert "48,789" in out and "9.4 MB" in out and "212 .eml files" in out
    assert "Next: .venv/bin/launchkit -w '/tmp/my demo' status" in out
    assert ".venv/bin/launchkit -w '/tmp/my demo' analyze atelier-hiver" in out
    assert "zcat '/tmp/my demo/outbox/launch-emails.mbox.gz' | less" in out


def test_membership_headline_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from launchkit.cli.orchestrator import print_membership_headline
    from launchkit.orchestrator.demo import membership_headline

    curve = [{"month": k, "rate": 1 - k / 40} for k in range(13)]
    ms = {"members_joined": 53, "paying_members": 53, "members_now": 31, "mrr_now": 69200,
          "ltv": {"monthly_churn": 0.035}, "retention_curve": curve,
          "refunds_inside_guarantee": {"count": 2}}  # fmt: skip
    club = {
        "launch": "club-printemps",
        "report": "/w/reports/club-printemps.html",
        "headline": membership_headline(ms),
        "analysis": {"launch": {"cart_open": "2026-03-02T08:00:00Z"}, "currency": "EUR"},
    }
    print_membership_headline(club)
    assert capsys.readouterr().out.splitlines() == [
        "club-printemps: membership launch, doors opened 2026-03-02, a year of renewals",
        "Members joined: 53  paying now: 31  MRR now: 692.00 EUR  monthly churn: 3.5%  "
        "12-month retention: 70%",
        "Membership report (retention curve, cohorts): /w/reports/club-printemps.html",
    ]
