"""CLI: offer add/list/sync, refund, orders (exit codes and exact output)."""

from __future__ import annotations

import json

from sqlalchemy import select

from launchkit import checkout
from launchkit.models import Launch, Order
from launchkit.stripe_events import Purchase
from tests.fixtures.stripe import create_offer, create_subscriber, real_payment


def _launch(cli) -> None:
    r = cli(
        "launch", "create", "spring", "--product", "Cours photo",
        "--cart-open", "2026-12-01 09:00", "--cart-close", "2026-12-08 23:59",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr


def test_offer_add_and_list(cli):
    _launch(cli)
    r = cli(
        "offer", "add", "spring", "cours", "--product", "Cours photo", "--price", "497",
        "--currency", "EUR", "--plan", "3x177", "--plan", "6x92", "--bump", "Workbook:27",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stdout == 'Added offer "cours" to launch "spring": 497,00\xa0€, 2 plan(s).\n'
    listed = json.loads(cli("offer", "list", "--json").stdout)
    assert listed == [
        {
            "slug": "cours", "launch": "spring", "product": "Cours photo", "price_cents": 49700,
            "currency": "EUR", "guarantee_days": 30, "stripe_product_id": None,
            "plans": [
                {"instalments": 3, "instalment_cents": 17700},
                {"instalments": 6, "instalment_cents": 9200},
            ],
            "bump": {"name": "Workbook", "cents": 2700},
        }
    ]  # fmt: skip
    table = cli("offer", "list").stdout
    assert "3 × 177,00\xa0€, 6 × 92,00\xa0€" in table


def test_offer_add_errors_are_one_line(cli):
    _launch(cli)
    cases = {
        ("--plan", "3x"): 'Error: --plan "3x" must look like 3x177 (at least 2 instalments).\n',
        ("--bump", "Workbook"): 'Error: --bump "Workbook" must look like "Workbook:27".\n',
        ("--price", "abc"): 'Error: --price "abc" is not an amount like 497 or 49.90.\n',
    }
    for extra, message in cases.items():
        args = ["offer", "add", "spring", "cours", "--product", "P", "--price", "497", *extra]
        r = cli(*args)
        assert (r.exit_code, r.stderr) == (1, message)
    r = cli("offer", "add", "nope", "cours", "--product", "P", "--price", "497")
    assert r.exit_code == 1 and r.stderr.startswith('Error: Launch "nope" does not exist')
    assert json.loads(cli("offer", "list", "--json").stdout) == []


def test_offer_sync_twice_against_localstripe(cli, stripe_settings):
    _launch(cli)
    assert (
        cli("offer", "add", "spring", "cours", "--product", "Cours", "--price", "497").exit_code
        == 0
    )
    first = cli("offer", "sync")
    second = cli("offer", "sync")
    assert first.exit_code == second.exit_code == 0
    product = first.stdout.split("(")[1].split(")")[0]
    assert first.stdout == f"cours: created ({product})\n"
    assert second.stdout == f"cours: unchanged ({product})\n"
    listed = json.loads(cli("offer", "list", "--json").stdout)
    assert listed[0]["stripe_product_id"] == product


def test_refund_and_orders(cli, sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        offer = create_offer(s, now, guarantee_days=30)
        subscriber = create_subscriber(s, now)
        meta = checkout.checkout_metadata(
            offer, s.get(Launch, offer.launch_id), 1, subscriber.id, False
        )
    pi = real_payment(client, 49700, meta, "camille@example.fr")
    deal = Purchase(meta, "camille@example.fr", 49700, "EUR", payment_intent=pi)
    with sessions.begin() as s:
        checkout.handle_event(s, stripe_settings, deal.completed(int(now.timestamp())), now=now)
        order_id = s.scalars(select(Order.id)).one()
    table = cli("orders", "--launch", "spring")
    assert (
        table.exit_code == 0
        and "camille@example.fr" in table.stdout
        and "497,00\xa0€" in table.stdout
    )
    r = cli("refund", str(order_id), "--amount", "50", "--reason", "goodwill")
    assert (r.exit_code, r.stdout) == (0, f"Refunded 50,00\xa0€ on order {order_id}.\n")
    r = cli("refund", str(order_id), "--amount", "500")
    assert (r.exit_code, r.stderr) == (
        1, f"Error: Order {order_id}: a refund must be between 0.01 and 447.00 EUR.\n"
    )  # fmt: skip
    data = json.loads(cli("orders", "--json").stdout)
    assert data[0]["status"] == "paid" and data[0]["refunded_cents"] == 5000
    assert data[0]["refunds"][0]["reason"] == "goodwill"
    assert json.loads(cli("orders", "--failing", "--json").stdout) == []
    assert (
        cli("refund", "999").stderr
        == 'Error: Order "999" does not exist; see `launchkit orders`.\n'
    )


def test_refund_outside_the_window_names_the_date(cli, sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        offer = create_offer(s, now, guarantee_days=0)
        meta = checkout.checkout_metadata(offer, s.get(Launch, offer.launch_id), 1, None, False)
    pi = real_payment(client, 49700, meta, "alex@example.com")
    deal = Purchase(meta, "alex@example.com", 49700, "EUR", payment_intent=pi)
    with sessions.begin() as s:
        checkout.handle_event(s, stripe_settings, deal.completed(int(now.timestamp())), now=now)
    r = cli("refund", "1")
    assert r.exit_code == 1
    assert r.stderr == (
        "Error: Order 1: the guarantee window closed on 2026-11-20 11:00; use --force to refund "
        "anyway.\n"
    )
    forced = cli("refund", "1", "--force", "--reason", "exception")
    assert (forced.exit_code, forced.stdout) == (0, "Refunded 497,00\xa0€ on order 1.\n")
    assert json.loads(cli("orders", "--json").stdout)[0]["refunds"][0]["forced"] is True
