"""Matplotlib charts rendered to inline, responsive SVG (no pyplot, no display, no files)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

INK = "#1f2933"
MUTED = "#7b8794"
ACCENT = "#2f6fdf"
GOOD = "#2e9e6a"
BAD = "#d64545"
WARN = "#e8a33d"
BAND = "#e3f0e8"
BAND2 = "#cfe6d8"
RC = {
    # labels are user data (sources, tags, segments): never TeX or mathtext, so "$\\foo$" is
    # drawn as typed instead of crashing the parser
    "text.usetex": False,
    "text.parse_math": False,
    "svg.fonttype": "none",
    "svg.hashsalt": "launchkit",
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.edgecolor": "#cbd2d9",
    "axes.labelcolor": INK,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_SIZE = re.compile(r'<svg([^>]*?)\swidth="[^"]*"\s+height="[^"]*"')


_IDS = re.compile(r'id="([^"]+)"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_RDF_NS = re.compile(r'\s+xmlns:(?:dc|cc|rdf)="[^"]*"')


def to_svg(fig: Figure, title: str, prefix: str) -> str:
    """The figure as an ``<svg>`` element that scales to its container's width.

    Element ids get ``prefix`` so several charts can live in one page without their clip
    paths colliding.
    """
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = _RDF_NS.sub("", _METADATA.sub("", text[text.index("<svg") :]))
    text = _SIZE.sub(r'<svg\1 role="img" preserveAspectRatio="xMidYMid meet"', text, count=1)
    for ident in set(_IDS.findall(text)):
        text = text.replace(f'id="{ident}"', f'id="{prefix}-{ident}"')
        text = text.replace(f"url(#{ident})", f"url(#{prefix}-{ident})")
        text = text.replace(f'href="#{ident}"', f'href="#{prefix}-{ident}"')
    safe = title.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return text.replace(">", f"><title>{safe}</title>", 1)


Paint = Callable[[Axes, bool], None]
Number = Callable[[float], str]


def draw(
    name: str, title: str, paint: Paint, height: float, narrow_height: float | None = None
) -> dict[str, str]:
    """Render ``paint`` twice: ``wide`` for screens and print, ``narrow`` for phones.

    ``paint(ax, narrow)`` lays the phone variant out for a ~340 px column: labels above the
    bars instead of beside them, so the plot keeps the column's width.
    """
    variants = {}
    sizes = (("wide", 8.0, height, 10), ("narrow", 4.2, 1.3 * (narrow_height or height), 12))
    for variant, width, tall, size in sizes:
        with matplotlib.rc_context({**RC, "font.size": size}):
            fig = Figure(figsize=(width, tall))
            ax = fig.add_subplot()
            paint(ax, variant == "narrow")
            fig.tight_layout()
            variants[variant] = to_svg(fig, title, f"{name}-{variant}")
    return variants


def _compact(value: float, number: Number) -> str:
    """Axis labels for money in major units: 950, 12k, 1.5M (decimals in the report's locale)."""
    size = abs(value)
    if size >= 1_000_000:
        return f"{number(value / 1_000_000)}M"
    if size >= 10_000:
        return f"{number(value / 1_000)}k"
    return number(round(value))


def _english(value: float) -> str:
    return f"{value:,.10g}"


def conversion_chart(
    rows: list[dict[str, Any]], key: str, bands: dict, t: dict, number: Number = _english
) -> dict[str, str]:
    """Horizontal bars of conversion per group with 95% error bars and the field's bands.

    On phones each group's name is written above its bar, so the plot spans the full width.
    """
    rows = [r for r in rows if r["audience"] > 0][:12][::-1]

    def paint(ax: Axes, narrow: bool) -> None:
        for band, color in (("typical", BAND), ("established", BAND2)):
            ax.axvspan(
                bands[band]["low"] * 100,
                bands[band]["high"] * 100,
                color=color,
                label=t[f"band_{band}"],
                zorder=0,
            )
        labels = [f"{r[key]} (n={r['audience']})" for r in rows]
        rates = [r["conversion_rate"] * 100 for r in rows]
        pairs = list(zip(rates, rows, strict=True))
        low = [max(0.0, rate - (r["ci95_low"] or 0) * 100) for rate, r in pairs]
        high = [max(0.0, (r["ci95_high"] or 0) * 100 - rate) for rate, r in pairs]
        places = list(range(len(rows)))
        ax.barh(places, rates, color=ACCENT, height=0.5 if narrow else 0.55, zorder=2)
        ax.errorbar(
            rates, places, xerr=[low, high], fmt="none", ecolor=INK, capsize=4, lw=1.2, zorder=3
        )
        if narrow:
            ax.set_yticks(places, [""] * len(places))
            ax.tick_params(axis="y", length=0)
            for place, label in zip(places, labels, strict=True):
                ax.text(0, place + 0.3, label, va="bottom", ha="left", fontsize=10, color=INK)
            ax.set_ylim(-0.5, len(rows) - 0.1)
        else:
            ax.set_yticks(places, labels)
        ax.set_xlabel(t["conversion_pct"])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: number(value)))
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=1, frameon=False, fontsize=8)
        ax.set_xlim(left=0)

    wide, narrow = 0.45 * len(rows) + 1.6, 0.55 * len(rows) + 1.3
    return draw("conversion", t["chart_conversion"], paint, wide, narrow)


def waterfall_chart(
    result: dict[str, Any], t: dict, fmt: Callable[[int], str], number: Number = _english
) -> dict[str, str]:
    """Gross -> refunds -> fees -> net as a waterfall."""
    gross, refunded = result["gross_revenue_cents"], result["refunded_cents"]
    fees, net = result["fees_cents"] or 0, result["net_revenue_cents"]  # known fees only
    steps = [
        (t["gross"], 0, gross, ACCENT, gross),
        (t["refunds_label"], gross - refunded, refunded, BAD, -refunded),
        (t["fees"], gross - refunded - fees, fees, WARN, -fees),
        (t["net"], 0, net, GOOD, net),
    ]

    def paint(ax: Axes, narrow: bool) -> None:
        names = [s[0] for s in steps]
        bars = ax.bar(
            names,
            [s[2] / 100 for s in steps],
            bottom=[s[1] / 100 for s in steps],
            color=[s[3] for s in steps],
            width=0.6,
        )
        for bar, step in zip(bars, steps, strict=True):
            top = bar.get_y() + max(bar.get_height(), 0)
            ax.annotate(
                fmt(step[4]),
                (bar.get_x() + bar.get_width() / 2, top),
                ha="center",
                va="bottom",
                fontsize=8 if narrow else 9,
                color=INK,
                xytext=(0, 3),
                textcoords="offset points",
            )
        ax.axhline(0, color="#cbd2d9", lw=0.8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _compact(value, number)))
        if narrow:  # four long names do not fit side by side in a phone's width
            ax.tick_params(axis="x", labelrotation=30)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
                label.set_rotation_mode("anchor")
        ax.set_ylabel(result["currency"])
        ax.margins(y=0.15)

    return draw("waterfall", t["chart_waterfall"], paint, 3.2)


def refund_chart(refunds: dict[str, Any], t: dict) -> dict[str, str]:
    """Refunds per day after purchase, with the guarantee window shaded and its end marked."""
    hist = refunds["histogram"]
    window = refunds["guarantee_days"]

    def paint(ax: Axes, narrow: bool) -> None:
        days = [h["day"] for h in hist]
        counts = [h["refunds"] for h in hist]
        ax.axvspan(0, window, color=BAND, zorder=0, label=t["guarantee_window"])
        colors = [ACCENT if d < window else BAD for d in days]
        ax.bar(days, counts, color=colors, width=0.85, align="edge", zorder=2)
        ax.axvline(window, color=INK, ls="--", lw=1)
        ax.annotate(
            f"{window} {t['days']}",
            (window, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
            color=INK,
        )
        ax.set_xlabel(t["days_to_refund"])
        ax.set_ylabel(t["refunds_label"])
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize=8)

    return draw("refunds", t["chart_refunds"], paint, 2.8)


def sales_chart(timing: dict[str, Any], t: dict) -> dict[str, str]:
    """Orders per hour (launches up to 3 days) or per day from cart open; open/close marked."""
    hourly = timing["open_hours"] <= 72
    rows = timing["per_hour"] if hourly else timing["per_day"]
    unit = "hour" if hourly else "day"
    close = timing["open_hours"] if hourly else timing["open_hours"] / 24
    xs = [r[unit] for r in rows]

    def paint(ax: Axes, narrow: bool) -> None:
        ax.bar(xs, [r["orders"] for r in rows], color=ACCENT, width=0.92, align="edge", zorder=2)
        for x, label, side in ((0, t["cart_open"], "left"), (close, t["cart_close"], "right")):
            ax.axvline(x, color=BAD, ls="--", lw=1, zorder=3)
            ax.annotate(
                label,
                (x, 1),
                xycoords=("data", "axes fraction"),
                ha=side,
                xytext=(4 if side == "left" else -4, -12),
                textcoords="offset points",
                fontsize=8,
                color=BAD,
            )
        ax.set_xlim(min([0, *xs]) - 0.3, max([close, *(x + 1 for x in xs)]) + 0.3)
        ax.set_xlabel(t["hours_since_open"] if hourly else t["days_since_open"])
        ax.set_ylabel(t["orders"])
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.margins(y=0.2)

    return draw("sales", t["chart_sales"], paint, 2.8)


def plan_chart(plans: dict[str, Any], t: dict) -> dict[str, str]:
    """Per instalment number: paid on time, recovered by dunning, defaulted."""
    rows = plans["by_instalment"]

    def paint(ax: Axes, narrow: bool) -> None:
        names = [f"#{r['instalment']}" for r in rows]
        on_time = [r["paid"] - r["recovered"] for r in rows]
        recovered = [r["recovered"] for r in rows]
        defaulted = [r["defaulted"] for r in rows]
        ax.bar(names, on_time, color=GOOD, label=t["paid_on_time"], width=0.6)
        ax.bar(names, recovered, bottom=on_time, color=WARN, label=t["recovered"], width=0.6)
        bottom = [a + b for a, b in zip(on_time, recovered, strict=True)]
        ax.bar(names, defaulted, bottom=bottom, color=BAD, label=t["defaulted"], width=0.6)
        ax.set_xlabel(t["instalment"])
        ax.set_ylabel(t["orders"])
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3)

    return draw("plans", t["chart_plans"], paint, 2.8)


def scatter_chart(
    rows: list[dict[str, Any]], fit: dict | None, t: dict, number: Number = _english
) -> dict[str, str]:
    """Conversion against audience size across launches, with the least-squares line."""

    def paint(ax: Axes, narrow: bool) -> None:
        xs = [r["audience_size"] for r in rows]
        ys = [r["conversion_rate"] * 100 for r in rows]
        ax.scatter(xs, ys, color=ACCENT, s=40, zorder=3)
        for r, x, y in zip(rows, xs, ys, strict=True):
            ax.annotate(
                r["launch"],
                (x, y),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=8,
                color=INK,
            )
        if fit and xs:
            lo, hi = min(xs), max(xs)
            ax.plot(
                [lo, hi],
                [(fit["slope"] * v + fit["intercept"]) * 100 for v in (lo, hi)],
                color=BAD,
                ls="--",
                lw=1.2,
                label=t["fitted_line"],
            )
            ax.legend(frameon=False, fontsize=8)
        ax.set_xlabel(t["audience_size"])
        ax.set_ylabel(t["conversion_pct"])
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: number(round(value))))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: number(value)))

    return draw("scatter", t["chart_scatter"], paint, 3.2)


def retention_chart(
    membership: dict[str, Any],
    t: dict,
    number: Number = _english,
    percent: Number = lambda rate: f"{rate * 100:.0f}%",
) -> dict[str, str]:
    """Share of paying members still members k whole months after joining: the whole launch
    (bold, with its points) and, when it has several, each joining month's cohort (thin)."""
    curve = membership["retention_curve"]
    cohorts = membership["cohorts"] if len(membership["cohorts"]) > 1 else []

    def paint(ax: Axes, narrow: bool) -> None:
        for row in cohorts:
            rates = [rate * 100 for rate in row["retention"]]
            ax.plot(range(len(rates)), rates, color=MUTED, lw=0.8, alpha=0.6, zorder=2)
        months = [p["month"] for p in curve]
        rates = [p["rate"] * 100 for p in curve]
        ax.plot(
            months, rates, color=GOOD, lw=2.2, marker="o", ms=4, zorder=3, label=t["retention_all"]
        )
        last = curve[-1]
        ax.annotate(
            percent(last["rate"]),
            (last["month"], last["rate"] * 100),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=9,
            color=INK,
        )
        ax.set_ylim(0, 105)
        ax.set_xlim(-0.3, max(months) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=7 if narrow else 13, integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: number(round(value))))
        ax.set_xlabel(t["months_since_joining"])
        ax.set_ylabel(t["retained_pct"])
        ax.grid(axis="y", color="#e4e7eb", lw=0.8, zorder=0)
        if cohorts:
            ax.legend(frameon=False, fontsize=8, loc="lower left")

    return draw("retention", t["chart_retention"], paint, 3.0)
