"""Deliverability (#19): public https links through a real relay, Feedback-ID, pacing and
warm-up, DKIM signatures checked by dkimpy's verifier, SPF/DKIM/DMARC checks against a local
DNS server."""

from __future__ import annotations

import dataclasses
import email
from datetime import timedelta
from email import policy

import pytest

from launchkit import mailer, sequences
from launchkit.errors import ConfigError
from launchkit.sequences.preview import link_scheme_problems
from tests.fixtures.smtp import SmtpSink
from tests.sendkit import CART_OPEN, FakeClock, populate, tune

RELAY = "smtp://mx.relay.example:25"
PUBLIC = "https://atelier.example"


def _run(engine, settings, clock, **kw):
    factory = kw.pop("messenger_factory", None)
    return sequences.send_due(
        engine, settings, clock=clock, sleep=clock.sleep, messenger_factory=factory,
        options=sequences.SendOptions(**kw),
    )  # fmt: skip


def _parsed(sink: SmtpSink) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.raw, policy=policy.default) for m in sink.messages]


# --- links must be public https through a real relay -----------------------------------------


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("http://127.0.0.1:8000", "is not https"),
        ("https://127.0.0.1:8000", "loopback"),
        ("https://localhost", "loopback"),
        ("https://[::1]:8443", "loopback"),
        ("http://atelier.example", "is not https"),
    ],
)
def test_send_through_a_real_relay_refuses_private_links(
    settings, engine, sessions, base_url, problem
):
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    settings = tune(settings, email_backend="smtp", smtp_url=RELAY, base_url=base_url)
    populate(sessions, settings, 2, now=CART_OPEN - timedelta(days=3))
    with pytest.raises(ConfigError) as caught:
        _run(engine, settings, clock)
    message = str(caught.value)
    assert "\n" not in message and problem in message and "mx.relay.example" in message
    assert f'web.base_url "{base_url}"' in message
    with pytest.raises(ConfigError, match="public https"):
        mailer.messenger_from_settings(settings)


def test_file_backend_and_loopback_sinks_allow_local_links(settings, engine, sessions, smtp_sink):
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    assert settings.base_url.startswith("http://127.0.0.1")
    populate(sessions, settings, 2, now=CART_OPEN - timedelta(days=3))
    assert _run(engine, tune(settings), clock).sent == 2  # file backend
    sink_settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    assert isinstance(mailer.messenger_from_settings(sink_settings), mailer.SMTPMessenger)
    mailer.check_relay_links(sink_settings)
    relay_public = tune(settings, email_backend="smtp", smtp_url=RELAY, base_url=PUBLIC)
    mailer.check_relay_links(relay_public)


def test_preview_lint_reports_non_https_links():
    html_body = (
        '<a href="http://127.0.0.1:8000/u/abc">x</a> <a href="https://atelier.example/b">b</a>'
        '<a href="http://shop.example/buy?a=1&amp;b=2">y</a><a href="mailto:a@b.example">m</a>'
    )
    problems = link_scheme_problems(html_body, "Lien : https://localhost/u/x\n")
    assert problems == [
        '2 link(s) are not https, e.g. "http://127.0.0.1:8000/u/abc": use public https:// URLs'
        " (web.base_url)",
        '1 link(s) point at this machine (loopback), e.g. "https://localhost/u/x": use public'
        " https:// URLs (web.base_url)",
    ]
    assert link_scheme_problems('<a href="https://atelier.example/u/1">u</a>', "") == []


# --- Feedback-ID -------------------------------------------------------------------------------


def test_feedback_id_is_sanitized():
    assert mailer.feedback_id("04-cart-open", "spring", "Atelier Test") == (
        "04-cart-open:spring:Atelier-Test:launchkit"
    )
    assert mailer.feedback_id("a:b", "é/ü", "") == "a-b:x:x:launchkit"
    assert len(mailer.feedback_id("x" * 90, "y", "z").split(":")[0]) == 40


def test_marketing_mail_carries_feedback_id_over_smtp(settings, engine, sessions, smtp_sink):
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    settings = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    settings = dataclasses.replace(settings, name="Atelier: Test")
    populate(sessions, settings, 2, now=CART_OPEN - timedelta(days=3))
    assert _run(engine, settings, clock).sent == 2
    for message in _parsed(smtp_sink):
        assert message["Feedback-ID"] == "01-open:spring:Atelier-Test:launchkit"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
