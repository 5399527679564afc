"""Send rate limits: messages per second (paced) and per rolling hour (kept in the database).

Time is injected: ``clock()`` returns an aware UTC datetime and ``sleep(seconds)`` waits; tests
pass a fake clock whose sleep advances it, so no test ever sleeps for real.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)

# pacing through a real relay when the settings leave it unset (see docs: deliverability)
DEFAULT_PER_SECOND = 10.0
DEFAULT_PER_HOUR = 3000
# warm-up: a domain that has sent little lately gets at most max(floor, sent / share) per hour
WARMUP_DAYS = 14
WARMUP_FLOOR_PER_HOUR = 500
WARMUP_SHARE = 5


def effective_rates(
    per_second: float | None, per_hour: int | None, *, real_relay: bool
) -> tuple[float, int]:
    """The configured rates; unset ones default to pacing through a real relay only."""
    if per_second is None:
        per_second = DEFAULT_PER_SECOND if real_relay else 0.0
    if per_hour is None:
        per_hour = DEFAULT_PER_HOUR if real_relay else 0
    return per_second, per_hour


def warmup_ceiling(per_hour: int, sent_recently: int) -> int:
    """The hourly limit during warm-up, given the messages sent in the last WARMUP_DAYS."""
    ceiling = max(WARMUP_FLOOR_PER_HOUR, sent_recently // WARMUP_SHARE)
    return ceiling if per_hour <= 0 else min(per_hour, ceiling)


class RateLimiter:
    """Pace pushes to ``per_second`` and keep at most ``per_hour`` in any rolling hour."""

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        recent: Iterable[datetime] = (),
    ):
        self.per_second = per_second
        self.per_hour = per_hour
        self.clock = clock
        self.sleep = sleep
        self.window: deque[datetime] = deque(sorted(recent))
        self._next_slot: datetime | None = None
        self.outstanding = 0  # claimed but not yet pushed
        self._lock = threading.Lock()

    def budget(self, wanted: int) -> int:
        """Wait until at least one message fits the hourly limit; how many may be claimed now."""
        if self.per_second > 0:  # claim about two seconds' worth at a time
            wanted = min(wanted, max(1, int(self.per_second * 2)))
        return self._hour_budget(wanted) if self.per_hour > 0 else wanted

    def _hour_budget(self, wanted: int) -> int:
        while True:
            with self._lock:
                now = self.clock()
                while self.window and self.window[0] <= now - HOUR:
                    self.window.popleft()
                free = self.per_hour - len(self.window) - self.outstanding
                if free > 0:
                    granted = min(wanted, free)
                    self.outstanding += granted
                    return granted
                # full: wait for the oldest send to leave the hour (or for other workers)
                wait = (self.window[0] + HOUR - now).total_seconds() if self.window else 0.05
            self.sleep(max(wait, 0.001))

    def record(self, sent_at: datetime) -> None:
        """One claimed message was delivered at ``sent_at``."""
        with self._lock:
            self.window.append(sent_at)
            self.outstanding = max(0, self.outstanding - 1) if self.per_hour > 0 else 0

    def release(self, count: int) -> None:
        """``count`` claimed messages were not delivered (failed, skipped, given back)."""
        with self._lock:
            self.outstanding = max(0, self.outstanding - count) if self.per_hour > 0 else 0

    def pace(self) -> None:
        """Wait for this message's slot so pushes are spaced 1/per_second apart."""
        if self.per_second <= 0:
            return
        step = timedelta(seconds=1 / self.per_second)
        with self._lock:
            now = self.clock()
            slot = now if self._next_slot is None or self._next_slot < now else self._next_slot
            self._next_slot = slot + step
        wait = (slot - now).total_seconds()
        if wait > 0:
            self.sleep(wait)
