"""Waitlists and pre-sales (issue #16): /w/LAUNCH is the lead magnet double opt-in tagging
waitlist:LAUNCH, the analysis compares the waitlist with the rest of the list, and
`presale cancel` refunds every pre-sale buyer in full through localstripe, once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from launchkit import access, checkout, launches, waitlists
from launchkit.analysis import analyze_launch
from launchkit.models import Launch, Offer, Order, Refund, Subscriber, SubscriberTag
from launchkit.presales import cancel_presale
from launchkit.stripe_events import Purchase
from tests.fixtures.browser import serve_in_thread
from tests.fixtures.stripe import create_subscriber, real_payment
from tests.test_checkout import RecordingClient
from tests.test_web import Web, confirm, csrf_of, link_in, make_web


def _launch(session, now, slug: str = "spring") -> Launch:
    return launches.create_launch(
        session, slug, product="Cours photo", cart_open=now + timedelta(days=10),
        cart_close=now + timedelta(days=17), currency="EUR", now=now,
    )  # fmt: skip


@pytest.fixture
def web(settings, smtp_sink, now) -> Iterator[Web]:
    for web in make_web(settings, smtp_sink, now):
        with web.sessions.begin() as s:
            _launch(s, now)
            waitlists.open_waitlist(s, "spring", now=now)
        yield web


def _join(web: Web, email: str = "camille@example.fr") -> Any:
    page = web.client.get("/w/spring")
    data = {"email": email, "first_name": "Camille", "consent": "yes"}
    return web.client.post("/w/spring", data={**data, "csrf_token": csrf_of(page.text)})


def test_waitlist_is_a_double_opt_in_tagging_the_launch(web: Web, now) -> None:
    page = web.client.get("/w/spring")
    assert page.status_code == 200 and "Cours photo" in page.text
    assert web.events("magnet_view") == 1
    r = _join(web)
    assert r.status_code == 303
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "pending" and web.tags(sub.id) == set()
    [mail] = web.sink.wait_for(1)
    path = link_in(mail, "/w/spring/confirm")
    assert web.client.get(path).status_code == 200  # a scanner's GET changes nothing
    assert web.subscriber("camille@example.fr").status == "pending"
    joined = confirm(web, path)
    assert joined.status_code == 200 and "Vous êtes sur la liste" in joined.text
    sub = web.subscriber("camille@example.fr")
    assert sub.status == "active" and "waitlist:spring" in web.tags(sub.id)
    assert confirm(web, path).status_code == 200  # replayed: idempotent
    forged = web.client.post("/w/spring", data={"email": "x@example.org", "consent": "yes"})
    assert forged.status_code == 400 and web.subscriber("x@example.org") is None
    assert web.client.get("/w/nope").status_code == 404
    with web.sessions.begin() as s:
        waitlists.close_waitlist(s, "spring")
    assert web.client.get("/w/spring").status_code == 404


def test_analysis_compares_the_waitlist_with_the_rest_of_the_list(session, now) -> None:
    launch = _launch(session, now)
    waitlists.open_waitlist(session, "spring", now=now)
    people = []
    for n in range(10):
        sub = create_subscriber(session, now, f"p{n}@example.org")
        sub.confirmed_at = now
        people.append(sub)
    session.add(Subscriber(email="pending@example.org", status="pending", created_at=now,
                           updated_at=now))  # fmt: skip
    for sub in people[:4]:
        session.add(SubscriberTag(subscriber_id=sub.id, tag="waitlist:spring"))
    for sub in (people[0], people[1], people[5]):
        session.add(Order(launch_id=launch.id, subscriber_id=sub.id, email=sub.email,
                          currency="EUR", total_cents=100, paid_cents=100, instalments_paid=1,
                          status="paid", created_at=now, updated_at=now))  # fmt: skip
    unpaid = Order(launch_id=launch.id, subscriber_id=people[2].id, email="x", currency="EUR",
                   total_cents=100, status="pending", created_at=now, updated_at=now)  # fmt: skip
    session.add(unpaid)
    session.flush()
    section = analyze_launch(session, "spring")["waitlist"]
    assert section["tag"] == "waitlist:spring"
    assert {k: section["waitlist"][k] for k in ("size", "buyers", "conversion")} == {
        "size": 4, "buyers": 2, "conversion": 0.5,
    }  # fmt: skip
    assert (section["rest_of_list"]["size"], section["rest_of_list"]["buyers"]) == (6, 1)
    low, high = section["waitlist"]["conversion_ci95"]
    assert low < 0.5 < high
    _launch(session, now, "autumn")
    assert "waitlist" not in analyze_launch(session, "autumn")


def test_cli_launch_create_with_waitlist(cli, sessions) -> None:
    made = cli(
        "launch", "create", "spring", "--product", "Cours", "--cart-open", "2026-12-01 09:00",
        "--cart-close", "2026-12-08 09:00", "--waitlist",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    with sessions.begin() as s:
        assert waitlists.get_waitlist(s, "spring").magnet.slug == "waitlist-spring"
    assert cli("launch", "waitlist", "spring", "--close").exit_code == 0
    assert "/w/spring" in cli("launch", "waitlist", "spring").output
    assert cli("launch", "waitlist", "nope").stderr.startswith('Error: Launch "nope"')


# --- pre-sale --------------------------------------------------------------------------------


def test_presale_cancel_refunds_every_buyer_in_full_once(sessions, stripe_settings, now):
    client = checkout.make_client(stripe_settings)
    with sessions.begin() as s:
        launch = launches.create_launch(
            s, "spring", product="Cours photo", cart_open=now - timedelta(days=1),
            cart_close=now + timedelta(days=5), currency="EUR", now=now,
        )  # fmt: skip
        offer = checkout.add_offer(
            s, "spring", "cours", product="Cours photo", price_cents=49700, currency="EUR",
            plans=[], guarantee_days=14, now=now, presale_until=now + timedelta(days=90),
        )  # fmt: skip
        access.add_product(
            s, stripe_settings, "course", title="Course", url="https://s.example/c", now=now
        )
        access.grant_product(s, "cours", "course", now=now)
        metas = [
            checkout.checkout_metadata(offer, launch, 1, create_subscriber(s, now, e).id, False)
            for e in ("a@example.org", "b@example.org")
        ]
    intents = []
    for meta, email in zip(metas, ("a@example.org", "b@example.org"), strict=True):
        pi = real_payment(client, 49700, meta, email)
        deal = Purchase(meta, email, 49700, "EUR", payment_intent=pi)
        with sessions.begin() as s:
            checkout.handle_event(s, stripe_settings, deal.completed(int(now.timestamp())), now=now)
        intents.append(pi)
    late = now + timedelta(days=60)  # long past the 14-day guarantee
    # answers lost after Stripe acted, then rate limits: what is not confirmed is retried later
    faults = ["cut", "429", "cut", "429", "429", "429", "429", "429"]
    flaky = checkout.make_client(
        stripe_settings, http_client=RecordingClient(cut={"POST refunds": faults})
    )
    runs = [cancel_presale(sessions, flaky, "spring", now=late)]
    while runs[-1].failed and len(runs) < 4:  # the operator runs it again
        runs.append(cancel_presale(sessions, client, "spring", now=late))
    assert runs[-1].failed == []
    assert sorted(cents for run in runs for _, cents in run.refunded) == [49700, 49700]
    again = cancel_presale(sessions, client, "spring", now=late)
    assert (again.refunded, len(again.already)) == ([], 2)
    for pi in intents:
        refunds = client.v1.refunds.list(params={"payment_intent": pi}).data
        assert [r.amount for r in refunds] == [49700]
    with sessions.begin() as s:
        assert {o.status for o in s.scalars(select(Order))} == {"refunded"}
        assert all(r.forced for r in s.scalars(select(Refund)))
        assert access.owned_products(s, "a@example.org") == []
        assert s.scalar(select(Offer.presale_until)) == now + timedelta(days=90)


def test_presale_cancel_needs_a_presale_offer(cli, sessions, now):
    with sessions.begin() as s:
        _launch(s, now)
    r = cli("presale", "cancel", "spring", "--yes")
    assert r.exit_code == 1 and r.stderr.startswith('Error: Launch "spring" has no pre-sale')


# --- in Chromium -----------------------------------------------------------------------------


@contextmanager
def served(settings: Any, **overrides: Any) -> Iterator[str]:
    """The web app on a free loopback port (uvicorn in a thread, the real clock): its base URL."""

    from launchkit.web import create_app
    from tests.conftest import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(dataclasses.replace(settings, base_url=base, **overrides))
    try:
        with serve_in_thread(app, port):
            yield base
    finally:
        app.state.lk.engine.dispose()


@pytest.mark.browser
def test_waitlist_journey_in_chromium(chrome, sessions, settings, smtp_sink, now) -> None:
    import re

    from selenium.webdriver.common.by import By

    from tests.fixtures.browser import screenshot
    from tests.test_browser import _link, _wait

    db = "pg" if settings.database_url.startswith("postgresql") else "sqlite"
    with sessions.begin() as s:
        _launch(s, now)
        waitlists.open_waitlist(s, "spring", now=now)
    smtp = {"email_backend": "smtp", "smtp_url": smtp_sink.url, "sender_email": "hi@example.com"}
    with served(settings, **smtp) as base:
        chrome.get(f"{base}/w/spring")
        assert "Cours photo" in chrome.title
        screenshot(chrome, f"{db}-waitlist")
        chrome.set_window_size(390, 844)
        chrome.get(f"{base}/w/spring")
        screenshot(chrome, f"{db}-waitlist-mobile")
        chrome.find_element(By.ID, "email").send_keys("camille@example.fr")
        chrome.find_element(By.CSS_SELECTOR, "label.consent").click()
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(lambda: chrome.current_url.endswith("/sent"), "the sent page")
        link = _link(smtp_sink.wait_for(1)[0], base, "/w/spring/confirm")
        chrome.get(link)
        _wait(lambda: "liste" in chrome.find_element(By.TAG_NAME, "h1").text, "the joined page")
        screenshot(chrome, f"{db}-waitlist-joined-mobile")
    with sessions.begin() as s:
        tags = set(s.scalars(select(SubscriberTag.tag)))
    assert "waitlist:spring" in tags and not any(re.match(r"buyer", t) for t in tags)
