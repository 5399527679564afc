"""Docs stay honest: every command has help with an example and appears in the README or a docs
page; README.md and the docs pages are what scripts/build_readme.py builds from docs/readme/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from launchkit.cli import app
from launchkit.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "scripts"))
from build_readme import PAGES, build, build_page  # noqa: E402

DOCS = {page: (ROOT / "docs" / page).read_text() for page in PAGES}


def _commands(group=None, prefix=()):  # noqa: ANN001, ANN202
    group = group or get_command(app)
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield path, command


COMMANDS = list(_commands())


def test_there_are_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in (
        "init",
        "audience import",
        "sequence preview",
        "send",
        "serve",
        "offer add",
        "refund",
        "analyze",
        "run",
        "demo",
        "rehearse",
    ):
        assert expected in names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p))
def test_command_has_help_with_example(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    assert command.help and command.help.strip(), f"launchkit {' '.join(path)} has no help"
    assert "Example: launchkit" in command.help, f"launchkit {' '.join(path)}: no example"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p))
def test_command_is_in_readme_or_a_docs_page(path: tuple[str, ...]) -> None:
    pattern = rf"launchkit {re.escape(' '.join(path))}\b"
    assert any(re.search(pattern, text) for text in (README, *DOCS.values())), (
        f"launchkit {' '.join(path)} is documented neither in README.md nor in docs/*.md"
    )


def test_readme_is_the_built_front_page() -> None:
    assert README == build(), "README.md is stale: run python scripts/build_readme.py"


@pytest.mark.parametrize("page", list(PAGES))
def test_docs_page_is_built_from_its_sections(page: str) -> None:
    assert DOCS[page] == build_page(page), f"docs/{page} is stale: run scripts/build_readme.py"
    assert DOCS[page].startswith("<!-- generated from docs/readme/")


def test_every_section_is_in_the_readme_or_a_page() -> None:
    built = README + "".join(DOCS.values())
    for section in sorted((ROOT / "docs" / "readme").glob("*.md")):
        title = section.read_text().splitlines()[0].lstrip("#")
        assert f"#{title}\n" in built, f"docs/readme/{section.name} is in no page"


def test_readme_is_a_short_front_page() -> None:
    assert len(README.splitlines()) < 250
    for page in PAGES:
        assert f"](docs/{page})" in README, f"README.md does not link docs/{page}"
    assert "](docs/reliability.md)" in README
    assert "![" in README and "docs/report.png" in README


def test_every_setting_is_in_the_configuration_page() -> None:
    for spec in SETTINGS:
        assert f"| `{spec.name}` |" in DOCS["configuration.md"], f"{spec.name} undocumented"


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:30])
    assert "pip install . && .venv/bin/launchkit demo" in first_screen
    assert ".venv/bin/pytest" in first_screen


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\n.venv/bin/pytest\n" in ci
    assert ".venv/bin/pytest\n" in README


def test_help_works_as_a_subprocess() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "launchkit", "--help"], capture_output=True, text=True, check=True
    )
    assert "Plan, run and analyze a course launch" in out.stdout
    assert isinstance(app, typer.Typer)
