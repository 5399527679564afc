"""`launchkit magnet ...`, `launchkit serve` and `launchkit secret rotate`."""

import errno
from pathlib import Path
from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say, warn
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, utcnow
from launchkit.config import write_secret_key
from launchkit.errors import ConfigError

magnets = lazy_module("launchkit.magnets")

app = typer.Typer(help="Lead magnets: opt-in pages with double opt-in.", no_args_is_help=True)
secret_app = typer.Typer(help="The signing key of links.", no_args_is_help=True)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("add")
def add(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Short name used in the page URL /m/SLUG.")],
    title: Annotated[str, typer.Option(help="Title shown on the page and in emails.")],
    file: Annotated[
        Path | None, typer.Option(help="File to give away (copied into the workspace).")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Or a URL to redirect to.")] = None,
    description: Annotated[
        str, typer.Option(help="The promise; lines starting with '- ' become bullets.")
    ] = "",
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Extra tag for confirmed subscribers.")
    ] = None,
    sequence: Annotated[
        str | None, typer.Option(help="Nurture sequence started at confirmation.")
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="Page and email language (fr or en).")
    ] = None,
) -> None:
    """Add a lead magnet and its opt-in page.

    Example: launchkit magnet add checklist --title "La checklist du lancement"
    --file sample_data/magnets/checklist-lancement.pdf --tag lead
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        magnet = magnets.add_magnet(
            session, runtime.settings, slug, title=title, file=file, url=url,
            description=description, tags=tag or [], sequence=sequence, language=language,
            now=utcnow(),
        )  # fmt: skip
        page = f"{runtime.settings.base_url.rstrip('/')}/m/{magnet.slug}"
    say(f'Added magnet "{slug}": {page}')


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """List lead magnets.

    Example: launchkit magnet list --json
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = [magnets.magnet_as_dict(m) for m in magnets.list_magnets(session)]
    if as_json:
        print_json(items)
        return
    rows = [(m["slug"], m["title"], m["file"] or m["url"], ", ".join(m["tags"])) for m in items]
    print_table("Lead magnets", ["slug", "title", "file or URL", "tags"], rows)


@app.command("show")
def show(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Magnet slug.")],
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Show one lead magnet and its page URL.

    Example: launchkit magnet show checklist
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        magnet = magnets.get_magnet(session, slug)
        data = magnets.magnet_as_dict(magnet)
        data["page"] = f"{runtime.settings.base_url.rstrip('/')}/m/{magnet.slug}"
        created = format_local(magnet.created_at, runtime.settings.tz)
    if as_json:
        print_json(data)
        return
    data["created_at"] = created
    data["tags"] = ", ".join(data["tags"])
    print_table(f"Magnet {slug}", ["field", "value"], list(data.items()))


@app.command("stats")
def stats(
    ctx: typer.Context,
    slug: Annotated[str | None, typer.Argument(help="Only this magnet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Page views, signups, confirmations, confirm rate and downloads, in total and per day.

    Example: launchkit magnet stats --json
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        rows = magnets.magnet_stats(session, runtime.settings.tz, slug)
    if as_json:
        print_json(rows)
        return
    columns = ["magnet / day", "views", "signups", "confirmed", "downloads", "confirm rate"]
    table = []
    for row in rows:
        table.append((row["slug"], *_counts(row), _rate(row["confirm_rate"])))
        for day in row["days"]:
            rate = day["confirmations"] / day["signups"] if day["signups"] else None
            table.append((f"  {day['day']}", *_counts(day), _rate(rate)))
    print_table("Lead magnets", columns, table)


def _counts(row: dict) -> tuple[int, int, int, int]:  # type: ignore[type-arg]
    return (row["page_views"], row["signups"], row["confirmations"], row["downloads"])


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@app.command("update")
def update(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Magnet slug.")],
    title: Annotated[str | None, typer.Option(help="New title.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    file: Annotated[Path | None, typer.Option(help="New file to give away.")] = None,
    url: Annotated[str | None, typer.Option(help="Or a new URL to redirect to.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Replace the extra tags (repeat).")
    ] = None,
    language: Annotated[str | None, typer.Option(help="fr or en.")] = None,
) -> None:
    """Change a magnet's title, description, file or URL, tags or language.

    Example: launchkit magnet update checklist --title "La checklist 2027"
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        magnets.update_magnet(
            session, runtime.settings, slug, title=title, description=description, file=file,
            url=url, tags=tag, language=language,
        )  # fmt: skip
    say(f'Updated magnet "{slug}".')


@app.command("remove")
def remove(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Magnet slug.")],
) -> None:
    """Delete a magnet nobody signed up to (else archive it).

    Example: launchkit magnet remove checklist
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        magnets.remove_magnet(session, runtime.settings, slug)
    say(f'Removed magnet "{slug}".')


@app.command("archive")
def archive(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Magnet slug.")],
) -> None:
    """Close a magnet's opt-in page to new signups; past signups keep their links.

    Example: launchkit magnet archive checklist
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        changed = magnets.archive_magnet(session, slug, now=utcnow())
    say(f'Archived magnet "{slug}": its page takes no new signups.' if changed
        else f'Magnet "{slug}" was already archived.')  # fmt: skip


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Refuse to start on a doctor error or offers without Stripe keys."
        ),
    ] = False,
) -> None:
    """Run the web app (opt-in pages, confirmations, downloads, unsubscribe, checkout).

    Checks the configuration (`launchkit doctor`) and that the port is free before starting.

    Example: launchkit serve --port 8000
    """
    import uvicorn

    from launchkit.cli.doctor import preflight
    from launchkit.web import create_app

    runtime: Runtime = ctx.obj
    settings = runtime.settings
    runtime.sessions  # noqa: B018 (checks the schema is current before serving)
    preflight(runtime, utcnow(), refuse=strict, what="serve", strict=("stripe",))
    check_port_free(host, port)
    if host not in LOOPBACK:
        warn(f"listening on {host}: put a TLS reverse proxy in front of it.")
    say(f"Serving {settings.name} on http://{host}:{port} (Ctrl+C to stop)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def check_port_free(host: str, port: int) -> None:
    """A one-line error now rather than uvicorn's traceback after "Serving ..."."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f'--host "{host}" is not an address of this machine: {e}.') from e
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use; pick another with --port"
                ) from e
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}.") from e


@secret_app.command("rotate")
def rotate(ctx: typer.Context) -> None:
    """Make a new signing key; links signed with the previous keys keep working until they expire.

    Example: launchkit secret rotate
    """
    runtime: Runtime = ctx.obj
    write_secret_key(runtime.settings.workspace, rotate=True)
    say("New signing key written; the 4 previous keys are still accepted.")


def register(root: typer.Typer) -> None:
    """Attach this domain's commands and sub-apps to the root app."""
    root.add_typer(app, name="magnet")
    root.add_typer(secret_app, name="secret")
    root.command("serve")(serve)
