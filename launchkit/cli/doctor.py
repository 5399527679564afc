"""`launchkit doctor`, and the same checks run before `schedule`, `send` and `serve`."""

from datetime import datetime
from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, say, warn
from launchkit.cli.runtime import Runtime
from launchkit.clock import parse_local_datetime, utcnow
from launchkit.errors import ConfigError
from launchkit.findings import Level

doctor = lazy_module("launchkit.doctor")


def doctor_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
    now: Annotated[
        str | None, typer.Option(help="Pretend it is this time (workspace timezone).")
    ] = None,
    dns: Annotated[
        bool, typer.Option("--dns", help="Also check the sender domain's SPF, DKIM and DMARC.")
    ] = False,
) -> None:
    """Check the setup before a send: sender, links, Stripe, milestones, send window, templates;
    with --dns, the SPF, DKIM and DMARC records of the sender's domain (asks DNS).

    Exits 1 when a check found an error.

    Example: launchkit doctor --dns --json
    """
    runtime: Runtime = ctx.obj
    moment = parse_local_datetime(now, runtime.settings.tz, what="--now") if now else utcnow()
    with runtime.transaction() as session:
        findings = doctor.run_checks(session, runtime.settings, now=moment, dns=dns)
        session.rollback()
    if as_json:
        print_json([f.as_dict() for f in findings])
    else:
        for finding in findings:
            say(f"{finding.level:<7} {finding.check}: {finding.message}")
    if doctor.has_errors(findings):
        raise typer.Exit(1)


def preflight(
    runtime: Runtime, now: datetime, *, refuse: bool, what: str, strict: tuple[str, ...] = ()
) -> None:
    """Print the doctor's warnings (and errors) on stderr; with ``refuse``, errors stop ``what``
    (and so do warnings of the ``strict`` checks)."""
    with runtime.sessions() as session:
        findings = doctor.run_checks(session, runtime.settings, now=now)
        session.rollback()
    problems = [f for f in findings if f.level != Level.OK]
    errors = [f for f in problems if f.level == Level.ERROR or f.check in strict]
    if refuse and errors:
        details = " ".join(f.message for f in errors)
        raise ConfigError(f"{details} Nothing was done: {what} refused (see `launchkit doctor`).")
    for finding in problems:
        warn(finding.message)


def register(app: typer.Typer) -> None:
    """Attach `launchkit doctor` to the root app."""
    app.command("doctor")(doctor_command)
