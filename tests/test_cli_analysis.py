"""`launchkit analyze | compare | forecast | import-payments` through the real CLI, both DBs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from launchkit.models import Order
from tests.analysis_data import build_small_launch, make_launch
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
    r = launched("analyze", "spring", "--html", str(html), "--csv", str(out))
    assert r.exit_code == 0, r.stderr
    assert "Audience at cart open: 200  buyers: 8  conversion: 4.00%" in r.stdout
    assert (
        "Gross 3,917.00 EUR - refunds 994.00 EUR - fees 106.50 EUR = net 2,816.50 EUR" in r.stdout
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
    r = launched("compare", "--json", "--html", str(tmp_path / "c.html"))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert [row["launch"] for row in data["launches"]] == ["spring", "other"]
    assert data["fit"] is not None and "<svg" in (tmp_path / "c.html").read_text()
    r = launched("compare", "spring")
    assert r.exit_code == 0 and "spring" in r.stdout
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
