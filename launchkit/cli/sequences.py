"""`launchkit sequence ...`, `launchkit schedule` and `launchkit send`."""

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from launchkit.cli.doctor import preflight
from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import console, err_console, print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, iso_utc, parse_local_datetime, utcnow
from launchkit.errors import InputError, LaunchkitError

if TYPE_CHECKING:
    from rich.progress import Progress

sequences = lazy_module("launchkit.sequences")

app = typer.Typer(help="Email sequences attached to launches.", no_args_is_help=True)


@app.command("attach")
def attach(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    sequence: Annotated[str, typer.Argument(help="Folder under emails/, e.g. launch-fr.")],
    segment: Annotated[
        str | None,
        typer.Option(help="A saved segment name or an expression, e.g. 'tag:fr'."),
    ] = None,
) -> None:
    """Bind a sequence folder to a launch.

    Example: launchkit sequence attach spring launch-fr --segment "not tag:buyer"
    """
    from launchkit.segments import resolve_segment

    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        seq = sequences.attach_sequence(
            session,
            runtime.settings,
            launch,
            sequence,
            now=utcnow(),
            segment=resolve_segment(session, segment) if segment else None,
        )
        count = len(sequences.sequence_emails(session, seq))
    say(f'Attached sequence "{sequence}" ({count} emails) to launch "{launch}".')


@app.command("detach")
def detach(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    sequence: Annotated[str, typer.Argument(help="Attached sequence name.")],
) -> None:
    """Detach a sequence from a launch while none of its emails went out.

    Example: launchkit sequence detach spring launch-fr
    """
    from launchkit.sequences.detach import detach_sequence

    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        dropped = detach_sequence(session, launch, sequence)
    say(f'Detached sequence "{sequence}" from launch "{launch}" ({dropped} queued rows dropped).')


@app.command("list")
def list_(
    ctx: typer.Context,
    launch: Annotated[str | None, typer.Argument(help="Launch slug (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """List attached sequences with their status and delivery counts.

    Example: launchkit sequence list spring --json
    """
    from launchkit.launches import get_launch, list_launches

    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = [get_launch(session, launch)] if launch else list_launches(session)
        data = []
        for item in items:
            for seq in sequences.launch_sequences(session, item):
                emails = sequences.sequence_emails(session, seq)
                counts = sequences.ledger_counts(session, [e.id for e in emails])
                totals: dict[str, int] = {}
                for entry in counts.values():
                    for status, n in entry["counts"].items():
                        totals[status] = totals.get(status, 0) + n
                data.append(
                    {
                        "launch": item.slug,
                        "sequence": seq.name,
                        "status": seq.status,
                        "segment": seq.segment,
                        "emails": len(emails),
                        "consecutive_failures": seq.consecutive_failures,
                        "sends": totals,
                    }
                )
    if as_json:
        print_json(data)
        return
    rows = [
        (
            d["launch"],
            d["sequence"],
            d["status"],
            d["segment"] or "",
            d["emails"],
            _counts(d["sends"]),
        )
        for d in data
    ]
    print_table("Sequences", ["launch", "sequence", "status", "segment", "emails", "sends"], rows)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


@app.command("preview")
def preview(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    as_email: Annotated[
        str | None, typer.Option("--as", help="Render for this subscriber (default: a sample).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: workspace/preview/LAUNCH).")
    ] = None,
) -> None:
    """Render every email to .html and .eml files plus index.html; exit 1 on lint problems.

    Example: launchkit sequence preview spring --as camille@example.com --out preview/
    """
    runtime: Runtime = ctx.obj
    folder = out or runtime.settings.workspace / "preview" / launch
    with runtime.transaction() as session:
        items = sequences.preview_launch(
            session, runtime.settings, launch, folder, now=utcnow(), as_email=as_email
        )
    tz = runtime.settings.tz
    rows = [
        (i.number, i.label, i.subject, format_local(i.send_time, tz), "; ".join(i.problems) or "OK")
        for i in items
    ]
    print_table(f"Preview of {launch}", ["#", "email", "subject", "send time", "lint"], rows)
    say(f"Wrote {len(items)} emails to {folder} (open index.html).")
    problem = sequences.lint_failures(items)
    if problem:
        raise InputError(problem)


@app.command("test")
def test(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeat for several).")],
    as_email: Annotated[
        str | None, typer.Option("--as", help="Render for this subscriber (default: a sample).")
    ] = None,
) -> None:
    """Send the whole sequence now to test addresses, subjects prefixed [TEST n/N].

    Example: launchkit sequence test spring --to me@example.com
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        subjects = sequences.send_test(
            session, runtime.settings, launch, to, now=utcnow(), as_email=as_email
        )
    from launchkit.sequences.preview import test_destination

    for subject in subjects:
        say(subject)
    count = len(subjects) * len(to)
    say(
        f"Sent {len(subjects)} test emails to {', '.join(to)} ({count} messages via "
        f"{test_destination(runtime.settings)}; no delivery record touched). Their unsubscribe, "
        "download and checkout links open a page saying it is a test."
    )


@app.command("pause")
def pause(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    sequence: Annotated[str | None, typer.Argument(help="Sequence (default: all).")] = None,
) -> None:
    """Pause a launch's sequences; a running send stops at its next batch.

    Example: launchkit sequence pause spring launch-fr
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        changed = sequences.pause_sequences(session, launch, sequence)
    say(f"Paused: {', '.join(changed)}." if changed else "Nothing to pause.")


@app.command("resume")
def resume(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    sequence: Annotated[str | None, typer.Argument(help="Sequence (default: all).")] = None,
) -> None:
    """Resume paused sequences (resets the consecutive-failure counter).

    Example: launchkit sequence resume spring launch-fr
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        changed = sequences.resume_sequences(session, launch, sequence)
    say(f"Resumed: {', '.join(changed)}." if changed else "Nothing was paused.")


def schedule(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Show the launch timeline: each email, its send time, audience and delivery status.

    Example: launchkit schedule spring --json
    """
    from launchkit.launches import get_launch

    runtime: Runtime = ctx.obj
    started = time.perf_counter()
    if not as_json:
        preflight(runtime, utcnow(), refuse=False, what="schedule")
    with runtime.transaction() as session:
        item = get_launch(session, launch)
        sequences.schedule_launch(session, runtime.settings, item, now=utcnow())
        data = _timeline(session, item, runtime.settings)
    if as_json:
        print_json(data)
        return
    from rich.markup import escape

    tz = runtime.settings.tz
    rows = [
        (
            d["sequence"] + "/" + d["step"],
            escape(d["subject_shown"]),  # "[first_name]" is text, not rich markup
            escape(d["preheader_shown"]),
            format_local(_dt(d["send_time"]), tz),
            _utc_range(d),
            d["audience"],
            _counts(d["counts"]),
        )
        for d in data
    ]
    print_table(
        f"Schedule of {launch}",
        ["email", "subject", "preheader", f"send time ({tz.key})", "UTC", "audience", "status"],
        rows,
    )
    say(f"{len(data)} emails scheduled in {time.perf_counter() - started:.2f} s.")


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _utc_range(d: dict[str, Any]) -> str:
    from launchkit.launches import UTC_ZONE

    low, high = _dt(d["utc_min"]), _dt(d["utc_max"])
    if low is None:
        return format_local(_dt(d["send_time"]), UTC_ZONE)
    if low == high:
        return format_local(low, UTC_ZONE)
    return f"{format_local(low, UTC_ZONE)} .. {format_local(high, UTC_ZONE)}"


def _timeline(session: Any, launch: Any, settings: Any) -> list[dict[str, Any]]:
    from launchkit.render.shown import ShownText
    from launchkit.sequences.context import load_launch_data

    shown = ShownText(settings, load_launch_data(session, launch))
    out = []
    for seq in sequences.launch_sequences(session, launch):
        preheaders = _preheaders(settings, seq.name)
        emails = sequences.sequence_emails(session, seq)
        counts = sequences.ledger_counts(session, [e.id for e in emails])
        for email in emails:
            entry = counts[email.id]
            out.append(
                {
                    "sequence": seq.name,
                    "sequence_status": seq.status,
                    "step": email.step,
                    "subject": email.subject,
                    "subject_shown": shown(seq.name, email.subject),
                    "preheader_shown": shown(seq.name, preheaders.get(email.step)),
                    "send_at": email.send_at,
                    "local_time": email.local_time,
                    "send_time": iso_utc(email.scheduled_at),
                    "deadline": iso_utc(email.deadline_at),
                    "utc_min": iso_utc(entry["due_min"]),
                    "utc_max": iso_utc(entry["due_max"]),
                    "audience": entry["audience"],
                    "counts": entry["counts"],
                }
            )
    return out


def _preheaders(settings: Any, name: str) -> dict[str, str]:
    from launchkit.sequences.schedule import load_sources

    try:
        sources = load_sources(settings, name)
    except LaunchkitError:  # the folder is gone or broken: the subjects still show
        return {}
    return {s.step: str(s.meta.get("preheader") or "") for s in sources}


def _clock(now: str | None, runtime: Runtime) -> Callable[[], datetime]:
    if now is None:
        return utcnow
    start = parse_local_datetime(now, runtime.settings.tz, what="--now")
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def send(
    ctx: typer.Context,
    launch: Annotated[str | None, typer.Option(help="Only this launch.")] = None,
    now: Annotated[
        str | None, typer.Option(help="Pretend it is this time (workspace timezone).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most N messages.")] = None,
    rate: Annotated[
        float | None, typer.Option(min=0, help="Messages per second (default: the toml).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Parallel senders (PostgreSQL).")] = 1,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and count; send nothing, change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Send every email that is due, exactly once per subscriber; safe to rerun after a crash.

    Exits 1 when the run paused itself, stopped on a delivery error or left failed rows.

    Example: launchkit send --launch spring --rate 10
    """
    runtime: Runtime = ctx.obj
    runtime.sessions  # noqa: B018 (checks the schema first)
    clock = _clock(now, runtime)
    preflight(runtime, clock(), refuse=True, what="send")
    options = sequences.SendOptions(
        launch=launch, limit=limit, rate_per_second=rate, workers=workers, dry_run=dry_run
    )
    with _SendProgress(quiet=as_json) as (_bar, update):
        report = sequences.send_due(
            runtime.engine,
            runtime.settings,
            clock=clock,
            options=options,
            progress=update,
        )
    reminders = _send_reminders(runtime, clock(), launch, dry_run)
    problems = report.problems()
    if as_json:
        print_json({**report.as_dict(), "membership_reminders": _reminders_dict(reminders)})
    else:
        say(report.summary())
        say(reminders.summary())
        for item in reminders.reminders:
            say(f"  {item['email']} to {item['to']} (membership {item['membership']}, "
                f"{item['date']})")  # fmt: skip
        if problems:
            err_console.print(f"Error: {'; '.join(problems)}.", markup=False)
    if problems:
        raise typer.Exit(1)


def _send_reminders(runtime: Runtime, now: datetime, launch: str | None, dry_run: bool) -> Any:
    """The renewal reminders and trial-ending emails due now (launchkit.memberships)."""
    from launchkit.memberships.reminders import send_due_reminders

    return send_due_reminders(
        runtime.engine, runtime.settings, now=now, launch=launch, dry_run=dry_run
    )


def _reminders_dict(report: Any) -> dict[str, Any]:
    return {"sent": report.sent, "failed": report.failed, "taken": report.taken,
            "dry_run": report.dry_run, "reminders": report.reminders}  # fmt: skip


class _SendProgress:
    """A rich progress bar fed by the engine's progress callback."""

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet

    def __enter__(self) -> tuple["Progress", Callable[[Any], None]]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("sending"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=self.quiet,
        )
        self.task = self.bar.add_task("send", total=None, line="")
        self.started = time.monotonic()
        self.last = 0.0
        self.bar.start()
        return self.bar, self.update

    def update(self, report: Any) -> None:
        moment = time.monotonic()
        if moment - self.last < 0.1 and report.remaining:
            return
        self.last = moment
        rate = report.sent / max(moment - self.started, 1e-6)
        line = (
            f"sent {report.sent}  failed {report.failed + report.bounced}  "
            f"remaining {report.remaining}  {rate:.0f} msg/s"
        )
        self.bar.update(self.task, total=report.due or None, completed=report.done, line=line)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def register(root: typer.Typer) -> None:
    """Attach this domain's commands and sub-apps to the root app."""
    root.add_typer(app, name="sequence")
    root.command("schedule")(schedule)
    root.command("send")(send)
