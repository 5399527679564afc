"""Web routes of lead magnets: opt-in page, confirmation, download, unsubscribe.

Database work and SMTP run in the thread pool (sync handlers); only form parsing is async.
Emails are sent after the transaction commits, so a mail never refers to rolled-back rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from launchkit import magnets, tokens
from launchkit.errors import LaunchkitError, NotFound
from launchkit.models import Magnet, Subscriber, SubscriberStatus
from launchkit.tokens import Purpose, TokenExpired, TokenInvalid
from launchkit.web import (
    CSRF_FIELD,
    WebState,
    client_ip,
    confirmation_subject,
    csrf_ok,
    csrf_token,
    error_page,
    page_strings,
    public_url,
    rate_limited,
    render_page,
    set_csrf_cookie,
    state_of,
    too_many_requests,
)

log = logging.getLogger("launchkit.web")

RESENDS_PER_DAY = 3  # fresh download links emailed to one subscriber in 24 hours
FORM_FIELDS = ("email", "first_name", "consent", "website", CSRF_FIELD, "reason", "other")
UNSUB_REASONS = ("too_many", "not_relevant", "never", "other")


def magnet_routes() -> list[BaseRoute]:
    """The routes of this module."""
    return [
        Route("/m/{slug}", optin_page, methods=["GET"]),
        Route("/m/{slug}", optin_post, methods=["POST"]),
        Route("/m/{slug}/sent", optin_sent, methods=["GET"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
        Route("/d/{token}", download, methods=["GET"]),
        Route("/d/{token}/resend", download_resend, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe_post, methods=["POST"]),
    ]


# --- helpers --------------------------------------------------------------------------------


def _now_ts(state: WebState) -> float:
    return state.clock().timestamp()


def _read_link(request: Request, purpose: Purpose) -> dict[str, Any] | Response:
    """The payload of the link's ``{token}``, or the page saying it is tampered with or expired."""
    state, token = state_of(request), request.path_params["token"]
    try:
        return tokens.read_token(state.settings, purpose, token, now_ts=_now_ts(state))
    except (TokenExpired, TokenInvalid) as e:
        return _token_error(request, purpose, token, e)


def _expired_payload(state: WebState, purpose: Purpose, token: str) -> dict[str, Any] | None:
    """The payload of a genuine but expired token (signature checked, age ignored)."""
    try:
        return tokens.read_token(state.settings, purpose, token, now_ts=0.0)
    except LaunchkitError:
        return None


async def _read_form(request: Request) -> dict[str, str]:
    """The posted fields we know, each capped (the body limit is the app's middleware's)."""
    form = await request.form(max_files=0, max_fields=20)
    values = {}
    for name in FORM_FIELDS:
        value = form.get(name)
        values[name] = value[: magnets.MAX_FIELD] if isinstance(value, str) else ""
    values["one_click"] = str(form.get("List-Unsubscribe") or "")
    return values


def _send(
    state: WebState,
    template: str,
    subscriber: Subscriber,
    context: Mapping[str, Any],
    *,
    key: str,
    language: str,
) -> str:
    """Send one transactional email now (after the commit); raises DeliveryError."""
    from launchkit import mailer

    settings = dataclasses.replace(state.settings, language=language)
    base = {
        "first_name": subscriber.first_name or "",
        "last_name": subscriber.last_name or "",
        "email": subscriber.email,
        "product": settings.name,
        "creator_name": settings.sender_name or settings.name,
    }
    messenger = state.messenger(settings)
    try:
        message_id = mailer.send_transactional(
            settings, messenger, state.email_env, template,
            to_email=subscriber.email, to_name=subscriber.first_name or "",
            context={**base, **context}, subscriber_id=subscriber.id, key=key,
            now=state.clock(), unsubscribe_url=tokens.unsubscribe_url(settings, subscriber.id),
        )  # fmt: skip
        messenger.flush()
        return message_id
    finally:
        messenger.close()


def _magnet_or_404(request: Request, session: Any, slug: str) -> Magnet | Response:
    try:
        magnet = magnets.get_magnet(session, slug)
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    if magnet.archived_at is not None:  # archived: no new signups
        return error_page(request, 404, "not_found_title", "not_found")
    return magnet


# --- opt-in (lead magnets, and launch waitlists through the same handlers) -----------------


@dataclass(frozen=True)
class OptinForm:
    """One double opt-in form: the list it fills (a magnet; a waitlist has its own) and what
    differs between a lead magnet and a waitlist -- the page, its words, the confirmation email.

    ``page`` is the template (it includes ``_optin_form.html``), ``words`` its own context;
    ``email`` is the confirmation template and ``email_words`` its variables; the link in it
    goes to ``confirm_prefix`` + token (``/confirm/`` or ``/w/LAUNCH/confirm/``)."""

    magnet: Magnet
    action: str
    page: str
    words: dict[str, Any]
    email: str
    email_words: dict[str, Any]
    confirm_prefix: str = "/confirm/"


FindForm = Callable[[Request, Any], "OptinForm | Response"]


def magnet_form(request: Request, session: Any) -> OptinForm | Response:
    """The opt-in form of ``/m/{slug}`` (404 for an unknown or archived magnet)."""
    magnet = _magnet_or_404(request, session, request.path_params["slug"])
    if isinstance(magnet, Response):
        return magnet
    return OptinForm(
        magnet, f"/m/{magnet.slug}", "optin.html",
        {"magnet": magnet, "page_title": magnet.title, **_describe(magnet.description)},
        "confirm-optin", {"magnet_title": magnet.title},
    )  # fmt: skip


def optin_response(
    request: Request,
    form: OptinForm,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    top_error: str | None = None,
    status: int = 200,
) -> Response:
    """The page of ``form``, blank or with what was typed and what is wrong with it."""
    state = state_of(request)
    lang = magnets.page_language(state.settings, form.magnet)
    t = page_strings(request, lang)
    token, cookie = csrf_token(request)
    messages = {field: t[f"err_{field}_{code}"] for field, code in (errors or {}).items()}
    context = {
        "values": values or {},
        "errors": messages,
        "top_error": t[top_error] if top_error else ("" if not errors else t["err_form"]),
        "csrf_field": CSRF_FIELD,
        "csrf_token": token,
        "wording": magnets.consent_wording(state.settings, form.magnet).text,
        "action": form.action,
        **form.words,
    }
    response = render_page(request, form.page, context, status=status, language=lang)
    set_csrf_cookie(request, response, cookie)
    return response


def _describe(description: str) -> dict[str, list[str]]:
    """Split a magnet description into paragraphs and ``- bullet`` lines."""
    lines = [line.strip() for line in description.splitlines() if line.strip()]
    bullets = [line[2:].strip() for line in lines if line[:2] in ("- ", "* ")]
    paragraphs = [line for line in lines if line[:2] not in ("- ", "* ")]
    return {"paragraphs": paragraphs, "bullets": bullets}


def show_optin(request: Request, find: FindForm) -> Response:
    """GET: the opt-in page of the form ``find`` gives (counts a page view)."""
    state = state_of(request)
    with state.transaction() as session:
        form = find(request, session)
        if isinstance(form, Response):
            return form
        magnets.record_event(
            session, magnets.EVENT_VIEW, now=state.clock(), magnet_id=form.magnet.id,
            ip=client_ip(request),
        )  # fmt: skip
        return optin_response(request, form)


async def submit_optin(request: Request, find: FindForm) -> Response:
    """POST: validate, record a pending signup, email the confirmation link."""
    if rate_limited(request):
        return too_many_requests(request)
    posted = await _read_form(request)
    return await run_in_threadpool(_submit_optin, request, posted, find)


def _submit_optin(request: Request, posted: dict[str, str], find: FindForm) -> Response:
    state = state_of(request)
    typed = {k: posted[k] for k in ("email", "first_name", "consent")}
    with state.transaction() as session:
        form = find(request, session)
        if isinstance(form, Response):
            return form
        sent_page = f"/m/{form.magnet.slug}/sent"
        if not csrf_ok(request, posted):
            return optin_response(request, form, values=typed, top_error="err_csrf", status=400)
        if magnets.is_bot(posted):
            return RedirectResponse(sent_page, status_code=303)
        data, errors = magnets.validate_signup(posted)
        if data is None:
            return optin_response(request, form, values=typed, errors=errors, status=400)
        page = public_url(request, request.url.path, request.url.query)
        visitor = magnets.Visitor(client_ip(request), request.headers.get("user-agent"), page)
        result = magnets.signup(
            session, state.settings, form.magnet, data, visitor, now=state.clock()
        )
        subscriber, consent = result.subscriber, result.consent
        lang = magnets.page_language(state.settings, form.magnet)
    confirm_url = result.confirm_url.replace("/confirm/", form.confirm_prefix, 1)
    try:
        _send(
            state, form.email, subscriber, {**form.email_words, "confirm_url": confirm_url},
            key=f"optin-confirm:{consent.id}", language=lang,
        )  # fmt: skip
    except LaunchkitError:
        log.exception("%s email to subscriber %s failed", form.email, subscriber.id)
        return error_page(request, 503, "server_title", "mail_failed")
    return RedirectResponse(sent_page, status_code=303)


def optin_page(request: Request) -> Response:
    """GET /m/{slug}: the opt-in page (counts a page view)."""
    return show_optin(request, magnet_form)


async def optin_post(request: Request) -> Response:
    """POST /m/{slug}: validate, record a pending signup, email the confirmation link."""
    return await submit_optin(request, magnet_form)


def optin_sent(request: Request) -> Response:
    """GET /m/{slug}/sent: the "check your inbox" page."""
    state = state_of(request)
    with state.transaction() as session:
        magnet = _magnet_or_404(request, session, request.path_params["slug"])
        if isinstance(magnet, Response):
            return magnet
        lang = magnets.page_language(state.settings, magnet)
        t = dict(page_strings(request, lang))
        subject = confirmation_subject(request, lang, magnet.title)
        if subject:  # name the email as it arrives in the inbox
            t["sent_step1"] = t["sent_step1_subject"].replace("{subject}", subject)
        context = {"magnet": magnet, "page_title": t["sent_title"], "t": t}
        return render_page(request, "optin_sent.html", context, language=lang)


# --- confirm and download -------------------------------------------------------------------


def _token_error(request: Request, purpose: Purpose, token: str, exc: Exception) -> Response:
    """400 for a tampered link, 410 for an expired one (with a way forward)."""
    state = state_of(request)
    if isinstance(exc, TokenInvalid):
        return error_page(request, 400, "invalid_title", "invalid")
    payload = _expired_payload(state, purpose, token) or {}
    if purpose == Purpose.CONFIRM:
        action = _signup_again_action(state, payload)
        return error_page(request, 410, "expired_title", "expired_confirm", action=action)
    if purpose == Purpose.DOWNLOAD:
        form_token, cookie = csrf_token(request)
        action = {"form": f"/d/{token}/resend", "label_key": "resend", "csrf": form_token}
        response = error_page(request, 410, "expired_title", "expired_download", action=action)
        set_csrf_cookie(request, response, cookie)
        return response
    return error_page(request, 410, "expired_title", "expired_unsubscribe")


def _signup_again_action(state: WebState, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    with state.transaction() as session:
        magnet = session.get(Magnet, magnets._int(payload.get("m")))
        if magnet is None:
            return None
        return {"href": f"/m/{magnet.slug}", "label_key": "signup_again"}


def confirm_page(request: Request) -> Response:
    """GET (and HEAD) /confirm/{token}: a page whose form confirms by POST, submitted by its
    script where scripts run. Link scanners that fetch the URL change nothing."""
    payload = _read_link(request, Purpose.CONFIRM)
    if isinstance(payload, Response):
        return payload
    state, token = state_of(request), request.path_params["token"]
    with state.sessions() as session:  # read only
        subscriber = session.get(Subscriber, magnets._int(payload.get("s")))
        magnet = session.get(Magnet, magnets._int(payload.get("m")))
        if subscriber is None or magnet is None:
            return error_page(request, 404, "not_found_title", "not_found")
        lang = magnets.page_language(state.settings, magnet)
        t = page_strings(request, lang)
        lead = t["confirm_lead"].replace("{title}", magnet.title)
        context = {
            "action": f"/confirm/{token}",
            "lead": lead.replace("{email}", subscriber.email),
            "page_title": t["confirm_title"],
        }
        return render_page(request, "confirm.html", context, language=lang)


def confirm(request: Request) -> Response:
    """POST /confirm/{token}: activate, tag, send the delivery email once, show the download."""
    payload = _read_link(request, Purpose.CONFIRM)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    try:
        with state.transaction() as session:
            result = magnets.confirm_signup(
                session, state.settings, payload, ip=client_ip(request), now=state.clock()
            )
            magnet, subscriber = result.magnet, result.subscriber
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    if result.first_time:
        _send_delivery(state, magnet, subscriber, result.download_url)
    lang = magnets.page_language(state.settings, magnet)
    t = page_strings(request, lang)
    context = {
        "magnet": magnet,
        "download_url": result.download_url,
        "lead": t["confirmed_lead"] if result.first_time else t["confirmed_again"],
        "page_title": t["confirmed_title"],
    }
    return render_page(request, "confirmed.html", context, language=lang)


def _send_delivery(state: WebState, magnet: Magnet, subscriber: Subscriber, url: str) -> None:
    # the thank-you page already shows the download button: a failed email is logged, not fatal
    try:
        _send(
            state, "magnet-delivery", subscriber,
            {"magnet_title": magnet.title, "download_url": url},
            key=f"magnet-delivery:{subscriber.id}:{magnet.id}:{int(state.clock().timestamp())}",
            language=magnets.page_language(state.settings, magnet),
        )  # fmt: skip
    except LaunchkitError:
        log.exception("delivery email to subscriber %s failed", subscriber.id)


def download(request: Request) -> Response:
    """GET /d/{token}: serve the file (attachment) or redirect to the magnet URL; counted."""
    payload = _read_link(request, Purpose.DOWNLOAD)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    try:
        with state.transaction() as session:
            found = magnets.resolve_download(
                session, state.settings, payload, ip=client_ip(request), now=state.clock(),
                count=request.method == "GET",
            )  # fmt: skip
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    if found.path is not None:
        return FileResponse(
            found.path, filename=found.path.name, content_disposition_type="attachment"
        )
    return RedirectResponse(str(found.url), status_code=303)


async def download_resend(request: Request) -> Response:
    """POST /d/{token}/resend: email a fresh download link for a genuine expired link."""
    if rate_limited(request):
        return too_many_requests(request)
    form = await _read_form(request)
    return await run_in_threadpool(_download_resend, request, form)


def _download_resend(request: Request, form: dict[str, str]) -> Response:
    state = state_of(request)
    payload = _expired_payload(state, Purpose.DOWNLOAD, request.path_params["token"])
    if payload is None or not csrf_ok(request, form):
        return error_page(request, 400, "invalid_title", "invalid")
    with state.transaction() as session:
        subscriber = session.get(Subscriber, magnets._int(payload.get("s")))
        magnet = session.get(Magnet, magnets._int(payload.get("m")))
        if subscriber is None or magnet is None:
            return error_page(request, 404, "not_found_title", "not_found")
        lang = magnets.page_language(state.settings, magnet)
        retry_after = magnets.record_resend(
            session, subscriber.id, magnet.id, limit=RESENDS_PER_DAY, ip=client_ip(request),
            now=state.clock(),
        )  # fmt: skip
    if retry_after is not None:
        return _resend_capped(request, lang, retry_after)
    url = magnets.download_url(state.settings, subscriber.id, magnet.id)
    _send_delivery(state, magnet, subscriber, url)
    return error_page(request, 200, "resent_title", "resent", language=lang)


def _resend_capped(request: Request, lang: str, retry_after: timedelta) -> Response:
    """429: this subscriber had its fresh links for the day (the page says when to retry)."""
    t = page_strings(request, lang)
    context = {
        "status": 429,
        "title": t["resend_cap_title"],
        "message": t["resend_cap"].replace("{n}", str(RESENDS_PER_DAY)),
        "action": None,
        "page_title": t["resend_cap_title"],
    }
    response = render_page(request, "error.html", context, status=429, language=lang)
    response.headers["Retry-After"] = str(max(1, int(retry_after.total_seconds())))
    return response


# --- unsubscribe ----------------------------------------------------------------------------


def unsubscribe_page(request: Request) -> Response:
    """GET /u/{token}: a page with a confirm button. A GET never unsubscribes."""
    payload = _read_link(request, Purpose.UNSUBSCRIBE)
    if isinstance(payload, Response):
        return payload
    state, token = state_of(request), request.path_params["token"]
    with state.transaction() as session:
        subscriber = session.get(Subscriber, magnets._int(payload.get("s")))
        if subscriber is None:
            return error_page(request, 404, "not_found_title", "not_found")
        email, status = subscriber.email, subscriber.status
        lang = subscriber.language or state.settings.language
    if status == SubscriberStatus.UNSUBSCRIBED:
        return _unsubscribed(request, email, lang, changed=False)
    form_token, cookie = csrf_token(request)
    t = page_strings(request, lang)
    context = {
        "email": email,
        "action": f"/u/{token}",
        "csrf_field": CSRF_FIELD,
        "csrf_token": form_token,
        "reasons": [(r, t[f"unsub_reason_{r}"]) for r in UNSUB_REASONS],
        "page_title": t["unsub_title"],
    }
    response = render_page(request, "unsubscribe.html", context, language=lang)
    set_csrf_cookie(request, response, cookie)
    return response


async def unsubscribe_post(request: Request) -> Response:
    """POST /u/{token}: RFC 8058 one-click (no cookie, no CSRF) or the page's own form."""
    form = await _read_form(request)
    one_click = form["one_click"] == "One-Click"
    if not one_click and rate_limited(request):
        return too_many_requests(request)
    return await run_in_threadpool(_unsubscribe_post, request, form, one_click)


def _unsubscribe_post(request: Request, form: dict[str, str], one_click: bool) -> Response:
    payload = _read_link(request, Purpose.UNSUBSCRIBE)
    if isinstance(payload, Response):
        return payload
    state = state_of(request)
    if not one_click and not csrf_ok(request, form):
        return error_page(request, 400, "invalid_title", "err_csrf")
    reason = None
    if not one_click:
        reason = form["reason"] if form["reason"] in UNSUB_REASONS else None
        if form["other"].strip():
            reason = f"{reason or 'other'}: {form['other'].strip()}"
    try:
        with state.transaction() as session:
            subscriber, changed = magnets.unsubscribe_subscriber(
                session, payload, method="one-click" if one_click else "page", reason=reason,
                ip=client_ip(request), now=state.clock(),
            )  # fmt: skip
            email, lang = subscriber.email, subscriber.language or state.settings.language
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    return _unsubscribed(request, email, lang, changed=changed)


def _unsubscribed(request: Request, email: str, lang: str, *, changed: bool) -> Response:
    t = page_strings(request, lang)
    context = {
        "email": email,
        "lead": t["unsubscribed_lead" if changed else "unsubscribed_again"],
        "page_title": t["unsubscribed_title"],
    }
    return render_page(request, "unsubscribed.html", context, language=lang)
