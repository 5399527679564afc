"""`launchkit product ...`, `launchkit offer grant|ungrant`, `launchkit access`,
`launchkit launch waitlist`, `launchkit presale cancel`: access that follows payment, waitlists
and pre-sales."""

from pathlib import Path
from typing import Annotated

import typer

from launchkit.cli import checkout as checkout_cli
from launchkit.cli import launch as launch_cli
from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, utcnow

access = lazy_module("launchkit.access")
checkout = lazy_module("launchkit.checkout")
presales = lazy_module("launchkit.presales")
waitlists = lazy_module("launchkit.waitlists")

product_app = typer.Typer(help="Products an offer gives access to (URL, file or invite).")
presale_app = typer.Typer(help="Pre-sales: cancel and refund every buyer.")
JSON_OPT = typer.Option("--json", help="Output JSON.")


def register(app: typer.Typer) -> None:
    """Attach this domain's commands and sub-apps to the root app."""
    app.add_typer(product_app, name="product")
    app.add_typer(presale_app, name="presale")
    app.command("access")(access_log)
    checkout_cli.offer_app.command("grant")(offer_grant)
    checkout_cli.offer_app.command("ungrant")(offer_ungrant)
    launch_cli.app.command("waitlist")(launch_waitlist)


@product_app.command("add")
def product_add(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Product slug, e.g. course.")],
    title: Annotated[str, typer.Option(help="Title shown on /members and in the access email.")],
    url: Annotated[str | None, typer.Option(help="An https:// page to redirect to.")] = None,
    file: Annotated[Path | None, typer.Option(help="A file to copy and serve.")] = None,
    invite: Annotated[str | None, typer.Option(help="An https:// invite link.")] = None,
) -> None:
    """Add a product: exactly one of --url, --file or --invite.

    Example: launchkit product add course --title "Photo course" --url https://school.example/c
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        product = access.add_product(
            session, runtime.settings, slug, title=title, url=url, file=file, invite=invite,
            now=utcnow(),
        )  # fmt: skip
        say(f'Added product "{product.slug}" ({product.kind}).')


@product_app.command("list")
def product_list(ctx: typer.Context, as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """List products and the offers that grant them.

    Example: launchkit product list --json
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = [access.product_as_dict(session, p) for p in access.list_products(session)]
    if as_json:
        print_json(items)
        return
    rows = [(i["slug"], i["title"], i["kind"], ", ".join(i["offers"]) or "-") for i in items]
    print_table("Products", ["product", "title", "kind", "granted by"], rows)


@product_app.command("remove")
def product_remove(
    ctx: typer.Context, slug: Annotated[str, typer.Argument(help="Product slug.")]
) -> None:
    """Remove a product (buyers lose it from /members).

    Example: launchkit product remove course
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        access.remove_product(session, slug)
    say(f'Removed product "{slug}".')


def offer_grant(
    ctx: typer.Context,
    offer: Annotated[str, typer.Argument(help="Offer slug.")],
    product: Annotated[str, typer.Argument(help="Product slug.")],
) -> None:
    """Make an offer grant a product on payment (its current buyers get it too).

    Example: launchkit offer grant cours course
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        granted = access.grant_product(session, offer, product, now=utcnow())
    say(f'Offer "{offer}" now grants "{product}" ({granted} current buyer(s) given access).')


def offer_ungrant(
    ctx: typer.Context,
    offer: Annotated[str, typer.Argument(help="Offer slug.")],
    product: Annotated[str, typer.Argument(help="Product slug.")],
) -> None:
    """Stop an offer granting a product to new buyers.

    Example: launchkit offer ungrant cours course
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        access.ungrant_product(session, offer, product)
    say(f'Offer "{offer}" no longer grants "{product}".')


def access_log(
    ctx: typer.Context,
    order: Annotated[int | None, typer.Option(help="Only this order.")] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Access history: every product granted or revoked, when and why.

    Example: launchkit access --order 42
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        items = access.access_history(session, order)
    if as_json:
        print_json(items)
        return
    tz = runtime.settings.tz
    rows = [
        (format_local(i["at"], tz), i["order"], i["email"], i["product"], i["action"], i["reason"])
        for i in items
    ]
    print_table("Access", ["at", "order", "email", "product", "action", "reason"], rows)


def launch_waitlist(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Launch slug.")],
    close: Annotated[bool, typer.Option("--close", help="Close the waitlist page.")] = False,
) -> None:
    """Open (or --close) the launch's waitlist page /w/SLUG, a double opt-in tagging
    waitlist:SLUG.

    Example: launchkit launch waitlist spring
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        if close:
            waitlists.close_waitlist(session, slug)
            say(f'Closed the waitlist of "{slug}".')
            return
        waitlists.open_waitlist(session, slug, now=utcnow(), language=runtime.settings.language)
    say(f"Waitlist open: {runtime.settings.base_url.rstrip('/')}/w/{slug}")


@presale_app.command("cancel")
def presale_cancel(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Cancel a pre-sale: refund every buyer of its pre-sale offers in full (safe to rerun).

    Example: launchkit presale cancel spring --yes
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        buyers = len(presales.presale_orders(session, launch))  # no pre-sale: an error, now
    if not yes:
        typer.confirm(f'Refund the {buyers} pre-sale order(s) of "{launch}" in full?', abort=True)
    client = checkout.make_client(runtime.settings)
    result = presales.cancel_presale(runtime.sessions, client, launch, now=utcnow())
    say(
        f"Refunded {len(result.refunded)} order(s) now, {len(result.already)} already refunded, "
        f"{len(result.failed)} failed."
    )
    for order_id, message in result.failed:
        typer.echo(f"Error: order {order_id}: {message}", err=True)
    if result.failed:
        raise typer.Exit(1)
