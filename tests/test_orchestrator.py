"""The orchestrator: plan files, `run` through every step, resume, status, rehearse."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from launchkit.config import Settings
from launchkit.db import make_engine, make_sessionmaker
from launchkit.mailer import FileMessenger
from launchkit.models import (
    LaunchStep,
    Magnet,
    Offer,
    Send,
    SendStatus,
    StepStatus,
    Subscriber,
)
from launchkit.orchestrator import RunContext, Step, StepFailed, run_plan
from launchkit.orchestrator.rehearse import rehearse_plan
from launchkit.plan import PlanInvalid, check_plan, load_plan

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CLOSE = datetime(2026, 12, 8, 22, 59, tzinfo=UTC)
H = timedelta(hours=1)

PLAN = """\
[launch]
slug = "hiver"
product = "Atelier Lancement"
prelaunch_start = "2026-11-24 09:00"
cart_open = "2026-12-01 09:00"
cart_close = "2026-12-08 23:59"

[[audience]]
file = "list.csv"
format = "mailchimp"

[[magnets]]
slug = "checklist"
title = "Checklist"
file = "checklist.pdf"

[[offers]]
slug = "atelier"
price = 497
plans = ["3x177"]
guarantee_days = {guarantee}

[segments]
francophones = "tag:fr"

[[sequences]]
name = "launch-fr"
segment = "francophones"

[[sequences]]
name = "launch-en"
segment = "not tag:fr"
"""


def write_list(path: Path, people: int = 40) -> None:
    zones = ["Europe/Paris", "America/Montreal", "Europe/London", ""]
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, quoting=csv.QUOTE_ALL)
        out.writerow(
            ["Email Address", "First Name", "Last Name", "OPTIN_TIME", "TIMEZONE", "Source", "TAGS"]
        )
        for i in range(people):
            tag = "fr" if i % 3 else "en"
            out.writerow(
                [
                    f"person{i}@example.org",
                    f"Prénom{i}",
                    "Nom",
                    "2026-10-01 10:00:00",
                    zones[i % 4],
                    "webinar" if i % 2 else "magnet:checklist",
                    f'"{tag}"',
                ]
            )


def make_plan(workspace: Path, guarantee: int = 30) -> Path:
    write_list(workspace / "list.csv")
    (workspace / "checklist.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    path = workspace / "launch.toml"
    path.write_text(PLAN.format(guarantee=guarantee))
    return path


@pytest.fixture
def ws(settings: Settings) -> Settings:
    """The workspace settings with a plan file and its data."""
    make_plan(settings.workspace)
    return settings


def _ctx(settings: Settings, now: datetime, **kwargs) -> RunContext:
    plan = load_plan(settings.workspace / "launch.toml", settings)
    messenger = FileMessenger(settings.outbox_dir)
    return RunContext(
        settings, plan, now, messenger=messenger, extra={"sleep": lambda s: None}, **kwargs
    )


def _sessions(settings: Settings):
    engine = make_engine(settings.database_url)
    return engine, make_sessionmaker(engine)


def test_plan_check_reports_every_problem_at_once(ws: Settings) -> None:
    path = ws.workspace / "launch.toml"
    text = path.read_text()
    text = text.replace('file = "list.csv"', 'file = "missing.csv"')
    text = text.replace("price = 497", "price = -3").replace('"3x177"', '"3y177"')
    text = text.replace('name = "launch-en"', 'name = "nope"')
    text = text.replace('cart_close = "2026-12-08 23:59"', 'cart_close = "2026-11-30 23:59"')
    text = text.replace('francophones = "tag:fr"', 'francophones = "tag:fr and"')
    path.write_text(text)
    with pytest.raises(PlanInvalid) as caught:
        plan = load_plan(path, ws)
    problems = [str(p) for p in caught.value.problems]
    assert any("audience[0].file" in p and "missing.csv" in p for p in problems)
    assert any("offers[0].price" in p and "positive" in p for p in problems)
    assert any("offers[0].plans[0]" in p for p in problems)
    path.write_text(
        path.read_text()
        .replace("price = -3", "price = 497")
        .replace('"3y177"', '"3x177"')
        .replace('"missing.csv"', '"list.csv"')
    )
    plan = load_plan(path, ws)
    problems = [str(p) for p in check_plan(plan, ws)]
    assert any("launch.cart_close" in p for p in problems)
    assert any("sequences[1].name" in p and "nope" in p for p in problems)
    assert any("segments.francophones" in p for p in problems)


def test_plan_check_cli(cli, ws: Settings) -> None:
    result = cli("plan", "check", str(ws.workspace / "launch.toml"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('launch.toml is valid: launch "hiver", 1 audience file(s)')
    (ws.workspace / "list.csv").unlink()
    result = cli("plan", "check")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: launch.toml has 1 problem: launch.toml: audience[0].file"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def _drive(settings: Settings, sessions, end: datetime) -> list:
    """Tick at every due time up to ``end`` like `launchkit run --tick` from cron."""
    run_plan(sessions, _ctx(settings, START))
    while True:
        with sessions.begin() as s:
            due = s.scalar(select(func.min(Send.due_at)).where(Send.status == SendStatus.QUEUED))
        if due is None or due > end:
            break
        run_plan(sessions, _ctx(settings, due), only_due=True)
    return run_plan(sessions, _ctx(settings, end))


def test_run_goes_through_every_step_and_rerun_is_a_noop(ws: Settings) -> None:
    engine, sessions = _sessions(ws)
    try:
        first = run_plan(sessions, _ctx(ws, START))
        statuses = {r.step: r.status for r in first}
        assert statuses[Step.IMPORT_AUDIENCE] == "done"
        assert statuses[Step.SCHEDULE_SEQUENCES] == "done"
        assert statuses[Step.SEND_DUE] == "waiting" and statuses[Step.ANALYZE] == "waiting"
        with sessions.begin() as s:
            assert s.scalar(select(func.count()).select_from(Subscriber)) == 40
            assert s.scalar(select(Magnet.slug)) == "checklist"
            assert s.scalar(select(Offer.price_cents)) == 49700
            queued = s.scalar(select(func.count()).select_from(Send))
        assert queued == 40 * 10
        again = run_plan(sessions, _ctx(ws, START))
        assert {r.step: r.status for r in again}[Step.IMPORT_AUDIENCE] == "already_done"
        with sessions.begin() as s:
            assert s.scalar(select(func.count()).select_from(Subscriber)) == 40
            assert s.scalar(select(func.count()).select_from(Send)) == queued
        final = _drive(ws, sessions, CLOSE + timedelta(days=1))
        assert {r.step: r.status for r in final}[Step.ANALYZE] in ("done", "already_done")
        with sessions.begin() as s:
            states = dict(s.execute(select(LaunchStep.step, LaunchStep.status)).all())
            sent = s.scalar(
                select(func.count()).select_from(Send).where(Send.status == SendStatus.SENT)
            )
        assert states.pop("sync_offers") == StepStatus.PENDING  # no STRIPE_API_KEY here
        assert set(states.values()) == {StepStatus.DONE}
        assert sent == queued
        assert len(list(ws.outbox_dir.glob("*.eml"))) == sent
        assert (ws.workspace / "reports" / "hiver.html").is_file()
        rerun = run_plan(sessions, _ctx(ws, CLOSE + timedelta(days=2)), only_due=True)
        assert [(r.step, r.status) for r in rerun] == [(Step.SYNC_OFFERS, "skipped")]
    finally:
        engine.dispose()


def test_failed_step_stops_the_chain_and_resumes(ws: Settings) -> None:
    engine, sessions = _sessions(ws)
    folder = ws.emails_dir / "launch-en"
    hidden = ws.workspace / "launch-en.hidden"
    ctx = _ctx(ws, START)
    shutil.move(folder, hidden)
    try:
        with pytest.raises(StepFailed, match='Step schedule_sequences of launch "hiver" failed'):
            run_plan(sessions, ctx)
        with sessions.begin() as s:
            states = dict(s.execute(select(LaunchStep.step, LaunchStep.status)).all())
            assert s.scalar(select(func.count()).select_from(Send)) == 0
        assert states["import_audience"] == StepStatus.DONE
        assert states["schedule_sequences"] == StepStatus.FAILED
        assert "send_due" not in states
        shutil.move(hidden, folder)
        resumed = {r.step: r.status for r in run_plan(sessions, _ctx(ws, START))}
        assert resumed[Step.IMPORT_AUDIENCE] == "already_done"
        assert resumed[Step.SCHEDULE_SEQUENCES] == "done"
        with sessions.begin() as s:
            assert s.scalar(select(func.count()).select_from(Subscriber)) == 40
    finally:
        engine.dispose()


def test_cli_run_status_and_tick(cli, ws: Settings) -> None:
    result = cli("run", "--now", "2026-11-20 10:00", "--json")
    assert result.exit_code == 0, result.output
    steps = {item["step"]: item["status"] for item in json.loads(result.stdout)}
    assert steps["schedule_sequences"] == "done"
    result = cli("status", "--now", "2026-11-20 10:00", "--json")
    data = json.loads(result.stdout)
    assert data["phase"] == "prelaunch" and data["audience_size"] == 40
    assert data["emails"]["queued"] == 400 and data["next_email"]["step"].startswith("01")
    assert data["next_action"].startswith("wait: next email")
    result = cli("run", "--tick", "--now", "2026-11-24 09:30")
    assert result.exit_code == 0, result.output
    assert "send_due: sent 20, failed 0" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1
    result = cli("run", "--until", "nope")
    assert result.exit_code == 1 and "Unknown step" in result.stderr


def test_rehearse_passes_on_the_starter_kit(ws: Settings, db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        report = rehearse_plan(ws, engine, load_plan(ws.workspace / "launch.toml", ws), seed=3)
    finally:
        engine.dispose()
    assert report["broken"] == [], report["broken"]
    assert report["messages"] > 300 and len(report["checks"]) == 9


def test_rehearse_lists_broken_promises(cli, ws: Settings) -> None:
    close_email = ws.emails_dir / "launch-fr" / "08-close-24h.md"
    close_email.write_text(
        close_email.read_text().replace("{{ cart_close }}", "7 décembre à 23:59")
    )
    faq = ws.emails_dir / "launch-fr" / "06-faq-guarantee.md"
    faq.write_text(faq.read_text().replace("{{ guarantee_days }}", "60", 1))
    result = cli("rehearse", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    broken = {item["promise"]: item for item in report["broken"]}
    wording = broken["every email's deadline wording matches the configured close time"]
    assert wording["email"] == "launch-fr/08-close-24h" and "07/12" in wording["detail"]
    refund = broken["the refund window in the copy matches the offer's guarantee"]
    assert refund["email"] == "launch-fr/06-faq-guarantee" and "60 days" in refund["detail"]
    assert "@example.org" in refund["example"]


def test_rehearse_reports_the_selling_promises_broken_on_purpose(
    ws: Settings, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database where a recovery email went to a buyer and one after the close, and an order
    got the early-bird price two days late; and a recovery sender that forgot its ledger
    (``claim`` saves nothing, so every pass mails again): rehearse names each broken promise."""
    from launchkit.models import CheckoutRecovery, Launch, Order, WebEvent
    from launchkit.selling import recovery

    plan_file = ws.workspace / "launch.toml"
    tier = 'guarantee_days = 30\ntiers = ["early:397:until=2026-12-02 23:59"]'
    plan_file.write_text(plan_file.read_text().replace("guarantee_days = 30", tier))
    engine = make_engine(db_url)
    try:
        sessions = make_sessionmaker(engine)
        run_plan(sessions, _ctx(ws, START))
        with sessions.begin() as s:
            people = s.scalars(select(Subscriber).order_by(Subscriber.id)).all()
            offer, launch = s.scalars(select(Offer)).one(), s.scalars(select(Launch)).one()
            late = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)  # the tier ended 12-02 22:59 UTC
            s.add(Order(launch_id=launch.id, offer_id=offer.id, subscriber_id=people[0].id,
                        email=people[0].email, currency="EUR", total_cents=39700,
                        paid_cents=39700, instalments_paid=1, status="paid", tier="early",
                        created_at=late, paid_at=late, updated_at=late))  # fmt: skip
            for person, at in ((people[0], late + timedelta(hours=2)), (people[1], CLOSE + H)):
                s.add(CheckoutRecovery(subscriber_id=person.id, offer_id=offer.id,
                                       started_at=at - H, claimed_at=at, sent_at=at))  # fmt: skip
            started = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
            for person in people[2:5]:  # abandoned checkouts for the careless sender
                s.add(WebEvent(kind="checkout_start", offer_id=offer.id,
                               subscriber_id=person.id, occurred_at=started))  # fmt: skip
            emails = [p.email for p in people]

        def careless_claim(session, item, now):  # noqa: ANN001, ANN202
            return CheckoutRecovery(subscriber_id=item.subscriber_id, offer_id=item.offer_id,
                                    started_at=item.started_at, claimed_at=now)  # fmt: skip

        monkeypatch.setattr(recovery, "claim", careless_claim)
        report = rehearse_plan(ws, engine, load_plan(plan_file, ws), seed=3)
    finally:
        engine.dispose()
    broken: dict[str, list[dict]] = {}
    for item in report["broken"]:
        broken.setdefault(item["promise"], []).append(item)
    tier_late = broken["no order gets a tier price after that tier's deadline"]
    assert [(b["email"], b["example"]) for b in tier_late] == [("tier/early", emails[0])]
    to_buyer = broken["no abandoned-checkout email reaches someone who already bought"]
    assert [b["example"] for b in to_buyer] == [emails[0]]
    after = broken["no abandoned-checkout email goes out after the cart closed"]
    assert [b["example"] for b in after] == [emails[1]]
    twice = broken["no one gets two abandoned-checkout emails for the same offer"]
    assert twice and all(int(b["detail"].split()[0]) >= 2 for b in twice)
    assert {b["example"] for b in twice} & set(emails[2:5])  # (and the model's abandoners)
    assert all(b["email"] == "recovery/atelier" for b in to_buyer + after + twice)


def test_settings_replace_keeps_secrets_out_of_repr(ws: Settings) -> None:
    hidden = replace(ws, stripe_api_key="sk_test_secret_value")
    assert "sk_test_secret_value" not in repr(hidden)
