"""`launchkit offer ...`, `launchkit refund`, `launchkit orders`: offers, Stripe sync, refunds."""

from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, parse_local_datetime, utcnow
from launchkit.errors import InputError, PaymentError

checkout = lazy_module("launchkit.checkout")

offer_app = typer.Typer(
    help="Offers: price, payment plans, guarantee, order bump.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Attach this domain's commands and sub-apps to the root app."""
    app.add_typer(offer_app, name="offer")
    app.command("refund")(refund)
    app.command("orders")(orders)


@offer_app.command("add")
def offer_add(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    slug: Annotated[str, typer.Argument(help="Offer slug, used in /buy/SLUG.")],
    product: Annotated[str, typer.Option(help="Product name shown at checkout.")],
    price: Annotated[
        str | None, typer.Option(help="Pay-in-full price, e.g. 497 (not for a membership).")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="ISO currency (default: workspace).")] = None,
    plan: Annotated[
        list[str] | None, typer.Option("--plan", help="Instalment plan NxAMOUNT, e.g. 3x177.")
    ] = None,
    guarantee_days: Annotated[int, typer.Option(help="Money-back guarantee in days.")] = 30,
    bump: Annotated[str | None, typer.Option(help='Order bump "Name:amount".')] = None,
    presale_until: Annotated[
        str | None, typer.Option(help="Pre-sale: the product is delivered by this local date.")
    ] = None,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier",
            help='Dated pay-in-full price "name:AMOUNT:until=YYYY-MM-DD HH:MM" (workspace time).',
        ),
    ] = None,
    tax_behavior: Annotated[
        str | None,
        typer.Option(help="Stripe Tax: prices are tax inclusive or exclusive."),
    ] = None,
    membership: Annotated[
        list[str] | None,
        typer.Option("--membership", help="Recurring price monthly:29 or yearly:290 (repeat)."),
    ] = None,
    trial_days: Annotated[int, typer.Option(help="Membership free trial in days.")] = 0,
    founding_price: Annotated[
        list[str] | None,
        typer.Option(
            "--founding-price",
            help="Founding price kept by this launch's members, e.g. monthly:19 (repeat).",
        ),
    ] = None,
) -> None:
    """Add an offer to a launch: pay in full, instalment plans, guarantee, optional bump; or a
    membership (recurring, no end) with --membership.

    Example: launchkit offer add spring cours --product "Cours photo" --price 497 --currency EUR
    --plan 3x177 --plan 6x92 --guarantee-days 30 --bump "Workbook:27"
    --tier "early:297:until=2026-12-02 23:59" --tax-behavior inclusive

    Example: launchkit offer add spring club --product "Club" --membership monthly:29
    --membership yearly:290 --trial-days 7 --guarantee-days 14 --founding-price monthly:19
    """
    from launchkit.selling.tiers import parse_tier

    runtime: Runtime = ctx.obj
    settings = runtime.settings
    if membership or founding_price:
        _membership_offer_add(
            runtime, launch, slug, product, currency or settings.currency, membership or [],
            founding_price or [], trial_days, guarantee_days, price or plan or bump,
        )  # fmt: skip
        return
    if price is None:
        raise InputError("--price is required (or --membership for a membership offer).")
    plans = [checkout.parse_plan(text) for text in plan or []]
    bump_value = checkout.parse_bump(bump) if bump else None
    tiers = [parse_tier(text, settings.tz) for text in tier or []]
    with runtime.transaction() as session:
        offer = checkout.add_offer(
            session, launch, slug, product=product,
            price_cents=checkout.parse_money(price, what="--price"),
            currency=currency or settings.currency, plans=plans,
            guarantee_days=guarantee_days, bump=bump_value, now=utcnow(),
            presale_until=parse_local_datetime(presale_until, settings.tz, what="--presale-until")
            if presale_until else None,
            tiers=tiers, tax_behavior=tax_behavior,
        )  # fmt: skip
        money = checkout.format_money(offer.price_cents, offer.currency, settings.language)
        say(f'Added offer "{offer.slug}" to launch "{launch}": {money}, {len(plans)} plan(s).')


def _membership_offer_add(
    runtime: Runtime,
    launch: str,
    slug: str,
    product: str,
    currency: str,
    membership: list[str],
    founding: list[str],
    trial_days: int,
    guarantee_days: int,
    one_off: object,
) -> None:
    from launchkit import memberships

    if one_off:
        raise InputError(f'Offer "{slug}": --price, --plan and --bump do not go with --membership.')
    if not membership:
        raise InputError(f'Offer "{slug}": --founding-price needs --membership.')
    prices = [memberships.parse_membership(text) for text in membership]
    founding_prices = [memberships.parse_membership(t, option="--founding-price") for t in founding]
    with runtime.transaction() as session:
        offer = memberships.add_membership_offer(
            session, launch, slug, product=product, currency=currency, prices=prices,
            founding=founding_prices, trial_days=trial_days, guarantee_days=guarantee_days,
            now=utcnow(),
        )  # fmt: skip
        lang = runtime.settings.language
        names = memberships.offers.INTERVAL_NAMES
        shown = ", ".join(
            f"{names[i]} {checkout.format_money(c, offer.currency, lang)}" for i, c in prices
        )
        say(f'Added membership offer "{offer.slug}" to launch "{launch}": {shown}.')


@offer_app.command("list")
def offer_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """List offers with their prices and plans.

    Example: launchkit offer list --json
    """
    runtime: Runtime = ctx.obj
    lang = runtime.settings.language
    with runtime.transaction() as session:
        data = [checkout.offer_as_dict(session, o) for o in checkout.list_offers(session)]
    if as_json:
        print_json(data)
        return
    rows = []
    for item in data:
        cur = item["currency"]
        plans = ", ".join(
            f"{p['instalments']} × {checkout.format_money(p['instalment_cents'], cur, lang)}"
            for p in item["plans"]
        )
        rows.append(
            (item["slug"], item["launch"], item["product"],
             checkout.format_money(item["price_cents"], cur, lang), plans,
             f"{item['guarantee_days']} d", item["stripe_product_id"] or "-")
        )  # fmt: skip
    print_table(
        "Offers", ["slug", "launch", "product", "price", "plans", "guarantee", "stripe"], rows
    )


@offer_app.command("sync")
def offer_sync(ctx: typer.Context) -> None:
    """Create or update the Stripe Product of each offer (idempotent, safe to run twice).

    Example: launchkit offer sync
    """
    runtime: Runtime = ctx.obj
    client = checkout.make_client(runtime.settings)
    with runtime.transaction() as session:
        results = checkout.sync_offers(session, client, now=utcnow())
    for item in results:
        say(f"{item['offer']}: {item['action']} ({item['product']})")
    if not results:
        say("No offers to sync; add one with `launchkit offer add`.")


def refund(
    ctx: typer.Context,
    order: Annotated[int, typer.Argument(help="Order number (see `launchkit orders`).")],
    amount: Annotated[str | None, typer.Option(help="Partial amount, e.g. 50.00.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, kept with the refund.")] = None,
    force: Annotated[bool, typer.Option(help="Refund even after the guarantee window.")] = False,
    payment: Annotated[
        str | None,
        typer.Option(
            help="Only this payment (Stripe invoice or payment intent id), e.g. an "
            "instalment paid beyond the plan (see `launchkit orders --failing --json`)."
        ),
    ] = None,
) -> None:
    """Refund an order through Stripe within its guarantee; a plan's remaining instalments stop,
    a membership ends (its subscription is cancelled).

    Example: launchkit refund 42 --reason "not for me"
    """
    from launchkit.memberships.account import refund_any_order

    runtime: Runtime = ctx.obj
    settings = runtime.settings
    client = checkout.make_client(settings)
    cents = checkout.parse_money(amount, what="--amount") if amount else None
    with runtime.transaction() as session:
        result = refund_any_order(
            session, client, order, now=utcnow(), amount_cents=cents, reason=reason,
            force=force, tz=settings.tz, payment=payment,
        )  # fmt: skip
        status, money = (
            result.status,
            checkout.format_money(result.amount_cents, result.currency, settings.language),
        )
        key = result.idempotency_key
    if status != "succeeded":
        raise PaymentError(
            f"Stripe did not confirm the refund of order {order}; it is saved with key {key}. "
            "Run the same command again to retry safely."
        )
    say(f"Refunded {money} on order {order}.")


def _plan_cell(order: dict) -> str:
    if order["plan_instalments"] == 1:
        return "full"
    return f"{order['instalments_paid']}/{order['plan_instalments']}"


def orders(
    ctx: typer.Context,
    launch: Annotated[str | None, typer.Option(help="Only this launch.")] = None,
    failing: Annotated[bool, typer.Option(help="Only plans with a failed instalment.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """List orders: plan, instalments, paid, refunded, status, source.

    Example: launchkit orders --launch spring --failing --json
    """
    runtime: Runtime = ctx.obj
    settings = runtime.settings
    with runtime.transaction() as session:
        data = [
            checkout.order_as_dict(session, o)
            for o in checkout.list_orders(session, launch, failing=failing)
        ]
    if as_json:
        print_json(data)
        return
    lang = settings.language
    rows = [
        (
            o["id"], o["email"], o["offer"] or "-",
            _plan_cell(o),
            checkout.format_money(o["paid_cents"], o["currency"], lang),
            checkout.format_money(o["refunded_cents"], o["currency"], lang),
            o["status"] + (" (over-collected)" if o["over_collected_cents"] else ""),
            o["source"] or "-", format_local(o["paid_at"], settings.tz),
        )
        for o in data
    ]  # fmt: skip
    columns = ["order", "email", "offer", "plan", "paid", "refunded", "status", "source", "paid at"]
    print_table("Orders", columns, rows)


@offer_app.command("update")
def offer_update(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Offer slug.")],
    product: Annotated[str | None, typer.Option(help="New product name.")] = None,
    price: Annotated[str | None, typer.Option(help="New pay-in-full price.")] = None,
    plan: Annotated[
        list[str] | None,
        typer.Option("--plan", help="Replace the plans: NxAMOUNT, repeat for several."),
    ] = None,
    no_plans: Annotated[bool, typer.Option("--no-plans", help="Remove every plan.")] = False,
    guarantee_days: Annotated[int | None, typer.Option(help="New guarantee in days.")] = None,
) -> None:
    """Change an offer; once it has orders, price and plans stay and the guarantee only grows.

    Example: launchkit offer update cours --price 447 --guarantee-days 45
    """
    from launchkit.checkout.offers import update_offer

    runtime: Runtime = ctx.obj
    plans = [] if no_plans else [checkout.parse_plan(text) for text in plan] if plan else None
    price_cents = checkout.parse_money(price, what="--price") if price is not None else None
    with runtime.transaction() as session:
        offer = update_offer(
            session, slug, product=product, price_cents=price_cents, plans=plans,
            guarantee_days=guarantee_days,
        )  # fmt: skip
        money = checkout.format_money(offer.price_cents, offer.currency, runtime.settings.language)
        say(f'Updated offer "{offer.slug}": {money}, {len(offer.plans)} plan(s), '
            f"{offer.guarantee_days}-day guarantee.")  # fmt: skip


@offer_app.command("archive")
def offer_archive(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Offer slug.")],
) -> None:
    """Stop new checkouts of an offer; its orders, plans and refunds go on.

    Example: launchkit offer archive cours
    """
    from launchkit.checkout.offers import archive_offer

    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        changed = archive_offer(session, slug, now=utcnow())
    say(
        f'Archived offer "{slug}": no new checkouts.'
        if changed
        else f'Offer "{slug}" was already archived.'
    )
