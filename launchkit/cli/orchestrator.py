"""`launchkit plan check`, `run`, `status`, `rehearse` and `demo`."""

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from launchkit.cli.output import console, print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import parse_local_datetime, utcnow
from launchkit.plan import PLAN_FILE, PlanInvalid, check_plan, load_plan

plan_app = typer.Typer(help="Check a launch plan file (launch.toml).", no_args_is_help=True)

PLAN_ARG = typer.Argument(help="The launch plan (default: launch.toml in the workspace).")
JSON_OPT = typer.Option("--json", help="Output JSON.")


def _plan_path(runtime: Runtime, path: Path | None) -> Path:
    return path if path is not None else runtime.settings.workspace / PLAN_FILE


def _load_checked(runtime: Runtime, path: Path | None):  # noqa: ANN202
    plan_path = _plan_path(runtime, path)
    plan = load_plan(plan_path, runtime.settings)
    problems = check_plan(plan, runtime.settings)
    if problems:
        raise PlanInvalid(plan_path, problems)
    return plan


@plan_app.command("check")
def check(ctx: typer.Context, path: Annotated[Path | None, PLAN_ARG] = None) -> None:
    """Validate a launch plan: files, segments, sequences, templates, email times, prices.

    Every problem is reported at once with its location.

    Example: launchkit plan check launch.toml
    """
    runtime: Runtime = ctx.obj
    plan = _load_checked(runtime, path)
    say(
        f'{plan.path.name} is valid: launch "{plan.slug}", {len(plan.audience)} audience file(s), '
        f"{len(plan.magnets)} magnet(s), {len(plan.offers)} offer(s), "
        f"{len(plan.coupons)} coupon(s), {len(plan.sequences)} sequence(s)."
    )


def run(
    ctx: typer.Context,
    path: Annotated[Path | None, PLAN_ARG] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this step.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    now: Annotated[str | None, typer.Option(help="Pretend it is this local time.")] = None,
    tick: Annotated[bool, typer.Option("--tick", help="Only what is due now (for cron).")] = False,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Run the launch plan: import, publish magnets, sync offers, schedule, send, analyze.

    Each step is recorded; rerunning continues where it stopped and redoes nothing.

    Example: launchkit run launch.toml --until schedule_sequences

    Cron (every 5 minutes): */5 * * * * cd /path/to/workspace && launchkit run --tick
    """
    from launchkit.orchestrator import RunContext, check_step_name, remind_members, run_plan

    runtime: Runtime = ctx.obj
    plan = _load_checked(runtime, path)
    moment = parse_local_datetime(now, runtime.settings.tz, what="--now") if now else utcnow()
    run_ctx = RunContext(runtime.settings, plan, moment, dry_run=dry_run)
    results = run_plan(runtime.sessions, run_ctx, until=check_step_name(until), only_due=tick)
    reminders = remind_members(runtime.sessions, run_ctx)
    if as_json:
        steps = [
            {"step": r.step.value, "status": r.status, "message": r.message, "detail": r.detail}
            for r in results
        ]
        print_json([*steps, _reminders_json(reminders)])
        return
    if tick:
        lines = [f"{r.step.value}: {r.message}" for r in results]
        busy = reminders.sent or reminders.failed or reminders.reminders
        lines += [reminders.summary()] if busy else []
        lines += _deliver_webhooks(runtime) if not dry_run else []
        say("; ".join(lines) or "nothing due")
        return
    print_table(
        f'Launch "{plan.slug}"',
        ["step", "status", "result"],
        [(r.step.value, r.status, r.message) for r in results],
    )
    say(reminders.summary())


def _reminders_json(report: Any) -> dict[str, Any]:
    """The membership reminders of this run, shaped like a step's line."""
    status = "dry_run" if report.dry_run else "done"
    detail = {"sent": report.sent, "failed": report.failed, "reminders": report.reminders}
    return {"step": "membership_reminders", "status": status, "message": report.summary(),
            "detail": detail}  # fmt: skip


def _deliver_webhooks(runtime: Runtime) -> list[str]:
    from launchkit.hooks import deliver_due

    report = deliver_due(runtime.sessions, clock=utcnow, timeout=10)
    if not (report.delivered or report.retrying or report.failed):
        return []
    return [f"webhooks: {len(report.delivered)} delivered, {len(report.retrying)} to retry"]


def status(
    ctx: typer.Context,
    launch: Annotated[str | None, typer.Argument(help="Launch slug (default: the latest).")] = None,
    now: Annotated[str | None, typer.Option(help="Pretend it is this local time.")] = None,
    currency: Annotated[
        str | None,
        typer.Option(help="Orders and money in this currency (default: the orders' own)."),
    ] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Where the launch stands: milestones, emails, buyers, conversion, refunds, next action.

    Orders in another currency are counted apart, never added (see --currency).

    Example: launchkit status hiver-2026
    """
    from launchkit.orchestrator import latest_launch_slug, launch_status

    runtime: Runtime = ctx.obj
    moment = parse_local_datetime(now, runtime.settings.tz, what="--now") if now else utcnow()
    with runtime.transaction() as session:
        data = launch_status(
            session, runtime.settings, launch or latest_launch_slug(session), moment, currency
        )
    if as_json:
        print_json(data)
        return
    _print_status(data)


def _base(data: dict) -> str:
    """What the conversion is measured on: the audience, or an evergreen launch's entrants."""
    if data.get("mode") == "evergreen":
        return f"{data['audience_size']} entrants"
    return f"an audience of {data['audience_size']}"


def _print_status(data: dict) -> None:
    ms = data["milestones"]
    nxt = ms["next"]
    emails = data["emails"]
    rows = [
        ("phase", data["phase"]),
        ("milestones passed", ", ".join(m["name"] for m in ms["passed"]) or "none"),
        ("next milestone", f"{nxt['name']} at {nxt['local']}" if nxt else "none"),
        (
            "emails",
            f"{emails['sent']} sent, {emails['due_now']} due, {emails['queued']} scheduled, "
            f"{emails['failed']} failed, {emails['skipped']} skipped, "
            f"{emails['delivered_unconfirmed']} delivered unconfirmed",
        ),
        (
            "buyers",
            f"{data['buyers']} ({data['buyers_in_audience']} of {_base(data)}: "
            f"{data['conversion_rate']:.2%} conversion)",
        ),
        ("refunds", str(data["refunds"])),
    ]
    for cur, other in data.get("other_currencies", {}).items():
        rows.append((f"also in {cur}", f"{other['orders']} order(s): see --currency {cur}"))
    rows.append(("next action", data["next_action"]))
    print_table(f"{data['launch']}: {data['product']}", ["", ""], rows)


def rehearse(
    ctx: typer.Context,
    path: Annotated[Path | None, PLAN_ARG] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated buyers.")] = 7,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Replay the launch on a simulated clock against a copy of the data; check its promises.

    Exits 1 if any promise is broken (each listed with the email and an example subscriber).

    Example: launchkit rehearse launch.toml --json
    """
    from launchkit.orchestrator.rehearse import rehearse_plan

    runtime: Runtime = ctx.obj
    plan = _load_checked(runtime, path)
    report = rehearse_plan(runtime.settings, runtime.engine, plan, seed=seed)
    if as_json:
        print_json(report)
    else:
        _print_rehearsal(report)
    if report["broken"]:
        raise typer.Exit(1)


def _print_rehearsal(report: dict) -> None:
    say(
        f"Rehearsed {report['launch']}: {report['messages']} messages, {report['buyers']} "
        f"simulated buyers, {len(report['checks'])} promises checked."
    )
    for check_ in report["checks"]:
        mark = "ok " if check_["ok"] else "BROKEN"
        say(f"  {mark} {check_['promise']}")
    for broken in report["broken"]:
        say(
            f"  - {broken['promise']}: email {broken['email']}, e.g. {broken['example']}: "
            f"{broken['detail']}"
        )


def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Keep the demo workspace here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same launch.")] = 2026,
    audience: Annotated[int, typer.Option(help="Audience size of the generated sample.")] = 5000,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Run a complete simulated launch on the sample data, then print the analysis.

    No account and no network: every launch email is rendered and sent through the real
    sender into one compressed mbox in the outbox, and payments are the signed webhook events
    Stripe would send, through the same code as a real launch.

    Example: launchkit demo --dir ./demo-launch --seed 7
    """
    from launchkit.orchestrator.demo import run_demo

    with console.status("Running the simulated launch...") if not as_json else _null():
        result = run_demo(directory, seed=seed, audience=audience)
    if as_json:
        print_json(result)
        return
    from launchkit.cli.analysis import print_analysis

    print_analysis(result["analysis"])
    say("")
    print_membership_headline(result["membership"])
    say("")
    print_demo_places(result)


def print_membership_headline(club: dict[str, Any]) -> None:
    """The membership launch in four figures, and where its report is."""
    h = club["headline"]
    churn = "n/a" if h["monthly_churn"] is None else f"{h['monthly_churn'] * 100:.1f}%"
    kept = "not reached" if h["retention_12"] is None else f"{h['retention_12'] * 100:.0f}%"
    opened = club["analysis"]["launch"]["cart_open"][:10]
    say(f"{club['launch']}: membership launch, doors opened {opened}, a year of renewals")
    say(
        f"Members joined: {h['members_joined']:,}  paying now: {h['members_now']:,}  "
        f"MRR now: {h['mrr_now_cents'] / 100:,.2f} {club['analysis']['currency']}  "
        f"monthly churn: {churn}  "
        f"12-month retention: {kept}"
    )
    say(f"Membership report (retention curve, cohorts): {club['report']}")


def print_demo_places(result: dict[str, Any]) -> None:
    """Where the demo put everything, and commands that work as typed."""
    quote = shlex.quote
    say(f"Workspace: {result['workspace']}")
    recovery = result.get("recovery_emails", 0)
    extra = f" (and {recovery:,} abandoned-checkout emails)" if recovery else ""
    say(
        f"Launch emails sent: {result['messages']:,}{extra}, all in one compressed mbox "
        f"({result['archive_bytes'] / 1e6:.1f} MB): {result['archive']}"
    )
    say(f"Web app emails (confirmations, receipts): {result['outbox_files']} .eml files in "
        f"{result['outbox']}")  # fmt: skip
    say(f"HTML report: {result['report']}")
    command = f"{launchkit_command()} -w {quote(result['workspace'])}"
    say(f"Next: {command} status")
    say(f"      {command} analyze {result['launch']}")
    say(f"      zcat {quote(result['archive'])} | less")


def launchkit_command() -> str:
    """How to type this launchkit again, as it was started.

    ``launchkit`` when the shell finds this one; else the path it was started by
    (``.venv/bin/launchkit`` after the README's install); ``python -m launchkit`` for that.
    """
    started = sys.argv[0]
    if started.endswith("__main__.py"):
        return f"{shlex.quote(sys.executable)} -m launchkit"
    found = shutil.which("launchkit")
    if found and Path(started).exists() and os.path.samefile(found, started):
        return "launchkit"
    return shlex.quote(started) if Path(started).exists() else "launchkit"


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def register(app: typer.Typer) -> None:
    """Attach the orchestration commands to the root app."""
    app.add_typer(plan_app, name="plan")
    app.command("run")(run)
    app.command("status")(status)
    app.command("rehearse")(rehearse)
    app.command("demo")(demo)
