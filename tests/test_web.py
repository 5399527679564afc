"""The web app through HTTP: opt-in, double opt-in, downloads, unsubscribe, on both databases.

Emails go to a real aiosmtpd sink and are parsed back; the only fake is the clock.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from launchkit import magnets, tokens
from launchkit.config import Settings
from launchkit.db import make_engine, make_sessionmaker
from launchkit.models import (
    Consent,
    Magnet,
    Subscriber,
    SubscriberTag,
    Suppression,
    WebEvent,
)
from launchkit.tokens import Purpose
from launchkit.web import create_app

with warnings.catch_warnings():  # starlette: "use httpx2" (not packaged here yet)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PDF = b"%PDF-1.4\n% launchkit test magnet\n"


class Clock:
    """A settable clock for the app."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class Web:
    client: TestClient
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    sink: Any
    magnet_id: int

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.sessions() as s:
            return list(s.scalars(sa.select(model).where(*where)))

    def subscriber(self, email: str) -> Subscriber | None:
        found = self.rows(Subscriber, Subscriber.email == email)
        return found[0] if found else None

    def events(self, kind: str) -> int:
        return len(self.rows(WebEvent, WebEvent.kind == kind))

    def tags(self, subscriber_id: int) -> set[str]:
        return {
            t.tag for t in self.rows(SubscriberTag, SubscriberTag.subscriber_id == subscriber_id)
        }


def make_web(settings: Settings, sink: Any, now: datetime, **overrides: Any) -> Iterator[Web]:
    smtp = {"email_backend": "smtp", "smtp_url": sink.url, "sender_email": "hello@example.com"}
    settings = dataclasses.replace(settings, **smtp, **overrides)
    source = settings.workspace / "guide.pdf"
    source.write_bytes(PDF)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        magnet = magnets.add_magnet(
            s, settings, "guide", title="Le guide des tarifs", file=source,
            description="Fixez vos prix sereinement.\n- 12 pages\n- un tableur", tags=["lead"],
            now=now,
        )  # fmt: skip
        magnet_id = magnet.id
    clock = Clock(now)
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as client:
        yield Web(client, settings, sessions, clock, sink, magnet_id)
    app.state.lk.engine.dispose()
    engine.dispose()


@pytest.fixture
def web(settings: Settings, smtp_sink: Any, now: datetime) -> Iterator[Web]:
    yield from make_web(settings, smtp_sink, now)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def post_optin(web: Web, slug: str = "guide", **fields: str) -> Any:
    page = web.client.get(f"/m/{slug}")
    data = {"email": "camille@example.fr", "first_name": "Camille", "consent": "yes"}
    data["csrf_token"] = csrf_of(page.text)
    data.update(fields)
    return web.client.post(f"/m/{slug}", data=data, headers={"user-agent": "pytest-browser/1"})


def body_of(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    texts = []
    for part in parts:
        if part.get_content_type() in ("text/plain", "text/html"):
            texts.append(
                part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            )
    return "\n".join(texts)


def link_in(message: Message, prefix: str) -> str:
    match = re.search(rf"http://127\.0\.0\.1:8000{prefix}/[A-Za-z0-9_.\-]+", body_of(message))
    assert match, f"no {prefix} link in the email"
    return match.group(0).removeprefix("http://127.0.0.1:8000")


def confirm(web: Web, path: str) -> Any:
    """Open a confirmation link as a browser does: the page, then the POST its script sends."""
    page = web.client.get(path)
    if page.status_code != 200:
        return page
    assert f'<form method="post" action="{path}" id="confirm-form">' in page.text
    return web.client.post(path)


def test_optin_confirm_download_flow(web: Web, now: datetime) -> None:
    page = web.client.get("/m/guide")
    assert page.status_code == 200
    assert "Le guide des tarifs" in page.text and "<li>12 pages</li>" in page.text
    assert web.events("magnet_view") == 1

    r = post_optin(web)
    assert r.status_code == 303 and r.headers["location"] == "/m/guide/sent"
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "pending" and sub.first_name == "Camille"
    assert web.tags(sub.id) == set()  # no tag, hence no marketing mail, before confirmation
    [consent] = web.rows(Consent, Consent.subscriber_id == sub.id)
    wording = magnets.consent_wording(web.settings, web.rows(Magnet)[0])
    assert consent.method == "optin" and consent.magnet_id == web.magnet_id
    assert consent.wording == wording.text and consent.wording_sha256 == wording.sha256
    assert consent.wording_version == "fr-2026-11" and consent.given_at == now
    assert consent.ip == "testclient" and consent.user_agent == "pytest-browser/1"
    assert consent.page == "http://127.0.0.1:8000/m/guide" and consent.confirmed_at is None
    assert web.events("signup") == 1
    assert web.client.get("/m/guide/sent").status_code == 200

    [confirm_mail] = web.sink.wait_for(1)
    assert (
        confirm_mail["To"].endswith("<camille@example.fr>")
        or "camille@example.fr" in (confirm_mail["To"])
    )
    confirm_path = link_in(confirm_mail, "/confirm")
    web.clock.now = now + timedelta(hours=2)
    r = confirm(web, confirm_path)
    assert r.status_code == 200 and 'id="download"' in r.text
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "active" and sub.confirmed_at == web.clock.now
    assert sub.source == "magnet:guide"
    assert web.tags(sub.id) == {"magnet:guide", "lead"}
    [consent] = web.rows(Consent, Consent.subscriber_id == sub.id)
    assert consent.confirmed_at == web.clock.now and consent.confirm_ip == "testclient"
    messages = web.sink.wait_for(2)
    delivery = messages[1]
    download_path = link_in(delivery, "/d")

    # replaying the confirmation link: same page, no second delivery, no second event
    again = confirm(web, confirm_path)
    assert again.status_code == 200 and 'id="download"' in again.text
    assert web.events("confirm") == 1
    assert len(web.sink.messages) == 2

    assert web.client.head(download_path).status_code == 200  # a link scanner: not counted
    r = web.client.get(download_path)
    assert r.status_code == 200 and r.content == PDF
    assert r.headers["content-disposition"].startswith("attachment")
    assert web.events("download") == 1

    with web.sessions() as s:
        [stats] = magnets.magnet_stats(s, web.settings.tz)
    assert (stats["page_views"], stats["signups"], stats["confirmations"]) == (2, 1, 1)
    assert stats["downloads"] == 1 and stats["confirm_rate"] == 1.0


INVALID = [
    ({"email": "not-an-email"}, "email", "ne semble pas valide"),
    ({"email": ""}, "email", "Indiquez votre adresse email"),
    ({"consent": ""}, "consent", "Cochez la case"),
    ({"first_name": "A" * 101}, "first_name", "100 caractères au plus"),
    ({"email": "a" * 320 + "@example.fr"}, "email", "trop longue"),
]


def test_invalid_input_shows_inline_errors_and_stores_nothing(web: Web) -> None:
    for fields, field, message in INVALID:
        r = post_optin(web, **{"first_name": '<b>"Zoé"</b>', **fields})
        assert r.status_code == 400, fields
        assert message in r.text
        if field != "first_name":
            assert 'value="&lt;b&gt;&#34;Zoé&#34;&lt;/b&gt;"' in r.text  # kept and escaped
            assert "<b>" not in r.text.split("<form", 1)[1]
        else:
            assert 'value="' + "A" * 101 + '"' in r.text
    assert web.rows(Subscriber) == [] and web.rows(Consent) == []
    assert web.events("signup") == 0 and web.sink.messages == []


def test_oversized_body_is_refused(web: Web) -> None:
    r = post_optin(web, first_name="x" * 70_000)
    assert r.status_code == 413
    assert web.rows(Subscriber) == []


def test_csrf_is_required(web: Web) -> None:
    page = web.client.get("/m/guide")
    data = {"email": "eve@example.fr", "consent": "yes", "first_name": "Ève"}
    r = web.client.post("/m/guide", data={**data, "csrf_token": "forged"})
    assert r.status_code == 400 and "session a expiré" in r.text
    assert 'value="eve@example.fr"' in r.text
    r = web.client.post("/m/guide", data=data)
    assert r.status_code == 400
    # a genuine token without its cookie (another browser) is refused too
    token = csrf_of(page.text)
    other = TestClient(web.client.app, base_url="http://127.0.0.1:8000", follow_redirects=False)
    assert other.post("/m/guide", data={**data, "csrf_token": token}).status_code == 400
    assert web.rows(Subscriber) == [] and web.sink.messages == []


def test_honeypot_pretends_success_and_stores_nothing(web: Web) -> None:
    r = post_optin(web, website="http://spam.example")
    assert r.status_code == 303 and r.headers["location"] == "/m/guide/sent"
    assert web.rows(Subscriber) == [] and web.events("signup") == 0
    assert web.sink.messages == []


def test_unknown_slug_and_route_are_friendly_404(web: Web) -> None:
    for r in (web.client.get("/m/nope"), web.client.post("/m/nope", data={}), web.client.get("/x")):
        assert r.status_code == 404 and "Page introuvable" in r.text
    assert web.events("magnet_view") == 0


def test_bad_tokens(web: Web, now: datetime) -> None:
    post_optin(web)
    [mail] = web.sink.wait_for(1)
    confirm_path = link_in(mail, "/confirm")
    token = confirm_path.rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    r = web.client.get(f"/confirm/{tampered}")
    assert r.status_code == 400 and "Lien non valide" in r.text
    # a download token is not a confirmation token (and vice versa)
    sub = web.subscriber("camille@example.fr")
    assert sub is not None
    download = tokens.make_token(web.settings, Purpose.DOWNLOAD, {"s": sub.id, "m": web.magnet_id})
    assert web.client.get(f"/confirm/{download}").status_code == 400
    assert web.client.get(f"/d/{token}").status_code == 400
    assert web.client.get(f"/u/{token}").status_code == 400
    # expired: the injected clock moves past confirm_link_max_age (tokens carry real time)
    web.clock.now = datetime.now(UTC) + web.settings.confirm_link_max_age + timedelta(minutes=1)
    r = web.client.get(confirm_path)
    assert r.status_code == 410 and 'href="/m/guide"' in r.text
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "pending" and web.events("confirm") == 0
    # a genuine token for a subscriber that no longer exists
    web.clock.now = datetime.now(UTC)
    ghost = tokens.make_token(web.settings, Purpose.CONFIRM, {"s": 999, "m": web.magnet_id})
    assert web.client.get(f"/confirm/{ghost}").status_code == 404


def test_expired_download_offers_a_fresh_link(web: Web, now: datetime) -> None:
    post_optin(web)
    confirm(web, link_in(web.sink.wait_for(1)[0], "/confirm"))
    download_path = link_in(web.sink.wait_for(2)[1], "/d")
    web.clock.now = datetime.now(UTC) + web.settings.download_link_max_age + timedelta(seconds=5)
    r = web.client.get(download_path)
    assert r.status_code == 410 and "expiré" in r.text
    assert web.events("download") == 0
    form = re.search(r'<form method="post" action="([^"]+)"', r.text)
    assert form and form.group(1) == f"{download_path}/resend"
    r = web.client.post(form.group(1), data={"csrf_token": csrf_of(r.text)})
    assert r.status_code == 200 and "Nouveau lien" in r.text
    fresh = link_in(web.sink.wait_for(3)[2], "/d")
    web.clock.now = datetime.now(UTC)
    assert web.client.get(fresh).status_code == 200
    assert web.events("download") == 1
    # no CSRF, no resend
    assert web.client.post(form.group(1), data={}).status_code == 400


def test_url_magnet_redirects(web: Web, now: datetime) -> None:
    with web.sessions.begin() as s:
        m = magnets.add_magnet(
            s, web.settings, "video", title="Mini-cours", url="https://example.com/v", now=now
        )
        magnet_id = m.id
        s.add(Subscriber(email="a@example.fr", status="active", created_at=now, updated_at=now))
        s.flush()
        sub_id = s.scalar(sa.select(Subscriber.id))
    r = web.client.get(magnets.download_url(web.settings, sub_id, magnet_id).split("8000")[1])
    assert r.status_code == 303 and r.headers["location"] == "https://example.com/v"
    assert web.events("download") == 1


def _confirmed_subscriber(web: Web) -> tuple[int, str]:
    post_optin(web)
    confirm(web, link_in(web.sink.wait_for(1)[0], "/confirm"))
    delivery = web.sink.wait_for(2)[1]
    sub = web.subscriber("camille@example.fr")
    assert sub is not None
    assert "/u/" not in body_of(delivery)  # transactional: no unsubscribe link (#19)
    return sub.id, tokens.unsubscribe_url(web.settings, sub.id).split("8000")[1]


def test_get_unsubscribe_never_unsubscribes(web: Web) -> None:
    sub_id, path = _confirmed_subscriber(web)
    for _ in range(3):
        r = web.client.get(path)
        assert r.status_code == 200 and "camille@example.fr" in r.text
        assert 'id="confirm-unsubscribe"' in r.text
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "active"
    assert web.rows(Suppression) == []


def test_one_click_unsubscribe_without_cookie_or_csrf(web: Web, now: datetime) -> None:
    sub_id, path = _confirmed_subscriber(web)
    bare = TestClient(web.client.app, base_url="http://127.0.0.1:8000")
    web.clock.now = now + timedelta(days=40)  # still valid well after 30 days
    body = "List-Unsubscribe=One-Click"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = bare.post(path, content=body, headers=headers)
    assert r.status_code == 200 and not bare.cookies
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "unsubscribed"
    assert sub.unsubscribed_at == web.clock.now
    [suppression] = web.rows(Suppression)
    assert suppression.email == "camille@example.fr"
    [consent] = web.rows(Consent, Consent.subscriber_id == sub_id)
    assert consent.withdrawn_at == web.clock.now and consent.withdrawal_method == "one-click"
    # idempotent: a second one-click (multipart this time, also allowed) changes nothing
    web.clock.now += timedelta(hours=1)
    assert bare.post(path, files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.unsubscribed_at == now + timedelta(days=40)
    assert web.events("unsubscribe") == 1


def test_unsubscribe_page_form_records_reason(web: Web) -> None:
    sub_id, path = _confirmed_subscriber(web)
    page = web.client.get(path)
    r = web.client.post(path, data={"csrf_token": "bad", "reason": "too_many"})
    assert r.status_code == 400
    assert web.subscriber("camille@example.fr").status == "active"  # type: ignore[union-attr]
    r = web.client.post(path, data={"csrf_token": csrf_of(page.text), "reason": "too_many"})
    assert r.status_code == 200 and "désinscrit" in r.text
    [consent] = web.rows(Consent, Consent.subscriber_id == sub_id)
    assert consent.withdrawal_method == "page"
    assert web.rows(Suppression)[0].email == "camille@example.fr"
    # the page now says it is already done
    assert "déjà désinscrite" in web.client.get(path).text


def test_suppressed_address_needs_a_fresh_confirmation(web: Web, now: datetime) -> None:
    sub_id, path = _confirmed_subscriber(web)
    web.client.post(path, content="List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    # replaying the old confirmation link does not re-subscribe
    assert confirm(web, link_in(web.sink.messages[0], "/confirm")).status_code == 200
    assert web.subscriber("camille@example.fr").status == "unsubscribed"  # type: ignore[union-attr]
    web.client.cookies.clear()
    r = post_optin(web, first_name="Intrus")
    assert r.status_code == 303
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "unsubscribed" and sub.first_name == "Camille"
    assert len(web.rows(Suppression)) == 1  # the form alone lifts nothing
    confirm_path = link_in(web.sink.wait_for(3)[2], "/confirm")
    web.clock.now = now + timedelta(days=1)
    assert confirm(web, confirm_path).status_code == 200
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "active" and sub.confirmed_at == web.clock.now
    assert web.rows(Suppression) == [] and web.events("resubscribe") == 1
    consents = web.rows(Consent, Consent.subscriber_id == sub_id)
    assert [c.confirmed_at is not None for c in consents] == [True, True]


def test_rate_limit_per_ip(settings: Settings, smtp_sink: Any, now: datetime) -> None:
    for web in make_web(settings, smtp_sink, now, web_rate_limit="3/1m"):
        codes = [post_optin(web, email=f"p{i}@example.fr").status_code for i in range(5)]
        assert codes == [303, 303, 303, 429, 429]
        assert len(web.rows(Subscriber)) == 3
        page = web.client.get("/m/guide")
        assert page.status_code == 200  # pages are not limited, only posts


def test_security_headers_and_healthz(web: Web) -> None:
    r = web.client.get("/m/guide")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    # the only outside origin: the Stripe Checkout page a buyer's form redirects to
    assert re.findall(r"https?://[^ ;]+", csp) == ["https://checkout.stripe.com"]
    assert "form-action 'self' https://checkout.stripe.com" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f'<style nonce="{nonce.group(1)}">' in r.text
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "http://" not in r.text.replace("http://127.0.0.1:8000", "")
    assert web.client.get("/healthz").json() == {"status": "ok"}


def test_english_magnet_page(web: Web, now: datetime) -> None:
    with web.sessions.begin() as s:
        magnets.add_magnet(
            s, web.settings, "course", title="Email course", url="https://example.com/c",
            language="en", now=now,
        )  # fmt: skip
    r = web.client.get("/m/course")
    assert r.status_code == 200 and "Send it to me" in r.text and 'lang="en"' in r.text
    r = post_optin(web, slug="course", consent="")
    assert r.status_code == 400 and "Tick the box" in r.text
    assert post_optin(web, slug="course", email="alex@example.com").status_code == 303
    sub = web.subscriber("alex@example.com")
    assert sub is not None and sub.language == "en"
    assert "One click to confirm" in str(web.sink.wait_for(1)[0]["Subject"])  # English email
    page = web.client.get(tokens.unsubscribe_url(web.settings, sub.id).split("8000")[1])
    assert "Confirm unsubscribe" in page.text and 'lang="en"' in page.text


def test_workspace_template_overrides_starter(web: Web, tmp_path: Path) -> None:
    folder = web.settings.templates_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "optin_sent.html").write_text(
        '{% extends "default:optin_sent.html" %}{% block title %}Custom{% endblock %}'
    )
    app = create_app(web.settings, clock=web.clock)
    with TestClient(app) as client:
        assert "<title>Custom</title>" in client.get("/m/guide/sent").text
    app.state.lk.engine.dispose()


def test_active_subscriber_stays_active_and_gets_the_magnet(web: Web, now: datetime) -> None:
    with web.sessions.begin() as s:
        s.add(Subscriber(email="camille@example.fr", first_name="Camille", status="active",
                         source="import:mailchimp", created_at=now, updated_at=now))  # fmt: skip
    assert post_optin(web, first_name="Autre").status_code == 303
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "active" and sub.first_name == "Camille"
    assert confirm(web, link_in(web.sink.wait_for(1)[0], "/confirm")).status_code == 200
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.source == "import:mailchimp"  # the first source is kept
    assert web.tags(sub.id) == {"magnet:guide", "lead"}
    assert len(web.sink.wait_for(2)) == 2  # the delivery email


def test_links_survive_key_rotation(web: Web) -> None:
    sub_id, unsubscribe_path = _confirmed_subscriber(web)
    rotated = dataclasses.replace(
        web.settings, secret_keys=("a-brand-new-key", *web.settings.secret_keys)
    )
    app = create_app(rotated, clock=web.clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get(unsubscribe_path).status_code == 200  # signed with the old key
        fresh = tokens.unsubscribe_url(rotated, sub_id).split("8000")[1]
        assert client.get(fresh).status_code == 200
    # an app that dropped the old key refuses the old link
    only_new = dataclasses.replace(web.settings, secret_keys=("a-brand-new-key",))
    app2 = create_app(only_new, clock=web.clock)
    with TestClient(app2, base_url="http://127.0.0.1:8000") as client:
        assert client.get(unsubscribe_path).status_code == 400
    app.state.lk.engine.dispose()
    app2.state.lk.engine.dispose()


def test_unsubscribe_bad_links(web: Web) -> None:
    ghost = tokens.unsubscribe_url(web.settings, 4242).split("8000")[1]
    assert web.client.get(ghost).status_code == 404
    r = web.client.post(ghost, content="List-Unsubscribe=One-Click",
                        headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 404
    sub_id, path = _confirmed_subscriber(web)
    web.clock.now = datetime.now(UTC) + web.settings.unsubscribe_link_max_age + timedelta(days=1)
    assert web.client.get(path).status_code == 410
    assert web.subscriber("camille@example.fr").status == "active"  # type: ignore[union-attr]


# --- state changes only by POST (issue #15) -------------------------------------------------

LINKS = re.compile(r'(?:href|src|action)="([^"]+)"')


def scan(client: TestClient, start: str, *, limit: int = 40) -> list[str]:
    """A mail link scanner: HEAD and GET every link it meets (following redirects), from
    the pages too, and never runs a script or submits a form."""
    seen: list[str] = []
    queue = [start]
    while queue and len(seen) < limit:
        url = queue.pop(0).removeprefix("http://127.0.0.1:8000")
        if url in seen or not url.startswith("/"):
            continue
        seen.append(url)
        client.head(url, follow_redirects=True)
        page = client.get(url, follow_redirects=True)
        if page.headers.get("content-type", "").startswith("text/html"):
            queue += LINKS.findall(page.text)
    return seen


def _pending_state(web: Web) -> tuple[Any, ...]:
    sub = web.subscriber("camille@example.fr")
    assert sub is not None
    [consent] = web.rows(Consent, Consent.subscriber_id == sub.id)
    return (sub.status, sub.confirmed_at, consent.confirmed_at, web.tags(sub.id),
            web.events("confirm"), len(web.sink.messages))  # fmt: skip


def test_head_get_and_link_scanners_never_confirm(web: Web) -> None:
    post_optin(web)
    path = link_in(web.sink.wait_for(1)[0], "/confirm")
    before = _pending_state(web)
    assert before == ("pending", None, None, set(), 0, 1)
    assert web.client.head(path).status_code == 200
    page = web.client.get(path)
    assert page.status_code == 200 and "Confirmez votre inscription" in page.text
    assert "camille@example.fr" in page.text and "Le guide des tarifs" in page.text
    nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
    assert nonce and f'<script nonce="{nonce.group(1)}">' in page.text  # the auto-submit
    scanned = scan(TestClient(web.client.app, base_url="http://127.0.0.1:8000"), path)
    assert path in scanned
    print(f"scanner: {len(scanned)} addresses fetched (HEAD + GET) from the confirmation link")
    assert _pending_state(web) == before  # the consent record still says "not confirmed"
    r = web.client.post(path)
    assert r.status_code == 200 and 'id="download"' in r.text
    after = _pending_state(web)
    assert after[0] == "active" and after[2] == web.clock.now
    assert after[4:] == (1, 2)  # one confirm event, then the delivery email


def test_scanner_on_every_emailed_link_changes_no_status(web: Web) -> None:
    sub_id, unsubscribe_path = _confirmed_subscriber(web)
    scanner = TestClient(web.client.app, base_url="http://127.0.0.1:8000")
    scanned = []
    for message in web.sink.messages:
        for link in re.findall(r"http://127\.0\.0\.1:8000/[^\s\"<>]+", body_of(message)):
            scanned += scan(scanner, link)
    print(f"scanner: {len(scanned)} addresses fetched (HEAD + GET) from 2 emails")
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "active" and web.rows(Suppression) == []
    [consent] = web.rows(Consent, Consent.subscriber_id == sub_id)
    assert consent.withdrawn_at is None and web.events("confirm") == 1
    assert len(web.sink.messages) == 2  # no second delivery email either


def test_confirm_post_refuses_bad_tokens_like_the_page(web: Web) -> None:
    post_optin(web)
    token = link_in(web.sink.wait_for(1)[0], "/confirm").rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    assert web.client.post(f"/confirm/{tampered}").status_code == 400
    ghost = tokens.make_token(web.settings, Purpose.CONFIRM, {"s": 999, "m": web.magnet_id})
    assert web.client.post(f"/confirm/{ghost}").status_code == 404
    web.clock.now = datetime.now(UTC) + web.settings.confirm_link_max_age + timedelta(minutes=1)
    assert web.client.post(f"/confirm/{token}").status_code == 410
    assert web.events("confirm") == 0


# --- the public address is web.base_url, never the Host header (issue #15) ------------------

EVIL = {"host": "evil.example"}


def test_forged_host_reaches_no_link_record_or_redirect(web: Web) -> None:
    page = web.client.get("/m/guide", headers=EVIL)
    data = {"email": "camille@example.fr", "consent": "yes", "csrf_token": csrf_of(page.text)}
    r = web.client.post("/m/guide?utm_source=x", data=data, headers=EVIL)
    assert r.status_code == 303 and r.headers["location"] == "/m/guide/sent"
    [consent] = web.rows(Consent)
    assert consent.page == "http://127.0.0.1:8000/m/guide?utm_source=x"
    redirects = {"/m/guide/": "/m/guide", "/m/guide/sent/": "/m/guide/sent",
                 "/m/guide/?a=1": "/m/guide?a=1"}  # fmt: skip
    for path, target in redirects.items():
        r = web.client.get(path, headers=EVIL)
        assert r.status_code == 307 and r.headers["location"] == f"http://127.0.0.1:8000{target}"
    confirm_path = link_in(web.sink.wait_for(1)[0], "/confirm")  # the email: base_url links
    for r in (
        web.client.get(confirm_path, headers=EVIL),
        web.client.post(confirm_path, headers=EVIL),
        web.client.get("/nothing/", headers=EVIL),
    ):
        assert "evil.example" not in r.text and "evil.example" not in str(r.headers)
    download = link_in(web.sink.wait_for(2)[1], "/d")
    assert "evil.example" not in str(web.client.get(download, headers=EVIL).headers)
    assert all("evil.example" not in str(m) for m in web.sink.messages)


# --- resend cap and no-store (issue #15) ----------------------------------------------------


def _expired_download(web: Web) -> tuple[str, str]:
    _confirmed_subscriber(web)
    path = link_in(web.sink.messages[1], "/d")
    web.clock.now = datetime.now(UTC) + web.settings.download_link_max_age + timedelta(seconds=5)
    page = web.client.get(path)
    assert page.status_code == 410
    return f"{path}/resend", csrf_of(page.text)


def test_resend_is_capped_per_subscriber(web: Web) -> None:
    resend, csrf = _expired_download(web)
    codes = []
    for _ in range(5):
        web.clock.now += timedelta(hours=1)
        codes.append(web.client.post(resend, data={"csrf_token": csrf}))
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert "déjà envoyé 3 nouveaux liens" in codes[3].text
    # the first resend (at +1 h) leaves the window at +25 h: 21 h after the 4th attempt (+4 h)
    assert int(codes[3].headers["retry-after"]) == 21 * 3600
    assert len(web.sink.messages) == 2 + 3
    assert web.events("download_resend") == 3
    # another browser, another IP: still this subscriber's cap
    other = TestClient(web.client.app, base_url="http://127.0.0.1:8000", client=("10.0.0.9", 1))
    other_page = other.get(resend.removesuffix("/resend"))
    r = other.post(resend, data={"csrf_token": csrf_of(other_page.text)})
    assert r.status_code == 429 and len(web.sink.messages) == 5
    web.clock.now += timedelta(hours=20, seconds=1)  # +25 h: the first left the window
    assert web.client.post(resend, data={"csrf_token": csrf}).status_code == 200
    assert len(web.sink.wait_for(6)) == 6


def test_every_token_page_is_no_store_and_no_referrer(web: Web, now: datetime) -> None:
    post_optin(web)
    confirm_path = link_in(web.sink.wait_for(1)[0], "/confirm")
    pages = [web.client.get("/m/guide"), web.client.get("/m/guide/sent")]
    pages += [web.client.get(confirm_path), web.client.head(confirm_path)]
    pages.append(web.client.post(confirm_path))
    download = link_in(web.sink.wait_for(2)[1], "/d")
    pages += [web.client.get(download), web.client.head(download)]
    sub = web.subscriber("camille@example.fr")
    assert sub is not None
    unsubscribe = tokens.unsubscribe_url(web.settings, sub.id).split("8000")[1]
    pages.append(web.client.get(unsubscribe))
    with web.sessions.begin() as s:
        video = magnets.add_magnet(
            s, web.settings, "video", title="Vidéo", url="https://example.com/v", now=now
        )
        video_id = video.id
    redirect = magnets.download_url(web.settings, sub.id, video_id).split("8000")[1]
    pages.append(web.client.get(redirect))
    pages += [web.client.get("/confirm/bad"), web.client.get("/d/bad"), web.client.get("/x")]
    web.clock.now = datetime.now(UTC) + web.settings.download_link_max_age + timedelta(seconds=5)
    expired = web.client.get(download)
    pages.append(expired)
    pages.append(web.client.post(f"{download}/resend", data={"csrf_token": csrf_of(expired.text)}))
    pages.append(web.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}))
    statuses = sorted({r.status_code for r in pages})
    assert statuses == [200, 303, 400, 404, 410]
    for r in pages:
        assert r.headers["cache-control"] == "no-store", r.request.url
        assert r.headers["referrer-policy"] == "no-referrer", r.request.url


# --- bodies bounded while they stream in (issue #15) ----------------------------------------


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A chunked body (no Content-Length) of ``total`` bytes."""
    sent = 0
    while sent < total:
        yield b"a" * min(size, total - sent)
        sent += size


def test_form_bodies_over_64_kb_are_refused_as_they_stream(web: Web) -> None:
    sub_id, unsubscribe_path = _confirmed_subscriber(web)
    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/m/guide", unsubscribe_path, "/d/x/resend"):
        r = web.client.post(path, content=chunks(70 * 1024), headers=form)
        assert r.status_code == 413 and "trop volumineux" in r.text, path
        assert r.headers["connection"] == "close"
    # a declared Content-Length over the limit: 413 even where the route reads no body
    for path in ("/m/guide", unsubscribe_path, "/d/x/resend", "/confirm/x", "/m/guide/sent"):
        r = web.client.post(path, content=b"a" * 10, headers={**form, "content-length": "70000"})
        assert r.status_code == 413 and r.headers["connection"] == "close", path
    fits = web.client.post(unsubscribe_path, content=chunks(60 * 1024), headers=form)
    assert fits.status_code == 400  # read whole, then refused for the missing CSRF token
    sub = web.subscriber("camille@example.fr")
    assert sub is not None and sub.status == "active" and web.events("signup") == 1


def test_uploads_are_refused_everywhere(web: Web) -> None:
    sub_id, unsubscribe_path = _confirmed_subscriber(web)
    upload = {"file": ("a.pdf", b"%PDF" * 10, "application/pdf")}
    page = web.client.get("/m/guide")
    fields = {"email": "eve@example.fr", "consent": "yes", "csrf_token": csrf_of(page.text)}
    r = web.client.post("/m/guide", data=fields, files=upload)
    assert r.status_code == 415 and "envoi de fichiers" in r.text
    assert web.client.post("/m/guide", data=fields, files={"x": (None, "y")}).status_code == 415
    # RFC 8058 lets one-click senders post multipart to /u: fields yes, a file part never
    r = web.client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"}, files=upload)
    assert r.status_code == 400
    assert web.subscriber("eve@example.fr") is None
    assert web.subscriber("camille@example.fr").status == "active"  # type: ignore[union-attr]


def test_concurrent_resends_still_stop_at_three(web: Web) -> None:
    resend, csrf = _expired_download(web)
    from concurrent.futures import ThreadPoolExecutor

    def post(_: int) -> int:
        return web.client.post(resend, data={"csrf_token": csrf}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(post, range(8)))
    assert codes == [200] * 3 + [429] * 5
    assert web.events("download_resend") == 3 and len(web.sink.wait_for(5)) == 5
