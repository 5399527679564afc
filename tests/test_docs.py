"""Docs stay honest: every command has help with an example and appears in the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from launchkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


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
def test_command_is_in_readme(path: tuple[str, ...]) -> None:
    assert re.search(rf"launchkit {re.escape(' '.join(path))}\b", README), (
        f"launchkit {' '.join(path)} is not documented in README.md"
    )


def test_readme_is_assembled_from_its_sections() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_readme import build

    assert README == build(), "README.md is stale: run python scripts/build_readme.py"


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
