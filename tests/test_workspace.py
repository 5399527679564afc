"""Workspace creation, discovery, settings precedence and the launch model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from launchkit.config import SETTINGS, find_workspace, load_settings
from launchkit.db import check_schema, head_revision, make_engine
from launchkit.errors import AlreadyExists, ConfigError, SchemaOutOfDate, WorkspaceNotFound
from launchkit.workspace import init_workspace


def test_init_creates_workspace(tmp_path: Path) -> None:
    settings = init_workspace(
        tmp_path / "w", name="Atelier", timezone="America/Montreal", currency="cad", language="en"
    )
    ws = settings.workspace
    assert (ws / "launchkit.toml").is_file()
    assert (ws / "emails").is_dir() and (ws / "templates").is_dir()
    secret = ws / ".launchkit_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert settings.currency == "CAD" and settings.timezone == "America/Montreal"
    assert settings.database_url == f"sqlite:///{ws / 'launchkit.db'}"
    engine = make_engine(settings.database_url)
    check_schema(engine)
    assert "subscribers" in inspect(engine).get_table_names()
    engine.dispose()


def test_init_refuses_existing_and_bad_timezone(tmp_path: Path) -> None:
    init_workspace(tmp_path / "w")
    with pytest.raises(AlreadyExists, match="already a launchkit workspace"):
        init_workspace(tmp_path / "w")
    with pytest.raises(ConfigError, match='Timezone "Mars/Olympus"'):
        init_workspace(tmp_path / "x", timezone="Mars/Olympus")
    assert not (tmp_path / "x" / "launchkit.toml").exists()


def test_find_workspace_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    init_workspace(a)
    init_workspace(b)
    nested = a / "deep" / "er"
    nested.mkdir(parents=True)
    assert find_workspace(None, {}, nested) == a.resolve()
    assert find_workspace(None, {"LAUNCHKIT_HOME": str(b)}, nested) == b.resolve()
    assert find_workspace(b, {"LAUNCHKIT_HOME": str(a)}, nested) == b.resolve()
    with pytest.raises(WorkspaceNotFound):
        find_workspace(None, {}, tmp_path)


def test_settings_precedence(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "w").workspace
    env = {"LAUNCHKIT_DATABASE_URL": "sqlite:////tmp/env.db", "LAUNCHKIT_SMTP_URL": "smtp://u:p@h"}
    settings = load_settings(ws, env=env)
    assert settings.database_url == "sqlite:////tmp/env.db"
    assert settings.email_backend == "file"  # the toml says file explicitly
    flagged = load_settings(ws, env=env, overrides={"database_url": "sqlite:////tmp/flag.db"})
    assert flagged.database_url == "sqlite:////tmp/flag.db"
    assert "u:p" not in repr(settings) and settings.public()["smtp_url"] == "********"


def test_every_setting_is_documented() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for spec in SETTINGS:
        assert spec.help.strip(), spec.name
        assert f"`{spec.name}`" in readme, f"setting {spec.name} missing from README"


def test_schema_behind_is_reported(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="run `launchkit db upgrade`"):
        check_schema(engine)
    engine.dispose()


def test_cli_launch_lifecycle(cli) -> None:
    r = cli(
        "launch",
        "create",
        "spring",
        "--product",
        "Cours photo",
        "--cart-open",
        "2026-12-01 09:00",
        "--cart-close",
        "2026-12-08 23:59",
    )
    assert r.exit_code == 0, r.output
    data = json.loads(cli("launch", "show", "spring", "--json").stdout)
    assert data["milestones"]["cart_open"] == "2026-12-01T08:00:00Z"
    r = cli("launch", "update", "spring", "--cart-close", "2026-12-09 23:59")
    assert r.exit_code == 0
    data = json.loads(cli("launch", "list", "--json").stdout)
    assert data[0]["milestones"]["cart_close"] == "2026-12-09T22:59:00Z"
    r = cli("launch", "update", "spring", "--cart-close", "2026-11-30 09:00")
    assert r.exit_code == 1
    assert r.stderr == 'Error: Launch "spring": the cart must open before it closes.\n'
    r = cli("launch", "show", "nope")
    assert r.exit_code == 1
    assert r.stderr == 'Error: Launch "nope" does not exist; see `launchkit launch list`.\n'


def test_cli_bad_time_and_dst_gap(cli) -> None:
    r = cli(
        "launch",
        "create",
        "x",
        "--product",
        "P",
        "--cart-open",
        "demain",
        "--cart-close",
        "2026-12-08 23:59",
    )
    assert r.exit_code == 1
    assert r.stderr.startswith('Error: --cart-open "demain" is not a date and time')
    r = cli(
        "launch",
        "create",
        "x",
        "--product",
        "P",
        "--cart-open",
        "2027-03-28 02:30",
        "--cart-close",
        "2027-04-08 23:59",
    )
    assert r.exit_code == 1 and "does not exist in Europe/Paris" in r.stderr


def test_outside_workspace_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHKIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "launchkit", "launch", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: No launchkit workspace in")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_version_and_head() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "launchkit", "--version"], capture_output=True, text=True
    )
    assert proc.stdout.strip() == "launchkit 0.1.0"
    assert head_revision()[:4].isdigit()  # 0001_initial, then NNNN_name revisions


def test_migrations_match_models(db_url: str) -> None:
    """`alembic check`: the shipped migrations produce exactly the models' schema."""
    from alembic import command

    from launchkit.db import alembic_config

    command.check(alembic_config(db_url))
