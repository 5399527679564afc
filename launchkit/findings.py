"""What a check found: one type shared by ``launchkit doctor`` and the DNS checks of
``launchkit.deliverability`` (``doctor --dns`` shows the latter under ``dns-<check>``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Level(enum.StrEnum):
    """How a check went: ``ok``, ``warning`` (worth a look) or ``error`` (fix before sending)."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One result of one check: what was checked, how it went, and what to do (a full
    sentence naming the setting, record or object)."""

    check: str
    level: Level
    message: str

    def as_dict(self) -> dict[str, str]:
        """``{"check": ..., "level": ..., "message": ...}`` for ``--json``."""
        return {"check": self.check, "level": str(self.level), "message": self.message}

    def under(self, prefix: str, subject: str) -> Finding:
        """The same finding reported under ``<prefix>-<check>``, its message led by ``subject``."""
        return replace(self, check=f"{prefix}-{self.check}", message=f"{subject}: {self.message}")
