"""Coupons (#18): Stripe Coupon + PromotionCode, accepted on Checkout or prefilled from a link,
kept on orders with their discount, and reported by code in the analysis.

Coupons go to localstripe for real; localstripe has no promotion codes (and refuses a coupon's
``applies_to``), so those requests are answered by the recording client and checked by shape.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import func, select

from launchkit import checkout
from launchkit.analysis import analyze_launch
from launchkit.errors import InputError
from launchkit.models import Coupon, Launch, Offer, Order
from launchkit.selling import coupons
from launchkit.stripe_events import Purchase
from tests.fixtures.stripe import create_offer, create_subscriber
from tests.test_checkout import RecordingClient, _posted


class PromoClient(RecordingClient):
    """The recording client, also answering promotion codes (and, when asked, coupons) here."""

    def __init__(self, local: tuple[str, ...] = ("promotion_codes",)):
        super().__init__()
        self.local = local

    def request(self, method, url, headers, post_data=None, *, _usage=None):  # noqa: ANN001
        kind = url.split("/v1/", 1)[-1].split("?")[0]
        if method.upper() != "POST" or kind not in self.local:
            return super().request(method, url, headers, post_data, _usage=_usage)
        text = post_data.decode() if isinstance(post_data, bytes) else post_data or ""
        fields = dict(parse_qsl(text))
        self.requests.append(("POST", url, dict(headers or {}), fields))
        answer = {"id": "promo_123" if kind == "promotion_codes" else fields["id"]}
        return json.dumps({**answer, "object": kind.rstrip("s")}), 200, {}


def _client(settings, http: RecordingClient) -> Any:
    return checkout.make_client(settings, http_client=http)


def _add(session, client, now, code="early20", **kwargs: Any) -> Coupon:
    terms = coupons.CouponTerms(**{"percent": 20, "currency": "EUR", **kwargs})
    return coupons.add_coupon(session, client, code, terms, now=now)


def _start(session, settings, client, now, **kwargs: Any) -> dict[str, str]:
    params = {"plan": "full", "subscriber_id": None, "email": None, "bump": False, **kwargs}
    checkout.start_checkout(session, settings, client, "cours", now=now, **params)
    return client._requestor._client.requests[-1][3]


# --- creating coupons ---------------------------------------------------------------------


def test_add_coupon_creates_coupon_and_promotion_code(session, stripe_settings, now) -> None:
    create_offer(session, now)
    http = PromoClient()
    client = _client(stripe_settings, http)
    until = now + timedelta(days=3)
    coupon = _add(session, client, now, until=until, max_uses=50)
    assert (coupon.code, coupon.stripe_coupon_id, coupon.stripe_promotion_code_id) == (
        "EARLY20", "launchkit-early20", "promo_123",
    )  # fmt: skip
    real = client.v1.coupons.retrieve("launchkit-early20").to_dict()  # created in localstripe
    assert (real["percent_off"], real["duration"]) == (20, "forever")
    ((promo_headers, promo),) = [
        (headers, fields)
        for method, url, headers, fields in http.requests
        if url.endswith("/v1/promotion_codes")
    ]
    assert promo["code"] == "EARLY20"
    assert (promo["promotion[type]"], promo["promotion[coupon]"]) == ("coupon", "launchkit-early20")
    assert promo["expires_at"] == str(int(until.timestamp()))
    assert promo["max_redemptions"] == "50"
    assert promo_headers["Idempotency-Key"] == "launchkit-promo-EARLY20"
    assert session.scalar(select(func.count(Coupon.id))) == 1


def test_amount_off_coupon_for_one_offer_request_shape(session, stripe_settings, now) -> None:
    offer = create_offer(session, now)
    offer.stripe_product_id = "prod_123"
    http = PromoClient(local=("coupons", "promotion_codes"))
    coupon = _add(
        session, _client(stripe_settings, http), now, "TEAM50", percent=None,
        amount_off_cents=5000, offer_slug="cours",
    )  # fmt: skip
    (fields,) = _posted(http, "/v1/coupons")
    assert fields["applies_to[products][0]"] == "prod_123"
    assert (fields["amount_off"], fields["currency"], fields["duration"]) == ("5000", "eur", "once")
    assert coupon.offer_id == offer.id and coupon.currency == "EUR"


@pytest.mark.parametrize(
    ("code", "kwargs", "message"),
    [
        ("E", {}, "letters, digits"),
        ("BOTH", {"amount_off_cents": 5000}, "exactly one of"),
        ("NONE", {"percent": None}, "exactly one of"),
        ("BIG", {"percent": 120}, "between 1 and 100"),
        ("PAST", {"until": "past"}, "already past"),
        ("ZERO", {"max_uses": 0}, "1 or more"),
        ("NOPROD", {"offer_slug": "cours"}, "offer sync"),
    ],
)
def test_bad_coupons_are_refused_before_stripe(session, stripe_settings, now, code, kwargs,
                                               message) -> None:  # fmt: skip
    create_offer(session, now)
    if kwargs.get("until") == "past":
        kwargs["until"] = now - timedelta(minutes=1)
    http = PromoClient()
    with pytest.raises(InputError, match=message):
        _add(session, _client(stripe_settings, http), now, code, **kwargs)
    assert http.requests == []


def test_cli_coupon_add_reports_stripe_refusal_and_writes_nothing(cli, stripe_settings) -> None:
    refused = cli("coupon", "add", "EARLY20", "--percent", "20", "--until", "2099-12-05 23:59")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: Stripe refused to create a promotion code")
    assert "Traceback" not in refused.output
    assert json.loads(cli("coupon", "list", "--json").stdout) == []
    both = cli("coupon", "add", "X1", "--percent", "20", "--amount-off", "50")
    assert both.exit_code == 1 and "exactly one of" in both.stderr


def test_cli_coupon_list(cli, sessions, stripe_settings, now) -> None:
    with sessions.begin() as s:
        create_offer(s, now)
        _add(s, _client(stripe_settings, PromoClient()), now, max_uses=50)
    table = cli("coupon", "list")
    assert table.exit_code == 0 and "EARLY20" in table.stdout and "20% off" in table.stdout
    (listed,) = json.loads(cli("coupon", "list", "--json").stdout)
    assert (listed["code"], listed["used"], listed["max_uses"]) == ("EARLY20", 0, 50)


# --- at checkout --------------------------------------------------------------------------


def test_checkout_prefills_or_accepts_codes(session, stripe_settings, now) -> None:
    create_offer(session, now)
    http = PromoClient()
    client = _client(stripe_settings, http)
    assert "allow_promotion_codes" not in _start(session, stripe_settings, client, now)
    _add(session, client, now, until=now + timedelta(days=1), max_uses=1)
    fields = _start(session, stripe_settings, client, now, coupon="early20")
    assert fields["discounts[0][promotion_code]"] == "promo_123"
    assert fields["metadata[coupon]"] == "EARLY20" and "allow_promotion_codes" not in fields
    typed = _start(session, stripe_settings, client, now)
    assert typed["allow_promotion_codes"] == "true" and "discounts[0][promotion_code]" not in typed
    unknown = _start(session, stripe_settings, client, now, coupon="NOPE")
    assert "discounts[0][promotion_code]" not in unknown and "metadata[coupon]" not in unknown
    late = _start(session, stripe_settings, client, now + timedelta(days=2), coupon="EARLY20")
    assert "discounts[0][promotion_code]" not in late and "allow_promotion_codes" not in late


def test_used_up_coupon_is_not_prefilled(sessions, stripe_settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        client = _client(stripe_settings, PromoClient())
        _add(s, client, now, max_uses=1)
        meta = checkout.checkout_metadata(offer, s.get(Launch, offer.launch_id), 1, None, False)
        deal = Purchase({**meta, "coupon": "EARLY20"}, "a@example.fr", 39760, "EUR")
        checkout.handle_event(s, stripe_settings, deal.completed(int(now.timestamp())), now=now,
                              fetch=False)  # fmt: skip
        fields = _start(s, stripe_settings, client, now, coupon="EARLY20")
    assert "discounts[0][promotion_code]" not in fields


def test_sales_page_link_carries_the_code_to_checkout(sessions, stripe_settings, now) -> None:
    from starlette.testclient import TestClient

    from launchkit.web import create_app
    from tests.test_web import csrf_of

    http = PromoClient()
    with sessions.begin() as s:
        create_offer(s, now)
        _add(s, _client(stripe_settings, http), now)
    app = create_app(stripe_settings, clock=lambda: now)
    app.state.stripe_client = _client(stripe_settings, http)
    with TestClient(app) as web:
        page = web.get("/buy/cours?coupon=EARLY20").text
        assert 'name="coupon" value="EARLY20"' in page
        form = {"csrf_token": csrf_of(page), "coupon": "EARLY20", "plan": "full"}
        answer = web.post("/buy/cours", data=form, follow_redirects=False)
    assert answer.status_code == 303
    fields = _posted(http, "/v1/checkout/sessions")[-1]
    assert fields["discounts[0][promotion_code]"] == "promo_123"


# --- orders and analysis ------------------------------------------------------------------


def _discounted(s, settings, now, offer: Offer, *, typed: bool, email: str, amount: int,
                discount: int, instalments: int = 1) -> Order:  # fmt: skip
    meta = checkout.checkout_metadata(
        offer, s.get(Launch, offer.launch_id), instalments, None, False
    )
    if not typed:
        meta["coupon"] = "EARLY20"
    deal = Purchase(meta, email, amount, "EUR", instalments=instalments)
    event = deal.completed(int(now.timestamp()))
    obj = event["data"]["object"]
    obj["total_details"] = {"amount_discount": discount, "amount_tax": 0, "amount_shipping": 0}
    obj["discounts"] = [{"coupon": "launchkit-early20", "promotion_code": "promo_123"}]
    assert checkout.handle_event(s, settings, event, now=now, fetch=False) == "applied"
    if instalments > 1:
        checkout.handle_event(s, settings, deal.invoice(1, int(now.timestamp())), now=now,
                              fetch=False)  # fmt: skip
    return s.scalar(select(Order).where(Order.email == email))


def test_orders_keep_code_and_discount_and_analysis_by_coupon(
    sessions, stripe_settings, now
) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        create_subscriber(s, now - timedelta(days=3))  # in the audience at cart open
        create_subscriber(s, now - timedelta(days=3), "other@example.fr")
        _add(s, _client(stripe_settings, PromoClient()), now)
        typed = _discounted(s, stripe_settings, now, offer, typed=True, email="camille@example.fr",
                            amount=39760, discount=9940)  # fmt: skip
        assert (typed.coupon_code, typed.discount_cents, typed.total_cents) == (
            "EARLY20", 9940, 39760,
        )  # fmt: skip
        linked = _discounted(s, stripe_settings, now, offer, typed=False, email="b@example.fr",
                             amount=39760, discount=9940)  # fmt: skip
        assert linked.coupon_code == "EARLY20" and linked.paid_cents == 39760
        plan = _discounted(s, stripe_settings, now, offer, typed=True, email="c@example.fr",
                           amount=14160, discount=3540, instalments=3)  # fmt: skip
        assert plan.total_cents == 3 * 17700 - 3 * 3540  # 20% off every instalment
        report = analyze_launch(s, "spring")
    (row,) = report["by_coupon"]
    assert row["coupon"] == "EARLY20"
    assert (row["orders"], row["buyers"], row["discount_cents"]) == (3, 3, 9940 + 9940 + 3540)
    assert row["revenue_cents"] == 39760 + 39760 + 14160
    assert row["share_of_orders"] == 1.0
    assert report["audience_size"] == 2
    assert row["conversion_rate"] == 0.5  # camille, in the audience, used it; 2 outsiders too
