"""`launchkit init` and `launchkit config show`."""

from pathlib import Path
from typing import Annotated

import typer

from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.config import SETTINGS

config_app = typer.Typer(help="Show the workspace configuration.", no_args_is_help=True)


def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    name: Annotated[str, typer.Option(help="Business or launch name.")] = "My launch",
    timezone: Annotated[str, typer.Option(help="IANA timezone of the creator.")] = "Europe/Paris",
    currency: Annotated[str, typer.Option(help="ISO currency of prices.")] = "EUR",
    language: Annotated[str, typer.Option(help="fr or en: language of pages and emails.")] = "fr",
) -> None:
    """Create a workspace: launchkit.toml, starter emails and templates, a migrated database.

    Example: launchkit init my-launch --name "Atelier Lancement" --timezone Europe/Paris
    """
    from launchkit.workspace import init_workspace

    runtime: Runtime = ctx.obj
    settings = init_workspace(
        directory,
        name=name,
        timezone=timezone,
        currency=currency,
        language=language,
        database_url=runtime.db_flag,
        env=runtime.env,
    )
    say(f"Created workspace {settings.workspace}")
    say(f"Next: cd {directory} && launchkit audience import YOUR_LIST.csv")


def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """Show every setting and its value, secrets masked.

    Example: launchkit config show --json
    """
    runtime: Runtime = ctx.obj
    values = runtime.settings.public()
    if as_json:
        print_json(values)
        return
    rows = [(spec.name, values[spec.name], spec.help) for spec in SETTINGS]
    print_table(f"Workspace {runtime.settings.workspace}", ["setting", "value", "meaning"], rows)


config_app.command("show")(show)


def register(app: typer.Typer) -> None:
    """Attach the workspace commands to the root app."""
    app.command("init")(init)
    app.add_typer(config_app, name="config")
