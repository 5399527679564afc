"""Run a whole launch from its plan: each step recorded in ``launch_steps`` so reruns resume.

Steps, in order: import the audience, publish the lead magnets, sync the offers, schedule the
sequences, send what is due, and after the cart closes, analyze. A step that is done is never
redone; ``send_due`` runs on every call until every email of the launch is settled; a failing
step is recorded with its error, its effects rolled back, and the chain stops there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from launchkit import launches
from launchkit.config import Settings
from launchkit.errors import InputError, LaunchkitError
from launchkit.models import Launch, LaunchStep, StepStatus
from launchkit.plan import Plan


class Step(enum.StrEnum):
    IMPORT_AUDIENCE = "import_audience"
    PUBLISH_MAGNETS = "publish_magnets"
    SYNC_OFFERS = "sync_offers"
    SCHEDULE_SEQUENCES = "schedule_sequences"
    SEND_DUE = "send_due"
    ANALYZE = "analyze"


STEPS: tuple[Step, ...] = tuple(Step)


@dataclass
class RunContext:
    """What the steps need besides the session."""

    settings: Settings
    plan: Plan
    now: datetime
    dry_run: bool = False
    stripe_client: Any = None
    messenger: Any = None
    progress: Callable[[str, int, int], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """What one step did on this run."""

    step: Step
    status: str  # done | already_done | waiting | skipped | failed | dry_run
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


class StepFailed(LaunchkitError):
    "A launch step failed; the steps after it did not run."


def check_step_name(name: str | None) -> Step | None:
    """Validate ``--until``."""
    if name is None:
        return None
    try:
        return Step(name)
    except ValueError as e:
        names = ", ".join(s.value for s in STEPS)
        raise InputError(f'Unknown step "{name}"; steps are: {names}.') from e


def ensure_launch(session: Session, plan: Plan, settings: Settings, now: datetime) -> Launch:
    """Create the plan's launch, or bring its milestones in line with the plan."""
    existing = session.scalar(select(Launch).where(Launch.slug == plan.slug))
    if existing is None:
        launch = launches.create_launch(
            session,
            plan.slug,
            product=plan.product,
            cart_open=plan.cart_open,
            cart_close=plan.cart_close,
            prelaunch_start=plan.prelaunch_start,
            currency=settings.currency,
            now=now,
        )
        if plan.mode == "evergreen":
            from launchkit import evergreen

            evergreen.configure(
                session, launch, entry=plan.entry or "", cart_open=plan.entry_cart_open or "",
                cart_close=plan.entry_cart_close or "", tz=settings.tz, check_magnet=False,
            )  # fmt: skip
        return launch
    if plan.mode == "evergreen" or existing.mode == "evergreen":
        _sync_evergreen(session, existing, plan, settings, now)
        return existing
    changed = (existing.cart_open, existing.cart_close, existing.prelaunch_start) != (
        plan.cart_open,
        plan.cart_close,
        plan.prelaunch_start,
    )
    if changed or existing.product != plan.product:
        _update_fixed(session, plan, now)
        if changed:
            from launchkit import sequences

            sequences.reschedule_launch(session, settings, plan.slug)
    return existing


def _update_fixed(session: Session, plan: Plan, now: datetime) -> None:
    """The plan's product and dates on its fixed launch."""
    launches.update_launch(
        session, plan.slug, now=now, product=plan.product, cart_open=plan.cart_open,
        cart_close=plan.cart_close, prelaunch_start=plan.prelaunch_start,
    )  # fmt: skip


def _sync_evergreen(
    session: Session, existing: Launch, plan: Plan, settings: Settings, now: datetime
) -> None:
    """Bring an evergreen launch (or one switching mode) in line with the plan: its entry and
    offsets (``evergreen.update_offsets``: people already told their dates keep them), the end
    of its entry period, and its start while no entry was taken yet."""
    from launchkit import evergreen, sequences

    offsets = {
        "entry": plan.entry or "",
        "cart_open": plan.entry_cart_open or "",
        "cart_close": plan.entry_cart_close or "",
    }
    switched = plan.mode != existing.mode
    if not switched and _evergreen_unchanged(existing, plan, now):
        return
    if switched:
        wanted = {**offsets, "check_magnet": False} if plan.mode == "evergreen" else None
        evergreen.switch_mode(
            session, existing, flag="launch.mode", tz=settings.tz, now=now, evergreen=wanted
        )
    if plan.mode == "fixed":
        _update_fixed(session, plan, now)
    else:
        evergreen.update_offsets(
            session, existing, tz=settings.tz, now=now, check_magnet=False, **offsets
        )
        if switched or existing.cart_open > now or plan.cart_open > now:
            existing.cart_open = max(plan.cart_open, now)
        existing.cart_close, existing.product = plan.cart_close, plan.product
    sequences.reschedule_launch(session, settings, plan.slug)


def _evergreen_unchanged(existing: Launch, plan: Plan, now: datetime) -> bool:
    """The plan says what the evergreen launch already is (its start may have passed)."""
    from launchkit import evergreen

    entry = str(evergreen.parse_entry(plan.entry or "", where="launch.entry"))
    wanted = (entry, plan.entry_cart_open, plan.entry_cart_close, plan.cart_close, plan.product)
    held = (
        existing.entry,
        existing.entry_cart_open,
        existing.entry_cart_close,
        existing.cart_close,
        existing.product,
    )
    return wanted == held and (existing.cart_open == plan.cart_open or existing.cart_open <= now)


def step_states(session: Session, launch_id: int) -> dict[str, LaunchStep]:
    """The recorded steps of a launch by name."""
    rows = session.scalars(select(LaunchStep).where(LaunchStep.launch_id == launch_id))
    return {row.step: row for row in rows}


def _record(
    session: Session,
    launch_id: int,
    step: Step,
    status: StepStatus,
    now: datetime,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    row = session.scalar(
        select(LaunchStep).where(LaunchStep.launch_id == launch_id, LaunchStep.step == step.value)
    )
    if row is None:
        row = LaunchStep(launch_id=launch_id, step=step.value, started_at=now)
        session.add(row)
    row.status = status
    row.detail = detail
    row.error = error
    if status == StepStatus.RUNNING:
        row.started_at = now
    else:
        row.finished_at = now
    session.flush()


def run_plan(
    sessions: sessionmaker[Session],
    ctx: RunContext,
    *,
    until: Step | None = None,
    only_due: bool = False,
) -> list[StepResult]:
    """Run the plan's steps in order; stop after ``until``; raise StepFailed on a failure."""
    from launchkit.orchestrator.steps import SELF_MANAGED, STEP_FUNCTIONS

    with sessions.begin() as session:
        launch_id = ensure_launch(session, ctx.plan, ctx.settings, ctx.now).id
        done = {
            name
            for name, row in step_states(session, launch_id).items()
            if row.status == StepStatus.DONE
        }
    results: list[StepResult] = []
    for step in STEPS:
        if step.value in done:
            if not only_due:
                results.append(StepResult(step, "already_done", "already done"))
        else:
            runner = SELF_MANAGED.get(step)
            if runner is not None:
                result = _run_self_managed(sessions, ctx, launch_id, step, runner)
            else:
                result = _run_step(sessions, ctx, launch_id, step, STEP_FUNCTIONS[step])
            results.append(result)
            if result.status == "waiting" and step is not Step.SEND_DUE:
                break
        if until is not None and step == until:
            break
    return results


def remind_members(sessions: sessionmaker[Session], ctx: RunContext) -> Any:
    """Every due membership reminder of the workspace (any launch: a yearly member of an old
    launch renews long after its cart closed); on each run, whatever the steps' state."""
    from launchkit.memberships.reminders import send_due_reminders

    engine = sessions.kw["bind"]
    return send_due_reminders(engine, ctx.settings, ctx.messenger, now=ctx.now, dry_run=ctx.dry_run)


def _run_step(
    sessions: sessionmaker[Session],
    ctx: RunContext,
    launch_id: int,
    step: Step,
    fn: Callable[[Session, RunContext, Launch], StepResult],
) -> StepResult:
    try:
        with sessions.begin() as session:
            launch = session.get(Launch, launch_id)
            assert launch is not None
            result = fn(session, ctx, launch)
            if ctx.dry_run:
                session.rollback()
                return StepResult(step, "dry_run", result.message, result.detail)
            status = StepStatus.DONE if result.status == "done" else StepStatus.PENDING
            _record(session, launch_id, step, status, ctx.now, result.detail)
            return result
    except LaunchkitError as e:
        if not ctx.dry_run:
            with sessions.begin() as session:
                _record(session, launch_id, step, StepStatus.FAILED, ctx.now, error=str(e))
        raise StepFailed(f'Step {step.value} of launch "{ctx.plan.slug}" failed: {e}') from e


def _run_self_managed(
    sessions: sessionmaker[Session],
    ctx: RunContext,
    launch_id: int,
    step: Step,
    fn: Callable[..., StepResult],
) -> StepResult:
    """Run a step that manages its own transactions (sending commits per batch)."""
    try:
        result = fn(sessions, ctx, launch_id)
    except LaunchkitError as e:
        if not ctx.dry_run:
            with sessions.begin() as session:
                _record(session, launch_id, step, StepStatus.FAILED, ctx.now, error=str(e))
        raise StepFailed(f'Step {step.value} of launch "{ctx.plan.slug}" failed: {e}') from e
    if not ctx.dry_run:
        with sessions.begin() as session:
            status = StepStatus.DONE if result.status == "done" else StepStatus.PENDING
            _record(session, launch_id, step, status, ctx.now, result.detail)
    return result


def launch_status(
    session: Session, settings: Settings, slug: str, now: datetime, currency: str | None = None
) -> dict[str, Any]:
    """Where a launch stands: milestones, emails, buyers, conversion, refunds, next action."""
    from launchkit.orchestrator.status import build_status

    return build_status(session, settings, launches.get_launch(session, slug), now, currency)


def latest_launch_slug(session: Session) -> str:
    """The launch whose cart opens last (the default for `launchkit status`)."""
    slug = session.scalar(select(Launch.slug).order_by(Launch.cart_open.desc()).limit(1))
    if slug is None:
        raise InputError("No launch yet; create one with `launchkit run launch.toml`.")
    return slug


def count_steps_done(session: Session, launch_id: int) -> int:
    """How many steps are recorded as done."""
    return (
        session.scalar(
            select(func.count())
            .select_from(LaunchStep)
            .where(LaunchStep.launch_id == launch_id, LaunchStep.status == StepStatus.DONE)
        )
        or 0
    )
