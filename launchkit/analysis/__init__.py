"""Post-launch analysis: conversion against audience size, revenue, refunds, payment plans.

Public API (the CLI is a thin layer over these):

- ``analyze_launch(session, slug, currency=None, segment=None) -> dict``
- ``compare_launches(session, slugs=None, currency=None) -> dict``
- ``forecast_launch(session, audience=, price_cents=None, from_launches=None, seed=0) -> dict``
- ``import_payments(session, path, launch=, now=) -> dict``
- ``render_report(result, language=, templates_dir=) -> str`` and ``render_compare(...)``
- ``write_csv(result, directory) -> list[Path]``
- ``wilson_interval(successes, trials) -> (low, high) | None``
"""

from launchkit.analysis.analyze import analyze_data, analyze_launch
from launchkit.analysis.compare import compare_launches, fit_line
from launchkit.analysis.forecast import forecast_launch
from launchkit.analysis.load import LaunchData, load_launch
from launchkit.analysis.metrics import BENCHMARK_BANDS, wilson_interval
from launchkit.analysis.payments_import import import_payments, to_minor_units
from launchkit.analysis.report import render_compare, render_report, write_csv

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
    "to_minor_units",
    "wilson_interval",
    "write_csv",
]
