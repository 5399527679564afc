"""Emails sent after Stripe events (receipts, dunning, access, membership emails) when the relay
refuses, fails for a while or drops, and when a template is broken: one email's fate never
undoes or blocks the others. Before, the whole run shared one transaction: a relay refusing one
buyer rolled back the claims of the emails already sent (sent again at every event) and blocked
every email after it, for good.

Real aiosmtpd relay (per-address refusals, scripted 4xx, drops after the data), SQLite and
PostgreSQL; ``send_notifications`` in one transaction, as the webhook route runs it.
"""

# ruff: noqa: F811 (the shop fixture is imported)
from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from launchkit import checkout, mailer
from launchkit.models import Membership, MembershipEvent, Subscriber, Suppression
from launchkit.stripe_events import Member, Purchase
from tests.fixtures.stripe import create_subscriber
from tests.membership_data import create_membership_offer, member_metadata
from tests.test_checkout_events import deliver, shop  # noqa: F401 (fixture)

pytestmark = pytest.mark.reliability
DAY = 86400


def _buy(sessions, settings, shop, now, addresses: list[str]) -> None:  # noqa: F811
    """One paid order per address; no email sent yet (no messenger)."""
    ts = int(now.timestamp())
    deals = [Purchase(shop["typed"], address, 49700, "EUR") for address in addresses]
    deliver(sessions, settings, [d.completed(ts) for d in deals], now)


def _run(sessions, settings, smtp_sink, now) -> int:
    """One pass of the webhook route's email step: one transaction, one SMTP connection."""
    relay = dataclasses.replace(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    messenger = mailer.messenger_from_settings(relay)
    try:
        with sessions.begin() as s:
            return checkout.send_notifications(s, relay, messenger, now=now)
    finally:
        messenger.close()


def _received(smtp_sink) -> Counter[str]:
    return Counter(address for m in smtp_sink.messages for address in m.rcpt_tos)


def _suppressed(sessions) -> set[str]:
    with sessions.begin() as s:
        return set(s.scalars(select(Suppression.email)))


def test_a_refused_address_neither_blocks_nor_repeats_the_others(
    sessions, settings, shop, now, smtp_sink
):
    addresses = ["a@example.org", "b@example.org", "c@example.org"]
    _buy(sessions, settings, shop, now, addresses)
    smtp_sink.fail_rcpt["b@example.org"] = (550, "5.1.1 no such user")
    assert _run(sessions, settings, smtp_sink, now) == 2
    for minute in (1, 2):  # later events: nothing more to send
        assert _run(sessions, settings, smtp_sink, now + timedelta(minutes=minute)) == 0
    assert _received(smtp_sink) == {"a@example.org": 1, "c@example.org": 1}
    assert "b@example.org" in _suppressed(sessions)  # bounced like a launch email


def test_a_refusal_for_the_content_keeps_the_address(sessions, settings, shop, now, smtp_sink):
    _buy(sessions, settings, shop, now, ["a@example.org", "b@example.org"])
    smtp_sink.fail_data["b@example.org"] = (554, "5.7.1 message content rejected")
    assert _run(sessions, settings, smtp_sink, now) == 1
    assert _run(sessions, settings, smtp_sink, now + timedelta(minutes=1)) == 0
    assert sum(_received(smtp_sink).values()) == 1
    assert _suppressed(sessions) == set()  # refused for what it says, not for the address


def test_a_temporary_failure_is_sent_at_the_next_pass_once(
    sessions, settings, shop, now, smtp_sink
):
    addresses = ["a@example.org", "b@example.org", "c@example.org"]
    _buy(sessions, settings, shop, now, addresses)
    smtp_sink.fail_data["b@example.org"] = (451, "4.3.0 Try again later")
    assert _run(sessions, settings, smtp_sink, now) == 2
    smtp_sink.fail_data.clear()
    assert _run(sessions, settings, smtp_sink, now + timedelta(minutes=1)) == 1
    assert _run(sessions, settings, smtp_sink, now + timedelta(minutes=2)) == 0
    assert _received(smtp_sink) == dict.fromkeys(addresses, 1)


def test_relay_down_then_back(sessions, settings, shop, now, smtp_sink):
    _buy(sessions, settings, shop, now, ["a@example.org", "b@example.org"])
    port = smtp_sink.url.rsplit(":", 1)[1]
    down = dataclasses.replace(settings, email_backend="smtp",
                               smtp_url=smtp_sink.url.replace(port, "1"))  # fmt: skip
    messenger = mailer.messenger_from_settings(down)
    with sessions.begin() as s:
        assert checkout.send_notifications(s, down, messenger, now=now) == 0
    assert _run(sessions, settings, smtp_sink, now + timedelta(minutes=1)) == 2
    assert _received(smtp_sink) == {"a@example.org": 1, "b@example.org": 1}


def test_a_drop_after_the_data_is_not_sent_again(sessions, settings, shop, now, smtp_sink):
    _buy(sessions, settings, shop, now, ["a@example.org", "b@example.org"])
    smtp_sink.fail_data["a@example.org"] = "store-reset"  # stored, the 250 never heard: in doubt
    assert _run(sessions, settings, smtp_sink, now) == 1
    assert _run(sessions, settings, smtp_sink, now + timedelta(minutes=1)) == 0
    assert _received(smtp_sink) == {"a@example.org": 1, "b@example.org": 1}


def test_a_broken_template_holds_its_emails_only(sessions, settings, shop, now, smtp_sink):
    """A receipt the creator broke waits (fixed, it goes once); the membership email of the
    same pass goes out."""
    _buy(sessions, settings, shop, now, ["a@example.org"])
    member = _member(sessions, settings, now, "m@example.org")
    folder = settings.emails_dir / f"transactional-{settings.language}"
    folder.mkdir(parents=True, exist_ok=True)
    receipt = folder / "receipt.md"
    receipt.write_text('---\nsubject: "Merci {{ product"\n---\nBonjour\n', encoding="utf-8")
    _run(sessions, settings, smtp_sink, now)
    assert _received(smtp_sink) == {"m@example.org": 1}  # the welcome; both receipts wait
    receipt.unlink()
    _run(sessions, settings, smtp_sink, now + timedelta(minutes=1))
    _run(sessions, settings, smtp_sink, now + timedelta(minutes=2))
    assert _received(smtp_sink) == {"a@example.org": 1, "m@example.org": 2}
    assert member.subscription


def _member(sessions, settings, now, address: str) -> Member:
    with sessions.begin() as s:
        offer = create_membership_offer(s, now, slug=f"club{abs(hash(address)) % 10_000}")
        subscriber = create_subscriber(s, now, address)
        meta = member_metadata(s, offer, "month", subscriber.id)
    m = Member(meta, address, 2900, "EUR", "month", start=int(now.timestamp()))
    deliver(sessions, settings, [m.completed(m.start + 1), m.invoice(1, m.start + 1)], now)
    return m


def test_a_failed_renewal_email_that_fails_is_sent_at_the_next_pass(
    sessions, settings, now, smtp_sink
):
    m = _member(sessions, settings, now, "m@example.org")
    assert _run(sessions, settings, smtp_sink, now) == 2  # receipt, welcome
    failed_at = now + timedelta(days=30)
    deliver(sessions, settings, [m.invoice(2, m.start + 30 * DAY, paid=False)], failed_at)
    smtp_sink.fail_next(1, 451, stage="RCPT")
    assert _run(sessions, settings, smtp_sink, failed_at) == 0
    with sessions.begin() as s:  # the failure is still to be told
        pending = s.scalars(select(MembershipEvent).where(MembershipEvent.kind == "failed")).one()
        assert pending.notified_at is None
    assert _run(sessions, settings, smtp_sink, failed_at + timedelta(minutes=5)) == 1
    assert _run(sessions, settings, smtp_sink, failed_at + timedelta(minutes=6)) == 0
    subjects = [str(m["Subject"]) for m in smtp_sink.messages]
    assert len(subjects) == 3 and len(set(subjects)) == 3  # + the failed renewal, once


FAULTS = st.sampled_from(["ok", "ok", "451", "550", "554", "drop", "drop-stored"])


@hsettings(max_examples=12, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(script=st.lists(st.lists(FAULTS, min_size=4, max_size=4), min_size=1, max_size=3))
def test_any_faults_over_passes_send_each_email_at_most_once(
    sessions, settings, shop, now, smtp_sink, script
):
    """Four buyers; each pass meets the scripted reply per buyer; then a clean pass. Oracle:
    nobody gets two receipts; whoever was never refused for good nor dropped after the data
    gets exactly one; a refused address (5.1.1) is suppressed."""
    tag = f"{abs(hash(str(script))) % 10**8}-{len(smtp_sink.messages)}"
    addresses = [f"p{i}-{tag}@example.org" for i in range(4)]
    _buy(sessions, settings, shop, now, addresses)
    ended: set[str] = set()  # refused for good or in doubt: not tried again
    refused: set[str] = set()
    for pass_faults in script:
        waiting = [a for a in addresses if a not in ended and not _received(smtp_sink)[a]]
        plan = _script(smtp_sink, addresses, pass_faults, waiting)
        _run(sessions, settings, smtp_sink, now)
        ended |= {a for a, f in plan.items() if f in ("550", "554", "drop", "drop-stored")}
        refused |= {a for a, f in plan.items() if f == "550"}
        smtp_sink.fail_rcpt.clear()
        smtp_sink.fail_data.clear()
    _run(sessions, settings, smtp_sink, now)  # the relay works again
    got = _received(smtp_sink)
    for address in addresses:
        assert got[address] <= 1, (address, script)
        if address not in ended:
            assert got[address] == 1, (address, script)
    assert refused <= _suppressed(sessions)


def _script(smtp_sink, addresses: list[str], faults: list[str], waiting: list[str]) -> dict:
    """Set the relay's reply per address for one pass; returns the faults met by the
    addresses still ``waiting`` for their receipt (the ones tried)."""
    plan = {a: f for a, f in zip(addresses, faults, strict=True) if a in waiting}
    replies: dict[str, Any] = {"451": (451, "4.3.0 Try again later"),
                               "550": (550, "5.1.1 No such user")}  # fmt: skip
    data: dict[str, Any] = {"554": (554, "5.7.1 Content rejected"), "drop": "reset",
                            "drop-stored": "store-reset"}  # fmt: skip
    for address, fault in plan.items():
        if fault in replies:
            smtp_sink.fail_rcpt[address] = replies[fault]
        elif fault in data:
            smtp_sink.fail_data[address] = data[fault]
    return plan


def test_member_emails_survive_a_refused_buyer(sessions, settings, shop, now, smtp_sink):
    """A receipt refused for good, then a member's receipt and welcome: they go."""
    _buy(sessions, settings, shop, now, ["gone@example.org"])
    _member(sessions, settings, now, "m@example.org")
    smtp_sink.fail_rcpt["gone@example.org"] = (550, "5.1.1 no such user")
    _run(sessions, settings, smtp_sink, now)
    _run(sessions, settings, smtp_sink, now + timedelta(minutes=1))
    assert _received(smtp_sink) == {"m@example.org": 2}  # receipt, welcome
    with sessions.begin() as s:
        assert s.scalars(select(Membership)).one().status == "active"
        gone = s.scalars(select(Subscriber).where(Subscriber.email == "gone@example.org")).all()
        assert all(g.status != "active" for g in gone)


def test_recovery_emails_under_a_refusal_and_a_temporary_failure(
    sessions, settings, now, smtp_sink
):
    """Abandoned-checkout emails (``launchkit run --tick``): one address refused for good, one
    refused for now; the third goes; the next pass sends the one that waited, once."""
    from launchkit.models import WebEvent
    from launchkit.selling.recovery import recovery_pass
    from tests.fixtures.stripe import create_offer

    with sessions.begin() as s:
        offer = create_offer(s, now)
        for name in ("gone", "later", "fine"):
            person = create_subscriber(s, now, f"{name}@example.org")
            s.add(WebEvent(kind="checkout_start", offer_id=offer.id, subscriber_id=person.id,
                           occurred_at=now))  # fmt: skip
    relay = dataclasses.replace(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    smtp_sink.fail_rcpt["gone@example.org"] = (550, "5.1.1 no such user")
    smtp_sink.fail_rcpt["later@example.org"] = (451, "4.3.0 Try again later")
    first = recovery_pass(sessions, relay, now=now + timedelta(hours=1))
    assert (first["sent"], first["failed"]) == (1, 2)
    smtp_sink.fail_rcpt.pop("later@example.org")
    assert recovery_pass(sessions, relay, now=now + timedelta(hours=2))["sent"] == 1
    assert recovery_pass(sessions, relay, now=now + timedelta(hours=3))["sent"] == 0
    assert _received(smtp_sink) == {"fine@example.org": 1, "later@example.org": 1}
    assert "gone@example.org" in _suppressed(sessions)
