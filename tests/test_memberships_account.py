"""`/account` (issue #16): the address form answers the same page whoever asks, the emailed
link is signed and expires, the page lists purchases and memberships, and one POST with its
CSRF token cancels at period end through the Stripe adapter (a real localstripe Subscription),
then the cancellation confirmation goes out. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from launchkit import checkout
from launchkit.memberships.account import account_token
from launchkit.models import Membership
from launchkit.web import create_app
from tests.test_checkout_events import Outbox
from tests.test_memberships_stripe import _joined_member

EMAIL = "camille@example.fr"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def member(sessions, stripe_settings, now):
    """One paying member with a real localstripe subscription; the app, its outbox, its clock."""
    client = checkout.make_client(stripe_settings)
    sub = _joined_member(sessions, stripe_settings, client, now)
    outbox = Outbox()
    clock = {"now": now + timedelta(days=2)}
    app = create_app(
        stripe_settings, clock=lambda: clock["now"], messenger_factory=lambda s: outbox
    )
    app.state.stripe_client = client
    with TestClient(app, base_url=stripe_settings.base_url) as web:
        yield web, outbox, clock, client, sub


def test_request_form_answers_the_same_page_for_anyone(member):
    web, outbox, *_ = member
    pages = []
    for address in (EMAIL, "nobody@example.fr"):
        form = web.get("/account")
        assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
        r = web.post("/account", data={"email": address, "csrf_token": csrf_of(form.text)})
        assert r.status_code == 200
        pages.append(re.sub(r'nonce="[^"]+"', "", r.text))
    assert pages[0] == pages[1]
    assert [m.to_email for m in outbox.sent] == [EMAIL]
    assert "/account/" in outbox.sent[0].text
    assert web.post("/account", data={"email": EMAIL, "csrf_token": "forged"}).status_code == 403


def test_link_lists_and_cancels_at_period_end(member, sessions, stripe_settings):
    web, outbox, clock, client, sub = member
    token = account_token(stripe_settings, EMAIL, now=clock["now"])
    page = web.get(f"/account/{token}")
    assert page.status_code == 200 and "Club photo" in page.text and "29,00" in page.text
    with sessions.begin() as s:
        m_id = s.scalars(select(Membership)).one().id
    forged = web.post(f"/account/{token}/cancel", data={"membership": m_id, "csrf_token": "x"})
    assert forged.status_code == 403
    r = web.post(f"/account/{token}/cancel", follow_redirects=False,
                 data={"membership": m_id, "csrf_token": csrf_of(page.text)})  # fmt: skip
    assert r.status_code == 303
    with sessions.begin() as s:
        m = s.scalars(select(Membership)).one()
        assert m.status == "cancelling" and m.cancel_requested_at == clock["now"]
    assert client.v1.subscriptions.retrieve(sub["id"]).cancel_at_period_end is True
    subjects = [m.subject for m in outbox.sent]
    assert "Votre adhésion Club photo est résiliée" in subjects
    assert "Résilier" not in web.get(f"/account/{token}?done=1").text


def test_link_expires_and_refuses_tampering(member, stripe_settings):
    web, _, clock, *_ = member
    token = account_token(stripe_settings, EMAIL, now=clock["now"])
    assert web.get(f"/account/{token}x").status_code == 403
    clock["now"] += timedelta(hours=2)
    assert web.get(f"/account/{token}").status_code == 403
