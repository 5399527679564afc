"""Shared fixtures: real SQLite and PostgreSQL databases, a workspace, the CLI runner.

Every database test runs on both engines through the ``db_url`` fixture. PostgreSQL comes from
``LAUNCHKIT_TEST_DATABASE_URL`` (default: the local server); each test gets a fresh database
cloned from a migrated template. Outside CI an unreachable PostgreSQL is skipped with a reason;
in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from launchkit.cli import app
from launchkit.config import Settings, load_settings, settings_for_test
from launchkit.db import make_engine, make_sessionmaker, upgrade_database
from launchkit.workspace import init_workspace

TEST_SENDER = {
    "name": "Atelier Test",
    "email": "bonjour@atelier-test.fr",
    "postal_address": "12 rue des Tanneurs, 69001 Lyon, France",
}

pytest_plugins = ["tests.fixtures.smtp", "tests.fixtures.stripe", "tests.fixtures.browser"]

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def email_settings(folder: Path) -> Settings:
    """Settings of a database-less workspace in ``folder``: an empty emails/ and a French sender."""
    (folder / "emails").mkdir()
    return settings_for_test(
        folder,
        sender_name="Atelier Élodie",
        sender_email="hello@atelier.example",
        postal_address="12 rue des Lilas\n75011 Paris",
    )


def _pg_admin_url() -> str:
    return os.environ.get("LAUNCHKIT_TEST_DATABASE_URL", DEFAULT_PG)


def _pg_reachable(url: str) -> str | None:
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as e:  # any failure means: not reachable
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL template database for this test session."""
    admin_url = _pg_admin_url()
    problem = _pg_reachable(admin_url)
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {admin_url} is unreachable in CI: {problem}")
        pytest.skip(f"PostgreSQL half skipped: {admin_url} unreachable ({problem})")
    name = f"lk_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade_database(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _fresh_pg(template: str) -> Iterator[str]:
    admin_url = _pg_admin_url()
    name = f"lk_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database URL: SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "launchkit.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield from _fresh_pg(request.getfixturevalue("pg_template"))


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: sa.Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction, committed at the end of the test."""
    with sessions.begin() as s:
        yield s


@pytest.fixture
def now() -> datetime:
    """The injected clock for tests: 2026-11-20 10:00 UTC."""
    return NOW


@pytest.fixture
def workspace_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    """Environment for CLI calls on a fresh workspace backed by ``db_url``."""
    ws = tmp_path / "ws"
    init_workspace(ws, name="Atelier Test", database_url=db_url, env={}, sender=TEST_SENDER)
    return {"LAUNCHKIT_HOME": str(ws), "LAUNCHKIT_DATABASE_URL": db_url, "COLUMNS": "200"}


@pytest.fixture
def settings(workspace_env: dict[str, str]) -> Settings:
    """Settings of the fresh workspace."""
    return load_settings(Path(workspace_env["LAUNCHKIT_HOME"]), env=workspace_env)


class Cli:
    """Run launchkit commands in-process with typer's runner against one workspace."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):  # noqa: A002
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHKIT_", "STRIPE_"))}
        for key in set(os.environ) - set(clean):
            clean[key] = ""
        return self.runner.invoke(app, list(args), env={**clean, **self.env}, input=input)


@pytest.fixture
def cli(workspace_env: dict[str, str]) -> Cli:
    """``cli("launch", "list")`` -> click Result; exit_code, stdout, stderr."""
    return Cli(workspace_env)
