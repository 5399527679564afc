"""When an email goes out: the ``send_at`` grammar, local times, the send window, deadlines.

``send_at`` is ``<milestone> <+|-><N><m|h|d> [HH:MM]``:

- ``cart_close -3h``: three hours (absolute time) before the cart closes;
- ``prelaunch_start +2d 09:00``: two calendar days after the pre-launch starts, at 09:00 wall-clock
  time (workspace timezone, or each subscriber's own zone when the email says ``local: true``);
- milestones are ``prelaunch_start``, ``cart_open``, ``cart_close``, for lead-magnet
  sequences ``signup`` (timed from each subscriber's signup) and, for evergreen launches,
  ``entry`` (each person's own entry; their other milestones are theirs too).

Day offsets are calendar days (09:00 stays 09:00 across a DST change); ``h``/``m`` offsets are
elapsed time. An email timed before ``cart_close`` (negative offset) has the cart close as its
deadline: it never goes out after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from launchkit.config import parse_send_window
from launchkit.errors import ConfigError, InputError

MILESTONES = ("prelaunch_start", "cart_open", "cart_close", "signup", "entry")
_SEND_AT = re.compile(
    r"^\s*(?P<milestone>[a-z_]+)\s+(?P<sign>[+-])\s*(?P<n>\d+)\s*(?P<unit>[mhd])"
    r"(?:\s+(?P<hh>\d{1,2}):(?P<mm>\d{2}))?\s*$"
)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class SendAt:
    """A parsed ``send_at``: milestone, signed offset, optional wall-clock time."""

    milestone: str
    offset: timedelta
    days: int  # calendar-day part of the offset (unit d), 0 otherwise
    clock: time | None
    text: str

    @property
    def has_deadline(self) -> bool:
        """Emails timed before the cart closes must never go out after it."""
        return self.milestone == "cart_close" and (self.offset < timedelta(0) or self.days < 0)


def parse_send_at(text: str, *, where: str = "send_at") -> SendAt:
    """Parse ``cart_close -3h`` / ``prelaunch_start +2d 09:00``; InputError naming ``where``."""
    match = _SEND_AT.match(str(text or ""))
    if not match:
        raise InputError(
            f'{where}: send_at "{text}" must look like "cart_close -3h" or '
            '"prelaunch_start +2d 09:00".'
        )
    milestone = match["milestone"]
    if milestone not in MILESTONES:
        raise InputError(
            f'{where}: send_at milestone "{milestone}" must be one of {", ".join(MILESTONES)}.'
        )
    amount = int(match["n"]) * (-1 if match["sign"] == "-" else 1)
    clock = None
    if match["hh"] is not None:
        hour, minute = int(match["hh"]), int(match["mm"])
        if hour > 23 or minute > 59:
            raise InputError(f'{where}: send_at time "{match["hh"]}:{match["mm"]}" is not valid.')
        clock = time(hour, minute)
    days = amount if match["unit"] == "d" else 0
    offset = timedelta(0) if days else timedelta(**{_UNITS[match["unit"]]: amount})
    return SendAt(milestone, offset, days, clock, str(text).strip())


def zone_or(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """The subscriber's zone when it is a known IANA name, else ``fallback``."""
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def wall_time(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``clock`` in ``tz`` as UTC; a time skipped by DST moves forward by the gap."""
    local = datetime.combine(day, clock, tzinfo=tz)
    return local.astimezone(UTC)


def resolve_time(spec: SendAt, base: datetime, tz: ZoneInfo) -> datetime:
    """The nominal send time: milestone ``base`` + offset, at the wall-clock time in ``tz``."""
    moved = base + spec.offset
    if spec.days and spec.clock is None:
        local = moved.astimezone(tz)
        naive = local.replace(tzinfo=None) + timedelta(days=spec.days)
        return naive.replace(tzinfo=tz).astimezone(UTC)
    if spec.clock is None:
        return moved.astimezone(UTC)
    day = moved.astimezone(tz).date() + timedelta(days=spec.days)
    return wall_time(day, spec.clock, tz)


def deadline_for(spec: SendAt, milestones: dict[str, datetime | None]) -> datetime | None:
    """The cart close for emails timed before it, else None."""
    return milestones.get("cart_close") if spec.has_deadline else None


@dataclass(frozen=True)
class Window:
    """Local hours in which mail may be delivered, in minutes of the day: [start, end)."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Window:
        start, end = parse_send_window(text)
        if start >= end:
            raise ConfigError(f'send_window "{text}" must start before it ends (e.g. 08:00-21:00).')
        return cls(start, end)

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return self.start <= minute < self.end

    def clock(self, minute: int) -> time:
        return time(minute // 60, minute % 60)


def apply_window(
    at: datetime, tz: ZoneInfo, window: Window, deadline: datetime | None = None
) -> datetime:
    """Move ``at`` out of quiet hours to the next window opening, never past ``deadline``.

    When the next opening would be at or after the deadline, the email goes out instead at the
    last minute of the latest send window that ends before the deadline (earlier than planned,
    but still before the cart closes); if there is none, at ``at`` itself.
    """
    local = at.astimezone(tz)
    if window.contains(local):
        moved = at
    else:
        minute = local.hour * 60 + local.minute
        day = local.date() if minute < window.start else local.date() + timedelta(days=1)
        moved = wall_time(day, window.clock(window.start), tz)
    if deadline is None or moved < deadline:
        return moved
    return _latest_before(deadline, tz, window) or at


def _latest_before(deadline: datetime, tz: ZoneInfo, window: Window) -> datetime | None:
    candidate = (deadline - timedelta(minutes=1)).astimezone(tz)
    if window.contains(candidate):
        return candidate.astimezone(UTC).replace(second=0, microsecond=0)
    minute = candidate.hour * 60 + candidate.minute
    day = candidate.date() if minute >= window.end else candidate.date() - timedelta(days=1)
    return wall_time(day, window.clock(window.end - 1), tz)


def due_time(
    spec: SendAt,
    milestones: dict[str, datetime | None],
    *,
    workspace_tz: ZoneInfo,
    subscriber_tz: ZoneInfo | None,
    local: bool,
    window: Window,
) -> datetime | None:
    """When this email is due for one subscriber (None when the milestone is not set)."""
    base = milestones.get(spec.milestone)
    if base is None:
        return None
    tz = subscriber_tz or workspace_tz
    nominal = resolve_time(spec, base, tz if local else workspace_tz)
    return apply_window(nominal, tz, window, deadline_for(spec, milestones))


def is_stale(due_at: datetime, now: datetime, max_delay: timedelta) -> bool:
    """Due more than ``max_delay`` ago."""
    return now - due_at > max_delay
