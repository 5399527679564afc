"""`launchkit analyze | compare | forecast | import-payments` through the real CLI, both DBs."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from launchkit.models import Order
from tests.analysis_data import add_selling, build_small_launch, make_launch
from tests.test_analysis import ROWS, _export, _order


@pytest.fixture
def launched(sessions, cli):
    with sessions.begin() as session:
        build_small_launch(session)
    return cli


def test_analyze_json_has_the_documented_keys(launched) -> None:
    r = launched("analyze", "spring", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    for key in (
        "launch",
        "audience_size",
        "buyers",
        "conversion_rate",
        "conversion_ci95",
        "benchmark",
        "gross_revenue_cents",
        "refunded_cents",
        "fees_cents",
        "net_revenue_cents",
        "booked_revenue_cents",
        "average_order_cents",
        "refund_rate",
        "currency",
        "by_source",
        "by_magnet",
        "by_tag",
        "by_cohort",
        "by_segment",
        "payment_plans",
        "refunds",
        "timing",
        "emails",
    ):
        assert key in data, key
    assert (data["audience_size"], data["buyers"], data["net_revenue_cents"]) == (200, 8, 281650)
    assert set(data["by_source"][0]) >= {
        "source",
        "audience",
        "buyers",
        "conversion_rate",
        "ci95_low",
        "ci95_high",
    }


def test_analyze_text_html_and_csv(launched, tmp_path: Path) -> None:
    html, out = tmp_path / "report.html", tmp_path / "csv"
    r = launched(
        "analyze", "spring", "--html", str(html), "--csv", str(out), "--now", "2027-03-01 10:00"
    )
    assert r.exit_code == 0, r.stderr
    assert (
        "Audience at cart open: 200  buyers: 8 (7 in the audience, 0 on the list outside it, "
        "1 not on the list; 1 checkouts unpaid)\nConversion: 3.50%" in r.stdout
    )
    assert "Provisional" not in r.stdout
    assert (
        "Gross 3,917.00 EUR - refunds 994.00 EUR - fees 106.50 EUR (unknown for 1 of 8 orders) "
        "= net 2,816.50 EUR" in r.stdout
    )
    assert f"Wrote HTML report to {html}" in r.stdout
    page = html.read_text(encoding="utf-8")
    assert page.count("<svg") >= 2 * 5  # five charts, wide and narrow
    assert "Bilan du lancement" in page  # the workspace language is French
    assert "2\u202f816,50\xa0€" in page
    # self-contained: nothing fetched from elsewhere
    assert "src=" not in page and "<link" not in page and "https://" not in page
    assert "http://" not in page.replace('"http://www.w3.org/', "")
    with (out / "by_source.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["source"], row["audience"], row["buyers"]) for row in rows] == [
        ("instagram", "100", "3"),
        ("podcast", "60", "2"),
        ("webinar", "40", "2"),
    ]
    with (out / "summary.csv").open(encoding="utf-8") as handle:
        summary = next(csv.DictReader(handle))
    assert summary["net_revenue_cents"] == "281650" and summary["launch"] == "spring"
    assert {p.name for p in out.iterdir()} >= {
        "emails.csv",
        "plan_instalments.csv",
        "refund_days.csv",
        "by_cohort.csv",
    }


def test_no_selling_section_without_selling_data(launched, tmp_path: Path) -> None:
    html, out = tmp_path / "report.html", tmp_path / "csv"
    r = launched("analyze", "spring", "--html", str(html), "--csv", str(out))
    assert r.exit_code == 0, r.stderr
    for words in ("price tier", "coupon", "Abandoned checkouts", "net of tax"):
        assert words not in r.stdout
    assert 'id="selling"' not in html.read_text(encoding="utf-8")
    assert (out / "by_tier.csv").read_text(encoding="utf-8").splitlines() == [
        "tier,orders,buyers,conversion_rate,share_of_orders,revenue_cents,refunded_cents,"
        "net_revenue_cents"
    ]


def test_selling_figures_in_text_html_and_csv(launched, sessions, tmp_path: Path) -> None:
    """Worked out by hand from tests/analysis_data.py ``ORDERS`` and ``add_selling``."""
    with sessions.begin() as session:
        add_selling(session, session.scalar(sa.select(Order.launch_id).where(Order.id == 1)))
    data = json.loads(launched("analyze", "spring", "--json").stdout)
    full = {"tier": None, "orders": 6, "buyers": 6, "revenue_cents": 292300,
            "refunded_cents": 49700, "net_revenue_cents": 234950, "share_of_orders": 0.75,
            "conversion_rate": 0.025}  # fmt: skip
    early = {"tier": "early", "orders": 2, "buyers": 2, "revenue_cents": 99400,
             "refunded_cents": 49700, "net_revenue_cents": 46700, "share_of_orders": 0.25,
             "conversion_rate": 0.01}  # fmt: skip
    assert data["by_tier"] == [full, early]
    assert data["by_coupon"] == [
        {"coupon": "AMI20", "orders": 2, "buyers": 2, "revenue_cents": 104400,
         "refunded_cents": 0, "net_revenue_cents": 102750, "share_of_orders": 0.25,
         "conversion_rate": 0.01, "discount_cents": 19880}
    ]  # fmt: skip
    assert (data["tax_cents"], data["revenue_net_of_tax_cents"]) == (14183, 281650 - 14183)
    assert data["recovery"] == {
        "emails_sent": 3, "recovered_orders": 1, "recovered_revenue_cents": 49700,
        "recovered_net_revenue_cents": 49700, "recovery_rate": 1 / 3,
    }  # fmt: skip
    html, out = tmp_path / "report.html", tmp_path / "csv"
    r = launched("analyze", "spring", "--html", str(html), "--csv", str(out))
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "Sales by price tier: the price paid in full at checkout" in text
    assert "Sales by coupon: orders that used a code" in text
    assert "│ early │ 2 │ 2 │ 1,00 % │ 994,00 € │ 497,00 € │ 467,00 € │" in text.replace(
        "\xa0", " "
    ).replace("\u202f", " ")
    assert "Abandoned checkouts: 3 recovery emails, 1 orders after one" in text
    assert "Revenue net of tax: 2" in text
    page = html.read_text(encoding="utf-8")
    for words in ("Par palier de prix", "Par code promo", "Relance des paniers abandonnés",
                  "TVA conservée", "AMI20", "Plein tarif"):  # fmt: skip
        assert words in page, words
    assert "2\u202f674,67\xa0€" in page  # net of tax
    with (out / "by_coupon.csv").open(encoding="utf-8") as handle:
        (row,) = csv.DictReader(handle)
    assert (row["coupon"], row["net_revenue_cents"], row["discount_cents"]) == (
        "AMI20", "102750", "19880"
    )  # fmt: skip
    with (out / "by_tier.csv").open(encoding="utf-8") as handle:
        assert [r["tier"] for r in csv.DictReader(handle)] == ["", "early"]
    with (out / "summary.csv").open(encoding="utf-8") as handle:
        summary = next(csv.DictReader(handle))
    assert (summary["tax_cents"], summary["revenue_net_of_tax_cents"]) == ("14183", "267467")
    assert (summary["recovery_emails_sent"], summary["recovered_orders"]) == ("3", "1")


def test_analyze_errors(sessions, cli) -> None:
    r = cli("analyze", "nope")
    assert r.exit_code == 1
    assert r.stderr == 'Error: Launch "nope" does not exist; see `launchkit launch list`.\n'
    with sessions.begin() as session:
        launch_id = make_launch(session, "mixed")
        session.execute(
            sa.insert(Order), [_order(launch_id, 0, "EUR"), _order(launch_id, 1, "USD")]
        )
    r = cli("analyze", "mixed", "--json")
    assert r.exit_code == 1
    assert r.stderr == "Error: Launch mixed has orders in EUR and USD; pick one with --currency\n"
    r = cli("analyze", "mixed", "--json", "--currency", "USD")
    assert r.exit_code == 0 and json.loads(r.stdout)["currency"] == "USD"


def test_compare_and_forecast(launched, tmp_path: Path) -> None:
    after = ("--now", "2027-03-01 10:00")
    r = launched("compare", "--json", "--html", str(tmp_path / "c.html"), *after)
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert [row["launch"] for row in data["launches"]] == ["spring", "other"]
    assert data["fit"] is None  # two launches: no line
    page = (tmp_path / "c.html").read_text()
    assert "<svg" in page and "Pas de droite ajustée" in page
    r = launched("compare", "spring", "--now", "2026-12-05 10:00")
    assert r.exit_code == 0 and "spring (provisional)" in r.stdout
    assert "No fitted line: it takes at least three launches" in r.stdout
    r = launched(
        "forecast",
        "--audience",
        "12000",
        "--from",
        "spring",
        "--price",
        "497",
        "--seed",
        "3",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    forecast = json.loads(r.stdout)
    assert forecast["assumptions"]["price_cents"] == 49700 and forecast["seed"] == 3
    assert forecast["buyers"]["p10"] <= forecast["buyers"]["mean"] <= forecast["buyers"]["p90"]
    r = launched("forecast", "--audience", "12000", "--price", "49.999")
    assert r.exit_code == 1 and "at most 2 decimals" in r.stderr
    r = launched("forecast", "--audience", "5000", "--from", "spring")
    assert r.exit_code == 0 and "80% interval" in r.stdout


def test_import_payments_cli(launched, tmp_path: Path) -> None:
    path = _export(tmp_path, ROWS)
    r = launched("import-payments", str(path), "--launch", "other", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["created"], data["unmatched"]) == (3, ["stranger@example.org"])
    r = launched("import-payments", str(path), "--launch", "other")
    assert r.exit_code == 0
    assert "0 new, 0 updated, 3 unchanged, 1 failed rows skipped" in r.stdout
    assert "unmatched: stranger@example.org" in r.stdout
    r = launched("import-payments", str(tmp_path / "missing.csv"), "--launch", "other")
    assert r.exit_code == 1 and r.stderr.startswith("Error: missing.csv: cannot read the file")


def test_bounce_after_cart_open_keeps_the_audience(cli, sessions, tmp_path: Path) -> None:
    """3 people signed up in January, cart in February, one suppressed as bounced today: the
    audience at cart open is still 3 (analyze and status agree)."""
    people = tmp_path / "january.csv"
    people.write_text(
        "email,signed_up_at\n"
        "ann@example.com,2026-01-05 10:00\n"
        "bob@example.com,2026-01-12 10:00\n"
        "cyd@example.com,2026-01-20 10:00\n",
        encoding="utf-8",
    )
    assert cli("audience", "import", str(people)).exit_code == 0
    with sessions.begin() as session:
        make_launch(
            session,
            "february",
            prelaunch_start=datetime(2026, 1, 25, tzinfo=UTC),
            cart_open=datetime(2026, 2, 1, 9, tzinfo=UTC),
            cart_close=datetime(2026, 2, 8, 9, tzinfo=UTC),
        )
    bounced = tmp_path / "bounced.txt"
    bounced.write_text("bob@example.com\n", encoding="utf-8")
    r = cli("audience", "suppress", "--file", str(bounced), "--reason", "bounced")
    assert r.exit_code == 0, r.stderr
    r = cli("analyze", "february", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["audience_size"] == 3
    assert data["emails"]["unsubscribed"] == 0  # the bounce is not in the launch window
    r = cli("status", "february", "--json", "--now", "2026-03-01 10:00")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["audience_size"] == 3


def test_segment_narrows_buyers_like_by_segment(launched) -> None:
    """`--segment X` gives the conversion of the `by_segment` row for X (not all buyers over
    the segment's audience)."""
    now = ("--now", "2027-03-01 10:00")
    for name, expression in (("podcasters", "source:podcast"), ("vip", "tag:vip")):
        r = launched("segment", "save", name, expression)
        assert r.exit_code == 0, r.stderr
    whole = json.loads(launched("analyze", "spring", "--json", *now).stdout)
    rows = {row["segment"]: row for row in whole["by_segment"]}
    for name in ("podcasters", "vip"):
        r = launched("analyze", "spring", "--json", "--segment", name, *now)
        assert r.exit_code == 0, r.stderr
        narrowed = json.loads(r.stdout)
        row = rows[name]
        assert narrowed["audience_size"] == row["audience"]
        assert narrowed["buyers_in_audience"] == row["buyers"]
        assert narrowed["conversion_rate"] == pytest.approx(row["conversion_rate"], abs=1e-12)
        assert narrowed["conversion_ci95"] == pytest.approx([row["ci95_low"], row["ci95_high"]])
        assert narrowed["buyers_not_on_list"] == 0  # the outsider matches no segment
        assert narrowed["buyers"] == row["buyers"]  # every segment buyer is in the audience
    # revenue follows the buyers: the podcasters bought orders 3 and 4 (two plans)
    podcast = json.loads(
        launched("analyze", "spring", "--json", "--segment", "podcasters", *now).stdout
    )
    assert (podcast["orders"], podcast["gross_revenue_cents"]) == (2, 35400 + 53100)


def test_provisional_while_the_cart_is_open(launched, tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    r = launched("analyze", "spring", "--json", "--html", str(html), "--now", "2026-12-05 10:00")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["provisional"] is True
    assert "Le panier est encore ouvert" in html.read_text(encoding="utf-8")
    r = launched("analyze", "spring", "--json", "--html", str(html), "--now", "2026-12-09 10:00")
    assert json.loads(r.stdout)["provisional"] is False
    assert "Provisoire" not in html.read_text(encoding="utf-8")
    r = launched("analyze", "spring", "--now", "2026-12-05 10:00")
    assert "Provisional: the cart is open until 2026-12-08T09:00:00Z" in r.stdout


def test_unknown_fees_are_unknown_not_zero(launched, sessions, tmp_path: Path) -> None:
    with sessions.begin() as session:
        session.execute(sa.update(Order).values(fee_cents=None))
    html = tmp_path / "r.html"
    now = ("--now", "2027-03-01 10:00")
    data = json.loads(launched("analyze", "spring", "--json", "--html", str(html), *now).stdout)
    assert (data["fees_cents"], data["fee_ratio"], data["fees_known"]) == (None, None, False)
    assert (data["fees_known_orders"], data["fees_unknown_orders"]) == (0, 8)
    assert data["net_revenue_cents"] == 391700 - 99400  # gross - refunds, no fee invented
    page = html.read_text(encoding="utf-8")
    assert "frais inconnu" in page.lower() or "frais inconnu" in page
    r = launched("analyze", "spring", *now)
    assert "- fees unknown = net 2,923.00 EUR" in r.stdout


def test_status_counts_by_the_same_definitions(launched) -> None:
    """`launchkit status` and `analyze` agree on the audience, the buyers and conversion."""
    now = ("--now", "2026-12-20 10:00")
    analyzed = json.loads(launched("analyze", "spring", "--json", *now).stdout)
    r = launched("status", "spring", "--json", *now)
    assert r.exit_code == 0, r.stderr
    status = json.loads(r.stdout)
    for key in (
        "audience_size",
        "buyers",
        "buyers_in_audience",
        "buyers_on_list_outside_audience",
        "buyers_not_on_list",
        "pending_orders",
        "orders",
        "conversion_rate",
        "provisional",
    ):
        assert status[key] == analyzed[key], key
    assert (status["audience_size"], status["buyers_in_audience"]) == (200, 7)
    during = json.loads(launched("status", "spring", "--json", "--now", "2026-12-05 10:00").stdout)
    assert during["provisional"] is True


def test_status_never_adds_two_currencies(launched, sessions) -> None:
    """Orders in EUR and USD: status counts one currency (the launch's by default, or
    --currency) as `analyze --currency` does, and lists the other apart."""
    with sessions.begin() as session:
        first = session.scalar(
            sa.select(Order.id).where(Order.paid_cents > 0).order_by(Order.id).limit(1)
        )
        session.execute(sa.update(Order).where(Order.id == first).values(currency="usd"))
    now = ("--now", "2026-12-20 10:00")
    keys = ("buyers", "buyers_in_audience", "orders", "conversion_rate", "pending_orders")
    for currency in ("EUR", "USD"):
        analyzed = json.loads(
            launched("analyze", "spring", "--json", "--currency", currency, *now).stdout
        )
        picked = ("--currency", currency) if currency == "USD" else ()
        r = launched("status", "spring", "--json", *picked, *now)
        assert r.exit_code == 0, r.stderr
        status = json.loads(r.stdout)
        assert status["currency"] == currency
        assert {k: status[k] for k in keys} == {k: analyzed[k] for k in keys}, currency
        assert status["collected_cents"] == analyzed["gross_revenue_cents"]
        other = "USD" if currency == "EUR" else "EUR"
        assert list(status["other_currencies"]) == [other]
    text = launched("status", "spring", *now).stdout
    assert "also in USD" in text and "--currency USD" in text


def test_analyze_click_funnel_text_json_and_csv(sessions, cli, tmp_path: Path) -> None:
    from tests.test_click_funnel import generate_launch

    with sessions.begin() as session:
        generate_launch(session, seed=2)
    data = json.loads(cli("analyze", "spring", "--json").stdout)
    funnel = data["click_funnel"]
    assert [row["step"] for row in funnel] == ["e1", "e2", "e3"]
    out = tmp_path / "csv"
    r = cli("analyze", "spring", "--csv", str(out))
    assert r.exit_code == 0, r.stderr
    assert "Click funnel (people; after their click on the email)" in r.stdout
    first = funnel[0]
    line = next(line for line in r.stdout.splitlines() if "launch/e1" in line)
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    assert cells[:4] == [
        "launch/e1",
        str(first["delivered"]),
        f"{first['clicked']} ({first['click_rate'] * 100:.1f}\xa0%)".replace(".", ","),
        str(first["clicks"]),
    ]
    with (out / "click_funnel.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["email_id"], r["clicked"], r["bought"]) for r in rows] == [
        (str(row["email_id"]), str(row["clicked"]), str(row["bought"])) for row in funnel
    ]


def test_an_unlinked_order_stands_where_its_buyer_stands(cli, workspace_env, tmp_path) -> None:
    """Ana bought at the early price before she was on the list (the order is linked to no
    subscriber, her address typed " Ana@Example.com "), was imported with the tag `hot`, then
    bought again at the full price (linked). Both orders are Ana's (docs: Person), and Ana is in
    the audience and in `tag:hot`: `--segment tag:hot` counts both orders, and the early tier's
    row converts 1 of the 2 people in the audience."""
    import time

    from starlette.testclient import TestClient

    from launchkit.config import load_settings
    from launchkit.stripe_events import Purchase, encode, sign_payload
    from launchkit.web import create_app

    secret = "whsec_regression_segment_person"
    env = {**workspace_env, "STRIPE_WEBHOOK_SECRET": secret}
    dates = ("--cart-open", "2026-06-01T09:00:00+00:00", "--cart-close", "2026-06-08T09:00:00Z")
    assert cli("launch", "create", "juin", "--product", "Cours", *dates).exit_code == 0
    price = ("--price", "300", "--tier", "early:250:until=2026-06-03 09:00")
    assert cli("offer", "add", "juin", "cours", "--product", "Cours", *price).exit_code == 0
    app = create_app(load_settings(Path(env["LAUNCHKIT_HOME"]), env=env))

    def buy(email: str, at: datetime, cents: int, tier: dict[str, str]) -> None:
        meta = {"launch": "juin", "offer": "cours", "plan": "full", "instalments": "1"}
        purchase = Purchase(meta | tier, email=email, amount=cents, currency="eur")
        with TestClient(app) as web:
            for event in (
                purchase.completed(int(at.timestamp())),
                purchase.paid(int(at.timestamp())),
            ):
                body = encode(event)
                signed = {"Stripe-Signature": sign_payload(body, secret, int(time.time()))}
                answer = web.post("/stripe/webhook", content=body, headers=signed)
                assert answer.status_code == 200, answer.text

    early = {"tier": "early", "tier_cents": "25000"}
    buy(" Ana@Example.com ", datetime(2026, 6, 2, 10, tzinfo=UTC), 25000, early)
    people = tmp_path / "list.csv"
    people.write_text(
        "email,tags,signed_up_at\n"
        "ana@example.com,hot,2026-05-01T10:00:00+00:00\n"
        "bea@example.com,hot,2026-05-02T10:00:00+00:00\n",
        encoding="utf-8",
    )
    assert cli("audience", "import", str(people)).exit_code == 0
    buy("ana@example.com", datetime(2026, 6, 5, 10, tzinfo=UTC), 30000, {})
    now = ("--now", "2026-07-01T00:00:00+00:00")
    whole = json.loads(cli("analyze", "juin", "--json", *now).stdout)
    r = cli("analyze", "juin", "--json", "--segment", "tag:hot", *now)
    assert r.exit_code == 0, r.stderr
    for data in (whole, json.loads(r.stdout)):
        assert (data["audience_size"], data["buyers"], data["buyers_in_audience"]) == (2, 1, 1)
        assert (data["orders"], data["gross_revenue_cents"]) == (2, 55000)
        assert (data["average_order_cents"], data["mix"]["pay_in_full"]["orders"]) == (27500, 2)
        assert [d["orders"] for d in data["timing"]["per_day"]] == [1, 0, 0, 1]
        tiers = {row["tier"]: row for row in data["by_tier"]}
        assert (tiers["early"]["orders"], tiers["early"]["buyers"]) == (1, 1)
        assert tiers["early"]["conversion_rate"] == tiers[None]["conversion_rate"] == 0.5
