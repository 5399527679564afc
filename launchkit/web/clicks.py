"""``/c/TOKEN``: a tracked link of a launch email (``launchkit/clicks.py`` states the policy).

GET records the click and redirects (302) to the URL recorded for that email's link; HEAD
answers the same redirect and records nothing; a forged, damaged or unknown token gets the
"invalid link" page (404), never a redirect.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from launchkit.clicks import follow_click
from launchkit.errors import NotFound
from launchkit.web import client_ip, error_page, state_of


def click(request: Request) -> Response:
    """GET|HEAD /c/{token}: to the link's recorded URL."""
    state = state_of(request)
    try:
        with state.sessions.begin() as session:
            followed = follow_click(
                session,
                state.settings,
                request.path_params["token"],
                now=state.clock(),
                ip=client_ip(request),
                record=request.method == "GET",
            )
    except NotFound:
        return error_page(request, 404, "invalid_title", "invalid")
    return RedirectResponse(followed.url, status_code=302)


def click_routes() -> list[BaseRoute]:
    """The tracked-link route (Starlette answers HEAD on GET routes)."""
    return [Route("/c/{token}", click, methods=["GET"])]
