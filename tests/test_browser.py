"""The whole lead-magnet journey in headless Chromium against a real `launchkit serve`.

Screenshots of every page land in test-artifacts/screenshots/ (look at them).
"""

from __future__ import annotations

import re
import time
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from launchkit import tokens
from launchkit.config import load_settings
from launchkit.db import make_engine
from launchkit.models import Subscriber, Suppression
from launchkit.resources import starter_dir
from tests.conftest import free_port
from tests.fixtures.browser import (
    clear_artifacts,
    screenshot,
    serve_in_thread,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.browser

SAMPLE_PDF = starter_dir("sample_data") / "magnets" / "guide-tarifs.pdf"


def _body(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    return "\n".join(
        p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8")
        for p in parts
        if p.get_content_type() == "text/plain"
    )


def _subscriber_id(db_url: str, email: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        found = conn.scalar(sa.select(Subscriber.id).where(Subscriber.email == email))
    engine.dispose()
    return int(found)


def _link(message: Message, base: str, prefix: str) -> str:
    match = re.search(rf"{re.escape(base)}{prefix}/[A-Za-z0-9_.\-]+", _body(message))
    assert match, f"no {prefix} link in: {_body(message)[:500]}"
    return match.group(0)


def _wait(condition: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _serve_magnet(
    cli: Any, workspace_env: dict[str, str], smtp_sink: Any, tmp_path: Path
) -> tuple[Any, str]:
    """Magnet "guide-tarifs" and a real `launchkit serve` on a free port: (process, base)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **workspace_env,
        "LAUNCHKIT_BASE_URL": base,
        "LAUNCHKIT_EMAIL_BACKEND": "smtp",
        "LAUNCHKIT_SMTP_URL": smtp_sink.url,
    }
    r = cli(
        "magnet", "add", "guide-tarifs", "--title", "Le guide pour fixer vos tarifs",
        "--file", str(SAMPLE_PDF), "--tag", "lead",
        "--description", "Trouvez le juste prix pour votre formation en une après-midi.\n"
        "- La méthode en 5 étapes\n- Les erreurs qui font fuir les acheteurs\n"
        "- Un tableur prêt à remplir",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    return start_server(env, port, tmp_path / "serve.log"), base


def test_optin_journey_in_chromium(
    chrome: Any, cli: Any, workspace_env: dict[str, str], smtp_sink: Any, db_url: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    db = "pg" if db_url.startswith("postgresql") else "sqlite"
    clear_artifacts(db)
    server, base = _serve_magnet(cli, workspace_env, smtp_sink, tmp_path)
    try:
        chrome.get(f"{base}/m/guide-tarifs")
        assert "Le guide pour fixer vos tarifs" in chrome.title
        screenshot(chrome, f"{db}-1-optin")

        # a wrong address first: inline error, typed values kept
        chrome.find_element(By.ID, "first_name").send_keys("Camille")
        chrome.find_element(By.ID, "email").send_keys("camille@")
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(lambda: chrome.find_elements(By.CSS_SELECTOR, ".error"), "the inline error")
        assert chrome.find_element(By.ID, "first_name").get_attribute("value") == "Camille"
        screenshot(chrome, f"{db}-2-optin-errors")

        email = chrome.find_element(By.ID, "email")
        email.clear()
        email.send_keys("camille.martin@example.fr")
        chrome.find_element(By.CSS_SELECTOR, "label.consent").click()
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(lambda: chrome.current_url.endswith("/m/guide-tarifs/sent"), "the sent page")
        screenshot(chrome, f"{db}-3-check-inbox")

        [confirm_mail] = smtp_sink.wait_for(1)
        _check_status(db_url, "pending")
        chrome.get(_link(confirm_mail, base, "/confirm"))  # the page's script posts the form
        _wait(lambda: chrome.find_elements(By.ID, "download"), "the download button")
        _check_status(db_url, "active")
        screenshot(chrome, f"{db}-4-confirmed")
        chrome.find_element(By.ID, "download").click()
        target = chrome.downloads / SAMPLE_PDF.name
        _wait(target.is_file, "the downloaded file")
        _wait(lambda: target.stat().st_size == SAMPLE_PDF.stat().st_size, "the full file")
        assert target.read_bytes() == SAMPLE_PDF.read_bytes()

        delivery = smtp_sink.wait_for(2)[1]
        assert "/u/" not in str(delivery)  # transactional: no unsubscribe link (#19)
        # the unsubscribe link every marketing email carries, signed with this workspace's key
        settings = load_settings(
            Path(workspace_env["LAUNCHKIT_HOME"]), env={**workspace_env, "LAUNCHKIT_BASE_URL": base}
        )
        subscriber_id = _subscriber_id(db_url, "camille.martin@example.fr")
        chrome.get(tokens.unsubscribe_url(settings, subscriber_id))
        _wait(lambda: chrome.find_elements(By.ID, "confirm-unsubscribe"), "the unsubscribe page")
        screenshot(chrome, f"{db}-5-unsubscribe")
        _check_status(db_url, "active")  # the GET changed nothing
        chrome.find_element(By.ID, "confirm-unsubscribe").click()
        _wait(lambda: "/u/" in chrome.current_url and chrome.find_elements(By.TAG_NAME, "h1"),
              "the unsubscribed page")  # fmt: skip
        assert "désinscrit" in chrome.find_element(By.TAG_NAME, "h1").text
        screenshot(chrome, f"{db}-6-unsubscribed")
        _check_status(db_url, "unsubscribed")

        chrome.get(f"{base}/confirm/not-a-real-token")
        screenshot(chrome, f"{db}-7-invalid-link")
        chrome.set_window_size(390, 844)
        chrome.get(f"{base}/m/guide-tarifs")
        screenshot(chrome, f"{db}-8-optin-mobile")
        assert len(smtp_sink.messages) == 2
    finally:
        stop_server(server)


def _check_status(db_url: str, status: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(Subscriber.status).where(Subscriber.email == "camille.martin@example.fr")
            ).one()
            suppressed = conn.execute(sa.select(sa.func.count()).select_from(Suppression)).scalar()
    finally:
        engine.dispose()
    assert row.status == status
    assert suppressed == (1 if status == "unsubscribed" else 0)


def _signup(base: str, address: str) -> None:
    """The opt-in form posted over HTTP (cookie and CSRF token from the page)."""
    with httpx.Client(base_url=base) as client:
        page = client.get("/m/guide-tarifs")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        form = {"email": address, "consent": "yes", "csrf_token": token.group(1)}
        assert client.post("/m/guide-tarifs", data=form).status_code == 303


def test_confirm_by_button_where_scripts_do_not_run(
    chrome: Any, cli: Any, workspace_env: dict[str, str], smtp_sink: Any, db_url: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    db = "pg" if db_url.startswith("postgresql") else "sqlite"
    server, base = _serve_magnet(cli, workspace_env, smtp_sink, tmp_path)
    try:
        _signup(base, "camille.martin@example.fr")
        link = _link(smtp_sink.wait_for(1)[0], base, "/confirm")
        chrome.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        chrome.get(link)
        button = _wait(lambda: chrome.find_elements(By.ID, "confirm-button"), "the button")[0]
        assert "Je confirme mon inscription" in button.text and button.is_enabled()
        screenshot(chrome, f"{db}-confirm-noscript")
        chrome.set_window_size(390, 844)
        screenshot(chrome, f"{db}-confirm-noscript-mobile")
        time.sleep(0.5)
        _check_status(db_url, "pending")  # the page alone changed nothing
        chrome.find_element(By.ID, "confirm-button").click()
        _wait(lambda: chrome.find_elements(By.ID, "download"), "the download button")
        screenshot(chrome, f"{db}-confirmed-mobile")
        _check_status(db_url, "active")
        assert len(smtp_sink.wait_for(2)) == 2  # the delivery email, once
    finally:
        stop_server(server)


def test_buy_form_posts_with_token_and_origin_in_chromium(
    chrome: Any, stripe_settings: Any, sessions: Any, now: Any, tmp_path: Path
) -> None:
    """The sales page's own form passes /buy's CSRF and Origin checks in a real browser (its
    Referrer-Policy lets Chromium send the real Origin), and reaches Stripe Checkout."""
    import dataclasses

    from selenium.webdriver.common.by import By

    from launchkit import checkout
    from launchkit.models import WebEvent
    from launchkit.web import create_app
    from tests.fixtures.stripe import create_offer
    from tests.test_checkout import RecordingClient

    db = "pg" if stripe_settings.database_url.startswith("postgresql") else "sqlite"
    with sessions.begin() as s:
        create_offer(s, now)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(dataclasses.replace(stripe_settings, base_url=base), clock=lambda: now)
    http = RecordingClient()
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=http)
    with serve_in_thread(app, port):
        chrome.get(f"{base}/buy/cours")
        screenshot(chrome, f"{db}-buy")
        chrome.set_window_size(390, 844)
        chrome.get(f"{base}/buy/cours")
        screenshot(chrome, f"{db}-buy-mobile")
        chrome.find_element(By.ID, "email").send_keys("camille@example.fr")
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(lambda: "/buy/cours" not in chrome.current_url, "the jump to Stripe")
        assert chrome.current_url.startswith("https://checkout.stripe.com/")
        sessions_created = [r for r in http.requests if r[1].endswith("/v1/checkout/sessions")]
        assert len(sessions_created) == 1
        with sessions.begin() as s:
            kinds = s.scalars(sa.select(WebEvent.kind)).all()
        assert sorted(kinds) == ["checkout_start", "sales_view", "sales_view"]
