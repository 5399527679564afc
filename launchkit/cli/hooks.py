"""`launchkit hook ...`: outgoing webhooks (Standard Webhooks), their outbox and delivery."""

from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, utcnow

hooks = lazy_module("launchkit.hooks")

app = typer.Typer(help="Outgoing webhooks: access.granted, access.revoked, order.paid.")
JSON_OPT = typer.Option("--json", help="Output JSON.")


def register(root: typer.Typer) -> None:
    """Attach the `hook` sub-app to the root app."""
    root.add_typer(app, name="hook")


@app.command("add")
def hook_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="https:// endpoint (http:// only to localhost).")],
    event: Annotated[
        list[str], typer.Option("--event", help="access.granted, access.revoked or order.paid.")
    ],
) -> None:
    """Send these events to URL, signed; prints the signing secret once.

    Example: launchkit hook add https://school.example/hooks --event access.granted
    --event access.revoked
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        hook = hooks.add_hook(session, url, event, now=utcnow())
        say(f"Added webhook {hook.id} -> {hook.url} ({', '.join(hooks.hook_events(hook))}).")
        say(f"Signing secret (shown once, keep it): {hook.secret}")


@app.command("list")
def hook_list(ctx: typer.Context, as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """List webhooks (secrets are not shown).

    Example: launchkit hook list
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = [
            {"id": h.id, "url": h.url, "events": hooks.hook_events(h), "created_at": h.created_at}
            for h in hooks.list_hooks(session)
        ]
    if as_json:
        print_json(items)
        return
    print_table("Webhooks", ["id", "url", "events"], [
        (i["id"], i["url"], ", ".join(i["events"])) for i in items
    ])  # fmt: skip


@app.command("remove")
def hook_remove(
    ctx: typer.Context, hook_id: Annotated[str, typer.Argument(help="Webhook number.")]
) -> None:
    """Remove a webhook and its undelivered events.

    Example: launchkit hook remove 1
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        hook = hooks.remove_hook(session, hook_id)
    say(f"Removed webhook {hook_id} ({hook.url}).")


@app.command("log")
def hook_log(
    ctx: typer.Context,
    hook_id: Annotated[str | None, typer.Argument(help="Only this webhook.")] = None,
    limit: Annotated[int, typer.Option(help="How many deliveries.")] = 50,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Latest deliveries: id (the webhook-id header), event, status, attempts, last error.

    Example: launchkit hook log 1 --limit 20
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = [hooks.delivery_as_dict(d) for d in hooks.delivery_log(session, hook_id, limit)]
    if as_json:
        print_json(items)
        return
    tz = runtime.settings.tz
    rows = [
        (
            i["id"], i["hook"], i["event"], i["status"], i["attempts"],
            format_local(i["delivered_at"] or i["next_attempt_at"], tz), i["last_error"] or "",
        )
        for i in items
    ]  # fmt: skip
    columns = ["id", "hook", "event", "status", "attempts", "delivered / next", "last error"]
    print_table("Webhook deliveries", columns, rows)


@app.command("deliver")
def hook_deliver(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each endpoint.")] = 10.0,
) -> None:
    """Deliver the due events now (failures are retried later with backoff).

    Run it from cron every minute (or let `launchkit run --tick` do it).

    Example: launchkit hook deliver --timeout 5
    """
    runtime: Runtime = ctx.obj
    report = hooks.deliver_due(runtime.sessions, clock=utcnow, timeout=timeout)
    say(
        f"{len(report.delivered)} delivered, {len(report.retrying)} to retry, "
        f"{len(report.failed)} given up."
    )


@app.command("retry")
def hook_retry(
    ctx: typer.Context, hook_id: Annotated[str, typer.Argument(help="Webhook number.")]
) -> None:
    """Queue a webhook's given-up deliveries again (after fixing the receiver).

    Example: launchkit hook retry 1
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        count = hooks.retry_failed(session, hook_id, now=utcnow())
    say(f"{count} delivery(ies) queued again.")
