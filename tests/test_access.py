"""Access that follows payment (issue #16): products granted by offers, granted on the first
payment with the access email and its magic link to /members, revoked on refund, dispute and
default, granted again on reactivation, kept in a history and sent to the webhook outbox."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from launchkit import access, checkout, hooks, tokens
from launchkit.models import (
    AccessChange,
    AccessGrant,
    Launch,
    Order,
    OrderStatus,
    Product,
    WebhookDelivery,
)
from launchkit.stripe_events import Purchase
from launchkit.web import create_app
from tests.fixtures.stripe import create_offer, create_subscriber
from tests.test_checkout_events import Outbox, deliver


@pytest.fixture
def shop(sessions, settings, now, tmp_path) -> dict[str, Any]:
    """Offer "cours" granting a course URL and a workbook file; a webhook following access."""
    workbook = tmp_path / "workbook.pdf"
    workbook.write_bytes(b"%PDF-1.4 workbook")
    with sessions.begin() as s:
        offer = create_offer(s, now)
        subscriber = create_subscriber(s, now)
        access.add_product(
            s, settings, "course", title="Photo course", url="https://school.example/c", now=now
        )
        access.add_product(s, settings, "workbook", title="Workbook", file=workbook, now=now)
        access.grant_product(s, "cours", "course", now=now)
        access.grant_product(s, "cours", "workbook", now=now)
        hooks.add_hook(
            s, "https://hooks.example/in", ["access.granted", "access.revoked", "order.paid"],
            now=now,
        )  # fmt: skip
        launch = s.get(Launch, offer.launch_id)
        return {
            "full": checkout.checkout_metadata(offer, launch, 1, subscriber.id, False),
            "plan": checkout.checkout_metadata(offer, launch, 3, subscriber.id, False),
            "en": checkout.checkout_metadata(offer, launch, 1, None, False, "en"),
        }


def history(sessions) -> list[tuple[str, str, str]]:
    with sessions.begin() as s:
        return [(h["product"], h["action"], h["reason"]) for h in access.access_history(s)]


def outbox_events(sessions) -> list[str]:
    with sessions.begin() as s:
        return sorted(s.scalars(select(WebhookDelivery.event)))


def owned(sessions, email: str = "camille@example.fr") -> list[str]:
    with sessions.begin() as s:
        return [o.product.slug for o in access.owned_products(s, email)]


def test_access_granted_on_payment_emailed_once_and_revoked_on_refund(
    sessions, settings, shop, now
):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    mail = Outbox()
    deliver(sessions, settings, [deal.completed(ts), deal.paid(ts + 1)], now, messenger=mail)
    assert sorted(owned(sessions)) == ["course", "workbook"]
    access_mails = [m for m in mail.sent if "accès" in m.subject]
    assert len(access_mails) == 1, [m.subject for m in mail.sent]  # French, once
    assert "/members/" in access_mails[0].text and "Photo course" in access_mails[0].text
    assert history(sessions) == [("course", "granted", "paid"), ("workbook", "granted", "paid")]
    deliver(sessions, settings, [deal.refunded(ts + 60)], now + timedelta(days=2), messenger=mail)
    assert owned(sessions) == []
    assert history(sessions)[2:] == [
        ("course", "revoked", "refunded"),
        ("workbook", "revoked", "refunded"),
    ]
    assert len([m for m in mail.sent if "accès" in m.subject]) == 1
    assert outbox_events(sessions) == ["access.granted"] * 2 + ["access.revoked"] * 2 + [
        "order.paid"
    ]
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert access.sync_access(s, order, now) == (0, 0)  # idempotent
    assert len(outbox_events(sessions)) == 5


def test_access_email_in_the_buyers_language(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["en"], "sam@example.org", 49700, "EUR")
    mail = Outbox()
    deliver(sessions, settings, [deal.completed(ts)], now, messenger=mail)
    subjects = [m.subject for m in mail.sent]
    assert "Your access to Cours photo" in subjects, subjects
    [sent] = [m for m in mail.sent if m.subject.startswith("Your access")]
    link = re.search(r"https?://\S+/members/[A-Za-z0-9_.\-]+", sent.text).group(0)
    with TestClient(create_app(settings), base_url=settings.base_url) as web:
        page = web.get(_path(link))
    assert 'lang="en"' in page.text and "Your members" in page.text and "Photo course" in page.text


def test_dispute_revokes_access(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [deal.completed(ts), deal.disputed(ts + 100)], now)
    assert owned(sessions) == []
    assert history(sessions)[-1] == ("workbook", "revoked", "disputed")


def test_default_revokes_and_paying_off_the_plan_grants_again(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["plan"], "camille@example.fr", 17700, "EUR", instalments=3)
    deliver(sessions, settings, [deal.completed(ts), deal.invoice(1, ts)], now)
    assert sorted(owned(sessions)) == ["course", "workbook"]
    deliver(sessions, settings, [deal.cancelled(ts + 86400 * 40)], now)
    assert owned(sessions) == []
    day = 86400
    later = [deal.invoice(2, ts + 41 * day), deal.invoice(3, ts + 42 * day)]
    deliver(sessions, settings, later, now)
    assert sorted(owned(sessions)) == ["course", "workbook"]
    reasons = [(act, why) for product, act, why in history(sessions) if product == "course"]
    assert reasons == [
        ("granted", "active_plan"),
        ("revoked", "defaulted"),
        ("granted", "completed_plan"),
    ]
    with sessions.begin() as s:
        assert s.scalars(select(AccessGrant.granted_at)).all() == [now, now]  # first grant kept


def test_entitled_rule_for_orders(now):
    order = Order(status=OrderStatus.PAID)
    for status in OrderStatus:
        order.status = status
        expected = status in ("paid", "active_plan", "completed_plan")
        assert access.entitled(order) is expected, status


def test_offer_granted_later_gives_current_buyers_access(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [deal.completed(ts)], now)
    with sessions.begin() as s:
        access.add_product(
            s, settings, "club", title="Community", invite="https://chat.example/i/x", now=now
        )
        assert access.grant_product(s, "cours", "club", now=now) == 1
        assert access.grant_product(s, "cours", "club", now=now) == 0
    assert sorted(owned(sessions)) == ["club", "course", "workbook"]


# --- /members --------------------------------------------------------------------------------


def test_members_page_serves_owned_products_until_revoked(sessions, settings, shop, now):
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [deal.completed(ts)], now)
    clock = {"now": now}
    app = create_app(settings, clock=lambda: clock["now"])
    with TestClient(app, base_url=settings.base_url) as web:
        members = _path(access.members_url(settings, "camille@example.fr"))
        page = web.get(members)
        assert page.status_code == 200, page.text
        assert "Photo course" in page.text and "Workbook" in page.text
        links = [_path(u) for u in _hrefs(page.text) if "/members/p/" in u]
        assert len(links) == 2
        answers = {web.get(link, follow_redirects=False).status_code: link for link in links}
        assert set(answers) == {200, 303}
        download = web.get(answers[200])
        assert download.content == b"%PDF-1.4 workbook"
        assert "attachment" in download.headers["content-disposition"]
        assert web.get(answers[303], follow_redirects=False).headers["location"] == (
            "https://school.example/c"
        )
        other = _path(access.members_url(settings, "intruder@example.org"))
        assert "Photo course" not in web.get(other).text
        bad = _path(access.members_url(settings, "camille@example.fr"))[:-3] + "xyz"
        assert web.get(bad).status_code == 400
        deliver(sessions, settings, [deal.refunded(ts + 60)], now)
        assert web.get(answers[200]).status_code == 404  # a live link stops with the access
        assert "Photo course" not in web.get(members).text
        # tokens are signed at the real time: look at them from past their lifetime
        clock["now"] = datetime.now(UTC) + settings.unsubscribe_link_max_age + timedelta(days=1)
        old = _path(tokens.link(settings, "/members", tokens.Purpose.MEMBERS, {"e": "x@y.z"}))
        assert web.get(old).status_code == 410


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[1]


def _hrefs(html: str) -> list[str]:
    import re

    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html)]


# --- CLI -------------------------------------------------------------------------------------


def test_cli_products_grant_and_access_log(cli, sessions, now, tmp_path):
    with sessions.begin() as s:
        create_offer(s, now)
    ok = cli("product", "add", "course", "--title", "Photo course", "--url", "https://s.example/c")
    assert ok.exit_code == 0, ok.output
    both = cli(
        "product", "add", "x", "--title", "X", "--url", "https://a.example", "--invite",
        "https://b.example",
    )  # fmt: skip
    assert both.exit_code == 1 and both.stderr.startswith("Error: Give exactly one")
    plain = cli("product", "add", "y", "--title", "Y", "--url", "http://a.example")
    assert plain.exit_code == 1 and "https://" in plain.stderr
    missing = cli("product", "add", "z", "--title", "Z", "--file", str(tmp_path / "none.pdf"))
    assert missing.exit_code == 1 and "none.pdf" in missing.stderr
    with sessions.begin() as s:
        assert s.scalars(select(Product.slug)).all() == ["course"]  # nothing half written
    granted = cli("offer", "grant", "cours", "course")
    assert granted.exit_code == 0 and "0 current buyer" in granted.output
    assert cli("offer", "grant", "nope", "course").stderr.startswith('Error: Offer "nope"')
    listed = cli("product", "list", "--json")
    assert '"offers": [\n      "cours"\n    ]' in listed.output or '"cours"' in listed.output
    assert cli("access", "--json").output.strip() == "[]"
    assert cli("offer", "ungrant", "cours", "course").exit_code == 0
    assert cli("product", "remove", "course").exit_code == 0
    with sessions.begin() as s:
        assert s.scalars(select(AccessChange)).all() == []


# --- in Chromium -----------------------------------------------------------------------------


@pytest.mark.browser
def test_members_page_in_chromium(chrome, sessions, settings, shop, now) -> None:
    import dataclasses

    from selenium.webdriver.common.by import By

    from tests.fixtures.browser import screenshot
    from tests.test_waitlist import served

    db = "pg" if settings.database_url.startswith("postgresql") else "sqlite"
    ts = int(now.timestamp())
    deal = Purchase(shop["full"], "camille@example.fr", 49700, "EUR")
    deliver(sessions, settings, [deal.completed(ts)], now)
    with served(settings) as base:
        link = access.members_url(dataclasses.replace(settings, base_url=base), deal.email)
        chrome.get(link)
        titles = [e.text for e in chrome.find_elements(By.CSS_SELECTOR, ".owned strong")]
        assert titles == ["Photo course", "Workbook"]
        screenshot(chrome, f"{db}-members")
        chrome.set_window_size(390, 844)
        chrome.get(link)
        screenshot(chrome, f"{db}-members-mobile")
        button = chrome.find_elements(By.CSS_SELECTOR, ".owned a.button")[0]
        assert button.is_displayed() and button.size["width"] < 390
