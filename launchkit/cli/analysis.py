"""`launchkit analyze | compare | forecast | import-payments`: post-launch analysis."""

from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from launchkit.cli.lazy import lazy_module
from launchkit.cli.output import money, percent, print_json, print_table, say
from launchkit.cli.runtime import Runtime
from launchkit.clock import parse_local_datetime, utcnow
from launchkit.errors import InputError

analysis = lazy_module("launchkit.analysis")

JSON_OPT = typer.Option("--json", help="Output JSON.")
NOW_OPT = typer.Option(
    "--now", help="Pretend it is this local time (decides which carts have closed)."
)


def _moment(runtime: Runtime, now: str | None) -> datetime:
    return parse_local_datetime(now, runtime.settings.tz, what="--now") if now else utcnow()


def _pct(rate: float | None, digits: int = 2) -> str:
    return "" if rate is None else f"{rate * 100:.{digits}f}%"


def _money(cents: float, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise InputError(f"Cannot write {path}: {e.strerror}.") from e


def _fees(r: dict[str, Any]) -> str:
    """Known fees, "unknown" when no order's fee is known, never a made-up 0."""
    if r["fees_cents"] is None:
        return "unknown"
    text = _money(r["fees_cents"], r["currency"])
    unknown = r["fees_unknown_orders"]
    return f"{text} (unknown for {unknown} of {r['orders']} orders)" if unknown else text


def print_analysis(r: dict[str, Any]) -> None:
    cur = r["currency"]
    ci = r["conversion_ci95"]
    interval = f" (95% CI {_pct(ci[0])}-{_pct(ci[1])})" if ci else ""
    say(f"{r['launch']['slug']}: {r['launch']['product']} ({cur})")
    if r["provisional"]:
        say(
            f"Provisional: the cart is open until {r['launch']['cart_close']}; figures will change."
        )
    evergreen = r["launch"].get("mode") == "evergreen"
    base = "Entrants" if evergreen else "Audience at cart open"
    inside = "entrants in time" if evergreen else "in the audience"
    say(
        f"{base}: {r['audience_size']:,}  buyers: {r['buyers']:,} "
        f"({r['buyers_in_audience']:,} {inside}, "
        f"{r['buyers_on_list_outside_audience']:,} on the list outside it, "
        f"{r['buyers_not_on_list']:,} not on the list; {r['pending_orders']:,} checkouts unpaid)"
    )
    say(
        f"Conversion: {_pct(r['conversion_rate'])}{interval}; field bands: 0.5-2% typical, "
        f"2-4% established ({r['benchmark']['position']})"
    )
    say(
        f"Gross {_money(r['gross_revenue_cents'], cur)} - refunds "
        f"{_money(r['refunded_cents'], cur)} - fees {_fees(r)} = net "
        f"{_money(r['net_revenue_cents'], cur)}  (booked {_money(r['booked_revenue_cents'], cur)})"
    )
    p = r["payment_plans"]
    say(
        f"Refunds: {r['refunds']['count']} ({_pct(r['refund_rate'], 1)}), "
        f"{r['refunds']['inside_guarantee']} inside the guarantee. Plans: {p['orders']} orders, "
        f"completion {_pct(p['completion_rate'], 1)}. Last 48 h: "
        f"{_pct(r['timing']['share_last_48h'], 1)} of sales."
    )
    rows = [
        (
            s["source"],
            s["audience"],
            s["buyers"],
            percent(s["conversion_rate"]),
            f"{percent(s['ci95_low'])}-{percent(s['ci95_high'])}"
            if s["ci95_low"] is not None
            else "",
        )
        for s in r["by_source"]
    ]
    print_table(
        "Conversion by source", ["source", "audience", "buyers", "conversion", "95% CI"], rows
    )
    if r.get("evergreen"):
        print_entrants(r["evergreen"], cur)
    print_funnel(r.get("click_funnel") or [])
    print_selling(r)


def print_entrants(e: dict[str, Any], currency: str) -> None:
    """The "Entrants by week" table of an evergreen launch."""
    rows = [
        (
            w["week"],
            w["entrants"],
            w["buyers"],
            percent(w["conversion_rate"]),
            f"{percent(w['ci95_low'])}-{percent(w['ci95_high'])}" if w["ci95_low"] is not None
            else "",
            _money(w["revenue_cents"], currency),
            w["late_orders"],
        )
        for w in [*e["weeks"], e]
    ]  # fmt: skip
    title = f"Entrants by week (entry {e['entry']}, cart {e['cart_open']} to {e['cart_close']})"
    columns = ["week", "entrants", "buyers", "conversion", "95% CI", "revenue", "late orders"]
    print_table(title, columns, rows)


def print_funnel(funnel: list[dict[str, Any]]) -> None:
    """The click funnel per email: counts, each with its rate (clicked: of the delivered;
    the later steps: of the clickers)."""
    if not funnel:
        return
    if not any(row["clicks"] for row in funnel):
        say("Click funnel: no click recorded (email.track_clicks off, or nobody clicked yet).")
        return
    rows = [
        (
            f"{row['sequence']}/{row['step']}",
            row["delivered"],
            f"{row['clicked']} ({percent(row['click_rate'], 1)})",
            row["clicks"],
            f"{row['sales_page']} ({percent(row['sales_page_rate'], 1)})",
            f"{row['checkout_started']} ({percent(row['checkout_rate'], 1)})",
            f"{row['bought']} ({percent(row['buy_rate'], 1)})",
        )
        for row in funnel
    ]
    columns = ["email", "delivered", "clicked", "clicks", "sales page", "checkout", "bought"]
    print_table("Click funnel (people; after their click on the email)", columns, rows)


GROUP_COLUMNS = ["orders", "buyers", "conversion", "collected", "refunded", "net"]


def _group_cells(row: dict[str, Any], cur: str) -> list[Any]:
    return [
        row["orders"],
        row["buyers"],
        percent(row["conversion_rate"]),
        money(row["revenue_cents"], cur),
        money(row["refunded_cents"], cur),
        money(row["net_revenue_cents"], cur),
    ]


def print_selling(r: dict[str, Any]) -> None:
    """Tiers, coupons, recovery and tax: each only when the launch has some."""
    cur = r["currency"]
    if r.get("by_tier"):
        say("Sales by price tier: the price paid in full at checkout (plans keep the full price).")
        rows = [[t["tier"] or "full price", *_group_cells(t, cur)] for t in r["by_tier"]]
        print_table(None, ["tier", *GROUP_COLUMNS], rows)
    if r.get("by_coupon"):
        say("Sales by coupon: orders that used a code (conversion over the whole audience).")
        rows = [
            [c["coupon"], *_group_cells(c, cur), money(c["discount_cents"], cur)]
            for c in r["by_coupon"]
        ]
        print_table(None, ["coupon", *GROUP_COLUMNS, "discount"], rows)
    recovery = r.get("recovery") or {}
    if recovery.get("emails_sent"):
        say(
            f"Abandoned checkouts: {recovery['emails_sent']:,} recovery emails, "
            f"{recovery['recovered_orders']:,} orders after one "
            f"({percent(recovery['recovery_rate'], 1)} of the people emailed bought), "
            f"{money(recovery['recovered_revenue_cents'], cur)} collected, "
            f"{money(recovery['recovered_net_revenue_cents'], cur)} net."
        )
    if r.get("tax_cents"):
        say(
            f"Revenue net of tax: {money(r['revenue_net_of_tax_cents'], cur)} "
            f"(net {money(r['net_revenue_cents'], cur)} less the "
            f"{money(r['tax_cents'], cur)} of tax kept after refunds)."
        )


def analyze(
    ctx: typer.Context,
    launch: Annotated[str, typer.Argument(help="Launch slug.")],
    as_json: Annotated[bool, JSON_OPT] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML report here.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Write CSV tables here.")] = None,
    currency: Annotated[
        str | None, typer.Option(help="Analyze only orders in this currency, e.g. EUR.")
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(help="Narrow the audience and the buyers to a saved segment or expression."),
    ] = None,
    now: Annotated[str | None, NOW_OPT] = None,
) -> None:
    """Analyze a launch: conversion, revenue, refunds, plans, timing, emails.

    Example: launchkit analyze spring --html report.html --csv out/
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        result = analysis.analyze_launch(
            session, launch, currency=currency, segment=segment, now=_moment(runtime, now),
            tz=runtime.settings.tz,
        )  # fmt: skip
    if html is not None:
        _write(html, analysis.render_workspace_report(result, runtime.settings))
    if csv_dir is not None:
        analysis.write_csv(result, csv_dir)
    if as_json:
        print_json(result)
        return
    print_analysis(result)
    for path, what in ((html, "HTML report"), (csv_dir, "CSV tables")):
        if path is not None:
            say(f"Wrote {what} to {path}")


def compare(
    ctx: typer.Context,
    launches: Annotated[
        list[str] | None, typer.Argument(help="Launch slugs (default: all).")
    ] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML page here.")] = None,
    now: Annotated[str | None, NOW_OPT] = None,
) -> None:
    """Compare launches side by side, with conversion against audience size.

    Without names: every launch whose cart has closed. A line is fitted from three launches.

    Example: launchkit compare spring-2025 autumn-2025 spring-2026 --html compare.html
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        moment = _moment(runtime, now)
        result = analysis.compare_launches(session, launches or None, now=moment)
    if html is not None:
        settings = runtime.settings
        _write(
            html,
            analysis.render_compare(
                result, language=settings.language, templates_dir=settings.templates_dir
            ),
        )
    if as_json:
        print_json(result)
        return
    rows = [
        (
            r["launch"] + (" (provisional)" if r["provisional"] else ""),
            r["audience_size"],
            r["buyers"],
            percent(r["conversion_rate"]),
            money(r["net_revenue_cents"], r["currency"]),
            percent(r["refund_rate"], 1),
        )
        for r in result["launches"]
    ]
    print_table("Launches", ["launch", "audience", "buyers", "conversion", "net", "refunds"], rows)
    fit = result["fit"]
    if fit:
        low, high = (v * 100 for v in fit["slope_per_1000_ci95"])
        say(
            f"Fitted line over {fit['launches']} launches: conversion changes by "
            f"{fit['slope_per_1000'] * 100:+.3f} points per 1,000 more subscribers "
            f"(95% interval {low:+.3f} to {high:+.3f})."
        )
    else:
        say("No fitted line: it takes at least three launches with an audience.")
    print_retention(result["membership_retention"])


def print_retention(section: dict[str, Any]) -> None:
    """Membership launches' retention side by side ("not yet" for a month not every member
    has reached)."""
    if not section["launches"]:
        return
    rows = [
        (
            r["launch"],
            r["members_joined"],
            percent(r["monthly_churn"], 1),
            *(percent(m["rate"], 0) if m["reached"] else "not yet" for m in r["retention"]),
        )
        for r in section["launches"]
    ]
    months = [f"M{k}" for k in section["months"]]
    title = "Membership retention, M<k> = k whole months after joining"
    print_table(title, ["launch", "members", "churn/month", *months], rows)
    comparable = ", ".join(str(k) for k in section["comparable_months"]) or "none yet"
    say(f"Months every launch's members have reached (comparable): {comparable}.")


def _price_cents(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = Decimal(text.strip()) * 100
    except InvalidOperation:
        raise InputError(f'--price "{text}" is not an amount like 497 or 497.50.') from None
    if value <= 0 or value != value.to_integral_value():
        raise InputError(f'--price "{text}" must be positive with at most 2 decimals.')
    return int(value)


def forecast(
    ctx: typer.Context,
    audience: Annotated[int, typer.Option(help="List size at cart open.")],
    from_launches: Annotated[
        list[str] | None, typer.Option("--from", help="Past launches to learn from (repeat).")
    ] = None,
    price: Annotated[str | None, typer.Option(help="Price in major units, e.g. 497.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 0,
    as_json: Annotated[bool, JSON_OPT] = False,
    now: Annotated[str | None, NOW_OPT] = None,
) -> None:
    """Forecast buyers and net revenue with an 80% interval, by simulation.

    Learns from the launches given with --from, else from every launch whose cart has closed.

    Example: launchkit forecast --audience 12000 --from spring-2026 --price 497
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        result = analysis.forecast_launch(
            session,
            audience=audience,
            price_cents=_price_cents(price),
            from_launches=from_launches or None,
            seed=seed,
            now=_moment(runtime, now),
        )
    if as_json:
        print_json(result)
        return
    b, n = result["buyers"], result["net_revenue_cents"]
    basis = ", ".join(result["based_on"]) or "the field benchmark (0.5-2%)"
    cur = runtime.settings.currency
    say(f"Forecast for {audience:,} subscribers, from {basis}:")
    say(f"Buyers: {b['mean']:.0f} expected, 80% interval {b['p10']:.0f}-{b['p90']:.0f}")
    say(
        f"Net revenue: {_money(n['mean'], cur)} expected, 80% interval "
        f"{_money(n['p10'], cur)} - {_money(n['p90'], cur)}"
    )


def import_payments(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Stripe unified payments CSV export.")],
    launch: Annotated[str, typer.Option(help="Launch the payments belong to.")],
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Import a Stripe payments CSV export as orders, matched to subscribers by email.

    Example: launchkit import-payments unified_payments.csv --launch spring
    """
    runtime: Runtime = ctx.obj
    with runtime.transaction() as session:
        result = analysis.import_payments(session, file, launch=launch, now=utcnow())
    if as_json:
        print_json(result)
        return
    say(
        f"Imported {result['imported']} payments into {result['launch']}: {result['created']} "
        f"new, {result['updated']} updated, {result['unchanged']} unchanged, "
        f"{result['skipped_failed']} failed rows skipped."
    )
    say(
        f"Matched to subscribers: {result['matched']}; unmatched buyers: "
        f"{result['unmatched_count']}"
    )
    for email in result["unmatched"]:
        say(f"  unmatched: {email}")


def register(app: typer.Typer) -> None:
    """Attach this domain's commands to the root app."""
    app.command("analyze")(analyze)
    app.command("compare")(compare)
    app.command("forecast")(forecast)
    app.command("import-payments")(import_payments)
