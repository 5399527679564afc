"""Web routes of the checkout: the sales page, the jump to Stripe Checkout, the Stripe webhook.

``GET /buy/{offer}`` shows the offer, its plans and the deadline with a countdown;
``POST /buy/{offer}`` creates a Checkout Session and redirects (303) to Stripe; before the cart
opens and after it closes (plus ``checkout_grace``) the page says so and no session is created.
``POST /stripe/webhook`` verifies the signature, then applies the event once, in one
transaction; Stripe cancellations and emails happen after the commit.

Tests and the demo can give the app a ready Stripe client: ``app.state.stripe_client``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from babel.numbers import format_percent
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from launchkit import checkout, evergreen, memberships, salespage, tokens
from launchkit.db import make_sessionmaker
from launchkit.errors import LaunchkitError, NotFound
from launchkit.models import Launch, Offer, Subscriber, WebEvent
from launchkit.render import french
from launchkit.selling.tiers import PriceNow, price_now
from launchkit.tokens import Purpose
from launchkit.web import (
    CSRF_FIELD,
    client_ip,
    csrf_ok,
    csrf_token,
    error_page,
    origin_ok,
    rate_limited,
    render_page,
    set_csrf_cookie,
    state_of,
)
from launchkit.web import too_many_requests as too_many

log = logging.getLogger("launchkit.web")

MAX_WEBHOOK_BODY = 1024 * 1024  # refused while it streams in (the app's forms: 64 KB)

STRINGS = {
    "fr": {
        "pay_full": "Paiement en une fois",
        "pay_plan": "{n} mensualités de {amount}",
        "total": "soit {amount} au total",
        "choose": "Choisissez votre formule",
        "email": "Adresse email",
        "bump": "Ajouter {name} pour {amount}",
        "buy": "Passer au paiement sécurisé",
        "guarantee": "Garantie satisfait ou remboursé de {days} jours.",
        "closes": "Fin des inscriptions le {when}",
        "countdown": "Il reste",
        "secure": "Paiement sécurisé par Stripe. Vos coordonnées bancaires ne passent pas "
        "par nos serveurs.",
        "before_title": "Les inscriptions ne sont pas encore ouvertes",
        "before": "Les portes ouvrent le {when}. Revenez à ce moment-là\u202f!",
        "closed_title": "Les inscriptions sont fermées",
        "closed": "Les portes ont fermé le {when}. Merci de votre intérêt\u00a0: vous serez "
        "prévenu·e de la prochaine session.",
        "thanks_title": "Merci pour votre commande\u202f!",
        "thanks": "Votre paiement est en cours de confirmation. Vous allez recevoir votre reçu "
        "et vos accès par email.",
        "days": "j",
        "link_title": "Cette offre passe par votre lien personnel",
        "link": "Ouvrez-la depuis le lien reçu par email\u00a0: il porte votre date limite.",
        "tier": "Tarif «\u00a0{tier}\u00a0»\u00a0: {amount} jusqu'au {when}, puis {next}.",
        "member_month": "Mensuel",
        "member_year": "Annuel",
        "per_month": "{amount} par mois",
        "per_year": "{amount} par an",
        "saving": "Vous économisez {amount} par an ({percent}) par rapport au mensuel.",
        "trial": "{days}\u00a0jours d'essai gratuit, puis le prix choisi.",
    },
    "en": {
        "pay_full": "Pay in full",
        "pay_plan": "{n} monthly payments of {amount}",
        "total": "{amount} in total",
        "choose": "Choose how to pay",
        "email": "Email address",
        "bump": "Add {name} for {amount}",
        "buy": "Continue to secure checkout",
        "guarantee": "{days}-day money-back guarantee.",
        "closes": "Doors close on {when}",
        "countdown": "Time left",
        "secure": "Secure payment by Stripe. Your card details never touch our servers.",
        "before_title": "Doors are not open yet",
        "before": "Doors open on {when}. Come back then!",
        "closed_title": "Doors are closed",
        "closed": "Doors closed on {when}. Thank you for your interest: you'll hear about "
        "the next session.",
        "thanks_title": "Thank you for your order!",
        "thanks": "Your payment is being confirmed. Your receipt and access details are on "
        "their way to your inbox.",
        "days": "d",
        "link_title": "This offer opens from your personal link",
        "link": "Open it from the link in your emails: it carries your own deadline.",
        "tier": '"{tier}" price: {amount} until {when}, then {next}.',
        "member_month": "Monthly",
        "member_year": "Yearly",
        "per_month": "{amount} per month",
        "per_year": "{amount} per year",
        "saving": "You save {amount} a year ({percent}) compared with monthly.",
        "trial": "{days}-day free trial, then the price you choose.",
    },
}


def checkout_routes() -> list[BaseRoute]:
    """The routes of this module."""
    return [
        Route("/buy/{offer}", sales_page, methods=["GET"]),
        Route("/buy/{offer}", buy, methods=["POST"]),
        Route("/buy/{offer}/thanks", thanks, methods=["GET"]),
        Route("/buy/{offer}/image", sales_image, methods=["GET"]),
        Route("/stripe/webhook", webhook, methods=["POST"], max_body_size=MAX_WEBHOOK_BODY),
    ]


# --- helpers --------------------------------------------------------------------------------


# French pages that say "tu" (workspace.address_form = "tu"): the strings that differ
STRINGS_FR_TU = {
    "choose": "Choisis ta formule",
    "secure": "Paiement sécurisé par Stripe. Tes coordonnées bancaires ne passent pas "
    "par mes serveurs.",
    "before": "Les portes ouvrent le {when}. Reviens à ce moment-là\u202f!",
    "closed": "Les portes ont fermé le {when}. Merci de ton intérêt\u00a0: tu seras "
    "prévenu·e de la prochaine session.",
    "link_title": "Cette offre passe par ton lien personnel",
    "link": "Ouvre-la depuis le lien reçu par email\u00a0: il porte ta date limite.",
    "thanks_title": "Merci pour ta commande\u202f!",
    "thanks": "Ton paiement est en cours de confirmation. Tu vas recevoir ton reçu "
    "et tes accès par email.",
    "saving": "Tu économises {amount} par an ({percent}) par rapport au mensuel.",
}


def _strings(request: Request) -> dict[str, str]:
    settings = state_of(request).settings
    strings = STRINGS.get(settings.language, STRINGS["fr"])
    if strings is STRINGS["fr"] and settings.address_form == "tu":
        return {**strings, **STRINGS_FR_TU}
    return strings


def _when(request: Request, moment: datetime) -> str:
    settings = state_of(request).settings
    return french.format_moment(moment, settings.language, settings.timezone, year=True)


def _token_data(request: Request, token: str | None) -> dict[str, Any]:
    """A verified CHECKOUT token's payload ({} when absent, invalid or expired)."""
    if not token:
        return {}
    state = state_of(request)
    try:
        return tokens.read_token(
            state.settings, Purpose.CHECKOUT, token, now_ts=state.clock().timestamp()
        )
    except LaunchkitError:
        return {}


def _subscriber_from_token(request: Request, session: Any, token: str | None) -> Subscriber | None:
    """The subscriber named by a CHECKOUT token (None when absent, invalid or expired)."""
    try:
        return session.get(Subscriber, int(_token_data(request, token)["s"]))
    except (KeyError, TypeError, ValueError):
        return None


def _own_cart(request: Request, offer: Offer, launch: Launch, token: str | None) -> Any:
    """Evergreen: the buyer's deadline from their signed link, or the page refusing the
    checkout (no valid link: 403; after the deadline plus grace: the closed page)."""
    deadline = evergreen.token_deadline(_token_data(request, token))
    if deadline is None:
        c = _strings(request)
        context = {"c": c, "title": c["link_title"], "message": c["link"], "offer": offer,
                   "page_title": offer.product, "kind": "closed"}  # fmt: skip
        return render_page(request, "checkout_closed.html", context, status=403)
    state = state_of(request)
    if state.clock() > deadline + state.settings.checkout_grace:
        return _closed_page(request, offer, launch, "closed", when=deadline)
    return deadline


def _record(
    session: Any, kind: str, offer: Offer, subscriber: Subscriber | None, request: Request
) -> None:
    session.add(
        WebEvent(
            kind=kind,
            offer_id=offer.id,
            subscriber_id=subscriber.id if subscriber else None,
            ip=client_ip(request),
            occurred_at=state_of(request).clock(),
        )
    )


def _plans(request: Request, offer: Offer) -> list[dict[str, Any]]:
    c, lang = _strings(request), state_of(request).settings.language
    plans = []
    for key, count, cents in checkout.plan_choices(offer):
        amount = checkout.format_money(cents, offer.currency, lang)
        label = c["pay_full"] if count == 1 else c["pay_plan"].format(n=count, amount=amount)
        total = checkout.format_money(cents * count, offer.currency, lang)
        plans.append({"key": key, "label": label, "price": amount, "total": total, "n": count})
    return plans


def _closed_page(
    request: Request, offer: Offer, launch: Launch, cart: str, when: datetime | None = None
) -> Response:
    c = _strings(request)
    moment = when or (launch.cart_open if cart == "before" else launch.cart_close)
    when_text = _when(request, moment)
    context = {
        "c": c,
        "title": c[f"{cart}_title"],
        "message": c[cart].format(when=when_text),
        "offer": offer,
        "page_title": offer.product,
        "kind": cart,
    }
    return render_page(request, "checkout_closed.html", context, status=403)


def _load(request: Request, session: Any) -> tuple[Offer, Launch] | Response:
    try:
        offer = checkout.get_offer(session, request.path_params["offer"])
    except NotFound:
        return error_page(request, 404, "not_found_title", "not_found")
    launch = session.get(Launch, offer.launch_id)
    return offer, launch


# --- sales page -----------------------------------------------------------------------------


def sales_page(request: Request) -> Response:
    """GET /buy/{offer}: the sales/checkout page, or the "not open" / "closed" page."""
    state = state_of(request)
    token = request.query_params.get("t")
    with state.sessions.begin() as session:
        loaded = _load(request, session)
        if isinstance(loaded, Response):
            return loaded
        offer, launch = loaded
        subscriber = _subscriber_from_token(request, session, token)
        _record(session, "sales_view", offer, subscriber, request)
        deadline = None
        if evergreen.is_evergreen(launch):
            deadline = _own_cart(request, offer, launch, token)
            if isinstance(deadline, Response):
                return deadline
        else:
            cart = checkout.cart_state(launch, state.clock(), state.settings.checkout_grace)
            if cart != "open":
                return _closed_page(request, offer, launch, cart)
        choices = memberships.membership_choices(session, offer)
        if choices:
            return _render_offer(
                request, offer, launch, subscriber, token, deadline=deadline, members=choices
            )
        price = price_now(session, offer, state.clock())
        return _render_offer(request, offer, launch, subscriber, token, price, deadline)


def _tier_note(request: Request, offer: Offer, price: PriceNow | None) -> str:
    """``"early" price: €297.00 until 2 December 2026 23:59 CET, then €397.00.`` (or "")."""
    if price is None or price.tier is None or price.next_price_at is None:
        return ""
    c, lang = _strings(request), state_of(request).settings.language
    return c["tier"].format(
        tier=price.tier,
        amount=checkout.format_money(price.cents, offer.currency, lang),
        when=_when(request, price.next_price_at),
        next=checkout.format_money(price.next_cents or offer.price_cents, offer.currency, lang),
    )


def _tier_plans(request: Request, offer: Offer, price: PriceNow | None) -> list[dict[str, Any]]:
    """The plans, pay in full at the tier's price (with the later price struck through)."""
    plans = _plans(request, offer)
    if price is not None and price.tier is not None:
        lang = state_of(request).settings.language
        full = plans[0]
        full["was"] = full["price"]
        full["price"] = full["total"] = checkout.format_money(price.cents, offer.currency, lang)
    return plans


def _membership_plans(
    request: Request, offer: Offer, choices: list[memberships.MembershipChoice]
) -> list[dict[str, Any]]:
    """One choice per membership price (``plan``: monthly | yearly), the founding price with
    the regular one struck through, and what the yearly price saves."""
    c, lang = _strings(request), state_of(request).settings.language

    def money(cents: int) -> str:
        return checkout.format_money(cents, offer.currency, lang)

    plans = []
    for choice in choices:
        per = c[f"per_{choice.interval}"]
        plan = {"key": choice.plan, "label": c[f"member_{choice.interval}"], "n": 1,
                "price": per.format(amount=money(choice.cents))}  # fmt: skip
        if choice.cents != choice.regular_cents:
            plan["was"] = per.format(amount=money(choice.regular_cents))
        if choice.saving_cents:
            percent = format_percent(choice.saving_ratio, locale=checkout.LOCALES.get(lang))
            plan["note"] = c["saving"].format(amount=money(choice.saving_cents), percent=percent)
        plans.append(plan)
    return plans


def _render_offer(
    request: Request,
    offer: Offer,
    launch: Launch,
    subscriber: Subscriber | None,
    token: str | None,
    tier_price: PriceNow | None = None,
    deadline: datetime | None = None,
    *,
    members: list[memberships.MembershipChoice] | None = None,
) -> Response:
    state = state_of(request)
    closes = deadline or launch.cart_close
    c, lang = _strings(request), state.settings.language
    bump = None
    if offer.bump_name and offer.bump_cents:
        price = checkout.format_money(offer.bump_cents, offer.currency, lang)
        bump = c["bump"].format(name=offer.bump_name, amount=price)
    selected = request.query_params.get("plan") or checkout.PLAN_FULL
    form_token, cookie = csrf_token(request)
    context = {
        "c": c,
        "offer": offer,
        "plans": _membership_plans(request, offer, members)
        if members
        else _tier_plans(request, offer, tier_price),
        "trial": c["trial"].format(days=offer.trial_days) if members and offer.trial_days else "",
        "tier": _tier_note(request, offer, tier_price),
        "coupon": (request.query_params.get("coupon") or "")[:100],
        "selected": selected,
        "bump": bump,
        "email": subscriber.email if subscriber else "",
        "token": token or "",
        "deadline": c["closes"].format(when=_when(request, closes)),
        "deadline_ms": int((closes + state.settings.checkout_grace).timestamp() * 1000),
        "now_ms": int(state.clock().timestamp() * 1000),
        "guarantee": c["guarantee"].format(days=offer.guarantee_days)
        if offer.guarantee_days
        else "",
        "page_title": offer.product,
        "action": f"/buy/{offer.slug}",
        "csrf_field": CSRF_FIELD,
        "csrf_token": form_token,
    }
    context.update(_page_context(request, offer))
    response = render_page(request, "checkout.html", context)
    set_csrf_cookie(request, response, cookie)
    # the form's POST must carry a real Origin for buy()'s check ("no-referrer" sends "null");
    # the page's address (and its token) still goes to no other site
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _page(request: Request, slug: str) -> salespage.SalesPage | None:
    """The offer's ``pages/<slug>.md``; a broken file is logged and the bare page shown."""
    try:
        return salespage.load_page(state_of(request).settings.workspace, slug)
    except (LaunchkitError, OSError, UnicodeDecodeError) as e:
        log.warning("sales page of %s not shown: %s", slug, e)
        return None


def _page_context(request: Request, offer: Offer) -> dict[str, Any]:
    page = _page(request, offer.slug)
    labels = salespage.LABELS.get(state_of(request).settings.language, salespage.LABELS["en"])
    workspace = state_of(request).settings.workspace
    has_image = page is not None and salespage.image_file(workspace, page) is not None
    return {"page": page, "page_labels": labels, "page_image": has_image}


def sales_image(request: Request) -> Response:
    """GET /buy/{offer}/image: the image named by the offer's sales page file."""
    slug = request.path_params["offer"]
    page = _page(request, slug)
    found = page and salespage.image_file(state_of(request).settings.workspace, page)
    if not found:
        return error_page(request, 404, "not_found_title", "not_found")
    path, media_type = found
    response = FileResponse(path, media_type=media_type)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def thanks(request: Request) -> Response:
    """GET /buy/{offer}/thanks: where Stripe sends the buyer back."""
    c = _strings(request)
    context = {"c": c, "title": c["thanks_title"], "message": c["thanks"], "kind": "thanks"}
    context["page_title"] = c["thanks_title"]
    return render_page(request, "checkout_closed.html", context)


# --- POST /buy: to Stripe -------------------------------------------------------------------


async def buy(request: Request) -> Response:
    """POST /buy/{offer}: create a Checkout Session and 303 to it (form or query ``plan``).

    Only the sales page's own form gets there: its CSRF token (signed cookie value) must come
    back, and a browser's Origin must be ``web.base_url``'s; otherwise 403, nothing recorded.
    """
    if rate_limited(request, "buy"):
        return too_many(request)
    raw = await request.form(max_files=0, max_fields=20)
    form = {k: str(v)[:320] for k, v in raw.items() if isinstance(v, str)}
    return await run_in_threadpool(_buy, request, form)


def _buy(request: Request, form: dict[str, str]) -> Response:
    state = state_of(request)
    plan = form.get("plan") or request.query_params.get("plan")
    token = form.get("t") or request.query_params.get("t")
    coupon = form.get("coupon") or request.query_params.get("coupon") or None
    with state.sessions.begin() as session:
        loaded = _load(request, session)
        if isinstance(loaded, Response):
            return loaded
        offer, launch = loaded
        now = state.clock()
        deadline = None
        if evergreen.is_evergreen(launch):
            deadline = _own_cart(request, offer, launch, token)
            if isinstance(deadline, Response):
                return deadline
        elif checkout.cart_state(launch, now, state.settings.checkout_grace) != "open":
            return _closed_page(
                request,
                offer,
                launch,
                checkout.cart_state(launch, now, state.settings.checkout_grace),
            )
        if not (origin_ok(request) and csrf_ok(request, form)):
            return error_page(request, 403, "forbidden_title", "err_csrf")
        subscriber = _subscriber_from_token(request, session, token)
        email = subscriber.email if subscriber else (form.get("email") or "").strip() or None
        try:
            started = checkout.start_checkout(
                session,
                state.settings,
                _client(request),
                offer.slug,
                plan=plan,
                subscriber_id=subscriber.id if subscriber else None,
                email=email,
                bump=form.get("bump") == "1",
                now=now,
                language=(subscriber.language if subscriber else None) or state.settings.language,
                coupon=coupon,
                deadline=deadline,
            )
        except LaunchkitError as e:
            log.warning("checkout for %s not started: %s", offer.slug, e)
            return error_page(request, 400 if "plan" in str(e) else 502, "error_title", "server")
        _record(session, "checkout_start", offer, subscriber, request)
    return RedirectResponse(started.url, status_code=303)


def _client(request: Request) -> Any:
    ready = getattr(request.app.state, "stripe_client", None)
    return ready if ready is not None else checkout.make_client(state_of(request).settings)


# --- webhook --------------------------------------------------------------------------------


async def webhook(request: Request) -> Response:
    """POST /stripe/webhook: 400 on a bad signature (nothing written), else apply once."""
    body = await request.body()  # at most MAX_WEBHOOK_BODY: the route's limit refuses more
    state = state_of(request)
    try:
        event = checkout.verify_event(
            body,
            request.headers.get("stripe-signature"),
            state.settings.stripe_webhook_secret,
            now_ts=state.clock().timestamp(),
        )
    except checkout.SignatureError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    return await run_in_threadpool(_apply_event, request, event)


def _apply_event(request: Request, event: dict[str, Any]) -> Response:
    state = state_of(request)
    sessions = make_sessionmaker(state.engine, immediate=True)
    outcome = None
    for attempt in range(5):
        try:
            with sessions.begin() as session:
                outcome = checkout.handle_event(
                    session, state.settings, event, now=state.clock(),
                    fetch_client=getattr(request.app.state, "stripe_client", None),
                )  # fmt: skip
            break
        except IntegrityError:
            outcome = "duplicate" if _seen(sessions, event["id"]) else None
            if outcome:
                break
        except OperationalError:
            log.warning("webhook %s: database busy (attempt %d)", event["id"], attempt + 1)
    if outcome is None:
        return JSONResponse({"error": "not processed, retry"}, status_code=503)
    _after_commit(request, sessions)
    return JSONResponse({"received": True, "outcome": outcome})


def _seen(sessions: Any, event_id: str) -> bool:
    from launchkit.models import StripeEvent

    with sessions.begin() as session:
        return session.get(StripeEvent, event_id) is not None


def _after_commit(request: Request, sessions: Any) -> None:
    """Stop finished plans in Stripe and send due emails; failures are retried next time."""
    state = state_of(request)
    try:
        if state.settings.stripe_api_key:
            with sessions.begin() as session:
                checkout.cancel_due_subscriptions(session, _client(request), now=state.clock())
    except LaunchkitError:
        log.exception("cancelling finished plans failed; will retry on the next event")
    try:
        _send_due_emails(request, sessions)
    except Exception:  # the mailer may be misconfigured; the event itself is applied
        log.exception("sending receipts/dunning failed; will retry on the next event")


def _send_due_emails(request: Request, sessions: Any) -> None:
    state = state_of(request)
    messenger = state.messenger()
    try:
        with sessions.begin() as session:
            checkout.send_notifications(
                session, state.settings, messenger, now=state.clock(), env=state.email_env
            )
    finally:
        close = getattr(messenger, "close", None)
        if close is not None:
            close()
