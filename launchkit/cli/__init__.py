"""The `launchkit` command: a root Typer app composed of one sub-app per domain.

Every command is: parse arguments -> one library call -> format output. Library errors
(``LaunchkitError``) become ``Error: <message>`` on stderr with a non-zero exit, in one place.
"""

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from launchkit import __version__
from launchkit.cli import analysis as analysis_cli
from launchkit.cli import audience as audience_cli
from launchkit.cli import checkout as checkout_cli
from launchkit.cli import coupons as coupons_cli
from launchkit.cli import db as db_cli
from launchkit.cli import doctor as doctor_cli
from launchkit.cli import hooks as hooks_cli
from launchkit.cli import launch as launch_cli
from launchkit.cli import magnets as magnets_cli
from launchkit.cli import orchestrator as orchestrator_cli
from launchkit.cli import person as person_cli
from launchkit.cli import products as products_cli
from launchkit.cli import sequences as sequences_cli
from launchkit.cli import workspace as workspace_cli
from launchkit.cli.runtime import Runtime
from launchkit.errors import LaunchkitError


class LaunchkitGroup(TyperGroup):
    """Root group that turns library errors into one clean line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LaunchkitError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        finally:
            if isinstance(ctx.obj, Runtime):
                ctx.obj.close()


app = typer.Typer(
    cls=LaunchkitGroup,
    name="launchkit",
    help="Plan, run and analyze a course launch from the terminal.\n\n"
    "Example: launchkit init my-launch --timezone Europe/Paris --currency EUR",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"launchkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder (default: LAUNCHKIT_HOME, then "
            "the current folder and its parents).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: LAUNCHKIT_DATABASE_URL, then the toml)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Global options, parsed once; commands read them from ``ctx.obj``."""
    ctx.obj = Runtime(workspace_flag=workspace, db_flag=db)


workspace_cli.register(app)
app.add_typer(launch_cli.app, name="launch")
app.add_typer(db_cli.app, name="db")
audience_cli.register(app)
sequences_cli.register(app)
magnets_cli.register(app)
checkout_cli.register(app)
coupons_cli.register(app)
analysis_cli.register(app)
orchestrator_cli.register(app)
products_cli.register(app)
hooks_cli.register(app)
person_cli.register(app)
doctor_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
