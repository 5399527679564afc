"""Deliverability (#19): public https links through a real relay, Feedback-ID, pacing and
warm-up, DKIM signatures checked by dkimpy's verifier, SPF/DKIM/DMARC checks against a local
DNS server."""

from __future__ import annotations

import dataclasses
import email
from datetime import timedelta
from email import policy

import pytest
from sqlalchemy import select

from launchkit import mailer, sequences
from launchkit.config import load_settings
from launchkit.errors import ConfigError
from launchkit.models import Send
from launchkit.sequences import ratelimit
from launchkit.sequences.preview import link_scheme_problems
from tests.fixtures.smtp import SmtpSink
from tests.sendkit import CART_CLOSE, CART_OPEN, FakeClock, populate, tune

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


# --- pacing by default, warm-up ----------------------------------------------------------------


def _relay_settings(settings, **kw):
    """Settings that send through a real relay (policy), while the test transport is the sink."""
    return tune(settings, email_backend="smtp", smtp_url=RELAY, base_url=PUBLIC, **kw)


def _sent_times(sessions) -> list:
    with sessions.begin() as session:
        return sorted(t for t in session.scalars(select(Send.sent_at)) if t is not None)


def _busiest_hour(times) -> int:
    return max(sum(1 for u in times if t <= u < t + timedelta(hours=1)) for t in times)


def test_effective_rates_and_warmup_ceiling():
    assert ratelimit.effective_rates(None, None, real_relay=True) == (10.0, 3000)
    assert ratelimit.effective_rates(None, None, real_relay=False) == (0.0, 0)
    assert ratelimit.effective_rates(0.0, 0, real_relay=True) == (0.0, 0)  # explicit: no limit
    assert ratelimit.warmup_ceiling(3000, 0) == 500
    assert ratelimit.warmup_ceiling(3000, 10_000) == 2000
    assert ratelimit.warmup_ceiling(3000, 1_000_000) == 3000
    assert ratelimit.warmup_ceiling(0, 1_000_000) == 200_000


def test_warmup_paces_a_new_domain_through_a_real_relay(
    settings, engine, sessions, smtp_sink, monkeypatch
):
    """A fresh ledger: at most the warm-up floor per rolling hour; a week later, with the
    first email's sends in the ledger, the ceiling has grown to a share of them."""
    monkeypatch.setattr(ratelimit, "WARMUP_FLOOR_PER_HOUR", 4)
    monkeypatch.setattr(ratelimit, "WARMUP_SHARE", 2)
    settings = _relay_settings(settings)
    assert (settings.rate_per_second, settings.rate_per_hour, settings.warmup) == (None, None, True)
    populate(sessions, settings, 12, now=CART_OPEN - timedelta(days=3))
    clock = FakeClock(CART_OPEN + timedelta(minutes=1))
    factory = lambda _settings: mailer.SMTPMessenger(smtp_sink.url)  # noqa: E731
    report = _run(engine, settings, clock, launch="spring", messenger_factory=factory)
    first = _sent_times(sessions)
    assert report.sent == 12 and len(smtp_sink.messages) == 12
    assert _busiest_hour(first) == 4
    assert first[-1] - first[0] >= timedelta(hours=2)
    assert min(b - a for a, b in zip(first, first[1:])) >= timedelta(seconds=0.1)  # 10/s
    clock.now = CART_CLOSE - timedelta(hours=2, minutes=59)  # 02-last-call is due
    assert _run(engine, settings, clock, messenger_factory=factory).sent == 12
    second = [t for t in _sent_times(sessions) if t > first[-1]]
    assert _busiest_hour(second) == 6  # max(4, 12 sent in the last 14 days / 2)


def test_warmup_off_and_local_sinks_send_at_once(settings, engine, sessions, smtp_sink):
    populate(sessions, settings, 12, now=CART_OPEN - timedelta(days=3))
    clock = FakeClock(CART_OPEN + timedelta(minutes=1))
    factory = lambda _settings: mailer.SMTPMessenger(smtp_sink.url)  # noqa: E731
    off = dataclasses.replace(_relay_settings(settings), warmup=False)
    assert _run(engine, off, clock, launch="spring", messenger_factory=factory).sent == 12
    times = _sent_times(sessions)
    assert times[-1] - times[0] <= timedelta(seconds=2)  # only the 10/s default pacing
    assert sum(clock.slept) >= 1.0
    clock.now = CART_CLOSE - timedelta(hours=2, minutes=59)
    clock.slept.clear()
    local = tune(settings, email_backend="smtp", smtp_url=smtp_sink.url)
    assert _run(engine, local, clock).sent == 12
    assert clock.slept == []  # a loopback sink: no default pacing


def test_warmup_setting_is_read_from_the_toml(settings, tmp_path):
    toml = settings.workspace / "launchkit.toml"
    text = toml.read_text().replace("[email]\n", "[email]\nwarmup = false\nrate_per_hour = 0\n")
    toml.write_text(text)
    loaded = load_settings(settings.workspace, env={})
    assert (loaded.warmup, loaded.rate_per_hour, loaded.rate_per_second) == (False, 0, None)
    toml.write_text(text.replace("warmup = false", 'warmup = "maybe"'))
    with pytest.raises(ConfigError, match='"maybe" must be true or false'):
        load_settings(settings.workspace, env={})
