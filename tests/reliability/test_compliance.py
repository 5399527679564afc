"""Compliance (issue 8): the legal footer and RFC 8058 headers on every marketing message, a
send refused before it starts without them, suppressed addresses that a re-import cannot bring
back (case and IDNA variants), and double opt-in through the web app with complete consent.

Real SQLite and PostgreSQL, the real delivery engine (``sequences.send_due``) into a real SMTP
sink or the file outbox, the real web app. Sizes scale with ``LAUNCHKIT_TEST_SCALE``.
"""

from __future__ import annotations

import dataclasses
import email
import html as html_lib
import os
import random
import re
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from launchkit import audience, sequences
from launchkit.errors import DeliveryError
from launchkit.launches import create_launch, get_launch
from launchkit.models import (
    Consent,
    Send,
    SendStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from tests.sendkit import CART_CLOSE, CART_OPEN, FakeClock, tune, write_sequence
from tests.test_web import confirm as confirm_link
from tests.test_web import csrf_of, link_in, make_web

pytestmark = pytest.mark.reliability

SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1.0"))
PRELAUNCH = CART_OPEN - timedelta(days=7)


def scaled(ci_size: int, minimum: int = 2) -> int:
    return max(minimum, round(ci_size * SCALE))


def _launch(sessions, settings, sequence: str, now=PRELAUNCH - timedelta(days=3)) -> None:
    with sessions.begin() as s:
        create_launch(
            s, "spring", product="Atelier Photo", currency="EUR", now=now,
            cart_open=CART_OPEN, cart_close=CART_CLOSE, prelaunch_start=PRELAUNCH,
        )  # fmt: skip
        sequences.attach_sequence(s, settings, "spring", sequence, now=now)


def _people(sessions, count: int, now, prefix: str = "p") -> None:
    rows = [
        {"email": f"{prefix}{i:05d}@example.com", "first_name": f"P{i}", "last_name": "",
         "status": "active", "created_at": now, "updated_at": now}
        for i in range(count)
    ]  # fmt: skip
    with sessions.begin() as s:
        s.execute(insert(Subscriber), rows)


def _send_everything(engine, sessions, settings) -> int:
    """Run the sender at every due time of the ledger (a minute late); returns runs made."""
    with sessions.begin() as s:
        sequences.schedule_launch(s, settings, get_launch(s, "spring"))
    with sessions.begin() as s:
        due = sorted(set(s.scalars(select(Send.due_at))))
    for moment in due:
        clock = FakeClock(moment + timedelta(minutes=1))
        sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep)
    return len(due)


# --- (c) the footer and headers on every marketing message ----------------------------------


def test_every_marketing_message_has_rfc8058_headers_link_and_postal_address(
    engine, sessions, settings, smtp_sink
):
    settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    assert settings.postal_address.strip()
    people = scaled(20)
    _launch(sessions, settings, "launch-fr")
    _people(sessions, people, PRELAUNCH - timedelta(days=3))
    runs = _send_everything(engine, sessions, settings)
    with sessions.begin() as s:
        sent = s.scalar(select(func.count(Send.id)).where(Send.status == SendStatus.SENT))
    messages = smtp_sink.wait_for(sent, timeout=30)
    assert sent == len(messages) >= people * 9  # 10 emails (some may be skipped by deadline)
    postal_lines = [line.strip() for line in settings.postal_address.splitlines() if line.strip()]
    for raw in (m.as_bytes() for m in messages):
        msg = email.message_from_bytes(raw, policy=policy.default)
        unsubscribe = str(msg["List-Unsubscribe"])
        urls = re.findall(r"<([^>]+)>", unsubscribe)
        assert any(u.startswith("http") for u in urls) and any(
            u.startswith("mailto:") for u in urls
        )
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = next(u for u in urls if u.startswith("http"))
        page = html_lib.unescape(msg.get_body(("html",)).get_content())
        text = msg.get_body(("plain",)).get_content()
        assert f'href="{url}"' in page and url in text, msg["Subject"]
        for line in postal_lines:
            assert line in page and line in text, (msg["Subject"], line)
    print(f"footer: {len(messages)} marketing messages in {runs} runs, all with both headers")


def test_send_without_postal_address_or_footer_is_refused_before_it_starts(
    engine, sessions, settings, smtp_sink
):
    settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    _launch(sessions, settings, "launch-fr")
    _people(sessions, 5, PRELAUNCH - timedelta(days=3))
    clock = FakeClock(CART_OPEN + timedelta(minutes=1))

    def ledger() -> list[tuple]:
        with sessions.begin() as s:
            return sorted(
                s.execute(select(Send.id, Send.status, Send.attempts, Send.sent_at)).all()
            )

    for broken, message in (
        (dataclasses.replace(settings, postal_address=""), "postal_address is empty"),
        (dataclasses.replace(settings, postal_address="   \n "), "postal_address is empty"),
    ):
        with pytest.raises(DeliveryError, match=message):
            sequences.send_due(engine, broken, clock=clock, sleep=clock.sleep)
        assert smtp_sink.count == 0
    before = ledger()
    layout = Path(settings.emails_dir) / "base.html"  # a layout that drops the legal footer
    original = layout.read_text(encoding="utf-8")
    layout.write_text("<html><body>{{ body_html }}</body></html>\n", encoding="utf-8")
    try:
        with pytest.raises(DeliveryError, match="no unsubscribe link|postal address"):
            sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep)
    finally:
        layout.write_text(original, encoding="utf-8")
    after = ledger()
    assert smtp_sink.count == 0
    assert [row[1:] for row in after] == [row[1:] for row in before]
    assert not any(row[1] == SendStatus.SENT for row in after)
    report = sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep)
    assert report.sent == len(smtp_sink.wait_for(20)) == 4 * 5  # 3 prelaunch + cart open, x5


# --- (a) re-import of suppressed addresses in case and IDNA variants ------------------------


def _suppressed_families(count: int) -> list[tuple[str, str, str]]:
    """(stored spelling, re-import spelling, reason) for ``count`` addresses."""
    reasons = ["unsubscribed", "bounced", "complained", "suppressed-only"]
    out = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            stored, variant = f"élodie{i}@café.fr", f"ÉLodie{i}@Café.FR"
        elif kind == 1:
            stored, variant = f"elodie{i}@xn--caf-dma.fr", f"ELODIE{i}@CAFÉ.fr"
        elif kind == 2:
            stored, variant = f"Zoe.Martin{i}@Example.COM", f"  zoe.martin{i}@EXAMPLE.com "
        elif kind == 3:
            stored, variant = f"jürgen{i}@bücher.de", f"JÜRGEN{i}@XN--BCHER-KVA.DE"
        else:
            stored, variant = f"marc{i}@münchen.example", f"Marc{i}@MÜNCHEN.Example"
        out.append((stored, variant, reasons[i % 4]))
    return out


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,first_name\n")
        for address, name in rows:
            handle.write(f'"{address}","{name}"\n')


def test_reimport_never_resubscribes_or_mails_suppressed_addresses(
    engine, sessions, settings, tmp_path
):
    total, bad = scaled(5_000, minimum=100), scaled(850, minimum=20)  # x2: issue 8 size
    settings = tune(settings)
    now = PRELAUNCH - timedelta(days=30)
    families = _suppressed_families(bad)
    first = tmp_path / "first.csv"
    _write_csv(
        first, [(stored, "Old") for stored, _, reason in families if reason != "suppressed-only"]
    )
    with sessions.begin() as s:
        audience.import_subscribers(s, first, now=now, source="old-list")
        for stored, _, reason in families:
            if reason == "unsubscribed":
                sub = audience.get_subscriber(s, stored)
                audience.unsubscribe(s, sub.id, now=now, method="link")
            elif reason == "suppressed-only":
                audience.suppress(s, stored, SuppressionReason.MANUAL, now=now)
            else:
                audience.suppress(s, stored, SuppressionReason(reason), now=now)
    rows = [(variant, "Again") for _, variant, _ in families]
    rows += [(f"fresh{i}@example.org", f"F{i}") for i in range(total - bad)]
    random.Random(17).shuffle(rows)
    again = tmp_path / "again.csv"
    _write_csv(again, rows)
    with sessions.begin() as s:
        result = audience.import_subscribers(s, again, now=now + timedelta(days=1), source="new")
    normalized = {audience.normalize_email(stored) for stored, _, _ in families}
    assert normalized == {audience.normalize_email(variant) for _, variant, _ in families}
    with sessions.begin() as s:
        statuses = dict(s.execute(select(Subscriber.email, Subscriber.status)).all())
        suppressions = set(s.scalars(select(Suppression.email)))
        active = [
            e
            for e in normalized
            if statuses.get(e) in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)
        ]
        assert active == [], active[:5]
        assert normalized <= suppressions
        assert (
            s.scalar(select(func.count(Subscriber.id)).where(Subscriber.email.in_(normalized)))
            <= bad
        )
        fresh_active = sum(
            1 for e, st in statuses.items() if e.startswith("fresh") and st == "active"
        )
    assert fresh_active == total - bad
    # a launch sequence to everyone: not one message may reach a suppressed address
    write_sequence(settings, "mini")
    _launch(sessions, settings, "mini", now=now)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    report = sequences.send_due(
        engine,
        settings,
        clock=clock,
        sleep=clock.sleep,
        options=sequences.SendOptions(batch_size=1000),
    )
    recipients = []
    for path in Path(settings.outbox_dir).rglob("*.eml"):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        parsed = email.message_from_bytes(head + b"\r\n\r\n", policy=policy.default)
        recipients.append(parsed["To"].addresses[0].addr_spec.lower())
    mailed = {audience.normalize_email(r) for r in recipients}
    assert report.sent == len(recipients) == total - bad
    assert mailed & normalized == set()
    with sessions.begin() as s:
        sent_to = set(
            s.scalars(
                select(Subscriber.email)
                .join(Send, Send.subscriber_id == Subscriber.id)
                .where(Send.status == SendStatus.SENT)
            )
        )
    assert sent_to & normalized == set()
    print(
        f"re-import: {total} rows, {bad} suppressed variants, 0 resubscribed, 0 mailed, "
        f"{report.sent} sent to others; import counts {getattr(result, 'counts', result)}"
    )


# --- (b) signups through the web app: no marketing before confirmation, complete consent ----


def test_signups_get_no_marketing_before_confirmation_and_consent_is_complete(
    engine, sessions, settings, smtp_sink, now
):
    signups = scaled(500, minimum=10)  # issue 8: 1,000 at LAUNCHKIT_TEST_SCALE=2
    confirm = signups // 2
    for web in make_web(settings, smtp_sink, now, web_rate_limit=f"{signups * 10}/1m"):
        for i in range(signups):
            page = web.client.get("/m/guide")
            data = {"email": f"s{i:04d}@example.fr", "first_name": f"S{i}", "consent": "yes",
                    "csrf_token": csrf_of(page.text)}  # fmt: skip
            answer = web.client.post("/m/guide", data=data, headers={"user-agent": f"ua/{i}"})
            assert answer.status_code == 303, answer.text[:300]
        confirmations = smtp_sink.wait_for(signups, timeout=60)
        assert len(confirmations) == signups
        # a launch sequence is due right now, for everyone the engine may mail
        tuned = tune(web.settings)
        with sessions.begin() as s:
            create_launch(
                s, "spring", product="Atelier Photo", currency="EUR", now=now,
                cart_open=now - timedelta(minutes=10), cart_close=now + timedelta(days=5),
            )  # fmt: skip
        write_sequence(tuned, "mini")
        with sessions.begin() as s:
            sequences.attach_sequence(s, tuned, "spring", "mini", now=now)
        clock = FakeClock(now)
        before = sequences.send_due(engine, tuned, clock=clock, sleep=clock.sleep)
        assert before.sent == 0
        assert smtp_sink.count == signups  # nothing but the confirmation requests
        assert not any(m["Message-ID"].startswith("<lk.email-") for m in _parsed(smtp_sink))
        by_address = {m["To"].addresses[0].addr_spec: m for m in _parsed(smtp_sink)}
        confirmed = sorted(by_address)[:confirm]
        for address in confirmed:
            web.clock.now = now + timedelta(minutes=5)
            assert confirm_link(web, link_in(by_address[address], "/confirm")).status_code == 200
        clock = FakeClock(now + timedelta(minutes=10))
        after = sequences.send_due(engine, tuned, clock=clock, sleep=clock.sleep)
        marketing = [m for m in _parsed(smtp_sink) if m["Message-ID"].startswith("<lk.email-")]
        assert after.sent == len(marketing) == confirm
        assert sorted(m["To"].addresses[0].addr_spec for m in marketing) == confirmed
        with sessions.begin() as s:
            pending = set(s.scalars(select(Subscriber.id).where(Subscriber.status == "pending")))
            assert len(pending) == signups - confirm
            mailed = set(
                s.scalars(select(Send.subscriber_id).where(Send.status == SendStatus.SENT))
            )
            assert mailed & pending == set()
            _check_consents(s, signups, confirm, now)
    print(f"signups: {signups} through the web, {confirm} confirmed, 0 marketing to pending")


def _parsed(sink) -> list:
    return [email.message_from_bytes(m.as_bytes(), policy=policy.default) for m in sink.messages]


def _check_consents(s, signups: int, confirm: int, now) -> None:
    consents = s.scalars(select(Consent)).all()
    assert len(consents) == signups
    statuses = dict(s.execute(select(Subscriber.id, Subscriber.status)).all())
    done = 0
    for c in consents:
        assert c.method == "optin" and c.subscriber_id and c.magnet_id
        assert c.given_at == now and c.ip and c.user_agent and c.user_agent.startswith("ua/")
        assert c.page and c.page.endswith("/m/guide")
        assert c.wording and c.wording_version and len(c.wording_sha256 or "") == 64
        if statuses[c.subscriber_id] == "active":
            assert c.confirmed_at == now + timedelta(minutes=5) and c.confirm_ip
            done += 1
        else:
            assert c.confirmed_at is None and c.confirm_ip is None
    assert done == confirm
