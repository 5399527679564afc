"""Assemble README.md from docs/readme/*.md (sections in file-name order) and the settings table.

Run after editing a section: `python scripts/build_readme.py`. tests/test_docs.py checks that
README.md is what this script produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launchkit.config import SETTINGS  # noqa: E402


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


def build() -> str:
    parts = [p.read_text().strip() for p in sorted((ROOT / "docs" / "readme").glob("*.md"))]
    return "\n\n".join(parts).replace("<!-- SETTINGS_TABLE -->", settings_table()) + "\n"


if __name__ == "__main__":
    (ROOT / "README.md").write_text(build())
    print("README.md rebuilt")
