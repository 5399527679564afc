"""The ASGI web app (Starlette): opt-in pages, confirmations, downloads, unsubscribe, checkout.

``create_app(settings)`` builds the app; routes live in one module per domain
(``web/magnets.py``, ``web/checkout.py``). Pages are Jinja2 templates from the workspace's
``templates/`` folder, falling back to the starter copies (``default:`` prefix reaches the
starter copy of a page from an override). This module also holds what every route shares:
page rendering with French/English strings, CSRF tokens and the Origin check, the per-IP rate
limit, security headers (``no-store`` everywhere), request body limits enforced while the body
streams in (64 KB, 1 MB for the webhook, no uploads), addresses built on ``web.base_url``
(never the Host header) and the friendly error pages.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jinja2
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from launchkit.clock import utcnow
from launchkit.config import Settings, parse_rate_limit
from launchkit.db import make_engine, make_sessionmaker
from launchkit.errors import LaunchkitError
from launchkit.resources import starter_dir

CSRF_COOKIE = "lk_csrf"
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 24 * 3600

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "lang": "fr",
        "free": "Gratuit",
        "first_name": "Prénom",
        "first_name_placeholder": "Camille",
        "optional": "facultatif",
        "email": "Adresse email",
        "email_placeholder": "vous@exemple.fr",
        "submit": "Recevoir gratuitement",
        "privacy": "Pas de spam. Vos données restent chez nous et ne sont jamais revendues.",
        "err_email_required": "Indiquez votre adresse email.",
        "err_email_invalid": "Cette adresse email ne semble pas valide.",
        "err_email_too_long": "Cette adresse email est trop longue.",
        "err_first_name_too_long": "Le prénom doit faire 100 caractères au plus.",
        "err_first_name_invalid": "Le prénom contient des caractères non autorisés.",
        "err_consent_required": "Cochez la case pour recevoir la ressource.",
        "err_csrf": "Votre session a expiré. Vérifiez vos informations et envoyez à nouveau.",
        "err_form": "Corrigez les champs indiqués ci-dessous.",
        "sent_title": "Vérifiez votre boîte mail",
        "sent_lead": "Nous venons de vous envoyer un email de confirmation.",
        "sent_step1": "Ouvrez l'email de confirmation que nous venons de vous envoyer.",
        "sent_step1_subject": "Ouvrez l'email «\u00a0{subject}\u00a0» que nous venons de vous "
        "envoyer.",
        "sent_step2": "Cliquez sur le bouton de confirmation.",
        "sent_step3": "Recevez aussitôt votre lien de téléchargement\u00a0:",
        "sent_spam": "Rien reçu d'ici quelques minutes\u202f? Regardez dans les courriers "
        "indésirables ou l'onglet Promotions.",
        "confirmed_title": "C'est confirmé, merci\u00a0!",
        "confirmed_lead": "Votre ressource est prête. Nous vous avons aussi envoyé le lien "
        "par email.",
        "confirmed_again": "Votre inscription était déjà confirmée. Voici votre ressource.",
        "download": "Télécharger",
        "open_resource": "Ouvrir la ressource",
        "unsub_title": "Se désinscrire",
        "unsub_lead": "Vous ne recevrez plus nos emails à l'adresse {email}.",
        "unsub_reason": "Une raison\u202f? (facultatif)",
        "unsub_reason_too_many": "Je reçois trop d'emails",
        "unsub_reason_not_relevant": "Le contenu ne me concerne plus",
        "unsub_reason_never": "Je ne me suis jamais inscrit·e",
        "unsub_reason_other": "Autre",
        "unsub_button": "Confirmer la désinscription",
        "unsub_keep": "Vous pouvez simplement fermer cette page pour rester inscrit·e.",
        "unsubscribed_title": "Vous êtes désinscrit·e",
        "unsubscribed_lead": "C'est fait\u00a0: {email} ne recevra plus nos emails.",
        "unsubscribed_again": "Cette adresse était déjà désinscrite. Rien d'autre à faire.",
        "unsubscribed_note": "Un clic par erreur\u202f? Réinscrivez-vous depuis n'importe "
        "laquelle de nos pages.",
        "error_title": "Oups",
        "not_found_title": "Page introuvable",
        "not_found": "Cette page n'existe pas ou plus.",
        "invalid_title": "Lien non valide",
        "invalid": "Ce lien est incomplet ou a été modifié. Copiez-le en entier depuis l'email, "
        "ou utilisez le bouton de l'email.",
        "expired_title": "Lien expiré",
        "expired_confirm": "Ce lien de confirmation a expiré. Inscrivez-vous à nouveau\u00a0: "
        "cela ne prend que quelques secondes.",
        "expired_download": "Ce lien de téléchargement a expiré. Nous pouvons vous envoyer un "
        "nouveau lien à l'adresse de votre inscription.",
        "expired_unsubscribe": "Ce lien de désinscription a expiré. Utilisez le lien de notre "
        "email le plus récent, ou répondez à cet email.",
        "resend": "M'envoyer un nouveau lien",
        "resent_title": "Nouveau lien envoyé",
        "resent": "Un nouveau lien de téléchargement vient de partir vers votre boîte mail.",
        "signup_again": "Recommencer l'inscription",
        "rate_title": "Trop de tentatives",
        "rate": "Merci de patienter une minute avant de réessayer.",
        "server_title": "Un problème est survenu",
        "server": "Nous n'avons pas pu traiter votre demande. Réessayez dans un instant.",
        "mail_failed": "L'email n'a pas pu partir. Réessayez dans un instant.",
        "error_code": "Code d'erreur",
        "too_large": "Ce formulaire est trop volumineux. Raccourcissez votre message et réessayez.",
        "no_upload": "Ce site n'accepte pas l'envoi de fichiers.",
        "forbidden_title": "Demande refusée",
        "confirm_title": "Confirmez votre inscription",
        "confirm_lead": "Un clic pour confirmer et recevoir «\u00a0{title}\u00a0» à l'adresse "
        "{email}.",
        "confirm_button": "Je confirme mon inscription",
        "confirm_wait": "Confirmation en cours…",
        "confirm_ignore": "Vous n'avez rien demandé\u00a0? Fermez simplement cette "
        "page\u00a0: sans confirmation, nous ne vous écrirons pas.",
        "resend_cap_title": "Lien déjà renvoyé",
        "resend_cap": "Nous vous avons déjà envoyé {n} nouveaux liens aujourd'hui. Le plus récent "
        "est dans votre boîte mail\u00a0; vous pourrez en demander un autre demain.",
    },
    "en": {
        "lang": "en",
        "free": "Free",
        "first_name": "First name",
        "first_name_placeholder": "Alex",
        "optional": "optional",
        "email": "Email address",
        "email_placeholder": "you@example.com",
        "submit": "Send it to me",
        "privacy": "No spam. Your details stay with us and are never sold.",
        "err_email_required": "Please enter your email address.",
        "err_email_invalid": "This email address doesn't look right.",
        "err_email_too_long": "This email address is too long.",
        "err_first_name_too_long": "Your first name must be 100 characters at most.",
        "err_first_name_invalid": "Your first name contains characters we can't accept.",
        "err_consent_required": "Tick the box to receive the resource.",
        "err_csrf": "Your session expired. Check your details and send again.",
        "err_form": "Please fix the fields below.",
        "sent_title": "Check your inbox",
        "sent_lead": "We've just sent you a confirmation email.",
        "sent_step1": "Open the confirmation email we just sent you.",
        "sent_step1_subject": "Open the email “{subject}” we just sent you.",
        "sent_step2": "Click the confirmation button.",
        "sent_step3": "Get your download link right away:",
        "sent_spam": "Nothing after a few minutes? Look in your spam or Promotions folder.",
        "confirmed_title": "You're in, thank you!",
        "confirmed_lead": "Your resource is ready. We've also emailed you the link.",
        "confirmed_again": "You had already confirmed. Here is your resource.",
        "download": "Download",
        "open_resource": "Open the resource",
        "unsub_title": "Unsubscribe",
        "unsub_lead": "You will stop receiving our emails at {email}.",
        "unsub_reason": "Any reason? (optional)",
        "unsub_reason_too_many": "Too many emails",
        "unsub_reason_not_relevant": "The content isn't relevant to me anymore",
        "unsub_reason_never": "I never signed up",
        "unsub_reason_other": "Other",
        "unsub_button": "Confirm unsubscribe",
        "unsub_keep": "To stay subscribed, just close this page.",
        "unsubscribed_title": "You're unsubscribed",
        "unsubscribed_lead": "Done: {email} will not receive our emails anymore.",
        "unsubscribed_again": "This address was already unsubscribed. Nothing else to do.",
        "unsubscribed_note": "Clicked by mistake? Sign up again from any of our pages.",
        "error_title": "Oops",
        "not_found_title": "Page not found",
        "not_found": "This page doesn't exist, or not anymore.",
        "invalid_title": "Invalid link",
        "invalid": "This link is incomplete or was changed. Copy it whole from the email, "
        "or use the button in the email.",
        "expired_title": "Link expired",
        "expired_confirm": "This confirmation link has expired. Please sign up again: it only "
        "takes a few seconds.",
        "expired_download": "This download link has expired. We can email a fresh link to the "
        "address you signed up with.",
        "expired_unsubscribe": "This unsubscribe link has expired. Use the link in our latest "
        "email, or reply to it.",
        "resend": "Email me a new link",
        "resent_title": "New link sent",
        "resent": "A fresh download link is on its way to your inbox.",
        "signup_again": "Sign up again",
        "rate_title": "Too many attempts",
        "rate": "Please wait a minute before trying again.",
        "server_title": "Something went wrong",
        "server": "We couldn't process your request. Please try again in a moment.",
        "mail_failed": "The email could not be sent. Please try again in a moment.",
        "error_code": "Error code",
        "too_large": "This form is too large. Please shorten your message and try again.",
        "no_upload": "This site does not accept file uploads.",
        "forbidden_title": "Request refused",
        "confirm_title": "Confirm your signup",
        "confirm_lead": "One click to confirm and receive “{title}” at {email}.",
        "confirm_button": "Yes, confirm my signup",
        "confirm_wait": "Confirming…",
        "confirm_ignore": "Didn't ask for this? Just close this page: without a confirmation "
        "we won't email you.",
        "resend_cap_title": "Link already sent",
        "resend_cap": "We've already sent you {n} new links today. The latest one is in your "
        "inbox; you can ask for another one tomorrow.",
    },
}


# --- rate limit -----------------------------------------------------------------------------


class RateLimiter:
    """In-memory sliding window: at most ``limit`` hits per ``window`` seconds per key."""

    def __init__(self, limit: int, window: float, *, timer: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.timer = timer
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Record one hit; False when the key is over its limit (the hit is not counted)."""
        if self.limit <= 0:
            return True
        now = self.timer()
        with self._lock:
            if len(self._hits) > 10_000:
                self._prune(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True

    def _prune(self, now: float) -> None:
        stale = [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]
        for key in stale:
            del self._hits[key]


# --- state ----------------------------------------------------------------------------------


@dataclass
class WebState:
    """What every request handler needs; stored on ``app.state.lk``."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    messenger_factory: Callable[[Settings], Any] | None = None  # None: the settings' backend
    pages: jinja2.Environment = field(init=False)
    limiter: RateLimiter = field(init=False)
    _email_env: Any = field(default=None, init=False)
    _write_lock: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.pages = make_page_environment(self.settings)
        limit, window = parse_rate_limit(self.settings.web_rate_limit)
        self.limiter = RateLimiter(limit, window.total_seconds())
        if self.engine.dialect.name == "sqlite":
            self._write_lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction; on SQLite, writers of this process queue on a lock instead of
        sleeping in SQLite's busy handler (which backs off up to 100 ms at a time)."""
        if self._write_lock is None:
            with self.sessions.begin() as session:
                yield session
            return
        with self._write_lock, self.sessions.begin() as session:
            yield session

    def messenger(self, settings: Settings | None = None) -> Any:
        """A messenger for transactional email (``settings``: e.g. in another language)."""
        from launchkit import mailer

        factory = self.messenger_factory or mailer.messenger_from_settings
        return factory(settings or self.settings)

    @property
    def email_env(self) -> Any:
        """The email template environment (built on first use)."""
        if self._email_env is None:
            from launchkit import render

            self._email_env = render.make_environment(self.settings)
        return self._email_env


def state_of(request: Request) -> WebState:
    """The app's WebState."""
    state: WebState = request.app.state.lk
    return state


def make_page_environment(settings: Settings) -> jinja2.Environment:
    """Jinja2 pages: workspace templates first, then the starter copies (also as ``default:``)."""
    starter = str(starter_dir("templates"))
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader([str(settings.templates_dir), starter]),
            jinja2.PrefixLoader({"default": jinja2.FileSystemLoader(starter)}, delimiter=":"),
        ]
    )
    return jinja2.Environment(
        loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False
    )


# --- pages ----------------------------------------------------------------------------------


# French pages that say "tu" (workspace.address_form = "tu"): only the strings that differ
STRINGS_FR_TU: dict[str, str] = {
    "email_placeholder": "toi@exemple.fr",
    "privacy": "Pas de spam. Tes données restent chez nous et ne sont jamais revendues.",
    "err_email_required": "Indique ton adresse email.",
    "err_consent_required": "Coche la case pour recevoir la ressource.",
    "err_csrf": "Ta session a expiré. Vérifie tes informations et envoie à nouveau.",
    "err_form": "Corrige les champs indiqués ci-dessous.",
    "sent_title": "Vérifie ta boîte mail",
    "sent_lead": "Je viens de t'envoyer un email de confirmation.",
    "sent_step1": "Ouvre l'email de confirmation que je viens de t'envoyer.",
    "sent_step1_subject": "Ouvre l'email «\u00a0{subject}\u00a0» que je viens de t'envoyer.",
    "sent_step2": "Clique sur le bouton de confirmation.",
    "sent_step3": "Reçois aussitôt ton lien de téléchargement\u00a0:",
    "sent_spam": "Rien reçu d'ici quelques minutes\u202f? Regarde dans les courriers indésirables "
    "ou l'onglet Promotions.",
    "confirmed_lead": "Ta ressource est prête. Je t'ai aussi envoyé le lien par email.",
    "confirmed_again": "Ton inscription était déjà confirmée. Voici ta ressource.",
    "unsub_lead": "Tu ne recevras plus mes emails à l'adresse {email}.",
    "unsub_keep": "Tu peux simplement fermer cette page pour rester inscrit·e.",
    "unsubscribed_title": "Tu es désinscrit·e",
    "unsubscribed_lead": "C'est fait\u00a0: {email} ne recevra plus mes emails.",
    "unsubscribed_note": "Un clic par erreur\u202f? Réinscris-toi depuis n'importe laquelle de "
    "mes pages.",
    "invalid": "Ce lien est incomplet ou a été modifié. Copie-le en entier depuis l'email, "
    "ou utilise le bouton de l'email.",
    "expired_confirm": "Ce lien de confirmation a expiré. Inscris-toi à nouveau\u00a0: "
    "cela ne prend que quelques secondes.",
    "expired_download": "Ce lien de téléchargement a expiré. Je peux t'envoyer un "
    "nouveau lien à l'adresse de ton inscription.",
    "expired_unsubscribe": "Ce lien de désinscription a expiré. Utilise le lien de mon "
    "email le plus récent, ou réponds à cet email.",
    "resent": "Un nouveau lien de téléchargement vient de partir vers ta boîte mail.",
    "rate": "Merci de patienter une minute avant de réessayer.",
    "server": "Je n'ai pas pu traiter ta demande. Réessaie dans un instant.",
    "mail_failed": "L'email n'a pas pu partir. Réessaie dans un instant.",
    "too_large": "Ce formulaire est trop volumineux. Raccourcis ton message et réessaie.",
    "confirm_title": "Confirme ton inscription",
    "confirm_lead": "Un clic pour confirmer et recevoir «\u00a0{title}\u00a0» à l'adresse {email}.",
    "confirm_ignore": "Tu n'as rien demandé\u202f? Ferme simplement cette "
    "page\u00a0: sans confirmation, je ne t'écrirai pas.",
    "resend_cap": "Je t'ai déjà envoyé {n} nouveaux liens aujourd'hui. Le plus récent "
    "est dans ta boîte mail\u202f; tu pourras en demander un autre demain.",
}


def strings_for(language: str, address_form: str = "vous") -> dict[str, str]:
    """The page strings of a language (French when unknown), in the French address form."""
    strings = STRINGS.get(language, STRINGS["fr"])
    if strings["lang"] == "fr" and address_form == "tu":
        return {**strings, **STRINGS_FR_TU}
    return strings


def page_strings(request: Request, language: str | None = None) -> dict[str, str]:
    """``strings_for`` in the workspace's language (or ``language``) and address form."""
    settings = state_of(request).settings
    return strings_for(language or settings.language, settings.address_form)


def confirmation_subject(request: Request, language: str, magnet_title: str) -> str:
    """The subject of the opt-in confirmation email as subscribers receive it ("" if unknown)."""
    from launchkit import mailer, render

    state = state_of(request)
    settings = dataclasses.replace(state.settings, language=language)
    context = {
        "first_name": "", "last_name": "", "email": "", "magnet_title": magnet_title,
        "product": settings.name, "creator_name": settings.sender_name or settings.name,
    }  # fmt: skip
    try:
        source = mailer.transactional_source(settings, state.email_env, "confirm-optin")
        return render.render_subject(state.email_env, source, context, language)
    except LaunchkitError:
        return ""


def render_page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    language: str | None = None,
) -> HTMLResponse:
    """Render a page template with the shared context (strings ``t``, CSP nonce, sender)."""
    state = state_of(request)
    settings = state.settings
    values: dict[str, Any] = {
        "t": strings_for(language or settings.language, settings.address_form),
        "nonce": request.scope.get("state", {}).get("csp_nonce", ""),
        "site_name": settings.sender_name or settings.name,
        "postal_address": settings.postal_address,
        "page_title": "",
    }
    values.update(context or {})
    html = state.pages.get_template(template).render(values)
    return HTMLResponse(html, status_code=status)


def error_page(
    request: Request,
    status: int,
    title_key: str,
    message_key: str,
    *,
    language: str | None = None,
    action: Mapping[str, Any] | None = None,
) -> HTMLResponse:
    """A friendly error page with the right status; ``action`` is an optional link or form."""
    t = page_strings(request, language)
    context = {
        "status": status,
        "title": t[title_key],
        "message": t[message_key],
        "action": action,
        "page_title": t[title_key],
    }
    return render_page(request, "error.html", context, status=status, language=language)


def client_ip(request: Request) -> str | None:
    """The client IP as seen by the server (uvicorn applies trusted proxy headers)."""
    return request.client.host if request.client else None


def rate_limited(request: Request, bucket: str = "post") -> bool:
    """Count one hit for the client IP; True when it is over the limit."""
    return not state_of(request).limiter.hit(f"{bucket}:{client_ip(request)}")


def too_many_requests(request: Request, language: str | None = None) -> HTMLResponse:
    """The 429 page, with Retry-After."""
    response = error_page(request, 429, "rate_title", "rate", language=language)
    response.headers["Retry-After"] = str(int(state_of(request).limiter.window))
    return response


# --- CSRF: signed double-submit cookie ------------------------------------------------------


def _csrf_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(list(reversed(settings.secret_keys)), salt="launchkit.csrf")


def csrf_token(request: Request) -> tuple[str, str | None]:
    """(form token, cookie value to set or None): the form token is the signed cookie value."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    fresh = None
    if not (20 <= len(cookie) <= 100 and cookie.replace("-", "").replace("_", "").isalnum()):
        cookie = fresh = secrets.token_urlsafe(32)
    return _csrf_serializer(state_of(request).settings).dumps(cookie), fresh


def set_csrf_cookie(request: Request, response: Response, value: str | None) -> None:
    """Set the CSRF cookie when ``csrf_token`` made a new one."""
    if value is None:
        return
    secure = state_of(request).settings.base_url.startswith("https://")
    response.set_cookie(
        CSRF_COOKIE, value, max_age=CSRF_MAX_AGE, httponly=True, samesite="lax", secure=secure
    )


def csrf_ok(request: Request, form: Mapping[str, Any]) -> bool:
    """True when the posted token is a fresh signature of this browser's CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE)
    token = form.get(CSRF_FIELD)
    if not cookie or not isinstance(token, str) or len(token) > 300:
        return False
    try:
        signed = _csrf_serializer(state_of(request).settings).loads(token, max_age=CSRF_MAX_AGE)
    except BadSignature:
        return False
    return isinstance(signed, str) and secrets.compare_digest(signed, cookie)


# --- security headers -----------------------------------------------------------------------


class SecurityHeaders:
    """ASGI middleware: a nonce-based CSP with no external source, and the usual headers.

    Every response is ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` unless
    the route set its own (pages carry tokens and CSRF values: no cache may keep them). A 413
    or 415 closes the connection, so the server stops reading the rest of the refused body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        csp = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "img-src 'self' data:; form-action 'self' https://checkout.stripe.com; "
            "base-uri 'none'; frame-ancestors 'none'"
        )
        extra = [
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        defaults = [(b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer")]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *extra]
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in defaults if name not in present]
                if message["status"] in (413, 415) and b"connection" not in present:
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- request bodies -------------------------------------------------------------------------

FORM_BODY_LIMIT = 64 * 1024  # every route but the webhook (its route sets 1 MB)
MULTIPART_PREFIXES = ("/u/",)  # RFC 8058 one-click senders may post multipart/form-data


class RefuseUploads:
    """ASGI middleware: a multipart body is refused (415) before it is read, except on the
    unsubscribe route where RFC 8058 allows it (still bounded, and no file part accepted)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(MULTIPART_PREFIXES):
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            if content_type.lower().lstrip().startswith(b"multipart/"):
                response = error_page(Request(scope), 415, "error_title", "no_upload")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- the public address ---------------------------------------------------------------------


def public_url(request: Request, path: str, query: str = "") -> str:
    """``web.base_url`` + path (+ query): never the request's Host header."""
    base = state_of(request).settings.base_url.rstrip("/")
    return f"{base}{path}" + (f"?{query}" if query else "")


def origin_ok(request: Request) -> bool:
    """False when the request names an Origin other than ``web.base_url``'s (``null``
    included: a sandboxed or no-referrer page). No Origin at all (older browsers, scripts)
    is left to the CSRF token."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    base = urlsplit(state_of(request).settings.base_url)
    return origin.rstrip("/").lower() == f"{base.scheme}://{base.netloc}".lower()


# --- errors and app -------------------------------------------------------------------------


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and other HTTP errors get the friendly page."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _slash_redirect(request) or error_page(request, 404, "not_found_title", "not_found")
    if status == 405:
        return error_page(request, 405, "error_title", "not_found")
    if status == 413:
        return error_page(request, 413, "error_title", "too_large")
    return error_page(request, status, "error_title", "server")


def _slash_redirect(request: Request) -> Response | None:
    """``/m/x/`` -> ``/m/x`` (and back) on ``web.base_url``: Starlette's own redirect would
    build the address from the Host header."""
    path = request.url.path
    if path == "/":
        return None
    other = path.rstrip("/") if path.endswith("/") else f"{path}/"
    scope = {**request.scope, "path": other}
    for route in request.app.router.routes:
        if route.matches(scope)[0] is not Match.NONE:
            return RedirectResponse(public_url(request, other, request.url.query), 307)
    return None


async def server_error(request: Request, exc: Exception) -> Response:
    """Unhandled exceptions: a friendly 500 (the traceback goes to the server log)."""
    return error_page(request, 500, "server_title", "server")


async def healthz(request: Request) -> JSONResponse:
    """Liveness and database check."""
    state: WebState = request.app.state.lk
    with state.engine.connect() as conn:
        conn.exec_driver_sql("select 1")
    return JSONResponse({"status": "ok"})


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    messenger_factory: Callable[[Settings], Any] | None = None,
) -> Starlette:
    """Build the web app for a workspace (``messenger_factory``: how transactional email
    goes out; default the settings' backend)."""
    # route modules import helpers from this module: import them here, not at the top
    from launchkit.web.account import account_routes
    from launchkit.web.checkout import checkout_routes
    from launchkit.web.clicks import click_routes
    from launchkit.web.magnets import magnet_routes
    from launchkit.web.members import member_routes
    from launchkit.web.testlinks import test_routes

    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine, immediate=True)
    state = WebState(settings, engine, sessions, clock, messenger_factory)
    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    routes += magnet_routes()
    routes += checkout_routes()
    routes += member_routes()
    routes += account_routes()
    routes += test_routes()
    routes += click_routes()
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(RequestBodyLimitMiddleware, max_body_size=FORM_BODY_LIMIT),
            Middleware(RefuseUploads),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.router.redirect_slashes = False  # see _slash_redirect
    app.state.lk = state
    return app
