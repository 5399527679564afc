"""The outside reviewer's scenario (issue #14), on SQLite and PostgreSQL: the list built with
``launchkit audience import`` (twice, the second export made during the cart, and once more
after the first sales), signed Stripe events posted to the real web app in a shuffled order with
redeliveries, then every figure of ``launchkit analyze --json`` (EUR, USD, each saved segment)
compared with ``tests.oracle.audit_scenario.truth``, computed from the scenario's facts alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from launchkit.config import load_settings
from launchkit.web import create_app
from tests.conftest import Cli
from tests.oracle import audit_scenario as scenario


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_figure_of_the_audit_scenario(workspace_env, tmp_path: Path, seed: int) -> None:
    env = {**workspace_env, "STRIPE_WEBHOOK_SECRET": scenario.SECRET}
    cli = Cli(env)

    def run(*args: str) -> str:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        return result.stdout

    world = scenario.generate(seed)
    settings = load_settings(Path(env["LAUNCHKIT_HOME"]), env=env)
    with TestClient(create_app(settings)) as client:

        def post(body: bytes, signature: str) -> dict:
            answer = client.post(
                "/stripe/webhook", content=body, headers={"Stripe-Signature": signature}
            )
            return answer.json()

        scenario.drive(world, run, post, tmp_path, lambda: int(time.time()))

    def analyze(args: list[str]) -> dict:
        return json.loads(
            run("analyze", scenario.SLUG, "--json", "--now", scenario.NOW.isoformat(), *args)
        )

    mixed = cli("analyze", scenario.SLUG, "--json")  # EUR and USD orders: pick one
    assert mixed.exit_code == 1
    assert mixed.stderr.strip() == (
        f"Error: Launch {scenario.SLUG} has orders in EUR and USD; pick one with --currency"
    )
    compared, report = scenario.check(world, analyze)
    assert compared > 1000
    assert not report, f"{len(report)} of {compared} figures differ:\n" + "\n".join(report)
    status_keys = ("audience_size", "buyers", "buyers_in_audience", "buyers_not_on_list",
                   "orders", "pending_orders", "conversion_rate")  # fmt: skip
    for currency in ("EUR", "USD"):
        status = json.loads(
            run(
                "status",
                scenario.SLUG,
                "--json",
                "--currency",
                currency,
                "--now",
                scenario.NOW.isoformat(),
            )  # fmt: skip
        )
        wanted = scenario.truth(world, currency, None)
        shared = [k for k in status_keys if k in wanted]
        assert len(shared) >= 5, shared
        assert {k: status[k] for k in shared} == {k: wanted[k] for k in shared}, currency
        assert status["collected_cents"] == wanted["gross_revenue_cents"], currency
        assert list(status["other_currencies"]) == [{"EUR": "USD", "USD": "EUR"}[currency]]
