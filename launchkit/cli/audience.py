"""`launchkit audience ...` and `launchkit segment ...`: lists, imports, tags, segments."""

from pathlib import Path
from typing import Annotated, Any

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import err_console, print_json, print_table, say, warn
from launchkit.cli.runtime import Runtime
from launchkit.clock import iso_utc, utcnow
from launchkit.errors import InputError

audience = lazy_module("launchkit.audience")
segments = lazy_module("launchkit.segments")

app = typer.Typer(help="Audience lists: import, stats, tags, exports.", no_args_is_help=True)
segment_app = typer.Typer(help="Saved segment expressions.", no_args_is_help=True)

JSON = Annotated[bool, typer.Option("--json", help="Output JSON.")]
SEGMENT = Annotated[
    str | None,
    typer.Option(
        help='A saved segment name or an expression, e.g. "tag:webinar and not tag:buyer".'
    ),
]


def register(root: typer.Typer) -> None:
    """Attach `audience` and `segment` to the root app."""
    root.add_typer(app, name="audience")
    root.add_typer(segment_app, name="segment")


def _parse_mapping(items: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, target = item.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise InputError(
                f'--map "{item}" must look like COLUMN=field, e.g. "Prénom=first_name".'
            )
        mapping[column.strip()] = target.strip()
    return mapping


def _rejects_path(runtime: Runtime, file: Path) -> Path:
    return runtime.settings.workspace / "imports" / f"{file.stem}.rejects.csv"


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV export: Mailchimp, Kit or any CSV with emails.")
    ],
    format: Annotated[str, typer.Option(help="auto, mailchimp, kit or generic.")] = "auto",  # noqa: A002
    source: Annotated[str | None, typer.Option(help="Source for every row.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag every row (repeatable).")] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="COLUMN=field: first_name, last_name, signed_up_at, ... (repeatable)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Check and count, write nothing.")] = False,
    as_json: JSON = False,
) -> None:
    """Import subscribers from a CSV (one transaction; suppressed addresses stay suppressed).

    Example: launchkit audience import sample_data/audience_mailchimp.csv --tag old-list
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    runtime: Runtime = ctx.obj
    mapping = _parse_mapping(map_ or [])
    total = audience.scan_file(file).lines if file.is_file() else None
    quiet = as_json or not err_console.is_terminal
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        Progress(*columns, console=err_console, transient=True, disable=quiet) as bar,
        runtime.transaction() as session,
    ):
        task = bar.add_task("import", total=total)
        result = audience.import_subscribers(
            session, file, now=utcnow(), format=format, source=source, tags=tag or (),
            mapping=mapping, dry_run=dry_run, rejects_path=_rejects_path(runtime, file),
            progress=lambda rows: bar.update(task, completed=rows), tz=runtime.settings.tz,
        )  # fmt: skip
    _print_import(result, dry_run, as_json)


def _print_import(result: "audience.ImportResult", dry_run: bool, as_json: bool) -> None:
    if as_json:
        print_json({**result.as_dict(), "dry_run": dry_run})
        return
    for message in result.warnings:
        warn(message)
    say(result.summary() + (" (dry run: nothing written)" if dry_run else ""))
    if result.rejects_path:
        say(f"{result.invalid} rejected rows written to {result.rejects_path}")


@app.command("stats")
def stats(ctx: typer.Context, as_json: JSON = False) -> None:
    """Counts by status, and for active subscribers by source, tag and month of signup.

    Example: launchkit audience stats --json
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        data = audience.audience_stats(session)
    if as_json:
        print_json(data)
        return
    say(f"{data['total']} subscribers")
    print_table("By status", ["status", "count"], data["by_status"].items())
    print_table("Active by source", ["source", "count"], data["by_source"].items())
    print_table("Active by tag", ["tag", "count"], data["by_tag"].items())
    print_table("Active by month of signup", ["month", "count"], data["by_month"].items())


def _json_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: iso_utc(v) if k.endswith("_at") else v for k, v in item.items()}


@app.command("list")
def list_(
    ctx: typer.Context,
    segment: SEGMENT = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: JSON = False,
) -> None:
    """List subscribers (all statuses unless the segment says status:...).

    Example: launchkit audience list --segment "tag:webinar and status:active" --limit 20
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = list(audience.iter_subscribers(session, segment, limit=limit))
    if as_json:
        print_json([_json_item(item) for item in items])
        return
    rows = [
        [audience.neutralize_cell(str(item[k] or "")) for k in ("email", "first_name",
                                                               "last_name", "status", "source")]
        + [", ".join(item["tags"])]
        for item in items
    ]  # fmt: skip
    print_table(None, ["email", "first name", "last name", "status", "source", "tags"], rows)


@app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file to write.")],
    segment: SEGMENT = None,
) -> None:
    """Export subscribers to a CSV that is safe to open in a spreadsheet.

    Example: launchkit audience export buyers.csv --segment "tag:buyer"
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        count = audience.export_subscribers(session, file, segment)
    say(f"exported {count} subscribers to {file}")


@app.command("unsubscribe")
def unsubscribe(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    reason: Annotated[str | None, typer.Option(help="Why, kept with the record.")] = None,
) -> None:
    """Unsubscribe one address (it stays on the suppression list).

    Example: launchkit audience unsubscribe marie@example.fr --reason "asked by email"
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        subscriber = audience.get_subscriber(session, email)
        changed = audience.unsubscribe(
            session, subscriber.id, now=utcnow(), method="manual", reason=reason
        )
        address = subscriber.email
    say(f"unsubscribed {address}" if changed else f"{address} was already unsubscribed")


@app.command("suppress")
def suppress(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", help="One address per line, or a CSV.")],
    reason: Annotated[str, typer.Option(help="manual, unsubscribed, bounced or complained.")] = (
        "manual"
    ),
) -> None:
    """Add every address of a file to the suppression list.

    Example: launchkit audience suppress --file bounces.txt --reason bounced
    """
    from launchkit.models import SuppressionReason

    runtime: Runtime = ctx.obj
    if reason not in set(SuppressionReason):
        raise InputError(f'--reason "{reason}" must be one of {", ".join(SuppressionReason)}.')
    with runtime.transaction() as session:
        result = audience.suppress_file(
            session, file, now=utcnow(), reason=SuppressionReason(reason)
        )
    for line in result.invalid_rows:
        warn(f"{file.name} {line}")
    say(f"suppressed {result.added} new, {result.already} already, {result.invalid} invalid")


def _targets(
    session: Any, targets: list[str], segment: str | None
) -> tuple[list[int], list[str], str]:
    tags = targets if segment else targets[1:]
    if not any(t.strip() for t in tags):
        raise InputError("Give an address and at least one tag, or --segment EXPR and tags.")
    if segment:
        return audience.segment_ids(session, segment), tags, f'segment "{segment}"'
    subscriber = audience.get_subscriber(session, targets[0])
    return [subscriber.id], tags, subscriber.email


@app.command("tag")
def tag(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(help="EMAIL TAG... (or TAG... with --segment)")],
    segment: SEGMENT = None,
) -> None:
    """Add tags to one address or to everyone in a segment.

    Example: launchkit audience tag marie@example.fr vip webinar-2026
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        ids, tags, who = _targets(session, targets, segment)
        added = audience.add_tags(session, ids, tags, at=utcnow())
    say(f"added {added} tags to {who}")


@app.command("untag")
def untag(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(help="EMAIL TAG... (or TAG... with --segment)")],
    segment: SEGMENT = None,
) -> None:
    """Remove tags from one address or from everyone in a segment.

    Example: launchkit audience untag --segment "tag:webinar" webinar
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        ids, tags, who = _targets(session, targets, segment)
        removed = audience.remove_tags(session, ids, tags)
    say(f"removed {removed} tags from {who}")


@segment_app.command("save")
def segment_save(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Segment name, e.g. webinar-not-buyers.")],
    expression: Annotated[str, typer.Argument(help='e.g. "tag:webinar and not tag:buyer"')],
) -> None:
    """Save (or replace) a named segment.

    Example: launchkit segment save webinar-fr "tag:webinar and tag:fr and signed_up>=2026-01-01"
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        saved = segments.save_segment(session, name, expression, now=utcnow())
        count = audience.count_subscribers(session, saved.expression)
    say(f'saved segment "{name}": {count} active subscribers')


@segment_app.command("list")
def segment_list(ctx: typer.Context, as_json: JSON = False) -> None:
    """List saved segments with their active subscriber counts.

    Example: launchkit segment list
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        rows = [
            {"name": s.name, "expression": s.expression,
             "active": audience.count_subscribers(session, s.expression)}
            for s in segments.list_segments(session)
        ]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    print_table("Segments", ["name", "expression", "active"], [r.values() for r in rows])


@segment_app.command("show")
def segment_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A saved segment name or an expression.")],
    as_json: JSON = False,
) -> None:
    """Show a segment's expression and how many subscribers it matches, by status.

    Example: launchkit segment show webinar-fr
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        expression = segments.resolve_segment(session, name)
        counts = {
            status: audience.count_subscribers(session, expression, statuses=(status,))
            for status in ("active", "pending", "unsubscribed", "bounced", "complained")
        }
    if as_json:
        print_json({"name": name, "expression": expression, "counts": counts})
        return
    say(f"{name}: {expression}")
    say(", ".join(f"{count} {status}" for status, count in counts.items()))
