"""`/account` in Chromium at 390 px and desktop (issue #16): the request form, the member's page
and the cancel button, against a real `launchkit serve`, a real localstripe subscription and
both databases. Screenshots land in test-artifacts/screenshots/ (account-*)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from launchkit import checkout
from launchkit.memberships.account import account_token
from launchkit.models import Membership
from tests.conftest import free_port
from tests.fixtures.browser import (
    clear_artifacts,
    screenshot,
    serve_in_thread,
    start_server,
    stop_server,
)
from tests.membership_data import create_membership_offer
from tests.test_memberships_stripe import _joined_member

pytestmark = pytest.mark.browser
EMAIL = "camille@example.fr"


def test_account_pages_in_chromium(
    chrome: Any, sessions: Any, stripe_settings: Any, workspace_env: dict[str, str], db_url: str,
    now: datetime, tmp_path: Path,
) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    db = "pg" if db_url.startswith("postgresql") else "sqlite"
    clear_artifacts(f"account-{db}")
    _joined_member(sessions, stripe_settings, checkout.make_client(stripe_settings), now)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**workspace_env, "LAUNCHKIT_BASE_URL": base, "LAUNCHKIT_EMAIL_BACKEND": "file"}
    server = start_server(env, port, tmp_path / "serve.log")
    try:
        for width, name in ((1280, "desktop"), (390, "mobile")):
            chrome.set_window_size(width, 900)
            chrome.get(f"{base}/account")
            assert chrome.find_element(By.ID, "email").is_displayed()
            screenshot(chrome, f"account-{db}-1-form-{name}")
        token = account_token(stripe_settings, EMAIL, now=datetime.now(UTC))
        for width, name in ((1280, "desktop"), (390, "mobile")):
            chrome.set_window_size(width, 900)
            chrome.get(f"{base}/account/{token}")
            assert "Club photo" in chrome.page_source
            button = chrome.find_element(By.CSS_SELECTOR, ".membership button")
            assert button.is_displayed() and button.rect["width"] <= width
            screenshot(chrome, f"account-{db}-2-member-{name}")
        chrome.find_element(By.CSS_SELECTOR, ".membership button").click()
        # the POST answers with a new page: wait for it, not for the one being left
        WebDriverWait(chrome, 15).until(
            lambda c: (
                c.find_elements(By.CSS_SELECTOR, ".notice")
                and "fin de la période" in c.find_element(By.CSS_SELECTOR, ".notice").text
            )
        )
        screenshot(chrome, f"account-{db}-3-cancelled-mobile")
    finally:
        stop_server(server)
    with sessions.begin() as s:
        assert s.scalars(select(Membership)).one().status == "cancelling"


def test_sales_page_membership_choices_in_chromium(
    chrome: Any, sessions: Any, stripe_settings: Any, now: datetime
) -> None:
    """/buy of a monthly + yearly membership in Chromium at desktop and 390 px: both prices are
    choices (the yearly one with its saving), nothing overflows, and choosing yearly posts the
    yearly price to the Checkout Session. Screenshots: salespage-membership-*."""
    import dataclasses

    from selenium.webdriver.common.by import By

    from launchkit.web import create_app
    from tests.test_browser import _wait
    from tests.test_checkout import RecordingClient

    db = "pg" if stripe_settings.database_url.startswith("postgresql") else "sqlite"
    clear_artifacts(f"salespage-membership-{db}")
    with sessions.begin() as s:
        create_membership_offer(s, now, trial_days=7)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(dataclasses.replace(stripe_settings, base_url=base), clock=lambda: now)
    http = RecordingClient()
    app.state.stripe_client = checkout.make_client(stripe_settings, http_client=http)
    with serve_in_thread(app, port):
        for width, name in ((1280, "desktop"), (390, "mobile")):
            chrome.set_window_size(width, 900)
            chrome.get(f"{base}/buy/club-offer")
            choices = chrome.find_elements(By.CSS_SELECTOR, "label.plan")
            assert [c.find_element(By.TAG_NAME, "strong").text for c in choices] == [
                "Mensuel", "Annuel",
            ]  # fmt: skip
            assert "économisez 58,00" in choices[1].text and "(17" in choices[1].text
            assert all(c.rect["x"] + c.rect["width"] <= width for c in choices)
            assert chrome.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"
            )
            screenshot(chrome, f"salespage-membership-{db}-{name}")
        chrome.find_elements(By.CSS_SELECTOR, "label.plan")[1].click()
        chrome.find_element(By.ID, "email").send_keys(EMAIL)
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(lambda: "/buy/club-offer" not in chrome.current_url, "the jump to Stripe")
        assert chrome.current_url.startswith("https://checkout.stripe.com/")
    [fields] = [f for _, url, _, f in http.requests if url.endswith("/v1/checkout/sessions")]
    assert fields["line_items[0][price_data][recurring][interval]"] == "year"
    assert fields["line_items[0][price_data][unit_amount]"] == "29000"
    assert fields["customer_email"] == EMAIL
