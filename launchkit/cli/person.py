"""`launchkit person ...`: GDPR requests (export everything held on a person, or erase it)."""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import utcnow
from launchkit.files import FILE_MODE, make_private_dir, private_opener

privacy = lazy_module("launchkit.privacy")

app = typer.Typer(
    help="GDPR requests: export or erase everything held on one person.", no_args_is_help=True
)


def register(root: typer.Typer) -> None:
    """Attach the `person` sub-app to the root app."""
    root.add_typer(app, name="person")


@app.command("export")
def person_export(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON to this file (owner-only).")
    ] = None,
) -> None:
    """Everything held on a person as JSON: profile, tags, status history, consents with their
    wording, sends, web events, orders with payments, refunds and access, suppression entry.

    Example: launchkit person export ana@example.com --out ana.json
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        data = privacy.export_person(session, email)
    if out is None:
        print_json(data)
        return
    make_private_dir(out.parent.resolve())
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "w", encoding="utf-8", opener=private_opener) as handle:
        os.chmod(tmp, FILE_MODE)
        json.dump(data, handle, indent=2, ensure_ascii=False)
    tmp.replace(out)
    say(f"Wrote {out} (owner-only).")


@app.command("erase")
def person_erase(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person: personal data removed or anonymised in every table, the address kept only
    as a SHA-256 hash on the suppression list, orders kept anonymised for accounting.

    Example: launchkit person erase ana@example.com --yes
    """
    runtime: Runtime = ctx.obj
    if not yes:
        typer.confirm(f"Erase every personal data of {email}? This cannot be undone", abort=True)
    with runtime.transaction() as session:
        counts = privacy.erase_person(session, email, now=utcnow())
    say(
        f"Erased {email}: {counts['subscribers']} subscriber, {counts['orders']} orders "
        f"anonymised, {counts['redacted']} logged payloads redacted; the address is kept only "
        "as a hash on the suppression list."
    )
