"""`launchkit launch ...`: create, list, show and update launches."""

from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, parse_local_datetime, utcnow
from launchkit.errors import InputError

evergreen = lazy_module("launchkit.evergreen")
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
    cart_open: Annotated[str, typer.Option(help=TIME_HELP + " Evergreen: 'entry +7d'.")],
    cart_close: Annotated[str, typer.Option(help=TIME_HELP + " Evergreen: 'entry +10d'.")],
    prelaunch_start: Annotated[str | None, typer.Option(help=TIME_HELP)] = None,
    waitlist: Annotated[bool, typer.Option(help="Open its waitlist page /w/SLUG.")] = False,
    evergreen_: Annotated[
        bool, typer.Option("--evergreen", help="Run the launch per person, from their entry.")
    ] = False,
    entry: Annotated[
        str | None, typer.Option(help="Evergreen entry: magnet:SLUG or tag:TAG.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Evergreen: last entry taken (default: a year). " + TIME_HELP)
    ] = None,
) -> None:
    """Create a launch with its milestones (or an evergreen one, timed per person).

    Example: launchkit launch create spring --product "Cours photo" --cart-open "2026-12-01 09:00"
    --cart-close "2026-12-08 23:59" --prelaunch-start "2026-11-24 09:00"

    Evergreen: launchkit launch create always --product "Cours photo" --evergreen
    --entry magnet:guide --cart-open "entry +7d" --cart-close "entry +10d"
    """
    runtime: Runtime = ctx.obj
    if evergreen_ or entry:
        _create_evergreen(runtime, slug, product, entry, cart_open, cart_close, until)
        return
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


def _create_evergreen(
    runtime: Runtime,
    slug: str,
    product: str,
    entry: str | None,
    cart_open: str,
    cart_close: str,
    until: str | None,
) -> None:
    if not entry:
        raise InputError("--evergreen needs --entry magnet:SLUG or --entry tag:TAG.")
    with runtime.transaction() as session:
        launch = evergreen.create_evergreen_launch(
            session, slug, product=product, entry=entry, cart_open=cart_open,
            cart_close=cart_close, currency=runtime.settings.currency, tz=runtime.settings.tz,
            now=utcnow(), until=_parse(runtime, until, "--until"),
        )  # fmt: skip
        say(
            f'Created evergreen launch "{launch.slug}" ({launch.product}): entry {launch.entry}, '
            f"cart {launch.entry_cart_open} to {launch.entry_cart_close} for each person."
        )


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
        if launch.mode == "evergreen":
            title += (
                f"; evergreen, entry {launch.entry}, each person's cart "
                f"{launch.entry_cart_open} to {launch.entry_cart_close} (entries taken from "
                "cart_open to cart_close below)"
            )
    print_table(title, ["milestone", tz.key, "UTC"], rows)


@app.command("update")
def update(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Launch slug.")],
    product: Annotated[str | None, typer.Option(help="New product name.")] = None,
    cart_open: Annotated[
        str | None, typer.Option(help=TIME_HELP + " Evergreen: 'entry +7d'.")
    ] = None,
    cart_close: Annotated[
        str | None, typer.Option(help=TIME_HELP + " Evergreen: 'entry +10d'.")
    ] = None,
    prelaunch_start: Annotated[str | None, typer.Option(help=TIME_HELP)] = None,
    entry: Annotated[
        str | None, typer.Option(help="Evergreen entry: magnet:SLUG or tag:TAG.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Evergreen: last entry taken. " + TIME_HELP)
    ] = None,
    evergreen_: Annotated[
        bool, typer.Option("--evergreen", help="Make a fixed launch evergreen (nothing sold).")
    ] = False,
    fixed: Annotated[
        bool, typer.Option("--fixed", help="Make an evergreen launch fixed (nothing sold).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Move a milestone whose emails already went out."),
    ] = False,
) -> None:
    """Change a launch's milestones; emails not yet sent move with them.

    Refused for a time in the past, and (without --force) once an email timed from the
    milestone went out. Evergreen: new offsets apply to people not yet told their dates (no
    email of the launch sent, cart not open); the others keep theirs.

    Example: launchkit launch update spring --cart-close "2026-12-09 23:59"

    Evergreen: launchkit launch update always --cart-open "entry +5d" --cart-close "entry +8d"
    """
    runtime: Runtime = ctx.obj
    if evergreen_ and fixed:
        raise InputError("--evergreen and --fixed cannot be used together.")
    with runtime.transaction() as session:
        launch = launches.get_launch(session, slug)
        is_evergreen = launch.mode == "evergreen"
        note = ""
        if fixed and is_evergreen:
            if not (cart_open and cart_close):
                raise InputError("--fixed needs --cart-open and --cart-close dates.")
            evergreen.switch_mode(
                session, launch, flag="--fixed", tz=runtime.settings.tz, now=utcnow()
            )
            is_evergreen = False
        if is_evergreen or evergreen_ or entry:
            if prelaunch_start is not None:
                raise InputError(
                    "--prelaunch-start: an evergreen launch's pre-launch starts at each entry."
                )
            if force:
                raise InputError(
                    "--force: an evergreen launch never moves dates already told; "
                    "new offsets reach the people not yet told theirs."
                )
            change = evergreen.TimingUpdate(
                product=product,
                entry=entry,
                cart_open=cart_open,
                cart_close=cart_close,
                until=_parse(runtime, until, "--until"),
            )
            done = evergreen.update_evergreen_launch(
                session, launch, change, tz=runtime.settings.tz, now=utcnow()
            )
            note = (
                f" {done.moved} entrant(s) moved to the new offsets, {done.kept} kept their dates."
            )
        else:
            if until is not None:
                raise InputError("--until: only an evergreen launch has a last entry.")
            launches.update_launch(
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
        say(f'Updated launch "{launch.slug}".{note}')


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
