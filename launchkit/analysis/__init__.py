"""Post-launch analysis: conversion against audience size, revenue, refunds, payment plans.

Public API (the CLI is a thin layer over these):

- ``analyze_launch(session, slug, currency=None, segment=None, now=None) -> dict``
- ``compare_launches(session, slugs=None, now=None, currency=None) -> dict``
- ``forecast_launch(session, audience=, price_cents=None, from_launches=None, seed=0,
  now=None) -> dict`` (``now`` decides which carts have closed; without it, all count)
- ``import_payments(session, path, launch=, now=) -> dict``
- ``render_report(result, language=, templates_dir=) -> str`` and ``render_compare(...)``;
  ``render_workspace_report(result, settings) -> str`` takes those from the workspace settings
- ``write_csv(result, directory) -> list[Path]``
- ``wilson_interval(successes, trials) -> (low, high) | None``
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# pandas and matplotlib load only when an analysis function is first used, so plain CLI
# commands start fast: name -> submodule
_LAZY = {
    "analyze_data": "analyze",
    "analyze_launch": "analyze",
    "compare_launches": "compare",
    "fit_line": "compare",
    "forecast_launch": "forecast",
    "LaunchData": "load",
    "load_launch": "load",
    "BENCHMARK_BANDS": "metrics",
    "wilson_interval": "metrics",
    "import_payments": "payments_import",
    "to_minor_units": "payments_import",
    "render_compare": "report",
    "render_report": "report",
    "render_workspace_report": "report",
    "write_csv": "report",
}

__all__ = [
    "BENCHMARK_BANDS",
    "LaunchData",
    "analyze_data",
    "analyze_launch",
    "compare_launches",
    "fit_line",
    "forecast_launch",
    "import_payments",
    "load_launch",
    "render_compare",
    "render_report",
    "render_workspace_report",
    "to_minor_units",
    "wilson_interval",
    "write_csv",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
