"""The launch plan file (``launch.toml``): parse it and check it, reporting every problem at once.

A plan names the launch and its milestones, the audience files to import, the lead magnets,
the offers with their plans and guarantee, saved segments and the sequences to attach. Paths
are relative to the plan file. Times are wall-clock times in the workspace timezone.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from launchkit.clock import parse_local_datetime
from launchkit.config import Settings
from launchkit.errors import InputError, LaunchkitError

PLAN_FILE = "launch.toml"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, with where it is."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class PlanInvalid(InputError):
    "The launch plan has problems; each is listed."

    def __init__(self, path: Path, problems: list[Problem]):
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        detail = "; ".join(str(p) for p in problems)
        super().__init__(f"{path.name} has {len(problems)} {noun}: {detail}")


@dataclass(frozen=True)
class AudienceSource:
    file: Path
    format: str = "auto"
    source: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MagnetSpec:
    slug: str
    title: str
    file: Path | None = None
    url: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    sequence: str | None = None


@dataclass(frozen=True)
class OfferSpec:
    slug: str
    price_cents: int
    currency: str
    plans: tuple[tuple[int, int], ...] = ()
    guarantee_days: int = 30
    bump: tuple[str, int] | None = None
    product: str | None = None
    tiers: tuple[Any, ...] = ()  # selling.tiers.TierSpec: dated pay-in-full prices
    tax_behavior: str | None = None  # inclusive | exclusive (Stripe Tax)


@dataclass(frozen=True)
class CouponSpec:
    """A ``[[coupons]]`` table: created in Stripe by the sync_offers step (#18)."""

    code: str
    percent: int | None = None
    amount_cents: int | None = None
    until: datetime | None = None
    max_uses: int | None = None
    offer: str | None = None


@dataclass(frozen=True)
class SequenceSpec:
    name: str
    segment: str | None = None


@dataclass(frozen=True)
class Plan:
    """A parsed launch plan."""

    path: Path
    slug: str
    product: str
    cart_open: datetime
    cart_close: datetime
    prelaunch_start: datetime | None = None
    audience: tuple[AudienceSource, ...] = ()
    magnets: tuple[MagnetSpec, ...] = ()
    offers: tuple[OfferSpec, ...] = ()
    sequences: tuple[SequenceSpec, ...] = ()
    segments: dict[str, str] = field(default_factory=dict)
    coupons: tuple[CouponSpec, ...] = ()
    # evergreen (mode = "evergreen"): cart_open/cart_close above are `starts`/`until`, the
    # period in which entrants are taken; each person's cart is entry + these offsets
    mode: str = "fixed"
    entry: str | None = None
    entry_cart_open: str | None = None
    entry_cart_close: str | None = None


class _Reader:
    """Collects problems while reading the raw TOML, so all are reported at once."""

    def __init__(self, path: Path, settings: Settings):
        self.path = path
        self.base = path.parent
        self.settings = settings
        self.problems: list[Problem] = []

    def problem(self, location: str, message: str) -> None:
        self.problems.append(Problem(f"{self.path.name}: {location}", message))

    def attempt(self, location: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LaunchkitError as e:
            self.problem(location, str(e))
            return None

    def text(self, table: dict[str, Any], key: str, location: str, required: bool = True) -> Any:
        value = table.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problem(f"{location}.{key}", "is required")
            return None
        return value

    def time(self, table: dict[str, Any], key: str, required: bool = True) -> datetime | None:
        raw = self.text(table, key, "launch", required)
        if raw is None:
            return None
        if isinstance(raw, datetime):
            raw = raw.isoformat()
        return self.attempt(
            f"launch.{key}", parse_local_datetime, str(raw), self.settings.tz, what=key
        )

    def file(self, raw: Any, location: str) -> Path | None:
        if raw is None:
            return None
        path = (self.base / str(raw)).resolve()
        if not path.is_file():
            self.problem(location, f"file {raw} does not exist (looked in {self.base})")
        return path


def load_plan(path: Path, settings: Settings) -> Plan:
    """Parse a launch plan; raises PlanInvalid listing every problem found while reading."""
    reader = _Reader(path, settings)
    data = _read_toml(path)
    launch = data.get("launch")
    if not isinstance(launch, dict):
        raise PlanInvalid(path, [Problem(f"{path.name}: [launch]", "table is missing")])
    plan = Plan(
        path=path,
        slug=reader.text(launch, "slug", "launch") or "",
        product=reader.text(launch, "product", "launch") or "",
        **_milestones(reader, launch),
        audience=tuple(_audience(reader, data.get("audience", []))),
        magnets=tuple(_magnets(reader, data.get("magnets", []))),
        offers=tuple(_offers(reader, data.get("offers", []), launch)),
        coupons=tuple(_coupons(reader, data.get("coupons", []), data.get("offers", []))),
        sequences=tuple(_sequences(reader, data.get("sequences", []))),
        segments={str(k): str(v) for k, v in data.get("segments", {}).items()},
    )
    if reader.problems:
        raise PlanInvalid(path, reader.problems)
    return plan


def _milestones(reader: _Reader, launch: dict[str, Any]) -> dict[str, Any]:
    """The dates of a fixed launch, or the entry, offsets and period of an evergreen one."""
    mode = str(launch.get("mode") or "fixed")
    if mode == "fixed":
        return {
            "cart_open": reader.time(launch, "cart_open"),
            "cart_close": reader.time(launch, "cart_close"),
            "prelaunch_start": reader.time(launch, "prelaunch_start", required=False),
        }
    if mode != "evergreen":
        reader.problem("launch.mode", f'"{mode}" must be "fixed" or "evergreen"')
        return {"cart_open": None, "cart_close": None}
    from launchkit import evergreen

    starts = reader.time(launch, "starts")
    until = reader.time(launch, "until", required=False)
    if starts is not None and until is None:
        until = starts + evergreen.DEFAULT_PERIOD
    offsets = {}
    for key in ("cart_open", "cart_close"):
        raw = reader.text(launch, key, "launch")
        spec = raw and reader.attempt(f"launch.{key}", evergreen.parse_offset, str(raw), where=key)
        offsets[f"entry_{key}"] = spec.text if spec else None
    entry = reader.text(launch, "entry", "launch")
    if entry:
        reader.attempt("launch.entry", evergreen.parse_entry, str(entry), where="entry")
    return {"cart_open": starts, "cart_close": until, "mode": mode,
            "entry": entry, **offsets}  # fmt: skip


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as e:
        raise InputError(f"Plan file {path} does not exist.") from e
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: {e}") from e


def _items(reader: _Reader, raw: Any, name: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(raw, list):
        reader.problem(name, "must be an array of tables ([[" + name + "]])")
        return []
    return [(f"{name}[{i}]", item) for i, item in enumerate(raw) if isinstance(item, dict)]


def _audience(reader: _Reader, raw: Any) -> list[AudienceSource]:
    out = []
    for loc, item in _items(reader, raw, "audience"):
        path = reader.file(reader.text(item, "file", loc), f"{loc}.file")
        if path is not None:
            out.append(
                AudienceSource(
                    path,
                    str(item.get("format", "auto")),
                    item.get("source"),
                    tuple(item.get("tags", ())),
                )
            )
    return out


def _magnets(reader: _Reader, raw: Any) -> list[MagnetSpec]:
    out = []
    for loc, item in _items(reader, raw, "magnets"):
        slug, title = reader.text(item, "slug", loc), reader.text(item, "title", loc)
        file = reader.file(item.get("file"), f"{loc}.file") if item.get("file") else None
        if not item.get("file") and not item.get("url"):
            reader.problem(loc, "needs a file or a url")
        if slug and title:
            out.append(
                MagnetSpec(
                    slug,
                    title,
                    file,
                    item.get("url"),
                    item.get("description", ""),
                    tuple(item.get("tags", ())),
                    item.get("sequence") or None,
                )
            )
    return out


def _offers(reader: _Reader, raw: Any, launch: dict[str, Any]) -> list[OfferSpec]:
    from launchkit.checkout import parse_bump, parse_money, parse_plan

    out = []
    currency = reader.settings.currency
    for loc, item in _items(reader, raw, "offers"):
        slug = reader.text(item, "slug", loc)
        price = reader.text(item, "price", loc)
        cents = reader.attempt(f"{loc}.price", parse_money, price, what="price") if price else None
        plans = [
            reader.attempt(f"{loc}.plans[{i}]", parse_plan, p)
            for i, p in enumerate(item.get("plans", []))
        ]
        bump = reader.attempt(f"{loc}.bump", parse_bump, item["bump"]) if item.get("bump") else None
        days = item.get("guarantee_days", 30)
        if not isinstance(days, int) or days < 0:
            reader.problem(f"{loc}.guarantee_days", "must be a whole number of days >= 0")
        tiers, tax = _selling(reader, loc, item, slug, cents)
        if slug and cents and None not in plans and isinstance(days, int) and None not in tiers:
            out.append(
                OfferSpec(
                    slug,
                    cents,
                    str(item.get("currency", currency)).upper(),
                    tuple(plans),
                    days,
                    bump,
                    item.get("product") or launch.get("product"),
                    tuple(tiers),
                    tax,
                )
            )
    return out


def _selling(
    reader: _Reader, loc: str, item: dict[str, Any], slug: Any, cents: int | None
) -> tuple[list[Any], str | None]:
    """``tiers = ["early:297:until=2026-12-02 23:59"]`` and ``tax_behavior`` of an offer."""
    from launchkit.checkout.offers import check_tax_behavior
    from launchkit.selling.tiers import check_tiers, parse_tier

    raw = item.get("tiers", [])
    if not isinstance(raw, list):
        reader.problem(f"{loc}.tiers", 'must be a list like ["early:297:until=2026-12-02 23:59"]')
        raw = []
    tiers = [
        reader.attempt(f"{loc}.tiers[{i}]", parse_tier, str(t), reader.settings.tz, what="tier")
        for i, t in enumerate(raw)
    ]
    if cents and None not in tiers:
        reader.attempt(f"{loc}.tiers", check_tiers, str(slug), cents, tiers)
    tax = item.get("tax_behavior")
    reader.attempt(f"{loc}.tax_behavior", check_tax_behavior, str(slug), tax)
    return tiers, tax


def _coupons(reader: _Reader, raw: Any, raw_offers: Any) -> list[CouponSpec]:
    """``[[coupons]]``: a code, exactly one of percent / amount, optional until, max_uses, offer."""
    offers = {str(o.get("slug")) for o in raw_offers if isinstance(o, dict)} if isinstance(
        raw_offers, list
    ) else set()  # fmt: skip
    out = []
    for loc, item in _items(reader, raw, "coupons"):
        before = len(reader.problems)
        code = _coupon_code(reader, item, loc)
        percent, amount = _coupon_value(reader, item, loc)
        until = reader.text(item, "until", loc, required=False)
        if until is not None:
            raw = until.isoformat() if isinstance(until, datetime) else str(until)
            until = reader.attempt(
                f"{loc}.until", parse_local_datetime, raw, reader.settings.tz, what="until"
            )
        max_uses = item.get("max_uses")
        if max_uses is not None and (not isinstance(max_uses, int) or max_uses < 1):
            reader.problem(f"{loc}.max_uses", "must be a whole number >= 1")
        offer = item.get("offer")
        if offer is not None and str(offer) not in offers:
            known = ", ".join(sorted(offers)) or "none"
            reader.problem(f"{loc}.offer", f'"{offer}" is not one of the plan\'s offers ({known})')
        if len(reader.problems) == before and code:
            out.append(CouponSpec(code, percent, amount, until, max_uses, offer and str(offer)))
    return out


def _coupon_code(reader: _Reader, item: dict[str, Any], loc: str) -> str | None:
    from launchkit.selling.coupons import CODE, normal_code

    raw = reader.text(item, "code", loc)
    if raw is None:
        return None
    code = normal_code(str(raw))
    if not CODE.fullmatch(code):
        reader.problem(f"{loc}.code", f'"{raw}": use 2-50 letters, digits, - or _')
        return None
    return code


def _coupon_value(reader: _Reader, item: dict[str, Any], loc: str) -> tuple[int | None, int | None]:
    from launchkit.checkout import parse_money

    percent, amount = item.get("percent"), item.get("amount")
    if (percent is None) == (amount is None):
        reader.problem(loc, "give exactly one of percent and amount")
        return None, None
    if percent is not None:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            reader.problem(f"{loc}.percent", "must be a whole number between 1 and 100")
            return None, None
        return percent, None
    return None, reader.attempt(f"{loc}.amount", parse_money, str(amount), what="amount")


def _sequences(reader: _Reader, raw: Any) -> list[SequenceSpec]:
    out = []
    for loc, item in _items(reader, raw, "sequences"):
        name = reader.text(item, "name", loc)
        if name:
            out.append(SequenceSpec(str(name), item.get("segment") or None))
    return out


def check_plan(plan: Plan, settings: Settings) -> list[Problem]:
    """Semantic checks beyond parsing: milestones, segments, sequences, templates, email times."""
    problems: list[Problem] = []
    where = plan.path.name
    if plan.cart_close <= plan.cart_open:
        problems.append(
            Problem(f"{where}: launch.cart_close", "the cart must open before it closes")
        )
    if plan.prelaunch_start and plan.prelaunch_start > plan.cart_open:
        problems.append(
            Problem(
                f"{where}: launch.prelaunch_start",
                "the pre-launch must start before the cart opens",
            )
        )
    problems += _check_segments(plan, where)
    problems += _check_sequences(plan, settings, where)
    problems += _check_templates(plan, settings, where)
    return problems


def _check_segments(plan: Plan, where: str) -> list[Problem]:
    from launchkit.segments import parse_segment

    found = []
    named = [(f"segments.{k}", v) for k, v in plan.segments.items()]
    named += [
        (f"sequences[{i}].segment", s.segment)
        for i, s in enumerate(plan.sequences)
        if s.segment and s.segment not in plan.segments
    ]
    for location, expression in named:
        try:
            parse_segment(expression)
        except LaunchkitError as e:
            found.append(Problem(f"{where}: {location}", str(e)))
    return found


def _check_sequences(plan: Plan, settings: Settings, where: str) -> list[Problem]:
    found = []
    magnet_sequences = [
        (f"magnets[{i}].sequence", m.sequence) for i, m in enumerate(plan.magnets) if m.sequence
    ]
    launch_sequences = [(f"sequences[{i}].name", s.name) for i, s in enumerate(plan.sequences)]
    for location, name in launch_sequences + magnet_sequences:
        found += [
            Problem(f"{where}: {location}", message)
            for message in check_sequence_folder(settings, name, plan)
        ]
    return found


def check_sequence_folder(settings: Settings, name: str, plan: Plan) -> list[str]:
    """Problems of one sequence folder: unreadable emails, send_at that cannot resolve."""
    from launchkit.sequences.schedule import load_sources
    from launchkit.sequences.timing import parse_send_at

    try:
        sources = load_sources(settings, name)
    except LaunchkitError as e:
        return [str(e)]
    problems = []
    for source in sources:
        when = parse_send_at(str(source.meta["send_at"]), where=str(source.path))
        if when.milestone == "entry" and plan.mode != "evergreen":
            problems.append(
                f'{source.path.name}: send_at uses entry but the launch is not mode = "evergreen"'
            )
        if when.milestone == "prelaunch_start" and plan.prelaunch_start is None:
            if plan.mode == "evergreen":  # an evergreen pre-launch starts at each entry
                continue
            problems.append(
                f"{source.path.name}: send_at uses prelaunch_start but the launch has none"
            )
    return problems


def _check_templates(plan: Plan, settings: Settings, where: str) -> list[Problem]:
    from launchkit.resources import starter_dir

    needed = []
    if plan.magnets:
        needed += ["optin.html", "confirmed.html"]
    if plan.offers:
        needed += ["checkout.html"]
    needed.append("report.html")
    found = []
    for name in needed:
        if not (
            (settings.templates_dir / name).is_file() or (starter_dir("templates") / name).is_file()
        ):
            found.append(
                Problem(
                    f"{where}: templates",
                    f"template {name} is missing from {settings.templates_dir}",
                )
            )
    return found
