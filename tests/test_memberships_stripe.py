"""Memberships against Stripe's shapes (issue #16): the subscription-mode Checkout Session
request (localstripe has no Checkout Sessions: the request is checked), and a real localstripe
Subscription with its first invoice, a renewal (``invoices.create`` + ``invoices.pay``), the
guarantee refund that ends it, and the member's cancel at period end through the adapter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from launchkit import access, checkout, memberships
from launchkit.memberships.account import (
    cancel_membership,
    refund_any_order,
    refund_membership,
)
from launchkit.models import AccessGrant, Membership, Order, Payment
from launchkit.stripe_events import checkout_session_completed, event
from tests.fixtures.stripe import create_subscriber
from tests.membership_data import create_membership_offer, member_metadata
from tests.test_checkout import RecordingClient


def test_membership_checkout_session_request(session, stripe_settings, now):
    create_membership_offer(session, now, trial_days=7, founding=[("year", 19000)])
    http = RecordingClient()
    client = checkout.make_client(stripe_settings, http_client=http)
    started = checkout.start_checkout(
        session, stripe_settings, client, "club-offer", plan="yearly", subscriber_id=3,
        email="camille@example.fr", bump=False, now=now,
    )  # fmt: skip
    assert started.session_id == "cs_test_123"
    fields = http.requests[0][3]
    assert fields["mode"] == "subscription"
    assert fields["line_items[0][price_data][unit_amount]"] == "19000"  # the founding price
    assert fields["line_items[0][price_data][recurring][interval]"] == "year"
    assert fields["subscription_data[trial_period_days]"] == "7"
    assert fields["subscription_data[metadata][membership]"] == "year"
    assert fields["metadata[membership]"] == "year"
    assert fields["customer_email"] == "camille@example.fr"
    assert not any("cancel_at" in key or "iterations" in key for key in fields)  # no end
    with pytest.raises(Exception, match="no membership"):
        checkout.start_checkout(
            session, stripe_settings, client, "club-offer", plan="weekly", subscriber_id=None,
            email=None, bump=False, now=now,
        )  # fmt: skip


def test_doors_close_with_the_launch(session, stripe_settings, now):
    create_membership_offer(session, now)
    client = checkout.make_client(stripe_settings, http_client=RecordingClient())
    late = now + timedelta(days=5) + stripe_settings.checkout_grace + timedelta(seconds=1)
    with pytest.raises(checkout.CartClosed, match="no new members"):
        checkout.start_checkout(
            session, stripe_settings, client, "club-offer", plan="monthly", subscriber_id=None,
            email=None, bump=False, now=late,
        )  # fmt: skip


def _real_subscription(client, meta: dict[str, str], email: str) -> dict:
    customer = client.v1.customers.create(params={"email": email})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    plan = client.v1.plans.create(params={
        "amount": 2900, "currency": "eur", "interval": "month", "product": {"name": "Club photo"},
    })  # fmt: skip
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"plan": plan.id}], "metadata": meta}
    )
    return sub.to_dict()


def _invoice_events(client, sub: str, seen: set[str]) -> list[dict]:
    """localstripe's invoices of ``sub`` as the ``invoice.payment_succeeded`` it would send."""
    listing = client.v1.invoices.list(params={"subscription": sub, "limit": 100}).to_dict()
    found = []
    for inv in sorted(listing["data"], key=lambda i: i["created"]):
        if inv["id"] not in seen and inv.get("status") == "paid":
            seen.add(inv["id"])
            found.append(event("invoice.payment_succeeded", inv, created=inv["created"]))
    return found


def _joined_member(sessions, stripe_settings, client, now) -> dict:
    """camille@example.fr joins "club" monthly: a real localstripe subscription whose checkout
    and first paid invoice are handled; the subscription."""
    with sessions.begin() as s:
        meta = member_metadata(s, create_membership_offer(s, now), "month", None)
    sub = _real_subscription(client, meta, "camille@example.fr")
    joined = checkout_session_completed(
        created=int(now.timestamp()), mode="subscription", metadata=meta,
        email="camille@example.fr", amount_total=2900, currency="eur", subscription=sub["id"],
    )  # fmt: skip
    for index, item in enumerate([joined, *_invoice_events(client, sub["id"], set())]):
        with sessions.begin() as s:
            checkout.handle_event(s, stripe_settings, item, now=now + timedelta(seconds=index))
    return sub


def _paid_member(sessions, stripe_settings, now):
    """A real localstripe subscription, paid twice (joined, renewed), its events handled."""
    with sessions.begin() as s:
        offer = create_membership_offer(s, now)
        meta = member_metadata(s, offer, "month", create_subscriber(s, now).id)
        access.add_product(s, stripe_settings, "lessons", title="Lessons",
                           url="https://school.example/club", now=now)  # fmt: skip
        access.grant_product(s, offer.slug, "lessons", now=now)
    client = checkout.make_client(stripe_settings)
    sub = _real_subscription(client, meta, "camille@example.fr")
    t = int(now.timestamp())
    joined = checkout_session_completed(
        created=t, mode="subscription", metadata=meta, email="camille@example.fr",
        amount_total=2900, currency="eur", subscription=sub["id"],
    )  # fmt: skip
    seen: set[str] = set()
    events = [joined, *_invoice_events(client, sub["id"], seen)]
    renewal = client.v1.invoices.create(
        params={"customer": sub["customer"], "subscription": sub["id"]}
    )
    client.v1.invoices.pay(renewal.id)
    events += _invoice_events(client, sub["id"], seen)
    assert len(seen) == 2  # the first invoice and the renewal, both really paid
    for index, item in enumerate(events):
        with sessions.begin() as s:
            checkout.handle_event(s, stripe_settings, item, now=now + timedelta(seconds=index))
    return client, sub, sorted(seen)


def test_localstripe_subscription_renewal_and_guarantee_refund(sessions, stripe_settings, now):
    client, sub, _ = _paid_member(sessions, stripe_settings, now)
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        assert (order.instalments_paid, order.paid_cents) == (2, 5800)
        assert s.scalars(select(Membership)).one().status == "active"
        refund = refund_membership(s, client, order.id, now=now + timedelta(days=2))
        assert refund.status == "succeeded" and refund.amount_cents == 2900
        m = s.scalars(select(Membership)).one()
        assert m.status == "ended" and not memberships.membership_entitled(m)
        grants = s.scalars(select(AccessGrant).where(AccessGrant.order_id == order.id)).all()
        assert grants and not any(g.active for g in grants)  # revoked now, not at a later event
    assert client.v1.subscriptions.retrieve(sub["id"]).status == "canceled"


def test_member_cancels_at_period_end_through_the_adapter(sessions, stripe_settings, now):
    http = RecordingClient()
    client = checkout.make_client(stripe_settings, http_client=http)
    sub = _joined_member(sessions, stripe_settings, client, now)
    with sessions.begin() as s:
        m_id = s.scalars(select(Membership)).one().id
        with pytest.raises(Exception, match="does not exist"):
            cancel_membership(s, client, "someone@else.fr", m_id, now=now)
        m = cancel_membership(s, client, "Camille@Example.fr", m_id, now=now + timedelta(days=3))
        assert m.status == "cancelling" and memberships.membership_entitled(m)
        assert (
            cancel_membership(s, client, "camille@example.fr", m_id, now=now).status == "cancelling"
        )
    posted = [
        f for meth, url, _, f in http.requests if url.endswith(f"/v1/subscriptions/{sub['id']}")
    ]
    assert posted == [{"cancel_at_period_end": "True"}] or posted == [
        {"cancel_at_period_end": "true"}
    ]


# --- the sales page of a membership offer ---------------------------------------------------


@pytest.mark.parametrize(
    ("language", "monthly", "yearly", "saving"),
    [
        ("fr", "29,00\xa0€ par mois", "190,00\xa0€ par an <s>290,00\xa0€ par an</s>",
         "Vous économisez 158,00\xa0€ par an (45\xa0%) par rapport au mensuel."),
        ("en", "€29.00 per month", "€190.00 per year <s>€290.00 per year</s>",
         "You save €158.00 a year (45%) compared with monthly."),
    ],
)  # fmt: skip
def test_sales_page_offers_each_membership_price(
    sessions, stripe_settings, now, language, monthly, yearly, saving
):
    """/buy of a monthly + yearly membership: one choice per price, in the page's language and
    money format, the yearly saving stated; each choice posts its own price to the checkout."""
    import dataclasses

    from starlette.testclient import TestClient

    from launchkit.web import create_app
    from tests.test_web import csrf_of

    with sessions.begin() as s:
        create_membership_offer(s, now, trial_days=7, founding=[("year", 19000)])
    settings = dataclasses.replace(stripe_settings, language=language)
    app = create_app(settings, clock=lambda: now)
    http = RecordingClient()
    app.state.stripe_client = checkout.make_client(settings, http_client=http)
    with TestClient(app, base_url="http://127.0.0.1:8000") as web:
        page = web.get("/buy/club-offer").text
        for plan in ("yearly", "monthly"):
            form = {"csrf_token": csrf_of(page), "plan": plan, "email": "camille@example.fr"}
            answer = web.post("/buy/club-offer", data=form, follow_redirects=False)
            assert answer.status_code == 303, answer.text
    assert 'value="monthly" checked' in page and 'value="yearly"' in page
    assert monthly in page and yearly in page and saving in page
    trial = {"fr": "7\xa0jours d&#39;essai gratuit", "en": "7-day free trial"}[language]
    assert trial in page
    created = [f for m, url, _, f in http.requests if url.endswith("/v1/checkout/sessions")]
    charged = [(f["line_items[0][price_data][recurring][interval]"],
                f["line_items[0][price_data][unit_amount]"]) for f in created]  # fmt: skip
    assert charged == [("year", "19000"), ("month", "2900")]  # the founding yearly price


def test_refund_command_on_a_membership_ends_it(sessions, stripe_settings, now):
    """`launchkit refund ORDER` on a membership order is the guarantee refund: the member is
    not charged again; a refund of one payment (`--payment`) leaves the membership running."""
    client, sub, invoices = _paid_member(sessions, stripe_settings, now)
    with sessions.begin() as s:
        order = s.scalars(select(Order)).one()
        latest = (Payment.occurred_at.desc(), Payment.stripe_id.desc())
        paid = select(Payment.stripe_id).where(Payment.order_id == order.id).order_by(*latest)
        renewal = s.scalars(paid).first()
        one = refund_any_order(s, client, order.id, now=now + timedelta(days=1), payment=renewal)
        assert one.amount_cents == 2900
        assert s.scalars(select(Membership)).one().status == "active"
    assert client.v1.subscriptions.retrieve(sub["id"]).status == "active"
    with sessions.begin() as s:
        whole = refund_any_order(s, client, order.id, now=now + timedelta(days=2), reason="no")
        assert whole.status == "succeeded" and whole.reason == "no"
        assert s.scalars(select(Membership)).one().status == "ended"
    assert client.v1.subscriptions.retrieve(sub["id"]).status == "canceled"
