"""``/t/TOKEN``: where the links of a `launchkit sequence test` email lead. The page says it is
a test; nothing is recorded (no ledger row, no consent or status change)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from launchkit.tokens import Purpose, TokenExpired, TokenInvalid, read_token
from launchkit.web import render_page, state_of

TEXTS = {
    "fr": {
        "title": "Email de test",
        "unsubscribe": "Ce lien de désinscription vient d'un email de test : il fonctionne, "
        "et rien n'a été changé.",
        "download": "Ce lien de téléchargement vient d'un email de test : il fonctionne ; "
        "vos abonnés reçoivent leur fichier ici.",
        "checkout": "Ce lien de paiement vient d'un email de test : il fonctionne ; vos "
        "abonnés arrivent ici sur la page de votre offre.",
        "bad": "Ce lien de test n'est pas valide ou a expiré.",
    },
    "en": {
        "title": "Test email",
        "unsubscribe": "This unsubscribe link comes from a test email: it works, and nothing "
        "was changed.",
        "download": "This download link comes from a test email: it works; your subscribers "
        "get their file here.",
        "checkout": "This checkout link comes from a test email: it works; your subscribers "
        "land on your offer's page here.",
        "bad": "This test link is not valid or has expired.",
    },
}


def test_link_page(request: Request) -> Response:
    """A page saying the link works and comes from a test email."""
    settings = state_of(request).settings
    texts = TEXTS.get(settings.language, TEXTS["en"])
    try:
        payload = read_token(settings, Purpose.TEST, request.path_params["token"])
    except (TokenExpired, TokenInvalid):
        payload = {}
    message = texts.get(str(payload.get("k")), texts["bad"]) if payload else texts["bad"]
    status = 200 if payload else 404
    context = {"status": status, "title": texts["title"], "message": message, "action": None}
    return render_page(request, "error.html", {**context, "page_title": texts["title"]},
                       status=status)  # fmt: skip


def test_routes() -> list[BaseRoute]:
    """The test-link route."""
    return [Route("/t/{token}", test_link_page, methods=["GET"])]
