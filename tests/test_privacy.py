"""GDPR requests: export, erase, and a schema that cannot grow without a privacy decision."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from launchkit import audience, magnets, privacy
from launchkit.config import settings_for_test
from launchkit.errors import NotFound
from launchkit.models import (
    AccessChange,
    AccessGrant,
    Base,
    CheckoutRecovery,
    Coupon,
    Email,
    EvergreenEntry,
    Launch,
    LaunchSequence,
    LaunchStep,
    Link,
    LinkClick,
    Magnet,
    Membership,
    MembershipEvent,
    MembershipPrice,
    Offer,
    OfferPlan,
    OfferProduct,
    OfferTier,
    Order,
    Payment,
    Product,
    Refund,
    Segment,
    Send,
    StripeEvent,
    Subscriber,
    Suppression,
    Webhook,
    WebhookDelivery,
)

EMAIL = "zephyrine.quillard@example.org"
FIRST, LAST = "Zéphyrine", "Quillard"
IP, CONFIRM_IP, IMPORT_IP = "203.0.113.77", "198.51.100.23", "192.0.2.140"
SECRETS = (EMAIL, FIRST, LAST, IP, CONFIRM_IP, IMPORT_IP)
DAY = timedelta(days=1)


def _person(session: Session, tmp_path: Path, now: datetime) -> Subscriber:
    """One person with data in every table: library calls where they exist, rows otherwise."""
    csv = tmp_path / "people.csv"
    csv.write_text(
        f"email,first_name,last_name,tags,ip\n{EMAIL.upper()},{FIRST},{LAST},vip,{IMPORT_IP}\n",
        encoding="utf-8",
    )
    audience.import_subscribers(session, csv, now=now - 9 * DAY)
    settings = settings_for_test(tmp_path)
    magnet = magnets.add_magnet(
        session, settings, "guide", title="Guide", url="https://e.org", now=now - 9 * DAY
    )
    magnets.record_event(session, magnets.EVENT_SIGNUP, now=now - 8 * DAY, ip=IP)  # anonymous
    visitor = magnets.Visitor(IP, "Mozilla/5.0 (Zephyrine's laptop)", f"https://e.org/?e={EMAIL}")
    data = magnets.SignupInput(email=EMAIL, first_name=FIRST)
    signup = magnets.signup(session, settings, magnet, data, visitor, now=now - 8 * DAY)
    payload = {"s": signup.subscriber.id, "m": magnet.id, "c": signup.consent.id}
    magnets.confirm_signup(session, settings, payload, ip=CONFIRM_IP, now=now - 7 * DAY)
    sub = signup.subscriber
    launch = Launch(
        slug="l", product="Cours", currency="EUR", cart_open=now, cart_close=now + DAY,
        created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(launch)
    session.flush()
    session.add(LaunchStep(launch_id=launch.id, step="send", error=f"SMTP refused {EMAIL}"))
    seq = LaunchSequence(launch_id=launch.id, name="s", created_at=now)
    session.add(seq)
    session.flush()
    email = Email(sequence_id=seq.id, step="j1", position=1, subject="Bienvenue")
    link = Link(uuid="00000000-0000-0000-0000-000000000001", url="https://e.org/sales")
    offer = Offer(
        launch_id=launch.id, slug="cours", product="Cours", price_cents=39700, currency="EUR",
        created_at=now,
    )  # fmt: skip
    product = Product(slug="p", title="P", kind="url", target="https://e.org/p", created_at=now)
    webhook = Webhook(url="https://h.org", events={"events": ["order.paid"]}, secret="whsec_x",
                      created_at=now)  # fmt: skip
    session.add_all([email, link, offer, product, webhook])
    session.flush()
    link.email_id, link.personal = email.id, "checkout"
    order = Order(
        launch_id=launch.id, offer_id=offer.id, subscriber_id=sub.id, email=EMAIL, currency="EUR",
        total_cents=39700, paid_cents=39700, status="paid", created_at=now, updated_at=now,
        stripe_customer_id="cus_1",
    )  # fmt: skip
    session.add_all([
        Send(email_id=email.id, subscriber_id=sub.id, status="failed", due_at=now,
             reason=f"550 {EMAIL} unknown"),
        LinkClick(link_id=link.id, email_id=email.id, subscriber_id=sub.id, occurred_at=now),
        OfferPlan(offer_id=offer.id, instalments=3, instalment_cents=13900),
        OfferTier(offer_id=offer.id, name="early", price_cents=29700, until=now),
        Coupon(code="EARLY", percent_off=20, currency="EUR", offer_id=offer.id, created_at=now),
        OfferProduct(offer_id=offer.id, product_id=product.id),
        CheckoutRecovery(subscriber_id=sub.id, offer_id=offer.id, started_at=now, claimed_at=now),
        Segment(name="vip", expression="tag:vip", created_at=now),
        EvergreenEntry(launch_id=launch.id, subscriber_id=sub.id, entered_at=now,
                       cart_open_at=now, cart_close_at=now + DAY),
        order,
        StripeEvent(id="evt_1", type="checkout.session.completed", processed_at=now,
                    status="parked", payload={"customer_details": {"email": EMAIL,
                                                                   "name": f"{FIRST} {LAST}"}}),
        Suppression(email="other@example.org", reason="manual", detail=None, created_at=now),
    ])  # fmt: skip
    session.flush()
    membership = Membership(
        order_id=order.id, launch_id=launch.id, offer_id=offer.id, interval="month",
        amount_cents=2900, currency="EUR", status="active", started_at=now, updated_at=now,
    )  # fmt: skip
    session.add_all([membership, MembershipPrice(offer_id=offer.id, interval="month", cents=2900)])
    session.flush()
    session.add(
        MembershipEvent(membership_id=membership.id, key="in_1", kind="failed", occurred_at=now,
                        update_url=f"https://invoice.example/{EMAIL}")
    )  # fmt: skip
    payment = Payment(
        order_id=order.id, stripe_id="pi_1", amount_cents=39700, currency="EUR", status="paid",
        occurred_at=now, update_url=f"https://billing.example/{EMAIL}",
    )  # fmt: skip
    session.add(payment)
    session.flush()
    session.add_all([
        Refund(order_id=order.id, payment_id=payment.id, idempotency_key="k", amount_cents=100,
               currency="EUR", status="requested", requested_at=now,
               reason=f"{FIRST} asked by phone"),
        AccessGrant(order_id=order.id, product_id=product.id, active=True, granted_at=now),
        AccessChange(order_id=order.id, product_id=product.id, action="granted", reason="paid",
                     occurred_at=now),
        WebhookDelivery(id="msg_1", webhook_id=webhook.id, event="order.paid",
                        payload={"order": {"email": EMAIL, "first_name": FIRST}},
                        status="pending", next_attempt_at=now, created_at=now),
    ])  # fmt: skip
    audience.suppress(
        session, EMAIL, audience.SuppressionReason.MANUAL, now=now, detail=f"{LAST} complained"
    )
    session.flush()
    return sub


def _text_cells(session: Session) -> list[tuple[str, str]]:
    """Every String/Text/JSON cell of every table, as ``(table.column, text)``."""
    cells = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.Text | sa.JSON)]
        for row in session.execute(sa.select(*columns)) if columns else []:
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    text = value if isinstance(value, str) else json.dumps(value)
                    cells.append((f"{table.name}.{column.name}", text))
    return cells


def _leaks(session: Session) -> list[tuple[str, str]]:
    needles = [s.lower() for s in SECRETS] + [json.dumps(FIRST)[1:-1].lower()]
    return [(where, text) for where, text in _text_cells(session)
            if any(n in text.lower() for n in needles)]  # fmt: skip


def test_every_column_has_a_privacy_decision() -> None:
    columns = {f"{t.name}.{c.name}" for t in Base.metadata.sorted_tables for c in t.columns}
    policy, allowed = set(privacy.ERASE_POLICY), privacy.not_personal_columns()
    assert not policy & allowed, "a column cannot be both personal and not"
    unclassified = columns - policy - allowed
    assert not unclassified, f"classify in launchkit/privacy.py: {sorted(unclassified)}"
    assert not (policy | allowed) - columns, "stale entries in launchkit/privacy.py"
    actions = {"placeholder", "clear", "delete", "unlink", "hash", "redact"}
    assert set(privacy.ERASE_POLICY.values()) <= actions


def test_erase_leaves_nothing_personal_in_any_table(session: Session, tmp_path, now) -> None:  # type: ignore[no-untyped-def]
    _person(session, tmp_path, now)
    empty = [
        t.name for t in Base.metadata.sorted_tables
        if not session.scalar(sa.select(sa.func.count()).select_from(t))
    ]  # fmt: skip
    assert empty == [], "the fixture must put data in every table"
    found = {where for where, _ in _leaks(session)}
    assert {"subscribers.email", "consents.ip", "orders.email", "web_events.ip"} <= found

    counts = privacy.erase_person(session, EMAIL, now=now)

    assert counts["subscribers"] == 1 and counts["orders"] == 1
    assert _leaks(session) == []
    # accounting and counts survive; the address is only a hash on the suppression list
    order = session.scalars(sa.select(Order)).one()
    assert (order.email, order.total_cents, order.status) == (
        f"erased-{order.id}@invalid", 39700, "paid")  # fmt: skip
    assert session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 1
    sub = session.scalars(sa.select(Subscriber)).one()
    assert sub.status == "unsubscribed" and sub.email == f"erased-{sub.id}@invalid"
    keys = set(session.scalars(sa.select(Suppression.email)))
    assert keys == {"other@example.org", privacy.erased_key(EMAIL)}
    # idempotent: a second erase changes nothing
    before = _text_cells(session)
    privacy.erase_person(session, EMAIL.upper(), now=now + DAY)
    assert _text_cells(session) == before


def test_erased_address_is_not_re_added_by_an_import(session: Session, tmp_path, now) -> None:  # type: ignore[no-untyped-def]
    _person(session, tmp_path, now)
    privacy.erase_person(session, EMAIL, now=now)
    csv = tmp_path / "again.csv"
    csv.write_text(f"email,first_name,status\n{EMAIL},{FIRST},subscribed\n"
                   f" {EMAIL.upper()} ,{FIRST},unsubscribed\nnew@example.org,N,subscribed\n",
                   encoding="utf-8")  # fmt: skip
    result = audience.import_subscribers(session, csv, now=now + DAY)
    assert (result.new, result.suppressed) == (1, 1)
    assert session.scalar(sa.select(Subscriber).where(Subscriber.email == EMAIL)) is None
    assert _leaks(session) == []


def test_opt_in_after_erase_lifts_the_hash_on_confirmation(session: Session, tmp_path, now) -> None:  # type: ignore[no-untyped-def]
    _person(session, tmp_path, now)
    privacy.erase_person(session, EMAIL, now=now)
    settings = settings_for_test(tmp_path)
    magnet = session.scalars(sa.select(Magnet)).one()
    data = magnets.SignupInput(email=EMAIL, first_name="Z")
    visitor = magnets.Visitor(None, None, None)
    signup = magnets.signup(session, settings, magnet, data, visitor, now=now + DAY)
    assert audience.is_suppressed(session, EMAIL)  # pending, not mailable before confirming
    payload = {"s": signup.subscriber.id, "m": magnet.id, "c": signup.consent.id}
    magnets.confirm_signup(session, settings, payload, ip=None, now=now + 2 * DAY)
    assert privacy.erased_key(EMAIL) not in set(session.scalars(sa.select(Suppression.email)))
    assert signup.subscriber.status == "active"


def test_export_has_everything_held(session: Session, tmp_path, now) -> None:  # type: ignore[no-untyped-def]
    _person(session, tmp_path, now)
    data = privacy.export_person(session, f"  {EMAIL.upper()} ")
    sub = data["subscriber"]
    assert (sub["profile"]["first_name"], sub["profile"]["last_name"]) == (FIRST, LAST)
    assert sub["tags"] == sorted(sub["tags"]) and "vip" in sub["tags"]
    assert [c["status"] for c in sub["status_history"]][-1] == "unsubscribed"
    optin = [c for c in sub["consents"] if c["method"] == "optin"][0]
    assert optin["wording"] and (optin["ip"], optin["confirm_ip"]) == (IP, CONFIRM_IP)
    assert [(s["step"], s["subject"], s["status"]) for s in sub["sends"]] == [
        ("j1", "Bienvenue", "failed")]  # fmt: skip
    assert {e["kind"] for e in sub["web_events"]} >= {"signup", "confirm"}
    assert len(sub["link_clicks"]) == 1
    assert len(sub["evergreen_entries"]) == 1  # the person's own cart in an evergreen launch
    assert sub["link_clicks"][0]["url"] == "https://e.org/sales"
    (order,) = data["orders"]
    assert order["total_cents"] == 39700 and len(order["payments"]) == 1
    assert len(order["refunds"]) == 1 and len(order["access_grants"]) == 1
    assert [s["email"] for s in data["suppressions"]] == [EMAIL]
    json.dumps(data)  # JSON-ready
    with pytest.raises(NotFound, match="No subscriber or order with the address nobody@x.org"):
        privacy.export_person(session, "nobody@x.org")
    with pytest.raises(NotFound):
        privacy.erase_person(session, "nobody@x.org", now=now)


def test_cli_export_and_erase(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "p.csv"
    csv.write_text(f"email,first_name\n{EMAIL},{FIRST}\n", encoding="utf-8")
    assert cli("audience", "import", str(csv)).exit_code == 0
    out = tmp_path / "out" / "export.json"
    result = cli("person", "export", EMAIL, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["subscriber"]["profile"]["first_name"] == FIRST
    assert cli("person", "erase", EMAIL, input="n\n").exit_code != 0  # declined: nothing done
    assert json.loads(cli("person", "export", EMAIL).stdout)["subscriber"] is not None
    result = cli("person", "erase", EMAIL, "--yes")
    assert result.exit_code == 0, result.output
    exported = json.loads(cli("person", "export", EMAIL).stdout)
    assert exported["subscriber"] is None and exported["orders"] == []
    assert cli("person", "erase", EMAIL, "--yes").exit_code == 0  # idempotent
    result = cli("person", "export", "x@y.org")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: No subscriber or order with the address x@y.org"
