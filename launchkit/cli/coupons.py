"""`launchkit coupon ...`: Stripe promotion codes for the launch's offers."""

from typing import Annotated

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import format_local, parse_local_datetime, utcnow

checkout = lazy_module("launchkit.checkout")
coupons = lazy_module("launchkit.selling.coupons")

coupon_app = typer.Typer(
    help="Coupons: Stripe promotion codes typed at checkout or prefilled from a link.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Attach this domain's sub-app to the root app."""
    app.add_typer(coupon_app, name="coupon")


@coupon_app.command("add")
def coupon_add(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The code buyers type, e.g. EARLY20.")],
    percent: Annotated[int | None, typer.Option(help="Percent off (1-100).")] = None,
    amount_off: Annotated[
        str | None, typer.Option(help="Amount off instead of a percentage, e.g. 50.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help='Last moment the code works, "YYYY-MM-DD HH:MM".')
    ] = None,
    max_uses: Annotated[int | None, typer.Option(help="How many orders may use it.")] = None,
    offer: Annotated[str | None, typer.Option(help="Limit the code to this offer.")] = None,
    currency: Annotated[
        str | None, typer.Option(help="Currency of --amount-off (default: workspace).")
    ] = None,
) -> None:
    """Create a coupon in Stripe (a Coupon and its PromotionCode) and record it.

    Example: launchkit coupon add EARLY20 --percent 20 --until "2026-12-05 23:59" --max-uses 50
    --offer cours
    """
    runtime: Runtime = ctx.obj
    settings = runtime.settings
    lang = settings.language
    ends = parse_local_datetime(until, settings.tz, what="--until") if until else None
    amount = checkout.parse_money(amount_off, what="--amount-off") if amount_off else None
    client = checkout.make_client(settings)
    with runtime.transaction() as session:
        terms = coupons.CouponTerms(
            percent=percent,
            amount_off_cents=amount,
            currency=currency or settings.currency,
            until=ends,
            max_uses=max_uses,
            offer_slug=offer,
        )
        coupon = coupons.add_coupon(session, client, code, terms, now=utcnow())
        value = _value(coupon.percent_off, coupon.amount_off_cents, coupon.currency, lang)
        link = f"{settings.base_url.rstrip('/')}/buy/OFFER?coupon={coupon.code}"
        say(f'Added coupon "{coupon.code}" ({value}); prefilled by a link like {link}')


def _value(percent: int | None, amount: int | None, currency: str, language: str) -> str:
    if percent:
        return f"{percent}% off"
    return f"{checkout.format_money(amount or 0, currency, language)} off"


@coupon_app.command("list")
def coupon_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Output JSON.")] = False,
) -> None:
    """List coupons with their value, deadline, uses and offer.

    Example: launchkit coupon list --json
    """
    runtime: Runtime = ctx.obj
    settings = runtime.settings
    with runtime.transaction() as session:
        data = [coupons.coupon_as_dict(session, c) for c in coupons.list_coupons(session)]
        ends = {c.code: format_local(c.until, settings.tz) for c in coupons.list_coupons(session)}
    if as_json:
        print_json(data)
        return
    rows = [
        (
            item["code"],
            _value(
                item["percent_off"], item["amount_off_cents"], item["currency"], settings.language
            ),
            ends[item["code"]] or "-",
            f"{item['used']}/{item['max_uses']}" if item["max_uses"] else str(item["used"]),
            item["offer"] or "all",
            item["stripe_promotion_code_id"] or "-",
        )
        for item in data
    ]
    print_table("Coupons", ["code", "value", "until", "used", "offer", "stripe"], rows)
