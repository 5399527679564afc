"""Workspace creation, discovery, settings precedence and the launch model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from launchkit.config import SETTINGS, find_workspace, load_settings
from launchkit.db import check_schema, head_revision, make_engine
from launchkit.errors import AlreadyExists, ConfigError, SchemaOutOfDate, WorkspaceNotFound
from launchkit.mailer import FileMessenger, OutgoingMessage, build_message, make_message_id
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
    page = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for spec in SETTINGS:
        assert spec.help.strip(), spec.name
        assert f"`{spec.name}`" in page, f"setting {spec.name} missing from docs/configuration.md"


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
    versions = Path(head_revision.__code__.co_filename).parent / "migrations" / "versions"
    newest = max(p.stem for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert head_revision() == newest  # one linear chain: the newest revision is the head


def test_migrations_match_models(db_url: str) -> None:
    """`alembic check`: the shipped migrations produce exactly the models' schema."""
    from alembic import command

    from launchkit.db import alembic_config

    command.check(alembic_config(db_url))


# --- owner-only files ---------------------------------------------------------------------------


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems give (022): without care, files would be 0644 and folders 0755."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_workspace_is_owner_only(tmp_path: Path, usual_umask) -> None:
    ws = init_workspace(tmp_path / "w").workspace
    folders = [ws, *(p for p in ws.rglob("*") if p.is_dir())]
    files = [p for p in ws.rglob("*") if p.is_file()]
    assert {"outbox", "imports", "emails", "magnets", "reports"} <= {p.name for p in folders}
    assert {p.name for p in files} >= {"launchkit.db", ".launchkit_secret", "launchkit.toml"}
    assert {str(p): _mode(p) for p in folders} == {str(p): 0o700 for p in folders}
    assert {str(p): _mode(p) for p in files} == {str(p): 0o600 for p in files}
    # SQLite creates -wal and -shm later, under the caller's umask: they take the db's mode
    engine = make_engine(f"sqlite:///{ws / 'launchkit.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE probe (x)")
        assert _mode(ws / "launchkit.db-wal") == 0o600
        assert _mode(ws / "launchkit.db-shm") == 0o600
    engine.dispose()


def test_outbox_files_are_owner_only(tmp_path: Path, usual_umask) -> None:
    outbox = tmp_path / "fresh" / "outbox"
    messenger = FileMessenger(outbox)
    msg = OutgoingMessage(
        to_email="ana@example.com", to_name="Ana", from_email="hello@example.com",
        from_name="Atelier", subject="Hi", html="<p>Hi</p>", text="Hi",
        message_id=make_message_id("email", 1, 2, "example.com"),
    )  # fmt: skip
    messenger.push(msg, build_message(msg, date=datetime(2026, 11, 20, tzinfo=UTC)))
    messenger.flush()
    (eml,) = outbox.iterdir()
    assert (_mode(outbox), _mode(eml)) == (0o700, 0o600)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secret_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    ws = init_workspace(tmp_path / "w").workspace
    secret = ws / ".launchkit_secret"
    secret.chmod(mode)
    expected = f"{secret} is open to group or others (mode {mode:o}); run: chmod 600 {secret}"
    with pytest.raises(ConfigError) as caught:
        load_settings(ws, env={})
    assert str(caught.value) == expected
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHKIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "launchkit", "launch", "list"],
        cwd=ws, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (1, f"Error: {expected}\n")
    secret.chmod(0o600)
    assert load_settings(ws, env={}).secret_keys
