"""Build README.md (the front page) and one page per module in docs/ from docs/readme/*.md.

The section files in docs/readme/ are the single source. README.md is built from the front
sections (00-*.md, 05-*.md) plus a list of links to the module pages; each module page
docs/<module>.md is built from its section files (the settings table goes into
docs/configuration.md). Run after editing a section: `python scripts/build_readme.py`.
tests/test_docs.py checks that README.md and every page are what this script produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launchkit.config import SETTINGS  # noqa: E402

SECTIONS = ROOT / "docs" / "readme"
FRONT = ("00-intro.md", "05-walkthrough.md")
# page file name in docs/ -> (title in the README's list of links, its section files in order)
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "configuration.md": ("Workspace, configuration and settings", ("10-workspace.md",)),
    "audience.md": ("Audience lists and segments", ("20-audience.md",)),
    "magnets.md": ("Lead magnets, opt-in pages and double opt-in", ("40-magnets.md",)),
    "delivery.md": (
        "Email rendering, sequences and the delivery engine",
        ("30-email-delivery.md", "31-sequences.md"),
    ),
    "checkout.md": (
        "Checkout, memberships, refunds, access and webhooks",
        ("50-checkout.md", "55-access.md"),
    ),
    "analysis.md": ("Post-launch analysis", ("60-analysis.md",)),
    "orchestrator.md": ("Running a whole launch, rehearsal and the demo", ("70-orchestrator.md",)),
}


def settings_table() -> str:
    lines = [
        "| setting | launchkit.toml | environment | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for spec in SETTINGS:
        default = "" if spec.default is None else f"`{spec.default}`"
        toml = f"`{spec.toml_key}`" if spec.toml_key else "(env only)" if spec.env else ""
        env = f"`{spec.env}`" if spec.env else ""
        lines.append(f"| `{spec.name}` | {toml} | {env} | {default} | {spec.help} |")
    return "\n".join(lines)


def _join(names: tuple[str, ...]) -> str:
    parts = [(SECTIONS / name).read_text().strip() for name in names]
    return "\n\n".join(parts).replace("<!-- SETTINGS_TABLE -->", settings_table()) + "\n"


def _links() -> str:
    lines = ["## Documentation", ""]
    lines += [f"- [{title}](docs/{page})" for page, (title, _) in PAGES.items()]
    lines.append("- [Reliability: each promise and the test that proves it](docs/reliability.md)")
    return "\n".join(lines)


def build() -> str:
    """The front page, README.md."""
    return _join(FRONT).rstrip("\n") + "\n\n" + _links() + "\n"


def _promote_headings(text: str) -> str:
    """A page stands alone: its `## ` sections become `# `, `### ` become `## ` (not in code)."""
    lines, fenced = [], False
    for line in text.split("\n"):
        fenced ^= line.startswith("```")
        promote = not fenced and line.startswith("##") and line.lstrip("#").startswith(" ")
        lines.append(line[1:] if promote else line)
    return "\n".join(lines)


def build_page(page: str) -> str:
    """One module page, docs/<page>."""
    sources = " and ".join(f"docs/readme/{name}" for name in PAGES[page][1])
    header = f"<!-- generated from {sources} by scripts/build_readme.py: edit those, not this -->"
    return header + "\n\n" + _promote_headings(_join(PAGES[page][1]))


def build_all() -> dict[Path, str]:
    """Every generated file, by path."""
    built = {ROOT / "README.md": build()}
    built.update({ROOT / "docs" / page: build_page(page) for page in PAGES})
    return built


def _check_sections_are_used() -> None:
    used = set(FRONT) | {name for _, names in PAGES.values() for name in names}
    unused = sorted(p.name for p in SECTIONS.glob("*.md") if p.name not in used)
    if unused:
        sys.exit(f"Error: docs/readme/{unused[0]} is in no page: add it to PAGES")


if __name__ == "__main__":
    _check_sections_are_used()
    for path, text in build_all().items():
        path.write_text(text)
        print(f"{path.relative_to(ROOT)} rebuilt")
