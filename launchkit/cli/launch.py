"""`launchkit launch ...`: create, list, show and update launches."""

from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, parse_local_datetime, utcnow

launches = lazy_module("launchkit.launches")
sequences = lazy_module("launchkit.sequences")
waitlists = lazy_module("launchkit.waitlists")

app = typer.Typer(help="Launches and their milestones.", no_args_is_help=True)

TIME_HELP = "Local time in the workspace timezone, e.g. '2026-12-01 09:00'."


def _parse(runtime: Runtime, value: str | None, what: str):  # noqa: ANN202
    if value is None:
        return None
    return parse_local_datetime(value, runtime.settings.tz, what=what)


@app.command("create")
def create(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Short name, e.g. spring-2026.")],
    product: Annotated[str, typer.Option(help="Product name.")],
    cart_open: Annotated[str, typer.Option(help=TIME_HELP)],
    cart_close: Annotated[str, typer.Option(help=TIME_HELP)],
    prelaunch_start: Annotated[str | None, typer.Option(help=TIME_HELP)] = None,
    waitlist: Annotated[bool, typer.Option(help="Open its waitlist page /w/SLUG.")] = False,
) -> None:
    """Create a launch with its milestones.

    Example: launchkit launch create spring --product "Cours photo" --cart-open "2026-12-01 09:00"
    --cart-close "2026-12-08 23:59" --prelaunch-start "2026-11-24 09:00"
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        launch = launches.create_launch(
            session,
            slug,
            product=product,
            cart_open=_parse(runtime, cart_open, "--cart-open"),
            cart_close=_parse(runtime, cart_close, "--cart-close"),
            prelaunch_start=_parse(runtime, prelaunch_start, "--prelaunch-start"),
            currency=runtime.settings.currency,
            now=utcnow(),
        )
        if waitlist:
            waitlists.open_waitlist(
                session, launch.slug, now=utcnow(), language=runtime.settings.language
            )
        say(f'Created launch "{launch.slug}" ({launch.product}).')


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """List launches.

    Example: launchkit launch list --json
    """
    runtime: Runtime = ctx.obj
    tz = runtime.settings.tz
    with runtime.transaction() as session:
        items = launches.list_launches(session)
        if as_json:
            print_json([launches.launch_as_dict(item) for item in items])
            return
        rows = [
            (i.slug, i.product, format_local(i.cart_open, tz), format_local(i.cart_close, tz))
            for i in items
        ]
    print_table("Launches", ["slug", "product", "cart open", "cart close"], rows)


@app.command("show")
def show(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Launch slug.")],
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Show a launch and its milestones (workspace time and UTC).

    Example: launchkit launch show spring
    """
    runtime: Runtime = ctx.obj
    tz = runtime.settings.tz
    with runtime.transaction() as session:
        launch = launches.get_launch(session, slug)
        if as_json:
            print_json(launches.launch_as_dict(launch))
            return
        rows = [
            (name, format_local(value, tz), format_local(value, launches.UTC_ZONE))
            for name, value in launches.milestones(launch).items()
        ]
        title = f"{launch.slug}: {launch.product} ({launch.currency})"
    print_table(title, ["milestone", tz.key, "UTC"], rows)


@app.command("update")
def update(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Launch slug.")],
    product: Annotated[str | None, typer.Option(help="New product name.")] = None,
    cart_open: Annotated[str | None, typer.Option(help=TIME_HELP)] = None,
    cart_close: Annotated[str | None, typer.Option(help=TIME_HELP)] = None,
    prelaunch_start: Annotated[str | None, typer.Option(help=TIME_HELP)] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Move a milestone whose emails already went out."),
    ] = False,
) -> None:
    """Change a launch's milestones; emails not yet sent move with them.

    Refused for a time in the past, and (without --force) once an email timed from the
    milestone went out.

    Example: launchkit launch update spring --cart-close "2026-12-09 23:59"
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        launch = launches.update_launch(
            session,
            slug,
            now=utcnow(),
            product=product,
            cart_open=_parse(runtime, cart_open, "--cart-open"),
            cart_close=_parse(runtime, cart_close, "--cart-close"),
            prelaunch_start=_parse(runtime, prelaunch_start, "--prelaunch-start"),
            force=force,
        )
        sequences.reschedule_launch(session, runtime.settings, launch.slug)
        say(f'Updated launch "{launch.slug}".')


@app.command("delete")
def delete(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Launch slug.")],
) -> None:
    """Delete a launch, its sequences and offers, while nothing of it was sent or sold.

    Example: launchkit launch delete spring
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        launches.delete_launch(session, slug)
    say(f'Deleted launch "{slug}".')
