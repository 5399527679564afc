"""Output helpers shared by commands: JSON, tables, money, one-line messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich ``Console`` created (and rich imported) on first use: keeps `--help` fast."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __enter__(self) -> Console:  # special methods bypass __getattr__; rich's Live uses these
        return self._real().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._real().__exit__(*exc)


console: Console = _LazyConsole(highlight=False, soft_wrap=True)  # type: ignore[assignment]
err_console: Console = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)  # type: ignore[assignment]
_language = {"value": "en"}  # the workspace language, set once its settings are loaded


def use_language(language: str) -> None:
    """Print numbers and money the way ``language`` writes them (``12 345`` in French)."""
    _language["value"] = language


def cell(value: Any) -> str:
    """A table cell: numbers with French separators in a French workspace."""
    if value is None:
        return ""
    if _language["value"] == "fr" and isinstance(value, int | float | Decimal):
        if isinstance(value, bool):
            return str(value)
        from launchkit.render.french import format_number

        return format_number(value, "fr")
    return str(value)


def percent(rate: float | None, digits: int = 2) -> str:
    """``3,50 %`` in a French workspace, ``3.50%`` otherwise; "" for no value."""
    if rate is None:
        return ""
    if _language["value"] == "fr":
        from launchkit.render.french import NBSP

        return f"{rate * 100:.{digits}f}".replace(".", ",") + f"{NBSP}%"
    return f"{rate * 100:.{digits}f}%"


def money(cents: float, currency: str) -> str:
    """``1 234,56 €`` in a French workspace, ``1,234.56 EUR`` otherwise."""
    if _language["value"] == "fr":
        from launchkit.render.french import format_money

        return format_money(round(cents), currency, "fr")
    return f"{cents / 100:,.2f} {currency}"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (no colours, no wrapping)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=_default))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A rich table on stdout."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[cell(value) for value in row])
    console.print(table)


def say(message: str) -> None:
    """A plain line on stdout."""
    console.print(message, markup=False)


def warn(message: str) -> None:
    """A warning line on stderr."""
    err_console.print(f"Warning: {message}", markup=False)
