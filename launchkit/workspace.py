"""Create a workspace: launchkit.toml, starter emails and templates, signing key, database."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy.engine import make_url

from launchkit.config import (
    CONFIG_FILE,
    DEFAULT_DB_FILE,
    Settings,
    load_settings,
    write_secret_key,
)
from launchkit.db import make_engine, upgrade_database
from launchkit.errors import AlreadyExists, InputError
from launchkit.files import DIR_MODE, FILE_MODE, make_private_dir, private_umask
from launchkit.resources import starter_dir


def default_config(
    name: str,
    timezone: str,
    currency: str,
    language: str,
    database_url: str | None,
    sender: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The launchkit.toml written by `launchkit init`; the sender stays empty unless given
    (`launchkit doctor` and `send` ask for it: no placeholder address is ever written)."""
    sender = sender or {}
    return {
        "workspace": {
            "name": name,
            "timezone": timezone,
            "currency": currency.upper(),
            "language": language,
        },
        "sender": {
            "name": sender.get("name", "").strip(),
            "email": sender.get("email", "").strip(),
            "postal_address": sender.get("postal_address", "").strip(),
        },
        "web": {"base_url": "http://127.0.0.1:8000"},
        "database": {"url": database_url or f"sqlite:///{DEFAULT_DB_FILE}"},
        "email": {
            "backend": "file",
            "send_window": "08:00-21:00",
            "max_delay": "12h",
            "max_send_errors": 20,
            "track_clicks": True,
        },
        "stripe": {"api_base": "https://api.stripe.com", "checkout_grace": "15m"},
    }


def init_workspace(
    directory: Path,
    *,
    name: str = "My launch",
    timezone: str = "Europe/Paris",
    currency: str = "EUR",
    language: str = "fr",
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    sender: dict[str, str] | None = None,
) -> Settings:
    """Create a workspace in ``directory`` and migrate its database; refuses to overwrite one.

    ``sender`` holds ``name``, ``email`` and ``postal_address`` (each may be missing: left empty).
    """
    _check_sender(sender or {})
    directory = directory.resolve()
    if (directory / CONFIG_FILE).exists():
        raise AlreadyExists(f"{directory} is already a launchkit workspace.")
    with private_umask():  # everything below is owner-only: folders 0700, files 0600
        make_private_dir(directory)
        config = default_config(name, timezone, currency, language, database_url, sender)
        settings = _write_and_load(directory, config, env)
        for folder in ("emails", "templates"):
            _copy_starter(folder, directory / folder)
        for folder in ("outbox", "magnets", "reports", "imports", "pages"):
            make_private_dir(directory / folder)
        write_secret_key(directory)
        settings = load_settings(directory, env=env or {})
        _create_private_sqlite(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            upgrade_database(engine)
        finally:
            engine.dispose()
    return settings


def _check_sender(sender: dict[str, str]) -> None:
    email = sender.get("email", "").strip()
    if email and ("@" not in email or " " in email):
        raise InputError(f'--sender-email "{email}" is not an email address.')


# launchkit's own reports stay in the package, so an upgrade reaches existing workspaces; a
# creator who wants to change them copies one into workspace/templates/ (it then wins).
NOT_COPIED = shutil.ignore_patterns("report.html", "compare.html")


def _copy_starter(folder: str, target: Path) -> None:
    """Copy a starter folder with owner-only modes (not the installed package's)."""
    shutil.copytree(
        starter_dir(folder),
        target,
        dirs_exist_ok=True,
        copy_function=shutil.copyfile,
        ignore=NOT_COPIED if folder == "templates" else None,
    )
    for path in (target, *target.rglob("*")):
        path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)


def _create_private_sqlite(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does: its -wal and -shm files then
    get the same mode whoever's umask opens them later."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.exists():
        make_private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def _write_and_load(
    directory: Path, config: dict[str, Any], env: dict[str, str] | None
) -> Settings:
    # validate before writing anything else: a bad timezone fails with nothing created but the dir
    path = directory / CONFIG_FILE
    path.write_bytes(tomli_w.dumps(config).encode())
    try:
        return load_settings(directory, env=env or {})
    except Exception:
        path.unlink()
        raise
