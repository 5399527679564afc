"""The promises a launch makes, checked against what a (rehearsed) launch actually did.

Each check reads the delivery ledger, the orders and the messages in the file outbox, and
returns the broken cases with the email and an example subscriber.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.config import Settings, parse_send_window
from launchkit.models import (
    Email,
    Launch,
    LaunchSequence,
    Offer,
    Order,
    OrderStatus,
    Send,
    SendStatus,
    Subscriber,
)

LEGIT_SKIPS = ("skip_if", "unsubscribed", "suppressed", "bounced", "complained", "inactive")
GUARANTEE_WORDS = re.compile(r"garanti|rembours|refund|guarantee|money.back|satisfait", re.I)
DAYS = re.compile(r"(\d{1,3})\s*(?:jours|days|-day|day)\b", re.I)
FR_MONTHS = (
    "janvier février mars avril mai juin juillet août septembre octobre novembre décembre"
).split()
EN_MONTHS = (
    "January February March April May June July August September October November December"
).split()
DATE_FR = re.compile(r"\b(\d{1,2})(?:er)?\s+(" + "|".join(FR_MONTHS) + r")\b", re.I)
DATE_EN = re.compile(
    r"\b(?:(\d{1,2})\s+("
    + "|".join(EN_MONTHS)
    + r")|("
    + "|".join(EN_MONTHS)
    + r")\s+(\d{1,2}))\b",
    re.I,
)


@dataclass(frozen=True)
class Broken:
    promise: str
    email: str
    example: str
    detail: str


PROMISES = {
    "close_emails": "every eligible non-buyer receives the cart-close emails before the deadline",
    "no_sales_after": "no sales email reaches someone after they bought, refunded or unsubscribed",
    "quiet_hours": "no email lands in quiet hours",
    "deadline_wording": "every email's deadline wording matches the configured close time",
    "refund_window": "the refund window in the copy matches the offer's guarantee",
    "no_recovery_after_close": "no abandoned-checkout email goes out after the cart closed",
    "no_recovery_to_buyer": "no abandoned-checkout email reaches someone who already bought",
    "no_recovery_twice": "no one gets two abandoned-checkout emails for the same offer",
    "no_expired_tier": "no order gets a tier price after that tier's deadline",
    "evergreen_emails": "evergreen: no cart email reaches a person after their own cart close",
    "evergreen_checkout": "evergreen: no checkout or sale after a person's own deadline",
}
BUY_LINK = re.compile(r"/buy/([a-z0-9][a-z0-9_-]*)\?t=")


def _launch_sends(session: Session, launch: Launch) -> list[Any]:
    return list(
        session.execute(
            select(
                Send.status,
                Send.reason,
                Send.sent_at,
                Send.message_id,
                Send.subscriber_id,
                Email.step,
                Email.kind,
                Email.send_at,
                Email.deadline_at,
                Send.deadline_at.label("own_deadline"),
                LaunchSequence.name,
                Subscriber.email,
                Subscriber.timezone,
                Subscriber.unsubscribed_at,
            )
            .join(Email, Email.id == Send.email_id)
            .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
            .join(Subscriber, Subscriber.id == Send.subscriber_id)
            .where(LaunchSequence.launch_id == launch.id)
        )
    )


def check_close_emails(rows: Iterable[Any], launch: Launch) -> list[Broken]:
    """Cart-close emails: sent before the deadline, or skipped for a legitimate reason."""
    broken = []
    for row in rows:
        if not (row.send_at or "").startswith("cart_close -"):
            continue
        label = f"{row.name}/{row.step}"
        closes = row.own_deadline or launch.cart_close  # evergreen: the person's own close
        if row.status == SendStatus.SENT and row.sent_at <= closes:
            continue
        if row.status == SendStatus.SKIPPED and (row.reason or "").split(":")[0] in LEGIT_SKIPS:
            continue
        detail = (
            f"sent at {row.sent_at:%Y-%m-%d %H:%M} UTC, after the close"
            if row.status == SendStatus.SENT
            else f"{row.status} ({row.reason or 'no reason'})"
        )
        broken.append(Broken(PROMISES["close_emails"], label, row.email, detail))
    return broken


def _buy_times(session: Session, launch: Launch) -> dict[int, datetime]:
    rows = session.execute(
        select(Order.subscriber_id, Order.paid_at, Order.created_at).where(
            Order.launch_id == launch.id, Order.status != OrderStatus.PENDING
        )
    )
    out: dict[int, datetime] = {}
    for subscriber_id, paid_at, created_at in rows:
        moment = paid_at or created_at
        if subscriber_id is not None and (subscriber_id not in out or moment < out[subscriber_id]):
            out[subscriber_id] = moment
    return out


def check_no_sales_after(session: Session, rows: Iterable[Any], launch: Launch) -> list[Broken]:
    """No sales email after the subscriber bought or unsubscribed."""
    bought = _buy_times(session, launch)
    broken = []
    for row in rows:
        if row.status != SendStatus.SENT or row.kind != "sales":
            continue
        label = f"{row.name}/{row.step}"
        buy = bought.get(row.subscriber_id)
        if buy is not None and buy < row.sent_at:
            broken.append(
                Broken(
                    PROMISES["no_sales_after"],
                    label,
                    row.email,
                    f"bought at {buy:%Y-%m-%d %H:%M}, mailed at {row.sent_at:%H:%M}",
                )
            )
        elif row.unsubscribed_at is not None and row.unsubscribed_at < row.sent_at:
            broken.append(
                Broken(PROMISES["no_sales_after"], label, row.email, "mailed after unsubscribing")
            )
    return broken


def check_quiet_hours(rows: Iterable[Any], settings: Settings) -> list[Broken]:
    """Every delivery falls inside the send window in the subscriber's own timezone."""
    start, end = parse_send_window(settings.send_window)
    broken = []
    for row in rows:
        if row.status != SendStatus.SENT or row.sent_at is None:
            continue
        zone = ZoneInfo(row.timezone) if row.timezone else settings.tz
        local = row.sent_at.astimezone(zone)
        minute = local.hour * 60 + local.minute
        if not start <= minute <= end:
            broken.append(
                Broken(
                    PROMISES["quiet_hours"],
                    f"{row.name}/{row.step}",
                    row.email,
                    f"delivered at {local:%H:%M} {zone.key}",
                )
            )
    return broken


def message_text(outbox: Path, message_id: str | None) -> str | None:
    """The plain-text part of a delivered message, found in the file outbox by Message-ID."""
    if not message_id:
        return None
    from launchkit.mailer import outbox_path

    path = outbox_path(outbox, message_id)
    if not path.is_file():
        return None
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else None


def _dates_in(text: str) -> set[tuple[int, int]]:
    found = {
        (int(d), FR_MONTHS.index(m.lower()) + 1)
        for d, m in DATE_FR.findall(text)
        if m.lower() in FR_MONTHS
    }
    for d1, m1, m2, d2 in DATE_EN.findall(text):
        month = (m1 or m2).capitalize()
        found.add((int(d1 or d2), EN_MONTHS.index(month) + 1))
    return found


def check_deadline_wording(
    samples: dict[str, tuple[str, str]], launch: Launch, settings: Settings
) -> list[Broken]:
    """Dates written in the deadline emails are the configured open or close dates."""
    local_close = launch.cart_close.astimezone(settings.tz)
    allowed = {
        (m.astimezone(settings.tz).day, m.astimezone(settings.tz).month)
        for m in (launch.cart_open, launch.cart_close, launch.prelaunch_start)
        if m
    }
    close_text = format_date(local_close, "d MMMM", locale=settings.language)
    broken = []
    for label, (example, text) in samples.items():
        wrong = sorted(_dates_in(text) - allowed)
        if wrong:
            day, month = wrong[0]
            broken.append(
                Broken(
                    PROMISES["deadline_wording"],
                    label,
                    example,
                    f"mentions {day:02d}/{month:02d} but the cart closes on {close_text}",
                )
            )
    return broken


def check_refund_window(samples: dict[str, tuple[str, str]], offers: list[Offer]) -> list[Broken]:
    """Every 'N days' near guarantee wording equals an offer's guarantee_days."""
    allowed = {offer.guarantee_days for offer in offers}
    broken = []
    if not allowed:
        return broken
    for label, (example, text) in samples.items():
        for match in DAYS.finditer(text):
            window = text[max(0, match.start() - 120) : match.end() + 120]
            days = int(match.group(1))
            if GUARANTEE_WORDS.search(window) and days not in allowed:
                broken.append(
                    Broken(
                        PROMISES["refund_window"],
                        label,
                        example,
                        f"says {days} days; the guarantee is "
                        f"{', '.join(map(str, sorted(allowed)))} days",
                    )
                )
                break
    return broken


def recovery_deliveries(paths: Iterable[Path]) -> list[Any]:
    """The abandoned-checkout emails among these outbox files (one per path given, so a file
    listed twice -- a message pushed twice -- counts twice): to, offer, date, Message-ID."""
    from email.utils import parseaddr, parsedate_to_datetime

    from launchkit.selling.promises import Delivery
    from launchkit.selling.recovery import MESSAGE_KIND

    found = []
    for path in paths:
        if MESSAGE_KIND not in path.name or not path.is_file():
            continue
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        link = BUY_LINK.search(part.get_content() if part is not None else "")
        at = parsedate_to_datetime(str(msg["Date"]))
        to = parseaddr(str(msg["To"]))[1]
        found.append(Delivery(to, link[1] if link else "", at, str(msg["Message-ID"])))
    return found


def check_promises(
    session: Session,
    settings: Settings,
    launch: Launch,
    extra_texts: dict[str, str] | None = None,
    pushed: Iterable[Path] | None = None,
) -> dict[str, Any]:
    """Run every check; returns {"checks": [...], "broken": [...]}.

    ``pushed``: the outbox files in the order the messenger was handed their messages (a
    rehearsal records them; a file twice is a message sent twice); default: the outbox."""
    rows = _launch_sends(session, launch)
    samples: dict[str, tuple[str, str]] = {}
    for row in rows:
        label = f"{row.name}/{row.step}"
        if row.status == SendStatus.SENT and label not in samples:
            text = message_text(settings.outbox_dir, row.message_id)
            if text:
                samples[label] = (row.email, text)
    deadline_samples = {k: v for k, v in samples.items() if _is_deadline(rows, k)}
    page_samples = {name: ("(page)", text) for name, text in (extra_texts or {}).items()}
    offers = list(session.scalars(select(Offer).where(Offer.launch_id == launch.id)))
    results = {
        "close_emails": check_close_emails(rows, launch),
        "no_sales_after": check_no_sales_after(session, rows, launch),
        "quiet_hours": check_quiet_hours(rows, settings),
        # evergreen: each person has their own dates (tests/test_evergreen.py checks them)
        "deadline_wording": []
        if launch.mode == "evergreen"
        else check_deadline_wording(deadline_samples, launch, settings),
        "refund_window": check_refund_window({**samples, **page_samples}, offers),
        **_selling_checks(session, launch, recovery_deliveries(_outbox(settings, pushed))),
        **_evergreen_checks(session, settings, launch),
    }
    checks = [{"promise": PROMISES[k], "ok": not v, "broken": len(v)} for k, v in results.items()]
    broken = [b.__dict__ for found in results.values() for b in found[:5]]
    return {"checks": checks, "broken": broken, "emails_checked": len(samples)}


def _is_deadline(rows: list[Any], label: str) -> bool:
    return any(
        f"{r.name}/{r.step}" == label and (r.send_at or "").startswith("cart_close") for r in rows
    )


def _outbox(settings: Settings, pushed: Iterable[Path] | None) -> Iterable[Path]:
    if pushed is not None:
        return pushed
    outbox = Path(settings.outbox_dir)
    return sorted(outbox.glob("*.eml")) if outbox.is_dir() else []


def _selling_checks(
    session: Session, launch: Launch, delivered: list[Any]
) -> dict[str, list[Broken]]:
    from launchkit.selling import promises as selling

    found = {
        "no_recovery_after_close": selling.recoveries_after_close(session, launch, delivered),
        "no_recovery_to_buyer": selling.recoveries_to_buyers(session, launch, delivered),
        "no_recovery_twice": selling.recoveries_twice(session, launch, delivered),
        "no_expired_tier": selling.tiers_after_deadline(session, launch),
    }
    return {key: [Broken(PROMISES[key], *item) for item in items] for key, items in found.items()}


def _evergreen_checks(
    session: Session, settings: Settings, launch: Launch
) -> dict[str, list[Broken]]:
    if launch.mode != "evergreen":
        return {}
    from launchkit.evergreen import checkouts_after_deadline, emails_after_deadline

    found = {
        "evergreen_emails": emails_after_deadline(session, launch),
        "evergreen_checkout": checkouts_after_deadline(session, launch, settings.checkout_grace),
    }
    return {key: [Broken(PROMISES[key], *item) for item in items] for key, items in found.items()}
