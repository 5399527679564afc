"""Deliverability (#19): public https links through a real relay, Feedback-ID, pacing and
warm-up, DKIM signatures checked by dkimpy's verifier, SPF/DKIM/DMARC checks against a local
DNS server."""

from __future__ import annotations

import base64
import dataclasses
import email
import subprocess
import time
from datetime import timedelta
from email import policy

import dkim
import pytest
from sqlalchemy import select

from launchkit import mailer, sequences
from launchkit.config import load_settings, settings_for_test
from launchkit.deliverability import check_sender_domain
from launchkit.errors import ConfigError
from launchkit.models import Send
from launchkit.render import make_environment, sample_context
from launchkit.sequences import ratelimit
from launchkit.sequences.preview import link_scheme_problems
from tests.fixtures.dns import DnsStub
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


# --- DKIM: signed by launchkit, verified by dkimpy against a key served over DNS ----------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory) -> tuple[str, str]:
    """(private key PEM, public key base64) made by openssl."""
    folder = tmp_path_factory.mktemp("dkim")
    pem = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(pem), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(pem), "-pubout", "-outform", "der"],
        check=True,
        capture_output=True,
    ).stdout
    return pem.read_text(), base64.b64encode(der).decode("ascii")


@pytest.fixture
def dns_stub():
    stubs: list[DnsStub] = []

    def make(records, **kw) -> DnsStub:
        stubs.append(DnsStub(records, **kw))
        return stubs[-1]

    yield make
    for stub in stubs:
        stub.close()


def _verify(raw: bytes, stub: DnsStub) -> bool:
    resolver = stub.resolver()

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(answer[0].strings)

    return bool(dkim.verify(raw, dnsfunc=dnsfunc))


def _signed_headers(raw: bytes) -> list[str]:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    tags = dict(
        part.strip().split("=", 1)
        for part in "".join(str(parsed["DKIM-Signature"]).split()).split(";")
        if "=" in part
    )
    return [h.lower() for h in tags["h"].split(":")]


def test_marketing_mail_is_dkim_signed_and_verifies(
    settings, engine, sessions, smtp_sink, dkim_key, dns_stub
):
    private, public = dkim_key
    domain = settings.sender_email.rsplit("@", 1)[1]
    stub = dns_stub({f"lk2026._domainkey.{domain}": [f"v=DKIM1; k=rsa; p={public}"]})
    signed = tune(
        settings,
        email_backend="smtp",
        smtp_url=smtp_sink.url,
        dkim_selector="lk2026",
        dkim_private_key=private,
    )
    populate(sessions, signed, 2, now=CART_OPEN - timedelta(days=3))
    assert _run(engine, signed, FakeClock(CART_OPEN + timedelta(minutes=1))).sent == 2
    for message in smtp_sink.messages:
        assert message.raw.startswith(b"DKIM-Signature: ")
        assert _verify(message.raw, stub)
        assert _signed_headers(message.raw) == [
            "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
            "list-unsubscribe", "list-unsubscribe-post",
        ]  # fmt: skip
        assert f"d={domain}" in message.raw.split(b"\r\n\r\n")[0].decode()
        tampered = message.raw.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not _verify(tampered, stub)
    assert f"lk2026._domainkey.{domain}" in stub.queries


def test_transactional_mail_is_dkim_signed_from_its_own_address(tmp_path, dkim_key, dns_stub):
    private, public = dkim_key
    stub = dns_stub({"lk._domainkey.orders.example": [f"v=DKIM1; k=rsa; p={public}"]})
    pem = tmp_path / "key.pem"
    pem.write_text(private)
    settings = settings_for_test(
        tmp_path, sender_email="hello@atelier.example", transactional_email="shop@orders.example",
        postal_address="1 rue X", dkim_selector="lk", dkim_private_key=str(pem),
    )  # fmt: skip
    messenger = mailer.FileMessenger(settings.outbox_dir)
    message_id = mailer.send_transactional(
        settings, messenger, make_environment(settings), "receipt",
        to_email="camille@example.com", to_name="", context=sample_context("fr"),
        subscriber_id=1, key="r1", now=CART_OPEN, unsubscribe_url=None,
    )  # fmt: skip
    raw = mailer.outbox_path(settings.outbox_dir, message_id).read_bytes()
    assert _verify(raw, stub)
    assert _signed_headers(raw) == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ]


def test_dkim_configuration_errors_never_show_the_key(tmp_path, dkim_key):
    private, _ = dkim_key
    for key, selector, expected in (
        ("not a key", "lk", "must hold a PEM private key or the path of one"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "lk", "not a valid PEM"),
        (private, "bad selector!", "is not a DNS label"),
    ):
        settings = settings_for_test(tmp_path, dkim_selector=selector, dkim_private_key=key)
        with pytest.raises(ConfigError, match=expected) as caught:
            mailer.dkim_signer(settings)
        assert "\n" not in str(caught.value) and private[40:80] not in str(caught.value)
    assert mailer.dkim_signer(settings_for_test(tmp_path, dkim_private_key=private)) is None
    assert private[40:80] not in repr(settings_for_test(tmp_path, dkim_private_key=private))
    signer = mailer.dkim_signer(
        settings_for_test(tmp_path, dkim_selector="lk", dkim_private_key=private)
    )
    assert private[40:80] not in repr(signer)


# --- SPF, DKIM, DMARC records of the sender's domain --------------------------------------------

GOOD = {
    "atelier.example": ["v=spf1 include:_spf.relay.example ~all", "google-site-verification=x"],
    "lk._domainkey.atelier.example": ["v=DKIM1; k=rsa; p=" + "A" * 300],
    "_dmarc.atelier.example": ["v=DMARC1; p=quarantine; rua=mailto:d@atelier.example"],
}


def _levels(findings) -> dict[str, str]:
    return {f.check: str(f.level) for f in findings}


def test_check_sender_domain_good_records(dns_stub):
    stub = dns_stub(GOOD)
    findings = check_sender_domain("Atelier.example.", resolver=stub.resolver(), dkim_selector="lk")
    assert _levels(findings) == {"spf": "ok", "dkim": "ok", "dmarc": "ok"}
    assert findings[0].message == (
        'SPF record of atelier.example: "v=spf1 include:_spf.relay.example ~all".'
    )


def test_check_sender_domain_says_what_to_add(dns_stub):
    stub = dns_stub({"atelier.example": ["google-site-verification=x"]})
    findings = check_sender_domain("atelier.example", resolver=stub.resolver(), dkim_selector="lk")
    assert _levels(findings) == {"spf": "error", "dkim": "error", "dmarc": "error"}
    assert [f.message for f in findings] == [
        "No SPF record for atelier.example: add TXT atelier.example "
        '"v=spf1 include:<your relay\'s SPF domain> ~all".',
        "No DKIM key at lk._domainkey.atelier.example: add TXT lk._domainkey.atelier.example "
        '"v=DKIM1; k=rsa; p=<your public key, base64>".',
        "No DMARC record for atelier.example: add TXT _dmarc.atelier.example "
        '"v=DMARC1; p=none; rua=mailto:dmarc@atelier.example".',
    ]


@pytest.mark.parametrize(
    ("records", "check", "expected"),
    [
        ({"atelier.example": ["v=spf1 a mx", "v=spf1 include:x ~all"]}, "spf", "2 SPF records"),
        ({"atelier.example": ["v=spf1 include:x +all"]}, "spf", 'ends with "+all"'),
        ({"atelier.example": ["v=spf1 all"]}, "spf", 'end it with "~all" or "-all"'),
        ({"lk._domainkey.atelier.example": ["v=DKIM1; k=rsa; p="]}, "dkim", "empty (revoked)"),
        ({"_dmarc.atelier.example": ["v=DMARC1; rua=mailto:x@y"]}, "dmarc", "no valid policy"),
        (
            {"_dmarc.atelier.example": ["v=DMARC1; p=none", "v=DMARC1; p=reject"]},
            "dmarc",
            "keep one",
        ),
    ],
)
def test_check_sender_domain_broken_records(dns_stub, records, check, expected):
    stub = dns_stub({**GOOD, **records})
    findings = check_sender_domain("atelier.example", resolver=stub.resolver(), dkim_selector="lk")
    finding = next(f for f in findings if f.check == check)
    assert finding.level == "error" and expected in finding.message
    assert [f.level for f in findings if f.check != check] == ["ok", "ok"]


def test_check_sender_domain_without_selector_or_domain(dns_stub):
    stub = dns_stub(GOOD)
    findings = check_sender_domain("atelier.example", resolver=stub.resolver())
    assert _levels(findings) == {"spf": "ok", "dkim": "warning", "dmarc": "ok"}
    assert "set [sender] dkim_selector" in findings[1].message
    missing = check_sender_domain("nowhere.example", resolver=stub.resolver())
    assert "nowhere.example does not exist in DNS" in missing[0].message


def test_check_sender_domain_when_dns_does_not_answer(dns_stub):
    stub = dns_stub(GOOD, silent=True)
    started = time.monotonic()
    findings = check_sender_domain(
        "atelier.example", resolver=stub.resolver(timeout=0.3), dkim_selector="lk"
    )
    assert time.monotonic() - started < 3
    assert _levels(findings) == {"spf": "warning", "dkim": "warning", "dmarc": "warning"}
    assert findings[0].message == (
        "Could not check SPF for atelier.example: DNS did not answer (timeout)."
    )
    assert stub.queries  # it did ask


def test_doctor_dns_checks_both_sender_domains(dns_stub, tmp_path):
    from launchkit import doctor

    stub = dns_stub({**GOOD, "orders.atelier.fr": ["v=spf1 -all"]})
    settings = settings_for_test(
        tmp_path,
        sender_email="camille@atelier.example",
        transactional_email="commandes@orders.atelier.fr",
        dkim_selector="lk",
    )
    findings = doctor.check_sender_domain(settings, resolver=stub.resolver())
    levels = {f.message.split(":")[0] + "/" + f.check: str(f.level) for f in findings}
    assert levels == {
        "orders.atelier.fr/dns-spf": "ok",
        "orders.atelier.fr/dns-dkim": "error",
        "orders.atelier.fr/dns-dmarc": "error",
    }  # atelier.example is a placeholder domain for the doctor: not asked
    assert "_dmarc.orders.atelier.fr" in findings[2].message
    # one Finding type for both: the doctor's --json shape for the DNS findings too
    assert findings[0].as_dict() == {
        "check": "dns-spf",
        "level": "ok",
        "message": 'orders.atelier.fr: SPF record of orders.atelier.fr: "v=spf1 -all".',
    }
