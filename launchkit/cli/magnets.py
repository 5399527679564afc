"""CLI commands for the magnets domain (filled in by its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this domain's commands and sub-apps to the root app."""
