"""A throwaway PostgreSQL database for a benchmark run (shared by the bench scripts)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa


def throwaway_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server of ``admin_url`` and a function that drops it, so runs
    never meet each other's rows."""
    name = f"lk_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    url = sa.engine.make_url(admin_url).set(database=name)
    return url.render_as_string(hide_password=False), drop
