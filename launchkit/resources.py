"""Where the starter files live: inside the wheel (launchkit/_data) or at the repo root."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
STARTER_DIRS = ("templates", "emails", "sample_data")


def starter_dir(name: str) -> Path:
    """Path of a shipped folder: ``templates``, ``emails`` or ``sample_data``."""
    if name not in STARTER_DIRS:
        raise ValueError(f"unknown starter folder {name!r}")
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
