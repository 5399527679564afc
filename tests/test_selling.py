"""Selling (#18): dated price tiers, Stripe Tax, and the selling figures of the analysis.

Checkout Sessions are checked field by field through the recording HTTP client (localstripe
has no Checkout); the tier, discount and tax facts come from signed Stripe-shaped events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from launchkit import checkout
from launchkit.analysis import analyze_launch
from launchkit.config import load_settings
from launchkit.errors import InputError
from launchkit.models import Launch, Offer, OfferTier, Order
from launchkit.plan import PlanInvalid, load_plan
from launchkit.selling.promises import tiers_after_deadline
from launchkit.selling.tiers import TierSpec, parse_tier, price_now, set_tiers
from launchkit.sequences.context import launch_context, load_launch_data
from launchkit.stripe_events import Purchase
from tests.fixtures.stripe import create_offer, create_subscriber
from tests.test_checkout import RecordingClient

PARIS = ZoneInfo("Europe/Paris")


def _tiers(now: datetime) -> list[TierSpec]:
    return [
        TierSpec("early", 29700, now + timedelta(days=1)),
        TierSpec("late", 44700, now + timedelta(days=3)),
    ]


def _buy(session, settings, now, meta, amount, *, email="ana@example.fr", tweak=None) -> Order:
    """A pay-in-full purchase: ``payment_intent.succeeded`` then ``checkout.session.completed``
    (``tweak`` edits the session object: discounts, totals, tax)."""
    deal = Purchase(meta, email, amount, "EUR")
    ts = int(now.timestamp())
    completed = deal.completed(ts + 5)
    if tweak:
        tweak(completed["data"]["object"])
    for event in (deal.paid(ts), completed):
        assert checkout.handle_event(session, settings, event, now=now, fetch=False) == "applied"
    return session.scalar(
        select(Order).where(Order.stripe_payment_intent_id == deal.payment_intent)
    )


def _meta(session, offer: Offer, **extra: str) -> dict[str, str]:
    meta = checkout.checkout_metadata(offer, session.get(Launch, offer.launch_id), 1, None, False)
    return {**meta, **extra}


# --- tiers: parsing, price at a moment ----------------------------------------------------


def test_parse_tier_reads_workspace_time_and_stores_utc() -> None:
    tier = parse_tier("Early:297:until=2026-12-02 23:59", PARIS)
    assert tier == TierSpec("early", 29700, datetime(2026, 12, 2, 22, 59, tzinfo=UTC))
    for bad in ("early:297", "early:abc:until=2026-12-02 23:59", "x y:297:until=2026-12-02",
                "early:297:until=tomorrow"):  # fmt: skip
        with pytest.raises(InputError, match="--tier"):
            parse_tier(bad, PARIS)


def test_tier_prices_must_rise_towards_the_full_price(session, now) -> None:
    create_launch = create_offer(session, now)
    with pytest.raises(InputError, match='tier "late" must cost less'):
        checkout.add_offer(
            session, "spring", "other", product="X", price_cents=40000, currency="EUR", plans=[],
            tiers=_tiers(now), now=now,
        )  # fmt: skip
    assert create_launch.slug == "cours"
    assert session.scalar(select(Offer.id).where(Offer.slug == "other")) is None


def test_price_now_follows_the_tiers_then_the_full_price(session, now) -> None:
    offer = create_offer(session, now)
    set_tiers(session, offer, _tiers(now))
    early = price_now(session, offer, now)
    assert (early.cents, early.tier, early.next_price_at, early.next_cents) == (
        29700, "early", now + timedelta(days=1), 44700,
    )  # fmt: skip
    assert price_now(session, offer, now + timedelta(days=1)).tier == "early"  # inclusive
    late = price_now(session, offer, now + timedelta(days=1, seconds=1))
    assert (late.cents, late.tier, late.next_cents) == (44700, "late", 49700)
    full = price_now(session, offer, now + timedelta(days=4))
    assert (full.cents, full.tier, full.next_price_at) == (49700, None, None)


# --- tiers: checkout, order, email variables, sales page, launch.toml, CLI ----------------


def test_checkout_charges_the_tier_holding_at_session_creation(session, stripe_settings, now):
    offer = create_offer(session, now)
    set_tiers(session, offer, _tiers(now))
    http = RecordingClient()
    client = checkout.make_client(stripe_settings, http_client=http)
    moments = [(now, "29700", "early"), (now + timedelta(days=2), "44700", "late"),
               (now + timedelta(days=4), "49700", None)]  # fmt: skip
    for at, cents, tier in moments:
        checkout.start_checkout(
            session, stripe_settings, client, "cours", plan="full", subscriber_id=None,
            email=None, bump=False, now=at,
        )  # fmt: skip
        fields = http.requests[-1][3]
        assert fields["line_items[0][price_data][unit_amount]"] == cents
        assert fields.get("metadata[tier]") == tier
        assert fields.get("payment_intent_data[metadata][tier]") == tier
    checkout.start_checkout(
        session, stripe_settings, client, "cours", plan="3", subscriber_id=None, email=None,
        bump=False, now=now,
    )  # fmt: skip
    fields = http.requests[-1][3]
    assert fields["line_items[0][price_data][unit_amount]"] == "17700"  # plans keep their price
    assert "metadata[tier]" not in fields
    assert "allow_promotion_codes" not in fields and "automatic_tax[enabled]" not in fields


def test_order_keeps_tier_and_books_the_tier_price(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        set_tiers(s, offer, _tiers(now))
        meta = _meta(s, offer, tier="early", tier_cents="29700", bump="1")
        order = _buy(s, settings, now, meta, 29700 + 2700)
        assert (order.tier, order.total_cents, order.paid_cents, order.status) == (
            "early", 32400, 32400, "paid",
        )  # fmt: skip
        plain = _buy(s, settings, now, _meta(s, offer), 49700, email="bo@example.fr")
        assert (plain.tier, plain.total_cents, plain.discount_cents, plain.tax_cents) == (
            None, 49700, None, None,
        )  # fmt: skip


def test_email_variables_price_now_and_next_price_at(session, settings, now) -> None:
    offer = create_offer(session, now)
    set_tiers(session, offer, _tiers(now))
    launch = session.get(Launch, offer.launch_id)
    data = load_launch_data(session, launch, now)
    variables = launch_context(settings, data, {"timezone": "Europe/Paris"}, language="fr")
    assert variables["offer"]["price_now"] == "297,00\xa0€"
    assert variables["offer"]["price"] == "497,00\xa0€"
    assert variables["offer"]["tier"] == "early"
    assert variables["offer"]["next_price_at"] == "samedi 21 novembre à 11 h 00 (heure de Paris)"
    later = load_launch_data(session, launch, now + timedelta(days=4))
    after = launch_context(settings, later, {}, language="en")["offer"]
    assert (after["price_now"], after["tier"], after["next_price_at"]) == ("€497.00", "", "")


def test_sales_page_shows_tier_price_and_deadline(sessions, stripe_settings, now) -> None:
    from starlette.testclient import TestClient

    from launchkit.web import create_app

    with sessions.begin() as s:
        set_tiers(s, create_offer(s, now), _tiers(now))
    app = create_app(stripe_settings, clock=lambda: now)
    with TestClient(app) as web:
        html = web.get("/buy/cours").text
    assert (
        "Tarif «\xa0early\xa0»\xa0: 297,00\xa0€ jusqu&#39;au samedi 21 novembre 2026 à 11 h 00 "
        "(heure de Paris)" in html
    )
    assert "puis 447,00\xa0€" in html and "<s>497,00\xa0€</s>" in html
    app = create_app(stripe_settings, clock=lambda: now + timedelta(days=4))
    with TestClient(app) as web:
        html = web.get("/buy/cours").text
    assert "lk-tier" not in html and "<s>" not in html and "497,00\xa0€" in html


def test_launch_toml_offer_tiers_and_tax_behavior(tmp_path: Path, settings) -> None:
    toml = """
[launch]
slug = "spring"
product = "Cours"
prelaunch_start = "2026-11-20 09:00"
cart_open = "2026-12-01 09:00"
cart_close = "2026-12-08 23:59"

[[offers]]
slug = "cours"
price = 397
tiers = ["early:297:until=2026-12-02 23:59"]
tax_behavior = "inclusive"
"""
    path = tmp_path / "launch.toml"
    path.write_text(toml)
    plan = load_plan(path, settings)
    (offer,) = plan.offers
    assert offer.tiers == (TierSpec("early", 29700, datetime(2026, 12, 2, 22, 59, tzinfo=UTC)),)
    assert offer.tax_behavior == "inclusive"
    path.write_text(toml.replace('"inclusive"', '"both"').replace("297", "497"))
    with pytest.raises(PlanInvalid) as caught:
        load_plan(path, settings)
    text = str(caught.value)
    assert "offers[0].tiers" in text and "offers[0].tax_behavior" in text


def test_cli_offer_add_with_tier_and_tax_behavior(cli) -> None:
    created = cli(
        "launch", "create", "spring", "--product", "Cours", "--cart-open", "2026-12-01 09:00",
        "--cart-close", "2026-12-08 23:59",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    added = cli(
        "offer", "add", "spring", "cours", "--product", "Cours", "--price", "397",
        "--tier", "early:297:until=2026-12-02 23:59", "--tax-behavior", "exclusive",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    import json

    (listed,) = json.loads(cli("offer", "list", "--json").stdout)
    assert listed["tiers"] == [
        {"name": "early", "price_cents": 29700, "until": "2026-12-02T22:59:00Z"}
    ]
    assert listed["tax_behavior"] == "exclusive"
    bad = cli(
        "offer", "add", "spring", "other", "--product", "X", "--price", "397",
        "--tier", "early:297:until=someday",
    )  # fmt: skip
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: --tier")
    assert "Traceback" not in bad.output
    worse = cli(
        "offer", "add", "spring", "other", "--product", "X", "--price", "397",
        "--tax-behavior", "maybe",
    )  # fmt: skip
    assert worse.exit_code == 1 and "inclusive or exclusive" in worse.stderr
    assert len(json.loads(cli("offer", "list", "--json").stdout)) == 1


def test_promise_no_tier_price_after_its_deadline(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        set_tiers(s, offer, _tiers(now))
        launch = s.get(Launch, offer.launch_id)
        meta = _meta(s, offer, tier="early", tier_cents="29700")
        _buy(s, settings, now + timedelta(days=1, minutes=30), meta, 29700)  # session at 23:59
        assert tiers_after_deadline(s, launch) == []
        _buy(s, settings, now + timedelta(days=2), meta, 29700, email="late@example.fr")
        (broken,) = tiers_after_deadline(s, launch)
        assert broken[0] == "tier/early" and broken[1] == "late@example.fr"


# --- EU VAT (Stripe Tax) -----------------------------------------------------------------


def test_automatic_tax_session_parameters(session, stripe_settings, now) -> None:
    import dataclasses

    offer = create_offer(session, now)
    offer.tax_behavior = "exclusive"
    taxed = dataclasses.replace(stripe_settings, stripe_automatic_tax=True)
    http = RecordingClient()
    client = checkout.make_client(taxed, http_client=http)
    checkout.start_checkout(
        session, taxed, client, "cours", plan="full", subscriber_id=None, email=None, bump=True,
        now=now,
    )  # fmt: skip
    fields = http.requests[-1][3]
    assert fields["automatic_tax[enabled]"] == "true"
    assert fields["billing_address_collection"] == "required"
    assert fields["tax_id_collection[enabled]"] == "true"
    assert fields["line_items[0][price_data][tax_behavior]"] == "exclusive"
    assert fields["line_items[1][price_data][tax_behavior]"] == "exclusive"


def test_automatic_tax_setting_from_toml(workspace_env) -> None:
    from launchkit.errors import ConfigError

    home = Path(workspace_env["LAUNCHKIT_HOME"])
    toml = home / "launchkit.toml"
    base = toml.read_text()
    assert load_settings(home, env=workspace_env).stripe_automatic_tax is False
    toml.write_text(base + '\n[checkout]\nrecovery_delay = "2h"\n')
    toml.write_text(toml.read_text().replace("[stripe]", "[stripe]\nautomatic_tax = true", 1))
    if "[stripe]" not in base:
        toml.write_text(toml.read_text() + "\n[stripe]\nautomatic_tax = true\n")
    loaded = load_settings(home, env=workspace_env)
    assert loaded.stripe_automatic_tax is True
    assert loaded.checkout_recovery_delay == timedelta(hours=2)
    toml.write_text(toml.read_text().replace("automatic_tax = true", 'automatic_tax = "sure"'))
    with pytest.raises(ConfigError, match="stripe.automatic_tax"):
        load_settings(home, env=workspace_env)


def test_signed_session_event_keeps_tax_and_analysis_nets_it_out(
    sessions, stripe_settings, now
) -> None:
    from starlette.testclient import TestClient

    from launchkit.web import create_app
    from tests.test_webhooks import post

    with sessions.begin() as s:
        offer = create_offer(s, now)
        meta = _meta(s, offer, subscriber=str(create_subscriber(s, now).id))
    deal = Purchase(meta, "camille@example.fr", 59640, "EUR")  # 497 + 20% VAT
    ts = int(now.timestamp())
    event = deal.completed(ts)
    obj = event["data"]["object"]
    obj["automatic_tax"] = {"enabled": True, "status": "complete"}
    obj["total_details"] = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 9940}
    app = create_app(stripe_settings, clock=lambda: now)
    with TestClient(app) as web:
        assert post(web, event, ts=ts).json()["outcome"] == "applied"
        assert post(web, event, ts=ts).json()["outcome"] == "duplicate"
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.tax_cents, order.paid_cents, order.status) == (9940, 59640, "paid")
        report = analyze_launch(s, "spring")
    assert report["tax_cents"] == 9940
    assert report["revenue_net_of_tax_cents"] == report["net_revenue_cents"] - 9940
    assert report["gross_revenue_cents"] == 59640


def test_absurd_tax_or_discount_is_not_recorded(sessions, settings, now) -> None:
    def absurd(obj: dict) -> None:
        obj["total_details"] = {"amount_tax": -5, "amount_discount": "lots"}

    with sessions.begin() as s:
        offer = create_offer(s, now)
        order = _buy(s, settings, now, _meta(s, offer), 49700, tweak=absurd)
        assert (order.tax_cents, order.discount_cents, order.total_cents) == (None, None, 49700)


# --- the analysis ------------------------------------------------------------------------


def test_analysis_by_tier(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        assert analyze_launch(s, "spring")["by_tier"] == []  # no tiers: nothing new to show
        set_tiers(s, offer, _tiers(now))
        early = _meta(s, offer, tier="early", tier_cents="29700")
        _buy(s, settings, now, early, 29700, email="a@example.fr")
        _buy(s, settings, now, early, 29700, email="b@example.fr")
        _buy(s, settings, now, _meta(s, offer), 49700, email="c@example.fr")
        report = analyze_launch(s, "spring")
    picked = ("tier", "orders", "buyers", "revenue_cents", "net_revenue_cents")
    assert [{k: row[k] for k in picked} for row in report["by_tier"]] == [
        {"tier": None, "orders": 1, "buyers": 1, "revenue_cents": 49700,
         "net_revenue_cents": 49700},
        {"tier": "early", "orders": 2, "buyers": 2, "revenue_cents": 59400,
         "net_revenue_cents": 59400},
    ]  # fmt: skip
    assert report["booked_revenue_cents"] == 49700 + 2 * 29700
    assert report["by_coupon"] == [] and report["tax_cents"] == 0
    assert report["recovery"] == {
        "emails_sent": 0, "recovered_orders": 0, "recovered_revenue_cents": 0,
        "recovered_net_revenue_cents": 0, "recovery_rate": 0.0,
    }  # fmt: skip


def test_offer_tiers_are_deleted_with_their_offer(session, now) -> None:
    offer = create_offer(session, now)
    set_tiers(session, offer, _tiers(now))
    session.delete(offer)
    session.flush()
    assert session.scalars(select(OfferTier)).all() == []


def test_tier_discount_and_tax_recorded_the_same_in_any_event_order(sessions, settings, now):
    import itertools

    states = set()
    with sessions.begin() as s:
        offer = create_offer(s, now)
        set_tiers(s, offer, _tiers(now))
        meta = _meta(s, offer, tier="early", tier_cents="29700", bump="1", coupon="EARLY20")
    for number, order_of in enumerate(itertools.permutations(["paid", "completed", "again"])):
        deal = Purchase(meta, f"p{number}@example.fr", 27000, "EUR")
        ts = int(now.timestamp())
        completed = deal.completed(ts + 5)
        completed["data"]["object"]["total_details"] = {"amount_discount": 5400, "amount_tax": 4500}
        again = dict(completed, id=completed["id"] + "_redelivered")  # same facts, new event id
        events = {"paid": deal.paid(ts), "completed": completed, "again": again}
        with sessions.begin() as s:
            for name in order_of:
                checkout.handle_event(s, settings, events[name], now=now, fetch=False)
            order = s.scalar(select(Order).where(Order.email == f"p{number}@example.fr"))
            states.add((order.tier, order.coupon_code, order.discount_cents, order.tax_cents,
                        order.total_cents, order.paid_cents))  # fmt: skip
    assert states == {("early", "EARLY20", 5400, 4500, 29700 + 2700 - 5400, 27000)}


def test_cli_analyze_json_has_the_selling_keys(cli, sessions, settings, now) -> None:
    import json

    with sessions.begin() as s:
        offer = create_offer(s, now)
        set_tiers(s, offer, _tiers(now))
        _buy(s, settings, now, _meta(s, offer, tier="early", tier_cents="29700"), 29700)
    result = cli("analyze", "spring", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (row,) = report["by_tier"]
    assert (row["tier"], row["orders"], row["revenue_cents"]) == ("early", 1, 29700)
    assert (report["by_coupon"], report["tax_cents"]) == ([], 0)
    assert report["revenue_net_of_tax_cents"] == report["net_revenue_cents"]
    assert report["recovery"]["emails_sent"] == 0
