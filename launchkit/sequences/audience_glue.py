"""The audience operations the delivery engine needs (segments, suppression)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from launchkit.models import Subscriber, Suppression, SuppressionReason


def segment_clause(expr: str | None) -> Any:
    """A SQL clause on Subscriber for a segment expression (always true when empty)."""
    if not expr or not str(expr).strip():
        return true()
    from launchkit.segments import segment_filter

    return segment_filter(str(expr))


def not_suppressed() -> Any:
    """Subscribers whose address is not on the suppression list (NOT IN: a hashed subplan on
    PostgreSQL whatever the table statistics say)."""
    return Subscriber.email.not_in(select(Suppression.email))


def suppress_address(
    session: Session, email: str, reason: SuppressionReason, now: datetime, detail: str = ""
) -> None:
    """Never mail ``email`` again (suppression row + subscriber status)."""
    from launchkit.audience import suppress

    suppress(session, email, reason, now=now, detail=detail or None)
