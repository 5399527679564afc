"""Members' pages and waitlists.

- ``/members/{token}``: what the holder of a magic link owns now, each with a signed link;
  ``/members/p/{token}`` serves a file (attachment) or redirects to the URL or invite, and
  refuses once access is revoked, whatever the link's age.
- ``/w/{launch}``: a launch's waitlist, the lead magnet double opt-in (signup, confirmation
  email, confirmation by POST) tagging ``waitlist:LAUNCH``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from launchkit import access, magnets, tokens, waitlists
from launchkit.errors import NotFound
from launchkit.tokens import Purpose, TokenExpired, TokenInvalid
from launchkit.web import (
    client_ip,
    error_page,
    render_page,
    state_of,
    strings_for,
)
from launchkit.web import magnets as magnet_web

STRINGS = {
    "en": {
        "members_title": "Your members' area",
        "members_lead": "Everything you have access to with {email}.",
        "members_empty": "Nothing here right now. If you just paid, give it a minute; "
        "if you were refunded, access ends with the refund.",
        "open": "Open",
        "download": "Download",
        "join": "Join",
        "links_expire": "These links are personal and expire; this page makes fresh ones.",
        "waitlist_badge": "Waitlist",
        "waitlist_lead": "Be the first to know when {product} opens, with the early price.",
        "waitlist_submit": "Join the waitlist",
        "joined_title": "You're on the waitlist",
        "joined_lead": "Thank you! You'll hear from us as soon as {product} opens.",
    },
    "fr": {
        "members_title": "Votre espace membre",
        "members_lead": "Tout ce à quoi vous avez accès avec {email}.",
        "members_empty": "Rien pour l'instant. Si vous venez de payer, patientez une minute ; "
        "après un remboursement, l'accès prend fin.",
        "open": "Ouvrir",
        "download": "Télécharger",
        "join": "Rejoindre",
        "links_expire": "Ces liens sont personnels et expirent ; cette page en crée de nouveaux.",
        "waitlist_badge": "Liste d'attente",
        "waitlist_lead": "Soyez prévenu·e en premier de l'ouverture de {product}, "
        "au prix de lancement.",
        "waitlist_submit": "Rejoindre la liste d'attente",
        "joined_title": "Vous êtes sur la liste d'attente",
        "joined_lead": "Merci ! Vous serez prévenu·e dès l'ouverture de {product}.",
    },
}


def member_routes() -> list[BaseRoute]:
    """The routes of this module."""
    return [
        Route("/members/p/{token}", open_product, methods=["GET"]),
        Route("/members/{token}", members_page, methods=["GET"]),
        Route("/w/{launch}", waitlist_page, methods=["GET"]),
        Route("/w/{launch}", waitlist_post, methods=["POST"]),
        Route("/w/{launch}/confirm/{token}", waitlist_confirm_page, methods=["GET"]),
        Route("/w/{launch}/confirm/{token}", waitlist_confirm, methods=["POST"]),
    ]


def _strings(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["fr"])


def _read(request: Request, purpose: Purpose) -> dict[str, Any] | Response:
    state = state_of(request)
    try:
        return tokens.read_token(
            state.settings, purpose, request.path_params["token"], now_ts=state.clock().timestamp()
        )
    except TokenExpired:
        return error_page(request, 410, "expired_title", "expired_download")
    except TokenInvalid:
        return error_page(request, 400, "invalid_title", "invalid")


# --- /members ---------------------------------------------------------------------------------


def members_page(request: Request) -> Response:
    """GET /members/{token}: the products the link's holder owns now, with fresh links."""
    payload = _read(request, Purpose.MEMBERS)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    email = str(payload.get("e", ""))
    lang = str(payload.get("l") or state.settings.language)
    lang = lang if lang in STRINGS else state.settings.language
    m = _strings(lang)
    with state.sessions() as session:  # read only
        owned = access.owned_products(session, email)
        items = [
            {
                "title": o.product.title,
                "kind": o.product.kind,
                "url": access.product_url(state.settings, email, o.product.id),
            }
            for o in owned
        ]
    context = {
        "m": m,
        "items": items,
        "lead": m["members_lead"].replace("{email}", email),
        "page_title": m["members_title"],
    }
    response = render_page(request, "members.html", context, language=lang)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def open_product(request: Request) -> Response:
    """GET /members/p/{token}: serve the file or redirect, while access lasts."""
    payload = _read(request, Purpose.ACCESS)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    try:
        with state.sessions() as session:
            opened = access.open_product(session, state.settings, payload)
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    if opened.path is not None:
        return FileResponse(
            opened.path, filename=opened.path.name, content_disposition_type="attachment"
        )
    return RedirectResponse(str(opened.url), status_code=303)


# --- /w/LAUNCH --------------------------------------------------------------------------------


def _waitlist(request: Request, session: Any) -> waitlists.Waitlist | Response:
    try:
        return waitlists.get_waitlist(session, request.path_params["launch"])
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")


def waitlist_form(request: Request, session: Any) -> magnet_web.OptinForm | Response:
    """The opt-in form of ``/w/{launch}``: the waitlist's own magnet, the launch's words."""
    found = _waitlist(request, session)
    if isinstance(found, Response):
        return found
    state = state_of(request)
    m = _strings(magnets.page_language(state.settings, found.magnet))
    product, slug = found.launch.product, found.launch.slug
    words = {
        "m": m,
        "product": product,
        "lead": m["waitlist_lead"].replace("{product}", product),
        "page_title": product,
    }
    return magnet_web.OptinForm(
        found.magnet, f"/w/{slug}", "waitlist.html", words, "confirm-waitlist",
        {"product": product}, confirm_prefix=f"/w/{slug}/confirm/",
    )  # fmt: skip


def waitlist_page(request: Request) -> Response:
    """GET /w/{launch}: the waitlist opt-in page (counts a page view)."""
    return magnet_web.show_optin(request, waitlist_form)


async def waitlist_post(request: Request) -> Response:
    """POST /w/{launch}: record a pending signup and email the confirmation link."""
    return await magnet_web.submit_optin(request, waitlist_form)


def waitlist_confirm_page(request: Request) -> Response:
    """GET /w/{launch}/confirm/{token}: a page whose form confirms by POST (scanners change
    nothing)."""
    payload = _read(request, Purpose.CONFIRM)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    with state.sessions() as session:
        found = _waitlist(request, session)
        if isinstance(found, Response):
            return found
        lang = magnets.page_language(state.settings, found.magnet)
        t = strings_for(lang)
        lead = t["confirm_lead"].replace("{title}", found.magnet.title)
        context = {
            "action": request.url.path,
            "lead": lead.replace("{email}", ""),
            "page_title": t["confirm_title"],
        }
        return render_page(request, "confirm.html", context, language=lang)


def waitlist_confirm(request: Request) -> Response:
    """POST /w/{launch}/confirm/{token}: activate and tag ``waitlist:LAUNCH``; idempotent."""
    payload = _read(request, Purpose.CONFIRM)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    try:
        with state.transaction() as session:
            found = _waitlist(request, session)
            if isinstance(found, Response):
                return found
            if payload.get("m") != found.magnet.id:
                raise NotFound("This link is for another list.")
            magnets.confirm_signup(
                session, state.settings, payload, ip=client_ip(request), now=state.clock()
            )
            product = found.launch.product
            lang = magnets.page_language(state.settings, found.magnet)
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    m = _strings(lang)
    context = {
        "m": m,
        "lead": m["joined_lead"].replace("{product}", product),
        "page_title": m["joined_title"],
    }
    return render_page(request, "waitlist_joined.html", context, language=lang)
