"""Create a workspace: launchkit.toml, starter emails and templates, signing key, database."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import tomli_w

from launchkit.config import (
    CONFIG_FILE,
    DEFAULT_DB_FILE,
    Settings,
    load_settings,
    write_secret_key,
)
from launchkit.db import make_engine, upgrade_database
from launchkit.errors import AlreadyExists
from launchkit.resources import starter_dir


def default_config(
    name: str, timezone: str, currency: str, language: str, database_url: str | None
) -> dict[str, Any]:
    """The launchkit.toml written by `launchkit init`."""
    return {
        "workspace": {
            "name": name,
            "timezone": timezone,
            "currency": currency.upper(),
            "language": language,
        },
        "sender": {
            "name": name,
            "email": "hello@example.com",
            "postal_address": "10 rue de l'Exemple, 75001 Paris, France",
        },
        "web": {"base_url": "http://127.0.0.1:8000"},
        "database": {"url": database_url or f"sqlite:///{DEFAULT_DB_FILE}"},
        "email": {
            "backend": "file",
            "send_window": "08:00-21:00",
            "max_delay": "12h",
            "rate_per_second": 0,
            "rate_per_hour": 0,
            "max_send_errors": 20,
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
) -> Settings:
    """Create a workspace in ``directory`` and migrate its database; refuses to overwrite one."""
    directory = directory.resolve()
    if (directory / CONFIG_FILE).exists():
        raise AlreadyExists(f"{directory} is already a launchkit workspace.")
    directory.mkdir(parents=True, exist_ok=True)
    config = default_config(name, timezone, currency, language, database_url)
    settings = _write_and_load(directory, config, env)
    for folder in ("emails", "templates"):
        shutil.copytree(starter_dir(folder), directory / folder, dirs_exist_ok=True)
    for folder in ("outbox", "magnets", "reports"):
        (directory / folder).mkdir(exist_ok=True)
    write_secret_key(directory)
    settings = load_settings(directory, env=env or {})
    engine = make_engine(settings.database_url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    return settings


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
