"""`launchkit doctor`: what would go wrong before a creator's first send, in one list.

Each check takes ``(session, settings, now)`` and returns findings: ``ok``, ``warning`` or
``error``, each a one-line message that names the setting or object and says how to fix it.
``schedule``, ``send`` and ``serve`` run the same checks before they start; ``send`` refuses
to start on an error.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from launchkit.config import Settings, parse_duration, parse_send_window
from launchkit.errors import LaunchkitError
from launchkit.findings import Finding, Level
from launchkit.hosts import is_loopback
from launchkit.models import Launch, LaunchSequence, Offer, Send, SendStatus, Subscriber

if TYPE_CHECKING:
    from dns import resolver as dns_resolver

PLACEHOLDER_NAMES = {"", "my launch", "mon lancement", "your name", "votre nom"}
PLACEHOLDER_DOMAINS = {"example.com", "example.org", "example.net", "localhost"}
PLACEHOLDER_TLDS = (".invalid", ".test", ".example", ".localhost")
PLACEHOLDER_ADDRESS_WORDS = ("exemple", "example", "your address", "votre adresse")
DELIVERED = (SendStatus.SENT, SendStatus.DELIVERED_UNCONFIRMED)


Check = Callable[[Session, Settings, datetime], list[Finding]]


def _ok(check: str, message: str) -> list[Finding]:
    return [Finding(check, Level.OK, message)]


# --- sender ---------------------------------------------------------------------------------


def is_placeholder_email(address: str) -> bool:
    """Empty, malformed, or on a documentation domain (``hello@example.com``)."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or not local or "." not in domain and domain != "localhost":
        return True
    return domain in PLACEHOLDER_DOMAINS or domain.endswith(PLACEHOLDER_TLDS)


def is_placeholder_address(text: str) -> bool:
    """Empty or the starter kit's made-up address (``10 rue de l'Exemple``)."""
    lowered = text.strip().lower()
    return not lowered or any(word in lowered for word in PLACEHOLDER_ADDRESS_WORDS)


def check_sender(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """The From name and address and the postal address every marketing email shows."""
    found = []
    if settings.sender_name.strip().lower() in PLACEHOLDER_NAMES:
        shown = settings.sender_name.strip() or "empty"
        found.append(_sender_error("name", shown, "the From name of your emails"))
    if is_placeholder_email(settings.sender_email):
        shown = settings.sender_email.strip() or "empty"
        found.append(_sender_error("email", shown, "your own address is the From of your emails"))
    if is_placeholder_address(settings.postal_address):
        shown = settings.postal_address.strip() or "empty"
        found.append(
            _sender_error(
                "postal_address", shown, "every marketing email must show your real postal address"
            )
        )
    return found or _ok("sender", f"{settings.sender_name} <{settings.sender_email}>")


def _sender_error(key: str, shown: str, why: str) -> Finding:
    return Finding("sender", Level.ERROR, f"sender.{key} is {shown} in launchkit.toml: {why}.")


def check_sender_domain(
    settings: Settings, *, resolver: dns_resolver.Resolver | None = None
) -> list[Finding]:
    """SPF, DKIM and DMARC records of the sender's domains (marketing and transactional), with
    the exact record to add. Asks DNS, so it runs only on ``launchkit doctor --dns``."""
    from launchkit import deliverability
    from launchkit.mailer import domain_of

    addresses = (settings.sender_email, settings.transactional_email)
    domains = sorted({domain_of(a) for a in addresses if a and not is_placeholder_email(a)})
    found = []
    for domain in domains:
        for f in deliverability.check_sender_domain(
            domain, resolver=resolver, dkim_selector=settings.dkim_selector or None
        ):
            found.append(f.under("dns", domain))
    return found


# --- web ------------------------------------------------------------------------------------


def check_base_url(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """Links in emails: one-click unsubscribe (RFC 8058) needs https."""
    parts = urlsplit(settings.base_url)
    if parts.scheme == "https" and parts.hostname:
        return _ok("base_url", settings.base_url)
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return [
            Finding(
                "base_url",
                Level.WARNING,
                f"web.base_url is {settings.base_url}: links in emails only work on this "
                "machine; set your public https address before sending to real people.",
            )
        ]
    return [
        Finding(
            "base_url",
            Level.ERROR,
            f"web.base_url is {settings.base_url or 'empty'}: it must be an https:// address "
            "(one-click unsubscribe needs https).",
        )
    ]


def check_stripe(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """Offers need a Stripe key to take payments and a webhook secret to record them."""
    offers = int(session.scalar(select(func.count(Offer.id))) or 0)
    if not offers:
        return _ok("stripe", "no offers yet")
    found = []
    if not settings.stripe_api_key:
        found.append(
            Finding(
                "stripe",
                Level.WARNING,
                f"{offers} offer(s) but STRIPE_API_KEY is not set: buyers would get an "
                "error page at checkout.",
            )
        )
    if not settings.stripe_webhook_secret:
        found.append(
            Finding(
                "stripe",
                Level.WARNING,
                f"{offers} offer(s) but STRIPE_WEBHOOK_SECRET is not set: payments would "
                "not be recorded as orders.",
            )
        )
    return found or _ok("stripe", f"{offers} offer(s), key and webhook secret set")


# --- timing ---------------------------------------------------------------------------------


def check_send_window(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """A send window that leaves time to send, in a real timezone."""
    found = []
    start, end = parse_send_window(settings.send_window)
    width = (end - start) % (24 * 60) or 24 * 60
    if width < 3 * 60:
        found.append(
            Finding(
                "send_window",
                Level.WARNING,
                f"email.send_window {settings.send_window} is under 3 hours: a large list "
                "may not finish inside it.",
            )
        )
    if start < 6 * 60 or end > 23 * 60:
        found.append(
            Finding(
                "send_window",
                Level.WARNING,
                f"email.send_window {settings.send_window} sends at night.",
            )
        )
    if settings.timezone in ("UTC", "Etc/UTC", "GMT"):
        found.append(
            Finding(
                "timezone",
                Level.WARNING,
                "workspace.timezone is UTC: launch times are read and shown in UTC; set "
                "your own zone (e.g. Europe/Paris).",
            )
        )
    found.extend(_subscriber_zones(session))
    return found or _ok("send_window", f"{settings.send_window} {settings.timezone}")


def _subscriber_zones(session: Session) -> list[Finding]:
    names = session.scalars(
        select(Subscriber.timezone).where(Subscriber.timezone.is_not(None)).distinct()
    )
    bad = []
    for name in names:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            bad.append(name)
    if not bad:
        return []
    shown = ", ".join(sorted(bad)[:5])
    return [
        Finding(
            "timezone",
            Level.WARNING,
            f"{len(bad)} subscriber timezone value(s) are not IANA zones ({shown}): "
            "their local-time emails use the workspace zone.",
        )
    ]


def _launch_emails(session: Session, settings: Settings) -> list[tuple[Launch, Any, list]]:
    """(launch, composer, [(info, send time)]) for launches with a sendable sequence."""
    from launchkit.sequences.preview import launch_emails
    from launchkit.sequences.schedule import SENDABLE

    out = []
    for launch in session.scalars(select(Launch).order_by(Launch.id)):
        statuses = session.scalars(
            select(LaunchSequence.status).where(LaunchSequence.launch_id == launch.id)
        ).all()
        if not any(s in SENDABLE for s in statuses):
            continue
        composer, items = launch_emails(session, settings, launch.slug)
        out.append((launch, composer, items))
    return out


def _delivered_email_ids(session: Session) -> set[int]:
    return set(session.scalars(select(Send.email_id).where(Send.status.in_(DELIVERED)).distinct()))


def _max_delay(settings: Settings, source: Any) -> timedelta:
    raw = source.meta.get("max_delay")
    return parse_duration(str(raw), what="max_delay") if raw else settings.max_delay


def check_milestones(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """Emails whose send time is already further back than ``max_delay``: ``send`` would
    skip every one of them as stale."""
    found = []
    delivered = _delivered_email_ids(session)
    for launch, _composer, items in _launch_emails_safe(session, settings):
        late = [
            (info, when)
            for info, when in items
            if when is not None
            and info.id not in delivered
            and now - when > _max_delay(settings, info.source)
        ]
        if late:
            names = ", ".join(info.label for info, _ in late[:3])
            more = f" and {len(late) - 3} more" if len(late) > 3 else ""
            found.append(
                Finding(
                    "milestones",
                    Level.WARNING,
                    f'Launch "{launch.slug}": {len(late)} email(s) were due more than their '
                    f"max_delay ago ({names}{more}); send would skip them as stale. Move the "
                    f"milestones with `launchkit launch update {launch.slug}`.",
                )
            )
    return found or _ok("milestones", "no email is already past its send time")


def check_pace(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """At the configured rate, the end of the list would be sent after ``max_delay``."""
    audience = int(
        session.scalar(select(func.count(Subscriber.id)).where(Subscriber.status == "active")) or 0
    )
    from launchkit.mailer import is_real_relay
    from launchkit.sequences.ratelimit import effective_rates

    per_second, per_hour = effective_rates(
        settings.rate_per_second, settings.rate_per_hour, real_relay=is_real_relay(settings)
    )
    durations = []
    if per_second > 0:
        durations.append(timedelta(seconds=audience / per_second))
    if per_hour > 0:
        durations.append(timedelta(hours=audience / per_hour))
    if not durations or max(durations) <= settings.max_delay:
        return _ok("pace", f"{audience} active subscribers fit in max_delay")
    hours = max(durations).total_seconds() / 3600
    return [
        Finding(
            "pace",
            Level.WARNING,
            f"sending one email to {audience} subscribers takes {hours:.1f} h at the "
            f"configured rate, more than email.max_delay ({settings.max_delay}): the last "
            "ones would be skipped as stale; raise the rate or max_delay.",
        )
    ]


def _launch_emails_safe(session: Session, settings: Settings) -> list[tuple[Launch, Any, list]]:
    try:
        return _launch_emails(session, settings)
    except LaunchkitError:
        return []  # reported by check_templates


def check_templates(session: Session, settings: Settings, now: datetime) -> list[Finding]:
    """Render every email of every sendable launch for a sample subscriber."""
    from launchkit.sequences.context import SAMPLE
    from launchkit.tokens import unsubscribe_url

    try:
        launches = _launch_emails(session, settings)
    except LaunchkitError as e:
        return [Finding("templates", Level.ERROR, str(e))]
    found = []
    count = 0
    for _launch, composer, items in launches:
        for info, _ in items:
            count += 1
            unsubscribe = unsubscribe_url(settings, 0, info.id)
            try:
                rendered = composer.render(info, dict(SAMPLE), unsubscribe)
            except LaunchkitError as e:
                found.append(Finding("templates", Level.ERROR, str(e)))
                continue
            if unsubscribe not in html_lib.unescape(rendered.html):
                found.append(
                    Finding(
                        "templates",
                        Level.ERROR,
                        f'Email "{info.label}" has no unsubscribe link; keep the layout footer.',
                    )
                )
    return found or _ok("templates", f"{count} email(s) render")


CHECKS: list[Check] = [
    check_sender,
    check_base_url,
    check_stripe,
    check_send_window,
    check_milestones,
    check_pace,
    check_templates,
]


def run_checks(
    session: Session,
    settings: Settings,
    *,
    now: datetime,
    dns: bool = False,
    resolver: dns_resolver.Resolver | None = None,
) -> list[Finding]:
    """Every check's findings, in order; ``dns`` adds the sender domain's DNS records."""
    found: list[Finding] = []
    for check in CHECKS:
        found.extend(check(session, settings, now))
    if dns:
        found.extend(check_sender_domain(settings, resolver=resolver))
    return found


def has_errors(findings: list[Finding]) -> bool:
    """True when any finding is an error."""
    return any(f.level == Level.ERROR for f in findings)
