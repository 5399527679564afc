"""`launchkit db ...`: schema migrations."""

import typer

from launchkit.cli.output import say
from launchkit.cli.runtime import Runtime

app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Migrate the database to the schema this version of launchkit needs.

    Example: launchkit db upgrade
    """
    from launchkit.db import head_revision, upgrade_database

    runtime: Runtime = ctx.obj
    upgrade_database(runtime.engine)
    say(f"Database at schema {head_revision()}.")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Show the database's schema revision and the one the code needs.

    Example: launchkit db status
    """
    from launchkit.db import current_revision, head_revision

    runtime: Runtime = ctx.obj
    current, head = current_revision(runtime.engine), head_revision()
    state = "up to date" if current == head else "behind: run `launchkit db upgrade`"
    say(f"Database schema {current or 'none'}, code needs {head} ({state}).")
