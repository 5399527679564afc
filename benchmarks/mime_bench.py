"""MIME building: launchkit's ``build_message`` against the stdlib ``EmailMessage`` way.

Both sides build the same personalised multipart/alternative message (a rendered starter
email, ~12 KB, French text, non-ASCII names and subject) for N recipients, in one process.
Also prints, for scale, the legacy ``email.mime`` classes and ``render_email`` itself.

    .venv/bin/python benchmarks/mime_bench.py --messages 10000

Ends with ``ratio: X.XX`` = launchkit messages/s divided by EmailMessage messages/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path

from launchkit.config import settings_for_test
from launchkit.mailer import OutgoingMessage, build_message, make_message_id
from launchkit.render import make_environment, parse_email_file, render_email, sample_context
from launchkit.resources import starter_dir

DATE = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
UNSUB = "https://atelier.example/u/InRva2VuIg.abc-_123"


def make_messages(count: int) -> list[OutgoingMessage]:
    settings = settings_for_test(
        Path(tempfile.mkdtemp()),
        sender_name="Atelier Élodie",
        sender_email="hello@atelier.example",
        postal_address="12 rue des Lilas, 75011 Paris",
    )
    env = make_environment(settings)
    source = parse_email_file(starter_dir("emails") / "launch-fr" / "04-cart-open.md")
    rendered = render_email(
        env, source, sample_context("fr"), settings=settings, unsubscribe_url=UNSUB
    )
    return [
        OutgoingMessage(
            to_email=f"abonne{i}@example.com",
            to_name=f"Zoë Dupont-{i}",
            from_email="hello@atelier.example",
            from_name="Atelier Élodie",
            subject=rendered.subject + " ☕",
            html=rendered.html,
            text=rendered.text,
            message_id=make_message_id("email", 12, i, "atelier.example"),
            unsubscribe_url=UNSUB,
            unsubscribe_mailto="mailto:hello@atelier.example?subject=unsubscribe",
        )
        for i in range(count)
    ]


def launchkit_build(msg: OutgoingMessage) -> bytes:
    return build_message(msg, date=DATE)


def stdlib_build(msg: OutgoingMessage) -> bytes:
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = formataddr((msg.from_name, msg.from_email))
    email["To"] = formataddr((msg.to_name, msg.to_email))
    email["Subject"] = msg.subject
    email["Date"] = format_datetime(DATE)
    email["Message-ID"] = msg.message_id
    email["List-Unsubscribe"] = f"<{msg.unsubscribe_url}>, <{msg.unsubscribe_mailto}>"
    email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email["Precedence"] = "bulk"
    email.set_content(msg.text)
    email.add_alternative(msg.html, subtype="html")
    return email.as_bytes()


def legacy_build(msg: OutgoingMessage) -> bytes:
    email = MIMEMultipart("alternative")
    email["From"] = formataddr((msg.from_name, msg.from_email))
    email["To"] = formataddr((msg.to_name, msg.to_email))
    email["Subject"] = msg.subject
    email["Date"] = format_datetime(DATE)
    email["Message-ID"] = msg.message_id
    email.attach(MIMEText(msg.text, "plain", "utf-8"))
    email.attach(MIMEText(msg.html, "html", "utf-8"))
    return email.as_bytes()


def rate(build: Callable[[OutgoingMessage], bytes], messages: list[OutgoingMessage]) -> float:
    start = time.perf_counter()
    for msg in messages:
        build(msg)
    return len(messages) / (time.perf_counter() - start)


def render_rate(count: int) -> float:
    settings = settings_for_test(
        Path(tempfile.mkdtemp()), sender_name="Atelier", postal_address="12 rue des Lilas"
    )
    env = make_environment(settings)
    source = parse_email_file(starter_dir("emails") / "launch-fr" / "04-cart-open.md")
    context = sample_context("fr")
    start = time.perf_counter()
    for i in range(count):
        context["first_name"] = f"Zoë {i}"
        render_email(env, source, context, settings=settings, unsubscribe_url=f"{UNSUB}{i}")
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per side")
    args = parser.parse_args()
    messages = make_messages(args.messages)
    size = len(launchkit_build(messages[0]))
    print(f"{args.messages:,} messages of {size / 1024:.1f} KB, one core")
    ours = rate(launchkit_build, messages)
    baseline = rate(stdlib_build, messages)
    legacy = rate(legacy_build, messages[: max(1, args.messages // 4)])
    renders = render_rate(max(1, args.messages // 10))
    print(f"launchkit build_message      : {ours:8,.0f} msg/s")
    print(f"stdlib EmailMessage (SMTP)   : {baseline:8,.0f} msg/s")
    print(f"stdlib legacy email.mime     : {legacy:8,.0f} msg/s")
    print(f"render_email (for scale)     : {renders:8,.0f} emails/s")
    print(f"ratio: {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
