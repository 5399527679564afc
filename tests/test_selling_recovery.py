"""Abandoned checkouts (#18): one recovery email per person and offer, after the delay, never
after close, never to a buyer, never twice; measured in the analysis; checked by rehearse.

Emails go through the file messenger (the outbox) or the real SMTP sink."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from launchkit import checkout, mailer, tokens
from launchkit.analysis import analyze_launch
from launchkit.models import CheckoutRecovery, Launch, Offer, Subscriber, WebEvent
from launchkit.selling import recovery
from launchkit.selling.promises import recoveries_after_close
from launchkit.selling.recovery import Abandoned, claim, recovery_pass, send_recoveries
from launchkit.stripe_events import Purchase
from tests.fixtures.stripe import create_offer, create_subscriber


def _start(session, subscriber: Subscriber, offer_id: int, at) -> None:  # noqa: ANN001
    session.add(
        WebEvent(kind="checkout_start", offer_id=offer_id, subscriber_id=subscriber.id,
                 occurred_at=at)
    )  # fmt: skip
    session.flush()


def _camille_starts(session, now: datetime) -> tuple[Offer, Subscriber]:  # noqa: ANN001
    """Offer "cours" and camille@example.fr, who opened its checkout at ``now``."""
    offer = create_offer(session, now)
    camille = create_subscriber(session, now)
    _start(session, camille, offer.id, now)
    return offer, camille


def _pays(session, settings, offer: Offer, buyer: Subscriber, at, now) -> None:  # noqa: ANN001
    """``buyer`` pays ``offer`` in full at ``at`` (the checkout.session.completed event)."""
    launch = session.get(Launch, offer.launch_id)
    meta = checkout.checkout_metadata(offer, launch, 1, buyer.id, False)
    deal = Purchase(meta, buyer.email, 49700, "EUR")
    event = deal.completed(int(at.timestamp()))
    checkout.handle_event(session, settings, event, now=now, fetch=False)


def _outbox(settings) -> list[Path]:  # noqa: ANN001
    return sorted(Path(settings.outbox_dir).glob("*.eml")) if settings.outbox_dir.exists() else []


def _send(sessions, settings, at) -> dict[str, int]:  # noqa: ANN001
    return recovery_pass(sessions, settings, now=at)


def test_one_email_after_the_delay_then_never_again(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer, camille = _camille_starts(s, now)
        offer_id, camille_id = offer.id, camille.id
    assert _send(sessions, settings, now + timedelta(minutes=59)) == {"sent": 0}
    assert _send(sessions, settings, now + timedelta(hours=1)) == {"sent": 1}
    assert _send(sessions, settings, now + timedelta(hours=2)) == {"sent": 0}
    with sessions.begin() as s:  # a new start later: still never a second email
        _start(s, s.get(Subscriber, camille_id), offer_id, now + timedelta(hours=3))
    assert _send(sessions, settings, now + timedelta(hours=5)) == {"sent": 0}
    (message,) = _outbox(settings)
    raw = message.read_bytes().decode("utf-8", "replace")
    assert "camille@example.fr" in raw and "/buy/cours?t=" in raw
    with sessions.begin() as s:
        row = s.scalars(select(CheckoutRecovery)).one()
        assert (row.subscriber_id, row.sent_at) == (camille_id, now + timedelta(hours=1))


def test_recovery_link_prefills_the_address(sessions, settings, now) -> None:
    import quopri
    import re

    with sessions.begin() as s:
        offer, camille = _camille_starts(s, now)
        camille_id = camille.id
    _send(sessions, settings, now + timedelta(hours=1))
    (message,) = _outbox(settings)
    text = quopri.decodestring(message.read_bytes()).decode("utf-8", "replace")
    token = re.search(r"/buy/cours\?t=([A-Za-z0-9_.\-]+)", text)[1]
    data = tokens.read_token(
        settings, tokens.Purpose.CHECKOUT, token, now_ts=(now + timedelta(hours=1)).timestamp()
    )
    assert data["s"] == camille_id
    assert "Votre inscription à Cours photo n'est pas terminée" in text


def test_no_email_to_buyers_after_close_or_to_the_unsubscribed(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        launch = s.get(Launch, offer.launch_id)
        buyer = create_subscriber(s, now, "buyer@example.fr")
        gone = create_subscriber(s, now, "gone@example.fr")
        gone.status = "unsubscribed"
        late = create_subscriber(s, now, "late@example.fr")
        for person, at in (
            (buyer, now),
            (gone, now),
            (late, launch.cart_close - timedelta(minutes=30)),
        ):
            _start(s, person, offer.id, at)
        _pays(s, settings, offer, buyer, now + timedelta(minutes=10), now)
        close = launch.cart_close
    counts = _send(sessions, settings, now + timedelta(hours=2))
    assert counts == {"sent": 0, "buyer": 1, "inactive": 1}
    after_close = _send(sessions, settings, close + timedelta(minutes=31))
    assert after_close == {"sent": 0, "cart_closed": 3}  # late's start was 1 h old by then
    assert _outbox(settings) == []


def test_a_suppressed_address_stored_in_capitals_gets_nothing(sessions, settings, now) -> None:
    """Suppressions are lowercased; an address stored otherwise (not through the importer) is
    looked up lowercased too."""
    from launchkit.models import Suppression

    with sessions.begin() as s:
        offer = create_offer(s, now)
        _start(s, create_subscriber(s, now, "Camille@Example.fr"), offer.id, now)
        s.add(Suppression(email="camille@example.fr", reason="complained", created_at=now))
    assert _send(sessions, settings, now + timedelta(hours=1)) == {"sent": 0, "inactive": 1}
    assert _outbox(settings) == []


def test_concurrent_passes_send_once(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        for i in range(6):
            _start(s, create_subscriber(s, now, f"p{i}@example.fr"), offer.id, now)
    results: list[dict[str, int]] = []
    at = now + timedelta(hours=1)

    def one_pass() -> None:
        for _ in range(10):
            try:
                results.append(recovery_pass(sessions, settings, now=at))
                return
            except Exception:  # noqa: BLE001 (SQLite busy / PostgreSQL unique race: retry)
                continue

    threads = [threading.Thread(target=one_pass) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["sent"] for r in results) == 6
    assert len(_outbox(settings)) == 6
    with sessions.begin() as s:
        assert s.scalar(select(func.count(CheckoutRecovery.id))) == 6


def _crowd(sessions, settings, now, offer_id: int, first: int, count: int) -> None:  # noqa: ANN001
    """``count`` more people with an old checkout start: every other one buys, the others get
    their recovery email now."""
    with sessions.begin() as s:
        offer = s.get(Offer, offer_id)
        launch = s.get(Launch, offer.launch_id)
        for i in range(first, first + count):
            person = create_subscriber(s, now, f"p{i}@example.fr")
            _start(s, person, offer_id, now)
            if i % 2 == 0:
                meta = checkout.checkout_metadata(offer, launch, 1, person.id, False)
                deal = Purchase(meta, person.email, 49700, "EUR")
                ts = int((now + timedelta(minutes=10)).timestamp())
                checkout.handle_event(s, settings, deal.completed(ts), now=now, fetch=False)
    assert _send(sessions, settings, now + timedelta(hours=1))["sent"] == count // 2


def test_a_pass_asks_the_same_number_of_queries_for_5_or_50_old_starts(
    sessions, engine, settings, now
) -> None:
    """Buyers and people already emailed cost a pass nothing per person (#18)."""
    from sqlalchemy import event

    with sessions.begin() as s:
        offer_id = create_offer(s, now).id
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(statement)

    def counted_pass(at) -> tuple[dict[str, int], int]:  # noqa: ANN001
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            return _send(sessions, settings, at), len(statements)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    _crowd(sessions, settings, now, offer_id, 0, 6)
    few, few_statements = counted_pass(now + timedelta(hours=2))
    _crowd(sessions, settings, now, offer_id, 6, 44)
    many, many_statements = counted_pass(now + timedelta(hours=3))
    assert (few, many) == ({"sent": 0, "buyer": 3}, {"sent": 0, "buyer": 25})
    assert many_statements == few_statements <= 6
    assert len(_outbox(settings)) == 25  # the others got theirs once, in _crowd


def test_an_address_refused_for_good_gets_no_second_offer_in_the_same_pass(
    sessions, settings, now, smtp_sink
) -> None:
    """The reasons are decided for the whole pass up front; a refusal on the way (5xx:
    the address is suppressed) still stops the same person's next offer."""
    with sessions.begin() as s:
        offer = create_offer(s, now)
        other = checkout.add_offer(
            s,
            "spring",
            "atelier",
            product="Atelier",
            price_cents=9700,
            currency="EUR",
            plans=[],
            now=now,
        )
        gone = create_subscriber(s, now, "gone@example.org")
        fine = create_subscriber(s, now, "fine@example.org")
        for person in (gone, fine):
            for offer_id in (offer.id, other.id):
                _start(s, person, offer_id, now)
    relay = dataclasses.replace(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    smtp_sink.fail_rcpt["gone@example.org"] = (550, "5.1.1 no such user")
    counts = recovery_pass(sessions, relay, now=now + timedelta(hours=1))
    assert counts == {"sent": 2, "failed": 1, "inactive": 1}
    received = [address for m in smtp_sink.messages for address in m.rcpt_tos]
    assert received == ["fine@example.org", "fine@example.org"]
    with sessions.begin() as s:
        person = s.scalars(select(Subscriber).where(Subscriber.email == "gone@example.org")).one()
        assert person.status == "bounced"
    later = recovery_pass(sessions, relay, now=now + timedelta(hours=2))
    assert later == {"sent": 0, "inactive": 1}  # its second offer, never claimed


def test_claim_is_unique_per_person_and_offer(sessions, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        camille = create_subscriber(s, now)
        item = Abandoned(camille.id, offer.id, now)
        assert claim(s, item, now) is not None
        assert claim(s, item, now) is None  # the second claimer loses, nothing sent


def test_language_of_the_recovery_email(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        ann = create_subscriber(s, now, "ann@example.com")
        ann.language = "en"
        _start(s, ann, offer.id, now)
    messenger = mailer.messenger_from_settings(settings)
    with sessions.begin() as s:
        send_recoveries(s, settings, messenger, now=now + timedelta(hours=1))
    (message,) = _outbox(settings)
    assert b"enrolment" in message.read_bytes()


def test_analysis_counts_recovered_orders_and_promise(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        camille = create_subscriber(s, now - timedelta(days=3))
        other = create_subscriber(s, now - timedelta(days=3), "other@example.fr")
        _start(s, camille, offer.id, now)
        _start(s, other, offer.id, now)
        offer_id, camille_id, other_id = offer.id, camille.id, other.id
    delayed = dataclasses.replace(settings, checkout_recovery_delay=timedelta(minutes=30))
    assert _send(sessions, delayed, now + timedelta(minutes=30))["sent"] == 2
    with sessions.begin() as s:
        camille = s.get(Subscriber, camille_id)  # bought 2 h after the email
        _pays(s, settings, s.get(Offer, offer_id), camille, now + timedelta(hours=2), now)
        report = analyze_launch(s, "spring")
        launch = s.scalars(select(Launch)).one()
        assert recoveries_after_close(s, launch) == []
        s.execute(  # as if one had gone out after the close: the promise catches it
            CheckoutRecovery.__table__.update()
            .where(CheckoutRecovery.subscriber_id == other_id)
            .values(sent_at=launch.cart_close + timedelta(minutes=1))
        )
        (broken,) = recoveries_after_close(s, launch)
        assert broken[1] == "other@example.fr"
    assert report["recovery"] == {
        "emails_sent": 2, "recovered_orders": 1, "recovered_revenue_cents": 49700,
        "recovered_net_revenue_cents": 49700, "recovery_rate": 0.5,
    }  # fmt: skip


def test_run_tick_sends_the_recovery_email(settings) -> None:
    from launchkit.models import Offer
    from launchkit.orchestrator import run_plan
    from tests.test_orchestrator import START, _ctx, _sessions, make_plan

    make_plan(settings.workspace)
    engine, sessions = _sessions(settings)
    opened = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # cart open, 09:00 Paris
    try:
        run_plan(sessions, _ctx(settings, START))
        with sessions.begin() as s:
            person = s.scalars(select(Subscriber).order_by(Subscriber.id)).first()
            offer_id = s.scalar(select(Offer.id))
            _start(s, person, offer_id, opened + timedelta(minutes=5))
            person_id = person.id
        run_plan(sessions, _ctx(settings, opened + timedelta(minutes=30)), only_due=True)
        with sessions.begin() as s:
            assert s.scalar(select(func.count(CheckoutRecovery.id))) == 0  # not yet: 1 h delay
        at = opened + timedelta(hours=1, minutes=5)
        run_plan(sessions, _ctx(settings, at), only_due=True)
        with sessions.begin() as s:
            row = s.scalars(select(CheckoutRecovery)).one()
            assert (row.subscriber_id, row.sent_at) == (person_id, at)
    finally:
        engine.dispose()
    found = [p for p in _outbox(settings) if "checkout-recovery" in p.name]
    assert len(found) == 1


# --- rehearse's promises: each check catches its promise broken on purpose ---------------------


def _pushed_outbox(settings) -> tuple[Any, list[Path]]:  # noqa: ANN001
    """A file outbox that lists every message it is handed (a resend is listed again)."""
    from launchkit.orchestrator.replay import RecordingOutbox

    pushed: list[Path] = []
    return RecordingOutbox(settings.outbox_dir, pushed), pushed


def _broken(sessions, settings, pushed=None) -> dict[str, list[dict]]:  # noqa: ANN001
    from launchkit.orchestrator.promises import check_promises

    with sessions.begin() as s:
        report = check_promises(s, settings, s.scalars(select(Launch)).one(), pushed=pushed)
    found: dict[str, list[dict]] = {}
    for item in report["broken"]:
        found.setdefault(item["promise"], []).append(item)
    return found


AFTER_CLOSE = "no abandoned-checkout email goes out after the cart closed"
TO_BUYER = "no abandoned-checkout email reaches someone who already bought"
TWICE = "no one gets two abandoned-checkout emails for the same offer"


def test_promises_hold_for_a_recovered_buyer(sessions, settings, now) -> None:
    """Emailed, then bought: recovered, no promise broken (the checks do not cry wolf)."""
    with sessions.begin() as s:
        offer, camille = _camille_starts(s, now)
        offer_id, camille_id = offer.id, camille.id
    messenger, pushed = _pushed_outbox(settings)
    with sessions.begin() as s:
        assert send_recoveries(s, settings, messenger, now=now + timedelta(hours=1))["sent"] == 1
    with sessions.begin() as s:
        camille = s.get(Subscriber, camille_id)
        _pays(s, settings, s.get(Offer, offer_id), camille, now + timedelta(hours=3), now)
    with sessions.begin() as s:  # a later pass: she bought, nothing more goes out
        assert send_recoveries(s, settings, messenger, now=now + timedelta(hours=5))["sent"] == 0
    assert len(pushed) == 1
    assert _broken(sessions, settings, pushed) == {}


def test_promise_catches_a_recovery_email_to_a_buyer(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer, camille = _camille_starts(s, now)
        _pays(s, settings, offer, camille, now + timedelta(minutes=20), now)
        camille_id, offer_id = camille.id, offer.id
    assert _broken(sessions, settings) == {}
    # broken on purpose: the email goes out although she bought (a sender that skipped the
    # buyer check), recorded in the ledger as the real sender would
    messenger, pushed = _pushed_outbox(settings)
    with sessions.begin() as s:
        at = now + timedelta(hours=1)
        recovery._send(s, settings, messenger, None, s.get(Subscriber, camille_id),
                       s.get(Offer, offer_id), at)  # fmt: skip
        s.add(CheckoutRecovery(subscriber_id=camille_id, offer_id=offer_id, started_at=now,
                               claimed_at=at, sent_at=at))  # fmt: skip
    (item,) = _broken(sessions, settings, pushed)[TO_BUYER]
    assert item["email"] == "recovery/cours" and item["example"] == "camille@example.fr"
    assert "bought" in item["detail"]


def test_promise_catches_a_second_recovery_email(sessions, settings, now) -> None:
    with sessions.begin() as s:
        offer, camille = _camille_starts(s, now)
        camille_id, offer_id = camille.id, offer.id
    messenger, pushed = _pushed_outbox(settings)
    with sessions.begin() as s:
        send_recoveries(s, settings, messenger, now=now + timedelta(hours=1))
    assert _broken(sessions, settings, pushed) == {}
    # broken on purpose: a sender that forgot its ledger sends the same email again a day
    # later; the file outbox keeps one file (same Message-ID), the pushes show two emails
    with sessions.begin() as s:
        recovery._send(s, settings, messenger, None, s.get(Subscriber, camille_id),
                       s.get(Offer, offer_id), now + timedelta(days=1))  # fmt: skip
    assert len(_outbox(settings)) == 1 and len(pushed) == 2
    (item,) = _broken(sessions, settings, pushed)[TWICE]
    assert item["example"] == "camille@example.fr" and item["detail"] == "2 recovery emails"


def test_promise_catches_a_recovery_email_after_close_without_ledger(
    sessions, settings, now
) -> None:
    with sessions.begin() as s:
        offer = create_offer(s, now)
        camille = create_subscriber(s, now)
        close = s.get(Launch, offer.launch_id).cart_close
        camille_id, offer_id = camille.id, offer.id
    messenger, pushed = _pushed_outbox(settings)
    with sessions.begin() as s:  # broken on purpose: sent after the close, no ledger row
        recovery._send(s, settings, messenger, None, s.get(Subscriber, camille_id),
                       s.get(Offer, offer_id), close + timedelta(hours=2))  # fmt: skip
    (item,) = _broken(sessions, settings)[AFTER_CLOSE]  # found in the outbox files alone
    assert item["example"] == "camille@example.fr" and "sent at" in item["detail"]
    assert _broken(sessions, settings, pushed)[AFTER_CLOSE] == [item]
