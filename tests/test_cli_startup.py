"""`launchkit --help` / `--version` stay fast: no heavy library is imported to show them (#17).

Robust, not timing-based: each test starts a fresh interpreter and lists the modules it
actually executed (``-X importtime``), then checks none of the heavy libraries is among them.
Command modules reach the library through ``launchkit.cli.lazy.lazy_module`` or imports inside
the command functions; a new top-level import of a heavy module makes these tests fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "pandas",
    "matplotlib",
    "stripe",
    "sqlalchemy",
    "css_inline",
    "alembic",
    "markdown_it",
    "jinja2",
    "babel",
    "httpx",
    "starlette",
    "uvicorn",
    "numpy",
)


def imported_modules(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime *args`` in a fresh interpreter; the modules it executed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return proc, modules


def heavy_among(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_root_flags_import_no_heavy_library(flag: str) -> None:
    proc, modules = imported_modules("-m", "launchkit", flag)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "launchkit.cli" in modules  # the parse really saw the imports
    assert heavy_among(modules) == []


def test_building_the_whole_command_tree_imports_no_heavy_library() -> None:
    """Every sub-app's click command is built (what any `--help` does) without heavy imports."""
    code = "import typer.main, launchkit.cli as c; typer.main.get_command(c.app)"
    proc, modules = imported_modules("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "launchkit.cli.sequences" in modules
    assert heavy_among(modules) == []


def test_commands_still_load_their_library_when_run(tmp_path: Path) -> None:
    """The deferred imports happen when a command runs (here through ``lazy_module``)."""
    workspace = tmp_path / "ws"
    proc, modules = imported_modules("-m", "launchkit", "init", str(workspace))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert {"sqlalchemy", "alembic"} <= modules
    lk = ("-m", "launchkit", "-w", str(workspace), "launch")
    times = ("--cart-open", "2026-12-01 09:00", "--cart-close", "2026-12-08 23:59")
    proc, modules = imported_modules(*lk, "create", "spring", "--product", "Cours", *times)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "sqlalchemy" in modules
    proc, _ = imported_modules(*lk, "list", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert '"spring"' in proc.stdout


def test_a_deferred_package_and_its_submodules_stay_one_module() -> None:
    """After the CLI defers ``launchkit.checkout``, importing one of its submodules directly
    (as library code does inside functions) gives the one module the package uses: an error
    the library raises is the class the caller catches."""
    code = (
        "import launchkit.cli, launchkit.cli.checkout as cli_checkout\n"
        "from launchkit.checkout.offers import CartClosed\n"
        "from launchkit import checkout\n"
        "print(checkout.CartClosed is CartClosed, cli_checkout.checkout.CartClosed is CartClosed)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True"]
