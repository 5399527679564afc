"""What every command needs: the workspace settings and a database session, resolved lazily."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from launchkit.config import Settings, find_workspace, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker


@dataclass
class Runtime:
    """Global options parsed once by the root callback; kept on ``typer.Context.obj``."""

    workspace_flag: Path | None = None
    db_flag: str | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @cached_property
    def settings(self) -> Settings:
        from launchkit.cli.output import use_language

        workspace = find_workspace(self.workspace_flag, self.env)
        settings = load_settings(workspace, env=self.env, overrides={"database_url": self.db_flag})
        use_language(settings.language)
        return settings

    @cached_property
    def engine(self) -> Engine:
        from launchkit.db import make_engine

        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from launchkit.db import check_schema, make_sessionmaker

        check_schema(self.engine)
        return make_sessionmaker(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
