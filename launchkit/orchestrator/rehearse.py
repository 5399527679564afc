"""`launchkit rehearse`: replay the launch on a copy of the data and check its promises."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from launchkit.config import Settings
from launchkit.db import make_engine, make_sessionmaker, upgrade_database
from launchkit.launches import get_launch
from launchkit.models import Base, Offer
from launchkit.orchestrator import Step
from launchkit.orchestrator.promises import check_promises
from launchkit.orchestrator.replay import RecordingOutbox, Replay, SimClock
from launchkit.orchestrator.simulate import BuyerModel
from launchkit.plan import Plan

CHUNK = 5_000


def copy_database(source: Engine, target: Engine) -> int:
    """Copy every row of every launchkit table (portable: any database to any database)."""
    copied = 0
    with source.connect() as read, target.begin() as write:
        for table in Base.metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            result = read.execution_options(stream_results=True).execute(select(table))
            for chunk in result.mappings().partitions(CHUNK):
                write.execute(insert(table), [dict(row) for row in chunk])
                copied += len(chunk)
    return copied


def rehearsal_settings(settings: Settings, folder: Path) -> Settings:
    """The workspace settings pointed at a scratch database, outbox and simulated Stripe."""
    return replace(
        settings,
        workspace=folder,
        database_url=f"sqlite:///{folder / 'rehearsal.db'}",
        email_backend="file",
        smtp_url=None,
        stripe_api_key="sk_test_launchkit_rehearsal_offline",
        stripe_webhook_secret="whsec_launchkit_rehearsal",  # noqa: S106 (simulated Stripe)
    )


def rehearse_plan(
    settings: Settings, engine: Engine, plan: Plan, *, seed: int = 7
) -> dict[str, Any]:
    """Replay the whole launch on a simulated clock; return the promises checked and broken."""
    folder = Path(tempfile.mkdtemp(prefix="launchkit-rehearsal-"))
    try:
        scratch = rehearsal_settings(settings, folder)
        scratch.outbox_dir.mkdir()
        target = make_engine(scratch.database_url)
        try:
            upgrade_database(target)
            copy_database(engine, target)
            return _replay_and_check(scratch, target, plan, seed)
        finally:
            target.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start(plan: Plan) -> datetime:
    return (plan.prelaunch_start or plan.cart_open) - timedelta(days=1)


def _replay_and_check(settings: Settings, engine: Engine, plan: Plan, seed: int) -> dict[str, Any]:
    if plan.mode == "evergreen":
        return _replay_evergreen(settings, engine, plan, seed)
    sessions = make_sessionmaker(engine)
    replay = Replay(settings, sessions, plan, SimClock(_start(plan)), BuyerModel(), seed)
    pushed: list[Path] = []  # every message the sender was handed, a resend counted again
    replay.messenger = RecordingOutbox(settings.outbox_dir, pushed)
    replay.tick(until=Step.SCHEDULE_SEQUENCES)
    replay.run_until(plan.cart_open, [])
    pages = _sales_pages(replay, sessions)
    end = plan.cart_close + timedelta(days=2)
    actions = replay.actions(*replay.buyer_events()) if plan.offers else []
    replay.run_until(end, [(at, act) for at, act in actions if at <= end])
    with sessions.begin() as session:
        launch = get_launch(session, plan.slug)
        checked = check_promises(session, settings, launch, extra_texts=pages, pushed=pushed)
    return {
        "launch": plan.slug,
        "messages": _count_outbox(settings.outbox_dir),
        "buyers": replay.stats["purchases"],
        "simulation": dict(replay.stats),
        **checked,
    }


def _sales_pages(replay: Replay, sessions: Any) -> dict[str, str]:
    with sessions.begin() as session:
        slugs = list(session.scalars(select(Offer.slug)))
    return {f"/buy/{slug}": replay.web.get(f"/buy/{slug}").text for slug in slugs}


def _count_outbox(outbox: Path) -> int:
    return sum(1 for _ in outbox.glob("*.eml"))


def _bind(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


def _replay_evergreen(settings: Settings, engine: Engine, plan: Plan, seed: int) -> dict[str, Any]:
    """Evergreen: every entrant of the period gets their own sequence and cart; simulated
    buyers buy inside their own window, and some try after it (the checkout must refuse)."""
    from launchkit.orchestrator.evergreen_sim import entrant_events
    from launchkit.sequences import schedule_launch

    sessions = make_sessionmaker(engine)
    replay = Replay(settings, sessions, plan, SimClock(_start(plan)), BuyerModel(), seed)
    pushed: list[Path] = []  # every message the sender was handed, a resend counted again
    replay.messenger = RecordingOutbox(settings.outbox_dir, pushed)
    replay.tick(until=Step.SCHEDULE_SEQUENCES)
    events, offer, end = entrant_events(sessions, settings, plan, BuyerModel(), seed)
    with sessions.begin() as session:  # the entrants' rows, so the replay knows their times
        schedule_launch(session, settings, get_launch(session, plan.slug), now=replay.clock.now)
    actions = [(e.at, _bind(replay.purchase, e, offer)) for e in events if offer is not None]
    replay.run_until(end, actions)
    with sessions.begin() as session:
        launch = get_launch(session, plan.slug)
        checked = check_promises(session, settings, launch, pushed=pushed)
    late = sum(1 for e in events if e.extra.get("late"))
    return {
        "launch": plan.slug,
        "messages": _count_outbox(settings.outbox_dir),
        "buyers": replay.stats["purchases"],
        "late_attempts": late,
        "simulation": dict(replay.stats),
        **checked,
    }
