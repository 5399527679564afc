"""POST /buy only from the sales page's own form: CSRF token and Origin, and bounded bodies on
/buy and the webhook (in process; the real-server runs are in test_body_limits.py)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from launchkit import checkout
from launchkit.config import Settings
from launchkit.models import Order, WebEvent
from launchkit.web import create_app
from tests.fixtures.stripe import create_offer
from tests.test_checkout import RecordingClient
from tests.test_web import chunks, csrf_of

pytestmark = pytest.mark.security

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def shop(sessions: Any, stripe_settings: Settings, now: Any) -> Iterator[tuple[TestClient, Any]]:
    with sessions.begin() as s:
        create_offer(s, now)
    app = create_app(stripe_settings, clock=lambda: now)
    http = RecordingClient()
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=http)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client, http
    app.state.lk.engine.dispose()


def _nothing_recorded(sessions: Any, http: RecordingClient) -> None:
    assert not [r for r in http.requests if r[1].endswith("/v1/checkout/sessions")]
    with sessions.begin() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0
        kinds = s.scalars(select(WebEvent.kind)).all()
        assert "checkout_start" not in kinds


def test_buy_refuses_a_missing_wrong_or_foreign_token(shop: Any, sessions: Any) -> None:
    client, http = shop
    page = client.get("/buy/cours")
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "same-origin"  # the POST carries a real Origin
    assert "lk_csrf" in page.headers["set-cookie"]
    token = csrf_of(page.text)
    form = {"plan": "full", "email": "eve@example.fr"}
    forged = [
        client.post("/buy/cours", data=form),  # no token
        client.post("/buy/cours", data={**form, "csrf_token": "forged"}),
        client.post("/buy/cours", data={**form, "csrf_token": token[:-2] + "xx"}),
        # a genuine token without its cookie: another browser (the attacker's own token)
        TestClient(client.app, base_url=BASE).post(
            "/buy/cours", data={**form, "csrf_token": token}
        ),
        # the right token from a page on another site, or from a sandboxed/no-referrer page
        client.post(
            "/buy/cours",
            data={**form, "csrf_token": token},
            headers={"origin": "https://evil.example"},
        ),  # fmt: skip
        client.post("/buy/cours", data={**form, "csrf_token": token}, headers={"origin": "null"}),
        client.post(
            "/buy/cours",
            data={**form, "csrf_token": token},
            headers={"origin": "http://127.0.0.1:8001"},
        ),  # fmt: skip
    ]
    for r in forged:
        assert r.status_code == 403 and "Demande refusée" in r.text
    _nothing_recorded(sessions, http)
    # the page's own form, from a browser (Origin) or an older one (no Origin)
    ok = client.post("/buy/cours", data={**form, "csrf_token": token}, headers={"origin": BASE})
    assert ok.status_code == 303 and ok.headers["location"].startswith("https://checkout.stripe")
    assert client.post("/buy/cours", data={**form, "csrf_token": token}).status_code == 303


def test_buy_and_webhook_bodies_are_bounded_as_they_stream(shop: Any, sessions: Any) -> None:
    client, http = shop
    token = csrf_of(client.get("/buy/cours").text)
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = f"plan=full&csrf_token={token}&email=".encode()
    r = client.post("/buy/cours", content=iter([body, *chunks(70 * 1024)]), headers=form)
    assert r.status_code == 413 and r.headers["connection"] == "close"
    upload = {"file": ("a.bin", b"x" * 100, "application/octet-stream")}
    r = client.post("/buy/cours", data={"plan": "full", "csrf_token": token}, files=upload)
    assert r.status_code == 415
    _nothing_recorded(sessions, http)
    # the webhook: 1 MB, chunked or declared; just under it reaches the signature check
    json = {"content-type": "application/json"}
    r = client.post("/stripe/webhook", content=chunks(1024 * 1024 + 1), headers=json)
    assert r.status_code == 413
    r = client.post(
        "/stripe/webhook", content=b"{}", headers={**json, "content-length": str(2 * 1024**2)}
    )
    assert r.status_code == 413
    r = client.post("/stripe/webhook", content=chunks(1024 * 1024 - 10), headers=json)
    assert r.status_code == 400 and "413" not in r.text


def test_sales_and_thanks_pages_carry_the_token_and_are_never_cached(shop: Any) -> None:
    client, _ = shop
    html = client.get("/buy/cours").text
    form = re.search(r'<form method="post" action="/buy/cours">\s*<input type="hidden" '
                     r'name="csrf_token" value="[^"]+">', html)  # fmt: skip
    assert form, "the sales form carries its CSRF token"
    thanks = client.get("/buy/cours/thanks?session_id=cs_test_123")
    assert thanks.status_code == 200
    assert thanks.headers["cache-control"] == "no-store"
    assert thanks.headers["referrer-policy"] == "no-referrer"
    assert client.get("/buy/cours?t=abc").headers["cache-control"] == "no-store"
