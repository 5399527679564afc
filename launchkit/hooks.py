"""Outgoing webhooks: endpoints, an outbox of deliveries, and the runner that delivers them.

Signed per the Standard Webhooks spec (https://www.standardwebhooks.com): each request carries
``webhook-id`` (the delivery's stable id, the same on every retry), ``webhook-timestamp`` (Unix
seconds of the attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``
keyed with the base64 part of the endpoint's ``whsec_...`` secret.

Delivery is at least once: an event is written to the outbox in the transaction that caused it;
the runner claims a due delivery by pushing its next attempt into the future (a lease, committed
before the request), then marks it delivered after a 2xx. A runner killed mid-request leaves the
delivery pending; it goes out again when the lease ends, with the same id.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from launchkit.db import make_sessionmaker
from launchkit.errors import InputError, NotFound
from launchkit.hosts import is_loopback
from launchkit.models import Webhook, WebhookDelivery

EVENTS = ("access.granted", "access.revoked", "order.paid")
# delay before attempt 2, 3, ... (the Standard Webhooks suggested schedule)
BACKOFF = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(BACKOFF) + 1


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed


# --- endpoints --------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """An endpoint URL: https, or http to a loopback address (tests, a local relay)."""
    parts = urlsplit(url.strip())
    if parts.scheme == "https" and parts.hostname:
        return url.strip()
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url.strip()
    raise InputError(f'Webhook URL "{url}" must be https:// (http:// only to localhost).')


def _check_events(events: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(events))
    if not chosen:
        raise InputError(f"Give at least one --event ({', '.join(EVENTS)}).")
    for name in chosen:
        if name not in EVENTS:
            raise InputError(f'--event "{name}" is unknown; use one of {", ".join(EVENTS)}.')
    return chosen


def add_hook(session: Session, url: str, events: Iterable[str], *, now: datetime) -> Webhook:
    """Register an endpoint; its ``secret`` (``whsec_...``) is generated here."""
    hook = Webhook(
        url=check_url(url),
        events={"events": _check_events(events)},
        secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        created_at=now,
    )
    session.add(hook)
    session.flush()
    return hook


def get_hook(session: Session, hook_id: int | str) -> Webhook:
    """An endpoint by its number, or NotFound."""
    hook = session.get(Webhook, int(hook_id)) if str(hook_id).isdigit() else None
    if hook is None:
        raise NotFound(f'Webhook "{hook_id}" does not exist; see `launchkit hook list`.')
    return hook


def list_hooks(session: Session) -> list[Webhook]:
    """Every endpoint, oldest first."""
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def remove_hook(session: Session, hook_id: int | str) -> Webhook:
    """Remove an endpoint and its undelivered outbox."""
    hook = get_hook(session, hook_id)
    for delivery in session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    ):
        session.delete(delivery)
    session.delete(hook)
    session.flush()
    return hook


def hook_events(hook: Webhook) -> list[str]:
    """The events an endpoint follows."""
    return list((hook.events or {}).get("events", []))


# --- outbox -----------------------------------------------------------------------------------


def enqueue(
    session: Session, event: str, data: dict[str, Any], *, key: str, now: datetime
) -> list[WebhookDelivery]:
    """Write one delivery per endpoint following ``event``, once per ``key``.

    The delivery id is derived from (endpoint, key), so enqueueing the same fact twice (an event
    replayed, a status recomputed) adds nothing.
    """
    added = []
    for hook in list_hooks(session):
        if event not in hook_events(hook):
            continue
        digest = hashlib.sha256(f"{hook.id}|{key}".encode()).hexdigest()[:32]
        msg_id = f"msg_{digest}"
        if session.get(WebhookDelivery, msg_id) is not None:
            continue
        payload = {"type": event, "timestamp": now.isoformat(), "data": data}
        delivery = WebhookDelivery(
            id=msg_id, webhook_id=hook.id, event=event, payload=payload,
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now,
        )  # fmt: skip
        session.add(delivery)
        added.append(delivery)
    session.flush()
    return added


def delivery_log(
    session: Session, hook_id: int | str | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    """The latest deliveries, newest first (of one endpoint with ``hook_id``)."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
    if hook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == get_hook(session, hook_id).id)
    return list(session.scalars(query.limit(limit)))


def delivery_as_dict(delivery: WebhookDelivery) -> dict[str, Any]:
    """JSON-ready delivery."""
    return {
        "id": delivery.id,
        "hook": delivery.webhook_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "next_attempt_at": delivery.next_attempt_at,
        "delivered_at": delivery.delivered_at,
    }


# --- signing ----------------------------------------------------------------------------------


def body_of(delivery: WebhookDelivery) -> bytes:
    """The request body: the same bytes on every attempt."""
    return json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_for(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


# --- the runner -------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one runner pass did."""

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    id: str
    url: str
    secret: str
    body: bytes
    attempt: int


def deliver_due(
    sessions: sessionmaker[Session],
    *,
    clock: Callable[[], datetime],
    timeout: float = 10.0,
    limit: int = 1000,
    client: httpx.Client | None = None,
) -> DeliveryReport:
    """Deliver every due delivery once (at most ``limit``); failures are retried later."""
    report = DeliveryReport()
    # claims take SQLite's write lock at BEGIN: concurrent runners wait instead of failing
    sessions = make_sessionmaker(sessions.kw["bind"], immediate=True)
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=False)
    try:
        for _ in range(limit):
            claimed = _claim_next(sessions, clock(), timeout)
            if claimed is None:
                break
            status, error = _post(http, claimed, clock(), timeout)
            _record_attempt(sessions, claimed, status, error, clock(), report)
    finally:
        if own:
            http.close()
    return report


def _claim_next(sessions: sessionmaker[Session], now: datetime, timeout: float) -> _Claimed | None:
    """Take the next due delivery: a compare-and-set on its attempt count, so two runners
    never post the same attempt (``FOR UPDATE SKIP LOCKED`` also spreads them on PostgreSQL)."""
    for _ in range(10):  # another runner may take the row between our read and our update
        with sessions.begin() as session:
            row = session.execute(
                select(WebhookDelivery.id, WebhookDelivery.attempts)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            attempt = row.attempts + 1
            delay = BACKOFF[min(attempt, len(BACKOFF)) - 1]
            # the lease: another runner (or this one after a crash) retries only after it ends
            lease = now + max(delay, timedelta(seconds=2 * timeout + 5))
            taken = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == row.id,
                    WebhookDelivery.attempts == row.attempts,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                )
                .values(attempts=attempt, next_attempt_at=lease)
                .execution_options(synchronize_session=False)
            )
            if not getattr(taken, "rowcount", 0):
                continue
            delivery = session.get(WebhookDelivery, row.id, populate_existing=True)
            hook = session.get(Webhook, delivery.webhook_id)
            return _Claimed(delivery.id, hook.url, hook.secret, body_of(delivery), attempt)
    return None


def _post(
    http: httpx.Client, claimed: _Claimed, now: datetime, timeout: float
) -> tuple[int | None, str | None]:
    headers = headers_for(claimed.secret, claimed.id, int(now.timestamp()), claimed.body)
    try:
        response = http.post(claimed.url, content=claimed.body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return None, f"timed out after {timeout:g} s"
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def _record_attempt(
    sessions: sessionmaker[Session],
    claimed: _Claimed,
    status: int | None,
    error: str | None,
    now: datetime,
    report: DeliveryReport,
) -> None:
    with sessions.begin() as session:
        delivery = session.get(WebhookDelivery, claimed.id)
        if delivery is None:
            return  # the endpoint was removed meanwhile
        delivery.last_status, delivery.last_error = status, error
        if error is None:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, now
            report.delivered.append(delivery.id)
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            report.failed.append(delivery.id)
        else:
            delay = BACKOFF[min(delivery.attempts, len(BACKOFF)) - 1]
            delivery.next_attempt_at = now + delay
            report.retrying.append(delivery.id)


def retry_failed(session: Session, hook_id: int | str, *, now: datetime) -> int:
    """Put an endpoint's failed deliveries back in the queue (after fixing the receiver)."""
    hook = get_hook(session, hook_id)
    failed = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.webhook_id == hook.id,
            WebhookDelivery.status == DeliveryStatus.FAILED,
        )
    ).all()
    for delivery in failed:
        delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, now
    session.flush()
    return len(failed)
