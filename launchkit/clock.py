"""Time helpers: parse local wall-clock input, convert to UTC, format for people.

Domain code never reads the clock itself; callers pass ``now`` (see ``utcnow``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from launchkit.errors import InputError

_FORMATS = (
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d",
)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (only the CLI and the web app call this)."""
    return datetime.now(UTC)


def parse_local_datetime(text: str, tz: ZoneInfo, *, what: str = "time") -> datetime:
    """Parse ``2026-12-01 09:00`` as wall-clock time in ``tz`` (or ISO with offset) to UTC."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None:
        for fmt in _FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise InputError(f'{what} "{text}" is not a date and time like "2026-12-01 09:00".')
    if parsed.tzinfo is None:
        parsed = _localize(parsed, tz, what, text)
    return parsed.astimezone(UTC)


def _localize(naive: datetime, tz: ZoneInfo, what: str, text: str) -> datetime:
    aware = naive.replace(tzinfo=tz)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise InputError(f'{what} "{text}" does not exist in {tz.key} (clocks skip it at DST).')
    return aware


def to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    """Convert an aware datetime to ``tz``."""
    return moment.astimezone(tz)


def format_local(moment: datetime | None, tz: ZoneInfo) -> str:
    """``2026-12-08 23:59 CET`` style, or an empty string."""
    if moment is None:
        return ""
    local = moment.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, for JSON output."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
