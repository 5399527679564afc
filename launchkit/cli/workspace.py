"""`launchkit init` and `launchkit config show`."""

import sys
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
    sender_name: Annotated[
        str | None, typer.Option(help="From name of your emails (asked when interactive).")
    ] = None,
    sender_email: Annotated[
        str | None, typer.Option(help="From address of your emails (asked when interactive).")
    ] = None,
    postal_address: Annotated[
        str | None,
        typer.Option(help="Your postal address, shown in every email (asked when interactive)."),
    ] = None,
) -> None:
    """Create a workspace: launchkit.toml, starter emails and templates, a migrated database.

    Example: launchkit init my-launch --name "Atelier Lancement" --timezone Europe/Paris
    """
    from launchkit.workspace import init_workspace

    runtime: Runtime = ctx.obj
    sender = _ask_sender(
        {"name": sender_name, "email": sender_email, "postal_address": postal_address}
    )
    settings = init_workspace(
        directory,
        name=name,
        timezone=timezone,
        currency=currency,
        language=language,
        database_url=runtime.db_flag,
        env=runtime.env,
        sender=sender,
    )
    say(f"Created workspace {settings.workspace}")
    if not all(sender.get(key) for key in SENDER_PROMPTS):
        say("The sender is not complete yet: fill [sender] in launchkit.toml before sending.")
    say(f"Next: cd {directory} && launchkit audience import YOUR_LIST.csv")


SENDER_PROMPTS = {
    "name": "Sender name (the From of your emails)",
    "email": "Sender email address",
    "postal_address": "Postal address (shown at the bottom of every email)",
}


def _ask_sender(given: dict[str, str | None]) -> dict[str, str]:
    """Options first; what is missing is asked on a terminal and left empty otherwise."""
    sender = {k: v for k, v in given.items() if v is not None}
    if sys.stdin.isatty():
        for key, question in SENDER_PROMPTS.items():
            if key not in sender:
                sender[key] = typer.prompt(question, default="", show_default=False)
    return sender


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
