"""mailer.py: MIME building parsed back header by header, messengers against a real SMTP sink."""

from __future__ import annotations

import email
import gzip
import os
import re
import smtplib
import socket
import threading
import traceback
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchkit.config import Settings, settings_for_test
from launchkit.errors import ConfigError, DeliveryError, InputError
from launchkit.mailer import (
    FileMessenger,
    InDoubt,
    MboxMessenger,
    OutgoingMessage,
    PermanentFailure,
    SMTPMessenger,
    TemporaryFailure,
    archive_message_ids,
    build_message,
    make_message_id,
    mask_url,
    messenger_from_settings,
    outbox_path,
    parse_smtp_url,
    read_mbox_archive,
    send_transactional,
)
from launchkit.render import make_environment, sample_context
from tests.fixtures.smtp import SINK_PASSWORD, SmtpSink, free_port

DATE = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
UNSUB = "https://atelier.example/u/InRva2VuIg.abc-_123"
SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1"))  # 8.5 = the 10,000 of issue 8
FORBIDDEN = ["\r", "\n", "\x00", "\u2028", "\u2029", "\x85"]


@pytest.fixture(params=[True, False], ids=["pipelining", "stepwise"])
def envelope_sink(request: pytest.FixtureRequest, smtp_sink: SmtpSink) -> SmtpSink:
    """The sink, offering PIPELINING (MAIL, RCPT and DATA in one write) or not."""
    smtp_sink.pipelining = request.param
    return smtp_sink


def outgoing(**overrides: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "to_email": "zoe@example.com",
        "to_name": "Zoë 🚀 Dupont",
        "from_email": "hello@atelier.example",
        "from_name": "Atelier Élodie",
        "subject": "Les portes sont ouvertes : café ☕ et 🎉",
        "html": '<p>Bonjour Zoë,</p>\n<p><a href="https://atelier.example/c">Go</a></p>\n',
        "text": "Bonjour Zoë,\n\nGo (https://atelier.example/c)\n",
        "message_id": make_message_id("email", 12, 345, "atelier.example"),
        "unsubscribe_url": UNSUB,
        "unsubscribe_mailto": "mailto:hello@atelier.example?subject=unsubscribe",
        "headers": {"X-Launchkit-Send": "12:345"},
    }
    values.update(overrides)
    return OutgoingMessage(**values)


def parse(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=policy.default)


def part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "ascii").replace("\r\n", "\n")


def assert_headers(raw: bytes, msg: OutgoingMessage) -> None:
    """Check every header and both parts of a received or built message."""
    legacy = email.message_from_bytes(raw)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert len(legacy.get_all(name, [])) == 1, name
    assert legacy.get_all("Bcc") is None and legacy.get_all("Cc") is None
    parsed = parse(raw)
    sender, recipient = parsed["From"].addresses[0], parsed["To"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (msg.from_name, msg.from_email)
    assert (recipient.display_name, recipient.addr_spec) == (msg.to_name, msg.to_email)
    assert str(parsed["Subject"]) == msg.subject
    assert parsed["Message-ID"] == msg.message_id
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"].datetime == DATE
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = legacy.get_payload()
    assert plain.get_content_type() == "text/plain" and plain.get_content_charset() == "utf-8"
    assert html.get_content_type() == "text/html" and html.get_content_charset() == "utf-8"
    assert part_text(plain) == msg.text
    assert part_text(html) == msg.html
    assert not parsed.defects and not plain.defects and not html.defects


# --- building ------------------------------------------------------------------------------


def test_build_message_parses_back_header_by_header() -> None:
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    assert_headers(raw, msg)
    parsed = parse(raw)
    assert parsed["List-Unsubscribe"] == (
        f"<{UNSUB}>, <mailto:hello@atelier.example?subject=unsubscribe>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Precedence"] == "bulk"
    assert parsed["X-Launchkit-Send"] == "12:345"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert raw.isascii()


def test_non_ascii_headers_use_rfc2047() -> None:
    raw = build_message(outgoing(), date=DATE)
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert "From: Atelier =?utf-8?b?w4lsb2RpZQ==?= <hello@atelier.example>" in head
    assert "To: =?utf-8?b?Wm/DqyDwn5qA?= Dupont <zoe@example.com>" in head
    assert "Subject: =?utf-8?b?" in head
    assert "é" not in head


def test_transactional_message_has_no_bulk_or_list_headers() -> None:
    msg = outgoing(bulk=False, unsubscribe_url=None, unsubscribe_mailto=None, headers={})
    parsed = parse(build_message(msg, date=DATE))
    for name in ("Precedence", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert parsed[name] is None


@pytest.mark.parametrize(
    "name",
    [
        "Élodie Marie-Françoise de la Rochefoucauld-Liancourt 🚀",
        "Zoë 🚀 Dupont",
        "李小龍 (Bruce) Lee",
        "=?utf-8?b?QQ==?= Bob",
        "Ünïcödé, Jr. <admin@example.com>",
    ],
)
def test_non_ascii_names_round_trip_exactly(name: str) -> None:
    raw = build_message(outgoing(to_name=name, from_name=name), date=DATE)
    parsed = parse(raw)
    assert parsed["To"].addresses[0].display_name == name
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"
    assert parsed["From"].addresses[0].display_name == name
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_ascii_names_are_quoted_when_needed() -> None:
    msg = outgoing(to_name='Doe, John "JD" \\ (admin)', from_name="Plain Name")
    raw = build_message(msg, date=DATE)
    assert b"From: Plain Name <hello@atelier.example>" in raw
    assert parse(raw)["To"].addresses[0].display_name == 'Doe, John "JD" \\ (admin)'


def test_idn_domain_and_date_offset() -> None:
    paris = timezone(timedelta(hours=1))
    msg = outgoing(to_email="anne@café.example")
    raw = build_message(msg, date=DATE.astimezone(paris))
    parsed = parse(raw)
    assert parsed["To"].addresses[0].domain == "xn--caf-dma.example"
    assert parsed["Date"].datetime == DATE
    assert "+0100" in str(parsed["Date"])


@pytest.mark.parametrize("char", FORBIDDEN)
@pytest.mark.parametrize(
    "field", ["to_name", "from_name", "subject", "to_email", "from_email", "unsubscribe_url"]
)
def test_header_injection_is_refused(field: str, char: str) -> None:
    value = getattr(outgoing(), field) + f"{char}Bcc: victim@example.com"
    with pytest.raises(InputError, match="line break or control character"):
        build_message(outgoing(**{field: value}), date=DATE)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ok": "a\r\nBcc: victim@example.com"},
        {"X-Bad\r\nBcc": "victim@example.com"},
        {"Bcc": "victim@example.com"},
        {"X Space": "x"},
        {"Subject": "second subject"},
    ],
)
def test_extra_headers_cannot_inject(headers: dict[str, str]) -> None:
    with pytest.raises(InputError):
        build_message(outgoing(headers=headers), date=DATE)


@pytest.mark.parametrize(
    "address",
    ["no-at-sign", "a@b@c", "Eve <eve@example.com>", "eve@example.com, bob@example.com", "é@x.fr"],
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(InputError, match="is not a valid email address"):
        build_message(outgoing(to_email=address), date=DATE)


def test_naive_date_and_bad_message_id_are_refused() -> None:
    with pytest.raises(InputError, match="timezone-aware"):
        build_message(outgoing(), date=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(InputError, match="must look like <id@domain>"):
        build_message(outgoing(message_id="no-brackets@x"), date=DATE)


HEADER_CHARS = st.one_of(
    st.sampled_from([*FORBIDDEN, "\t", " ", '"', "\\", "<", ">", ",", "@", ":", ";", "(", ")"]),
    st.sampled_from(["=?utf-8?b?QQ==?=", "=?", "?=", "Bcc: x@y.z", "é", "🚀", "\u200b", "\x7f"]),
    st.characters(codec="utf-8"),
)
HEADER_TEXT = st.lists(HEADER_CHARS, max_size=40).map("".join)


@settings(
    max_examples=int(1200 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(name=HEADER_TEXT, subject=HEADER_TEXT)
def test_fuzzed_names_and_subjects_are_refused_or_exact(name: str, subject: str) -> None:
    msg = outgoing(to_name=name, from_name=name, subject=subject)
    try:
        raw = build_message(msg, date=DATE)
    except InputError:
        assert re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]", name + subject)
        return
    legacy = email.message_from_bytes(raw)
    for header in ("From", "To", "Subject"):
        assert len(legacy.get_all(header, [])) == 1
    assert legacy.get_all("Bcc") is None and legacy.get_all("Cc") is None
    parsed = parse(raw)
    assert str(parsed["Subject"]) == " ".join(subject.split())
    expected = " ".join(name.split())
    for header in ("From", "To"):
        addresses = parsed[header].addresses
        assert len(addresses) == 1
        # CPython's address parser keeps the space between two adjacent encoded words that
        # RFC 2047 (and mail clients) drop, so long runs of encoded text gain a space here.
        shown = addresses[0].display_name
        assert shown == expected or shown.replace(" ", "") == expected.replace(" ", "")
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"


BODY_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["\n", "\r\n", "\r", ".", "\n.\n", "From ", "--=_lk", " \n", "\t\n", "="]),
        st.characters(codec="utf-8"),
        st.just("x" * 100),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=int(300 * SCALE), deadline=None)
@given(text=BODY_TEXT, html=BODY_TEXT)
def test_fuzzed_bodies_round_trip(text: str, html: str) -> None:
    raw = build_message(outgoing(text=text, html=html), date=DATE)
    plain_part, html_part = email.message_from_bytes(raw).get_payload()

    def normal(value: str) -> str:
        return value.replace("\r\n", "\n").replace("\r", "\n")

    assert part_text(plain_part) == normal(text)
    assert part_text(html_part) == normal(html)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")


def test_message_ids_are_deterministic_and_unique() -> None:
    first = make_message_id("email", 12, 345, "atelier.example")
    assert first == make_message_id("email", 12, 345, "atelier.example")
    assert re.fullmatch(r"<lk\.email-12\.sub-345\.[0-9a-f]{20}@atelier\.example>", first)
    ids = {
        make_message_id(kind, key, sub, "atelier.example")
        for kind in ("email", "test")
        for key in range(10)
        for sub in range(5_000)
    }
    assert len(ids) == 100_000
    assert make_message_id("tx-receipt", "receipt:7:0", 3, "Café.example").endswith(
        "@xn--caf-dma.example>"
    )
    odd = make_message_id("a b", "x<y>@z\r\n", "1 2", "atelier.example")
    assert re.fullmatch(r"<[\x21-\x3b\x3d\x3f-\x7e]+@atelier\.example>", odd)
    assert odd != make_message_id("a b", "x<y>@z", "1 2", "atelier.example")


# --- file backend --------------------------------------------------------------------------


def test_file_messenger_writes_parseable_eml_atomically(tmp_path: Path) -> None:
    messenger = FileMessenger(tmp_path / "outbox")
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    messenger.push(msg, raw)
    messenger.push(msg, raw)  # the same Message-ID lands in the same file
    files = list((tmp_path / "outbox").iterdir())
    assert files == [outbox_path(tmp_path / "outbox", msg.message_id)]
    assert files[0].read_bytes() == raw
    assert_headers(files[0].read_bytes(), msg)
    other = outgoing(message_id=make_message_id("email", 12, 346, "atelier.example"))
    messenger.push(other, build_message(other, date=DATE))
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    assert not list((tmp_path / "outbox").glob(".*"))  # no temp files left
    messenger.flush()
    messenger.close()


def test_mbox_messenger_keeps_every_message_byte_for_byte_once(tmp_path: Path) -> None:
    archive = tmp_path / "outbox" / "launch.mbox.gz"
    tricky = "From here on\n>From quoted\n>>From twice\nFrom MAILER-DAEMON Thu Jan  1\n\n."
    messages = [
        outgoing(
            message_id=make_message_id("email", 12, n, "atelier.example"),
            text=f"{tricky} {n}\n",
            html=f"<p>{n}</p>\nFrom x\n",
        )
        for n in range(5)
    ]
    raws = [build_message(msg, date=DATE) for msg in messages]
    first = MboxMessenger(archive)
    for msg, raw in zip(messages[:3], raws[:3], strict=True):
        first.push(msg, raw)
        assert list(read_mbox_archive(archive))[-1] == raw  # in the file when push returns
    first.push(messages[0], raws[0])  # the same Message-ID again: kept once
    first.close()
    again = MboxMessenger(archive)  # another run: reads the ids the archive holds
    for msg, raw in zip(messages, raws, strict=True):
        again.push(msg, raw)
    again.close()
    assert list(read_mbox_archive(archive)) == raws
    assert archive_message_ids(archive) == [m.message_id for m in messages]
    assert (first.written, again.written) == (3, 2)
    for raw in read_mbox_archive(archive):
        assert_headers(raw, messages[raws.index(raw)])
        assert part_text(parse(raw).get_body(("plain",))).startswith(tricky)
    assert archive.stat().st_mode & 0o077 == 0  # personal data: private


def test_mbox_archive_cut_or_damaged(tmp_path: Path) -> None:
    archive = tmp_path / "launch.mbox.gz"
    messenger = MboxMessenger(archive)
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    messenger.push(msg, raw)
    messenger.close()
    archive.write_bytes(archive.read_bytes()[:-8])  # the writer stopped before the trailer
    assert list(read_mbox_archive(archive)) == [raw]  # what was flushed is whole
    archive.write_bytes(b"plain text, not gzip")
    with pytest.raises(DeliveryError, match="damaged"):
        MboxMessenger(archive).start(msg)
    archive.write_bytes(gzip.compress(b"hello\n"))
    with pytest.raises(DeliveryError, match="not an mbox"):
        list(read_mbox_archive(archive))
    assert list(read_mbox_archive(tmp_path / "none.mbox.gz")) == []


def test_outbox_names_are_safe(tmp_path: Path) -> None:
    path = outbox_path(tmp_path, "<../../etc/passwd@x>")
    assert path.parent == tmp_path and "/" not in path.name and not path.name.startswith(".")


# --- SMTP backend --------------------------------------------------------------------------


def test_smtp_delivers_many_messages_on_one_connection(envelope_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    sent = []
    for sub in range(30):
        msg = outgoing(
            to_email=f"user{sub}@example.com",
            message_id=make_message_id("email", 12, sub, "atelier.example"),
        )
        messenger.push(msg, build_message(msg, date=DATE))
        sent.append(msg)
    messenger.close()
    received = envelope_sink.wait_for(30)
    assert messenger.connections == 1 and envelope_sink.connections == 1
    for msg, got in zip(sent, received, strict=True):
        assert got.envelope_from == "hello@atelier.example"
        assert got.rcpt_tos == [msg.to_email]
        assert_headers(got.raw, msg)
        parsed = parse(got.raw)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["Precedence"] == "bulk"
        assert f"<{UNSUB}>" in parsed["List-Unsubscribe"]


def test_smtp_dot_lines_survive_transparency(smtp_sink: SmtpSink) -> None:
    msg = outgoing(text=".\n..\n. leading dot\n", html="<p>\n.\n</p>\n")
    messenger = SMTPMessenger(smtp_sink.url)
    messenger.push(msg, build_message(msg, date=DATE))
    messenger.close()
    assert_headers(smtp_sink.wait_for(1)[0].raw, msg)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.sampled_from([".", "..", ". x", ".\r", "x.", "", " .", "...."]), min_size=1, max_size=8
    )
)
def test_smtp_dot_stuffing_round_trips_byte_for_byte(smtp_sink: SmtpSink, lines: list[str]) -> None:
    """Lines that start with dots arrive exactly as sent (the server removes the stuffing)."""
    raw = b"Subject: dots\r\n\r\n" + "\r\n".join(lines).encode() + b"\r\n"
    messenger = SMTPMessenger(smtp_sink.url)
    before = smtp_sink.count
    messenger.push(outgoing(), raw)
    messenger.close()
    assert smtp_sink.wait_for(before + 1)[-1].raw == raw


def test_smtp_reconnects_after_a_drop(smtp_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(smtp_sink.url)
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    messenger.push(msg, raw)
    smtp_sink.drop_after_data(1)
    with pytest.raises(InDoubt, match="may have been delivered") as info:
        messenger.push(msg, raw)
    assert info.value.code is None
    messenger.push(msg, raw)
    assert smtp_sink.count == 2 and messenger.connections == 2


def test_smtp_start_then_finish_and_an_abandoned_transaction(envelope_sink: SmtpSink) -> None:
    """``start`` stops at the 354 (the server holds nothing); ``close`` then abandons the
    message (the connection is dropped mid-DATA, the server discards it); a drop after the
    data is ``InDoubt``, a drop before it a plain ``TemporaryFailure``."""
    messenger = SMTPMessenger(envelope_sink.url)
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    messenger.start(msg)
    assert envelope_sink.count == 0
    messenger.close()
    messenger.start(msg)
    messenger.finish(raw)
    assert envelope_sink.wait_for(1) and envelope_sink.count == 1
    envelope_sink.drop_after_data(1, deliver=True)
    messenger.start(msg)
    with pytest.raises(InDoubt):
        messenger.finish(raw)
    assert envelope_sink.count == 2
    envelope_sink.fail_next(1, 421, stage="RCPT")
    with pytest.raises(TemporaryFailure) as info:
        messenger.push(msg, raw)
    assert not isinstance(info.value, InDoubt)
    messenger.close()
    assert envelope_sink.count == 2


def test_smtp_reconnects_silently_when_an_idle_connection_was_closed(
    envelope_sink: SmtpSink,
) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    msg = outgoing()
    messenger.push(msg, build_message(msg, date=DATE))
    envelope_sink.disconnect_all()
    messenger.push(msg, build_message(msg, date=DATE))  # nothing was sent yet: safe to retry
    assert envelope_sink.count == 2 and messenger.connections == 2


@pytest.mark.parametrize("code", [421, 451, 452])
def test_smtp_4xx_is_a_temporary_failure(envelope_sink: SmtpSink, code: int) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    envelope_sink.fail_next(1, code)
    with pytest.raises(TemporaryFailure) as info:
        messenger.push(msg, raw)
    assert info.value.code == code
    assert f"answered {code} " in str(info.value) and "zoe@example.com" in str(info.value)
    messenger.push(msg, raw)  # the server recovered
    assert envelope_sink.count == 1


def test_smtp_4xx_on_rcpt_is_temporary(envelope_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    envelope_sink.fail_next(1, 450, "4.2.1 Mailbox busy", stage="RCPT")
    with pytest.raises(TemporaryFailure, match="450 4.2.1 Mailbox busy to RCPT TO"):
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))


def test_smtp_550_on_rcpt_is_a_permanent_failure(envelope_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    envelope_sink.fail_rcpt["gone@example.com"] = (550, "5.1.1 No such user")
    bad = outgoing(to_email="gone@example.com")
    with pytest.raises(PermanentFailure) as info:
        messenger.push(bad, build_message(bad, date=DATE))
    assert info.value.code == 550 and info.value.recipient is True
    good = outgoing()
    messenger.push(good, build_message(good, date=DATE))  # same connection still usable
    assert envelope_sink.count == 1 and messenger.connections == 1


def test_smtp_content_rejection_is_not_the_address_fault(envelope_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    envelope_sink.fail_next(1, 554, "5.7.1 Message rejected as spam")
    with pytest.raises(PermanentFailure) as info:
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    assert info.value.code == 554 and info.value.recipient is False
    envelope_sink.fail_next(1, 550, "5.2.2 Mailbox full")
    with pytest.raises(PermanentFailure) as info:
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    assert info.value.recipient is True


def test_smtp_connection_refused_is_temporary() -> None:
    messenger = SMTPMessenger(f"smtp://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(TemporaryFailure, match=r"^Cannot connect to smtp://127.0.0.1:"):
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))


def test_smtp_starttls_and_auth(smtp_tls_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(smtp_tls_sink.url)
    msg = outgoing()
    messenger.push(msg, build_message(msg, date=DATE))
    messenger.close()
    received = smtp_tls_sink.wait_for(1)
    assert_headers(received[0].raw, msg)
    assert smtp_tls_sink.auth_attempts == 1


def test_smtps_implicit_tls(smtps_sink: SmtpSink) -> None:
    assert smtps_sink.url.startswith("smtps://")
    messenger = SMTPMessenger(smtps_sink.url)
    msg = outgoing()
    messenger.push(msg, build_message(msg, date=DATE))
    messenger.close()
    assert smtps_sink.wait_for(1)[0]["Message-ID"] == msg.message_id


def test_wrong_password_is_a_clear_error_without_the_password(smtp_tls_sink: SmtpSink) -> None:
    url = smtp_tls_sink.url.replace("canary", "wrong-canary")
    messenger = SMTPMessenger(url)
    with pytest.raises(DeliveryError) as info:
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    error = info.value
    assert not isinstance(error, TemporaryFailure | PermanentFailure)
    assert str(error).startswith("smtp://launchkit:***@127.0.0.1:")
    assert "refused the login for user 'launchkit': 535" in str(error)
    shown = "".join(traceback.format_exception(error)) + repr(messenger) + repr(messenger.config)
    for secret in ("canary", "Smtp-Pw", "7f3a"):
        assert secret not in shown
    assert error.__cause__ is None and error.__suppress_context__


def test_starttls_required_but_not_offered(smtp_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(smtp_sink.url + "?tls=starttls")
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))


def test_untrusted_certificate_is_refused(smtp_tls_sink: SmtpSink) -> None:
    url = re.sub(r"&cafile=[^&]*", "", smtp_tls_sink.url)
    with pytest.raises(DeliveryError, match="TLS with smtp://launchkit:\\*\\*\\*@") as info:
        SMTPMessenger(url).push(outgoing(), build_message(outgoing(), date=DATE))
    assert "canary" not in str(info.value)


# --- URLs and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("smtp://user:s3cret@host:587?tls=starttls", "smtp://user:***@host:587?tls=starttls"),
        ("smtp://user:p@ss:w/rd@host:587", "smtp://user:***@host:587"),
        ("smtps://host:465", "smtps://host:465"),
        ("smtp://u:%2Fx%40y@h?password=abc&tls=none", "smtp://u:***@h?password=***&tls=none"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_parse_smtp_url_defaults_and_decoding() -> None:
    cfg = parse_smtp_url("smtp://me%40x.fr:p%40ss%3Aw@mail.example:587")
    assert (cfg.host, cfg.port, cfg.tls, cfg.username, cfg.password) == (
        "mail.example", 587, "starttls", "me@x.fr", "p@ss:w",
    )  # fmt: skip
    assert "p@ss" not in repr(cfg)
    assert parse_smtp_url("smtps://mail.example").port == 465
    assert parse_smtp_url("smtp://127.0.0.1").tls == "none"
    assert parse_smtp_url("smtp://h:2525?tls=starttls&timeout=5").timeout == 5.0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "must look like smtp://"),
        ("smtp://host:99999", "is not a valid URL"),
        ("smtp://h?tls=maybe", "tls must be one of"),
        ("smtp://user:canary@mail.example:25", "would send the password unencrypted"),
        ("smtp://h?timeout=soon", "timeout must be a number"),
    ],
)
def test_parse_smtp_url_errors_never_show_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_smtp_url(url)
    assert "canary" not in str(info.value)


def test_messenger_from_settings(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    file_backend = messenger_from_settings(settings_for_test(tmp_path))
    assert isinstance(file_backend, FileMessenger) and file_backend.outbox == tmp_path / "outbox"
    smtp_backend = messenger_from_settings(
        settings_for_test(tmp_path, email_backend="smtp", smtp_url=smtp_sink.url)
    )
    assert isinstance(smtp_backend, SMTPMessenger) and smtp_backend.name == "smtp"
    with pytest.raises(ConfigError, match="needs LAUNCHKIT_SMTP_URL"):
        messenger_from_settings(settings_for_test(tmp_path, email_backend="smtp"))


# --- transactional -------------------------------------------------------------------------


@pytest.fixture
def tx_settings(tmp_path: Path) -> Settings:
    return settings_for_test(
        tmp_path,
        sender_name="Atelier Élodie",
        sender_email="hello@atelier.example",
        postal_address="12 rue des Lilas, 75011 Paris",
        language="fr",
    )


def test_send_transactional_over_smtp(tx_settings: Settings, smtp_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(smtp_sink.url)
    env = make_environment(tx_settings)
    context = sample_context("fr")
    message_id = send_transactional(
        tx_settings, messenger, env, "confirm-optin",
        to_email="camille@example.com", to_name="Camille", context=context,
        subscriber_id=7, key="optin:7", now=DATE, unsubscribe_url=None,
    )  # fmt: skip
    received = smtp_sink.wait_for(1)[0]
    parsed = parse(received.raw)
    assert (
        parsed["Message-ID"]
        == message_id
        == make_message_id("tx-confirm-optin", "optin:7", 7, "atelier.example")
    )
    assert parsed["Precedence"] is None and parsed["List-Unsubscribe"] is None
    assert parsed["To"].addresses[0].display_name == "Camille"
    assert parsed["From"].addresses[0].display_name == "Atelier Élodie"
    assert context["confirm_url"] in parsed.get_body(("plain",)).get_content()
    assert context["confirm_url"] in parsed.get_body(("html",)).get_content()


def test_send_transactional_marketing_keeps_unsubscribe(tx_settings: Settings) -> None:
    messenger = FileMessenger(tx_settings.outbox_dir)
    env = make_environment(tx_settings)
    message_id = send_transactional(
        tx_settings, messenger, env, "receipt",
        to_email="camille@example.com", to_name="", context=sample_context("fr"),
        subscriber_id=7, key="receipt:1", now=DATE, unsubscribe_url=UNSUB, transactional=False,
    )  # fmt: skip
    parsed = parse(outbox_path(tx_settings.outbox_dir, message_id).read_bytes())
    assert parsed["List-Unsubscribe"].startswith(f"<{UNSUB}>")
    assert str(parsed["To"]) == "camille@example.com"
    assert str(parsed["Subject"]).startswith("Bienvenue dans Atelier Aquarelle")


TRANSACTIONAL_KINDS = ("confirm-optin", "magnet-delivery", "receipt", "dunning")


@pytest.mark.parametrize("language", ["fr", "en"])
def test_transactional_mail_is_kept_apart_over_smtp(
    tx_settings: Settings, smtp_sink: SmtpSink, language: str
) -> None:
    """No list headers, no unsubscribe footer, the transactional From: for every kind."""
    settings = replace(tx_settings, language=language, transactional_email="orders@atelier.example")
    env = make_environment(settings)
    messenger = SMTPMessenger(smtp_sink.url)
    for kind in TRANSACTIONAL_KINDS:
        send_transactional(
            settings, messenger, env, kind,
            to_email="camille@example.com", to_name="Camille", context=sample_context(language),
            subscriber_id=7, key=f"{kind}:1", now=DATE, unsubscribe_url=UNSUB,
        )  # fmt: skip
    messenger.close()
    received = smtp_sink.wait_for(len(TRANSACTIONAL_KINDS))
    for message in received:
        parsed = parse(message.raw)
        for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "Precedence", "Feedback-ID"):
            assert parsed[header] is None, (parsed["Subject"], header)
        assert parsed["From"].addresses[0].addr_spec == "orders@atelier.example"
        assert message.envelope_from == "orders@atelier.example"
        for part in ("plain", "html"):
            body = parsed.get_body((part,)).get_content()
            assert UNSUB not in body
            footer = re.search(r"Se désabonner( :|</a>)|Unsubscribe(:|</a>)", body)
            assert footer is None, (parsed["Subject"], part)
            assert "12 rue des Lilas" in body  # the postal address stays
    assert parse(received[0].raw)["Message-ID"].endswith("@atelier.example>")


def test_transactional_from_falls_back_to_the_sender(tx_settings: Settings) -> None:
    messenger = FileMessenger(tx_settings.outbox_dir)
    message_id = send_transactional(
        tx_settings, messenger, make_environment(tx_settings), "dunning",
        to_email="camille@example.com", to_name="", context=sample_context("fr"),
        subscriber_id=7, key="dunning:1", now=DATE, unsubscribe_url=UNSUB,
    )  # fmt: skip
    parsed = parse(outbox_path(tx_settings.outbox_dir, message_id).read_bytes())
    assert parsed["From"].addresses[0].addr_spec == "hello@atelier.example"
    assert parsed["List-Unsubscribe"] is None


def test_send_transactional_errors(tx_settings: Settings, tmp_path: Path) -> None:
    env = make_environment(tx_settings)
    messenger = FileMessenger(tmp_path / "out")
    kwargs: dict[str, Any] = {
        "to_email": "a@example.com", "to_name": "", "context": sample_context("fr"),
        "subscriber_id": 1, "key": "k", "now": DATE, "unsubscribe_url": None,
    }  # fmt: skip
    with pytest.raises(InputError, match='"../secret" is not a transactional email name'):
        send_transactional(tx_settings, messenger, env, "../secret", **kwargs)
    with pytest.raises(InputError, match='no email "transactional-fr/nope.md"'):
        send_transactional(tx_settings, messenger, env, "nope", **kwargs)
    no_sender = settings_for_test(tmp_path)
    with pytest.raises(ConfigError, match=r"Set \[sender\] email"):
        send_transactional(no_sender, messenger, env, "receipt", **kwargs)


def test_smtplib_is_not_left_in_debug_mode(smtp_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(smtp_sink.url)
    messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    assert isinstance(messenger._smtp, smtplib.SMTP) and messenger._smtp.debuglevel == 0
    messenger.close()
    assert messenger._smtp is None
    assert SINK_PASSWORD not in repr(messenger)


def test_hostile_subscriber_end_to_end_over_smtp(
    tx_settings: Settings, smtp_sink: SmtpSink
) -> None:
    """A subscriber named <script> gets a message whose HTML part has no script tag."""
    from launchkit.render import parse_email_file, render_email
    from launchkit.resources import starter_dir

    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    env = make_environment(tx_settings)
    source = parse_email_file(starter_dir("emails") / "launch-fr" / "04-cart-open.md")
    context = {**sample_context("fr"), "first_name": hostile}
    rendered = render_email(env, source, context, settings=tx_settings, unsubscribe_url=UNSUB)
    msg = outgoing(
        to_name=hostile, subject=rendered.subject, html=rendered.html, text=rendered.text
    )
    messenger = SMTPMessenger(smtp_sink.url)
    messenger.push(msg, build_message(msg, date=DATE))
    messenger.close()
    parsed = parse(smtp_sink.wait_for(1)[0].raw)
    html = parsed.get_body(("html",)).get_content()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert hostile in parsed.get_body(("plain",)).get_content()
    assert parsed["To"].addresses[0].display_name == hostile
    assert parsed["Bcc"] is None


def test_smtp_sender_refused_is_not_the_address_fault(envelope_sink: SmtpSink) -> None:
    messenger = SMTPMessenger(envelope_sink.url)
    envelope_sink.fail_next(1, 553, "5.7.1 Sender address rejected", stage="MAIL")
    with pytest.raises(PermanentFailure, match="553 5.7.1 Sender address rejected to MAIL FROM"):
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    envelope_sink.fail_next(1, 451, stage="MAIL")
    with pytest.raises(TemporaryFailure):
        messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    messenger.push(outgoing(), build_message(outgoing(), date=DATE))
    assert envelope_sink.count == 1 and messenger.connections == 1


def test_lost_250_resend_carries_the_same_message_id(smtp_sink: SmtpSink) -> None:
    """RFC 1047: delivered, but the reply never arrived; the retry is recognisable."""
    messenger = SMTPMessenger(smtp_sink.url)
    msg = outgoing()
    raw = build_message(msg, date=DATE)
    smtp_sink.drop_after_data(1, deliver=True)
    with pytest.raises(TemporaryFailure, match="may have been delivered"):
        messenger.push(msg, raw)
    messenger.push(msg, build_message(msg, date=DATE + timedelta(minutes=5)))
    first, second = smtp_sink.wait_for(2)
    assert first["Message-ID"] == second["Message-ID"] == msg.message_id


class ScriptedRelay:
    """A raw-socket SMTP server for one connection: it answers MAIL, RCPT and DATA with
    ``replies`` only once all three commands arrived (or after ``wait`` seconds), and records
    what came before its first reply and what came after the envelope."""

    def __init__(self, *, pipelining: bool, replies: tuple[bytes, ...], wait: float):
        self.pipelining, self.replies, self.wait = pipelining, replies, wait
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"smtp://127.0.0.1:{self.server.getsockname()[1]}?timeout=5"
        self.before_first_reply = b""
        self.after_envelope = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, self.server:
            conn.settimeout(5)
            conn.sendall(b"220 relay ESMTP\r\n")
            self.buffer = b""
            self._line(conn)  # EHLO
            offer = b"250-PIPELINING\r\n" if self.pipelining else b""
            conn.sendall(b"250-relay\r\n" + offer + b"250 8BITMIME\r\n")
            self._wait_for_lines(conn, 3)
            self.before_first_reply = self.buffer
            for reply in self.replies:
                self._line(conn)
                conn.sendall(reply + b"\r\n")
            self.after_envelope = self._rest(conn)

    def _line(self, conn: socket.socket) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError("the client left")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _wait_for_lines(self, conn: socket.socket, count: int) -> None:
        conn.settimeout(self.wait)
        try:
            while self.buffer.count(b"\r\n") < count:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                self.buffer += chunk
        except TimeoutError:
            pass
        conn.settimeout(5)

    def _rest(self, conn: socket.socket) -> bytes:
        """Whatever the client sends after the envelope, until it closes (or 1 s of silence)."""
        conn.settimeout(1)
        data = self.buffer
        try:
            while chunk := conn.recv(4096):
                data += chunk
                if data.endswith(b"\r\n.\r\n"):
                    conn.sendall(b"250 OK queued\r\n")
        except (TimeoutError, OSError):
            pass
        return data


@pytest.mark.parametrize(
    ("pipelining", "wait", "first_write"),
    [
        # MAIL FROM, RCPT TO and DATA leave in one write, before any reply (RFC 2920)
        (True, 5, b"MAIL FROM:<hello@atelier.example>\r\nRCPT TO:<zoe@example.com>\r\nDATA\r\n"),
        # not offered: MAIL FROM alone, then nothing until its reply (the relay waits 0.3 s)
        (False, 0.3, b"mail FROM:<hello@atelier.example>\r\n"),
    ],
)
def test_smtp_pipelines_the_envelope_only_when_the_server_offers_it(
    pipelining: bool, wait: float, first_write: bytes
) -> None:
    relay = ScriptedRelay(
        pipelining=pipelining, replies=(b"250 OK", b"250 OK", b"354 go"), wait=wait
    )
    messenger = SMTPMessenger(relay.url)
    msg = outgoing()
    messenger.push(msg, build_message(msg, date=DATE))
    messenger.close()
    relay.thread.join(10)
    assert relay.before_first_reply == first_write
    assert relay.after_envelope.startswith(b"From: ")
    assert relay.after_envelope.lower().endswith(b"\r\n.\r\nquit\r\n")


def test_smtp_a_354_after_a_refused_recipient_gets_no_data() -> None:
    """A server that accepts DATA though it refused the only recipient: the client drops the
    connection instead of sending the message (or RSET, which would become its data)."""
    relay = ScriptedRelay(
        pipelining=True, replies=(b"250 OK", b"550 5.1.1 No such user", b"354 go"), wait=5
    )
    messenger = SMTPMessenger(relay.url)
    msg = outgoing()
    with pytest.raises(PermanentFailure) as info:
        messenger.push(msg, build_message(msg, date=DATE))
    assert info.value.recipient is True and "to RCPT TO" in str(info.value)
    relay.thread.join(10)
    assert relay.after_envelope == b""
    messenger.close()
