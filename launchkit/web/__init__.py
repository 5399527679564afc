"""The ASGI web app (Starlette): opt-in pages, confirmations, downloads, unsubscribe, checkout.

``create_app(settings)`` builds the app; routes live in one module per domain
(``web/magnets.py``, ``web/checkout.py``). Pages are Jinja2 templates from the workspace's
``templates/`` folder, falling back to the starter copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launchkit.clock import utcnow
from launchkit.config import Settings
from launchkit.db import make_engine, make_sessionmaker


@dataclass
class WebState:
    """What every request handler needs; stored on ``app.state.lk``."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]


async def healthz(request: Request) -> JSONResponse:
    """Liveness and database check."""
    state: WebState = request.app.state.lk
    with state.engine.connect() as conn:
        conn.exec_driver_sql("select 1")
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """Build the web app for a workspace."""
    engine = make_engine(settings.database_url)
    state = WebState(settings, engine, make_sessionmaker(engine), clock)
    routes = [Route("/healthz", healthz)]
    app = Starlette(routes=routes)
    app.state.lk = state
    return app
