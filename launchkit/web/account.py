"""``/account``: the member's side. A form posts an address and always answers the same page
(no enumeration); the emailed link (signed, one hour) lists purchases and memberships, and one
POST (CSRF) cancels a membership at the end of its paid period through the Stripe adapter."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from launchkit import checkout
from launchkit.errors import LaunchkitError
from launchkit.memberships import account
from launchkit.tokens import TokenExpired, TokenInvalid
from launchkit.web import (
    CSRF_FIELD,
    csrf_ok,
    csrf_token,
    error_page,
    origin_ok,
    rate_limited,
    render_page,
    set_csrf_cookie,
    state_of,
    too_many_requests,
)

log = logging.getLogger(__name__)

STRINGS = {
    "fr": {
        "title": "Mon compte",
        "lead": "Recevez par e-mail un lien vers vos achats et votre adhésion.",
        "email": "Votre adresse e-mail", "send": "Recevoir mon lien",
        "sent_title": "Vérifiez votre boîte mail",
        "sent": "Si cette adresse a un achat chez nous, un lien valable une heure vient "
                "de lui être envoyé.",
        "memberships": "Adhésions", "purchases": "Achats", "none": "Aucun.",
        "cancel": "Résilier à la fin de la période", "until": "jusqu'au",
        "cancelled": "C'est noté : votre adhésion s'arrêtera à la fin de la période payée.",
        "trialing": "essai", "active": "active", "past_due": "paiement en attente",
        "cancelling": "résiliée, active", "ended": "terminée", "incomplete": "en cours",
        "month": "mois", "year": "an",
    },
    "en": {
        "title": "My account", "lead": "Get a link to your purchases and membership by email.",
        "email": "Your email address", "send": "Email me my link",
        "sent_title": "Check your inbox",
        "sent": "If this address bought something from us, a link valid for one hour is "
                "on its way.",
        "memberships": "Memberships", "purchases": "Purchases", "none": "None.",
        "cancel": "Cancel at the end of the period", "until": "until",
        "cancelled": "Done: your membership will stop at the end of the period already paid.",
        "trialing": "trial", "active": "active", "past_due": "payment pending",
        "cancelling": "cancelled, active", "ended": "ended", "incomplete": "starting",
        "month": "month", "year": "year",
    },
}  # fmt: skip


def account_routes() -> list[BaseRoute]:
    """The routes of ``/account``."""
    return [
        Route("/account", request_form, methods=["GET"]),
        Route("/account", request_link, methods=["POST"]),
        Route("/account/{token}", member_page, methods=["GET"]),
        Route("/account/{token}/cancel", cancel, methods=["POST"]),
    ]


def _a(request: Request) -> dict[str, str]:
    return STRINGS.get(state_of(request).settings.language, STRINGS["fr"])


def _page(request: Request, template: str, context: dict[str, Any]) -> Response:
    form_token, cookie = csrf_token(request)
    a = _a(request)
    values = {"a": a, "csrf_field": CSRF_FIELD, "csrf_token": form_token, "page_title": a["title"]}
    response = render_page(request, template, {**values, **context})
    response.headers["Cache-Control"] = "no-store"
    # the forms' POSTs must carry a real Origin ("no-referrer" sends "null"); same-origin
    # keeps the token in the address out of any other site's logs
    response.headers["Referrer-Policy"] = "same-origin"
    set_csrf_cookie(request, response, cookie)
    return response


def request_form(request: Request) -> Response:
    """GET /account: the address form."""
    return _page(request, "account.html", {"sent": False})


async def request_link(request: Request) -> Response:
    """POST /account: email the link if the address bought something; the same page always."""
    if rate_limited(request, "account"):
        return too_many_requests(request)
    raw = await request.form(max_files=0, max_fields=5)
    form = {k: str(v)[:320] for k, v in raw.items() if isinstance(v, str)}
    if not (origin_ok(request) and csrf_ok(request, form)):
        return error_page(request, 403, "forbidden_title", "err_csrf")
    await run_in_threadpool(_send_link, request, form.get("email") or "")
    return _page(request, "account.html", {"sent": True})


def _send_link(request: Request, email: str) -> None:
    state = state_of(request)
    messenger = state.messenger()
    try:
        with state.sessions.begin() as session:
            account.send_account_link(
                session, state.settings, messenger, email, now=state.clock(), env=state.email_env
            )
    except LaunchkitError:
        log.exception("account link not sent")
    finally:
        close = getattr(messenger, "close", None)
        if close is not None:
            close()


def _email_of(request: Request) -> str | Response:
    state = state_of(request)
    try:
        return account.read_account_token(
            state.settings, request.path_params["token"], now=state.clock()
        )
    except (TokenExpired, TokenInvalid):
        return error_page(request, 403, "forbidden_title", "err_csrf")


def member_page(request: Request) -> Response:
    """GET /account/{token}: purchases and memberships of the address the link was sent to."""
    email = _email_of(request)
    if isinstance(email, Response):
        return email
    state = state_of(request)
    a = _a(request)
    lang = state.settings.language
    with state.sessions.begin() as session:
        view = account.account_overview(session, email)
    for m in view["memberships"]:
        money = checkout.format_money(m["amount_cents"], m["currency"], lang)
        m["price"] = f"{money} / {a[m['interval']]}"
        until = m["period_end"] if m["status"] == "cancelling" else None
        m["until"] = until.strftime("%Y-%m-%d") if until else ""
    for p in view["purchases"]:
        p["paid"] = checkout.format_money(p["paid_cents"], p["currency"], lang)
    notice = a["cancelled"] if request.query_params.get("done") == "1" else ""
    context = {"view": view, "token": request.path_params["token"], "notice": notice}
    return _page(request, "account_member.html", context)


async def cancel(request: Request) -> Response:
    """POST /account/{token}/cancel: cancel one membership at period end, then back to the list."""
    raw = await request.form(max_files=0, max_fields=5)
    form = {k: str(v)[:320] for k, v in raw.items() if isinstance(v, str)}
    return await run_in_threadpool(_cancel, request, form)


def _cancel(request: Request, form: dict[str, str]) -> Response:
    email = _email_of(request)
    if isinstance(email, Response):
        return email
    if not (origin_ok(request) and csrf_ok(request, form)):
        log.warning("account cancel refused: origin %s, csrf %s", origin_ok(request),
                    csrf_ok(request, form))  # fmt: skip
        return error_page(request, 403, "forbidden_title", "err_csrf")
    state = state_of(request)
    ref = form.get("membership") or ""
    if not ref.isdigit():
        return error_page(request, 400, "error_title", "server")
    client = getattr(request.app.state, "stripe_client", None)
    try:
        with state.sessions.begin() as session:
            account.cancel_membership(
                session, client or checkout.make_client(state.settings), email, int(ref),
                now=state.clock(),
            )  # fmt: skip
    except LaunchkitError as e:
        log.warning("membership %s not cancelled: %s", ref, e)
        return error_page(request, 400, "error_title", "server")
    _confirm(request)
    token = request.path_params["token"]
    return RedirectResponse(f"/account/{token}?done=1", status_code=303)


def _confirm(request: Request) -> None:
    """The cancellation confirmation (and any other due email) goes out now."""
    state = state_of(request)
    messenger = state.messenger()
    try:
        with state.sessions.begin() as session:
            checkout.send_notifications(
                session, state.settings, messenger, now=state.clock(), env=state.email_env
            )
    except LaunchkitError:
        log.exception("cancellation confirmation not sent; will go with the next event")
    finally:
        close = getattr(messenger, "close", None)
        if close is not None:
            close()
