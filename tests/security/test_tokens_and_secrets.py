"""Security (issue 8): signed links through the web routes (tampered, expired, cross-purpose,
rotated keys) and canary secrets that must never leak into logs, CLI output, exceptions, the
database or exported files. Real web app, real SMTP sink, real localstripe, both databases."""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from launchkit import checkout, mailer, sequences, tokens
from launchkit.config import load_settings
from launchkit.db import make_engine
from launchkit.errors import LaunchkitError
from launchkit.models import Base, Consent, Launch, Subscriber, Suppression, WebEvent
from launchkit.stripe_events import Purchase, encode, sign_payload
from launchkit.tokens import Purpose
from launchkit.web import create_app
from tests.conftest import Cli, free_port
from tests.fixtures.stripe import create_offer, create_subscriber
from tests.sendkit import write_sequence
from tests.test_web import TestClient, Web, link_in, make_web, post_optin
from tests.test_web import confirm as confirm_link

pytestmark = pytest.mark.security

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


@pytest.fixture
def web(settings, smtp_sink, now):
    yield from make_web(settings, smtp_sink, now)


ROUTES = ("confirm", "download", "unsubscribe", "one-click")


def _route(web: Web, route: str, token: str) -> int:
    """Status of one token-reading route (the RFC 8058 one-click POST included)."""
    if route == "one-click":
        one_click = {"content-type": "application/x-www-form-urlencoded"}
        body = "List-Unsubscribe=One-Click"
        return web.client.post(f"/u/{token}", content=body, headers=one_click).status_code
    path = {"confirm": "/confirm", "download": "/d", "unsubscribe": "/u"}[route]
    return web.client.get(f"{path}/{token}").status_code


def _routes(web: Web, token: str) -> dict[str, int]:
    return {route: _route(web, route, token) for route in ROUTES}


def _genuine(web: Web) -> dict[Purpose, tuple[str, dict[str, Any]]]:
    """One confirmed subscriber (camille), one pending (dominique); a real token per purpose."""
    post_optin(web)
    confirm_link(web, link_in(web.sink.wait_for(1)[0], "/confirm"))
    camille = web.subscriber("camille@example.fr")
    post_optin(web, email="dominique@example.fr")
    confirm = link_in(web.sink.wait_for(3)[2], "/confirm").rsplit("/", 1)[1]
    pending = web.subscriber("dominique@example.fr")
    assert camille is not None and pending is not None and pending.status == "pending"
    payloads = {
        Purpose.CONFIRM: tokens.read_token(web.settings, Purpose.CONFIRM, confirm),
        Purpose.DOWNLOAD: {"s": camille.id, "m": web.magnet_id},
        Purpose.UNSUBSCRIBE: {"s": camille.id},
        Purpose.CHECKOUT: {"s": camille.id},
        Purpose.TEST: {"k": "unsubscribe"},  # `sequence test` links: refused on every route
        Purpose.MEMBERS: {"e": camille.email, "l": "fr"},  # /members magic link
        Purpose.ACCESS: {"e": camille.email, "p": 1},  # one product link on /members
        Purpose.CLICK: {"l": 1, "s": camille.id},  # a tracked link of a launch email (/c/)
    }
    made = {p: tokens.make_token(web.settings, p, data) for p, data in payloads.items()}
    made[Purpose.CONFIRM] = confirm
    return {p: (made[p], payloads[p]) for p in Purpose}


def _state(web: Web) -> tuple:
    with web.sessions() as s:
        subs = sorted(s.execute(sa.select(Subscriber.email, Subscriber.status)).all())
        return (
            tuple(map(tuple, subs)),
            s.scalar(sa.select(sa.func.count(Suppression.id))),
            tuple(sorted(s.scalars(sa.select(WebEvent.kind)))),
            s.scalar(sa.select(sa.func.count(Consent.id)).where(Consent.withdrawn_at.is_not(None))),
        )


OWN_ROUTE = {Purpose.CONFIRM: "confirm", Purpose.DOWNLOAD: "download"}


def _tampered(token: str) -> list[str]:
    """Every position changed once, plus truncations, extensions and a foreign signature."""
    variants = []
    for i, char in enumerate(token):
        replacement = (
            ALPHABET[(ALPHABET.index(char) + 7) % len(ALPHABET)] if char in ALPHABET else "A"
        )
        variants.append(token[:i] + replacement + token[i + 1 :])
    variants += [token[:-1], token[:-10], token + "A", token.replace(".", "", 1), "x", "a.b.c"]
    return variants


def test_tampered_cross_purpose_and_forged_tokens_are_refused_on_every_route(web: Web) -> None:
    genuine = _genuine(web)
    before = _state(web)
    refused = accepted_same = 0
    for purpose, (token, payload) in genuine.items():
        for bad in _tampered(token):
            try:  # base64's spare low bits: a last-char change can decode to the same bytes
                same = tokens.read_token(web.settings, purpose, bad) == payload
            except LaunchkitError:
                same = False
            if same:
                accepted_same += 1
                continue
            codes = _routes(web, bad)
            assert set(codes.values()) <= {400, 404}, (purpose, bad, codes)
            assert codes["confirm"] == codes["download"] == codes["unsubscribe"] == 400
            refused += 1
    for purpose, (token, _) in genuine.items():  # a genuine token on another purpose's route
        for route in ROUTES:
            own = OWN_ROUTE.get(purpose) == route or (
                purpose == Purpose.UNSUBSCRIBE and route in ("unsubscribe", "one-click")
            )
            if not own:
                assert _route(web, route, token) == 400, (purpose, route)
                refused += 1
    forged_settings = dataclasses.replace(web.settings, secret_keys=("attacker-key",))
    for purpose, (_, payload) in genuine.items():
        forged = tokens.make_token(forged_settings, purpose, payload)
        assert set(_routes(web, forged).values()) == {400}, purpose
    after = _state(web)
    assert after == before  # nobody confirmed, downloaded or unsubscribed by a bad link
    assert refused >= 200 and accepted_same <= 8
    print(f"tokens: {refused} tampered refused, {accepted_same} same-bytes variants")


def test_expired_tokens_are_refused_and_change_nothing(web: Web, now: datetime) -> None:
    genuine = _genuine(web)
    before = _state(web)
    late = datetime.now(UTC) + timedelta(days=400)  # tokens carry the real signing time
    web.clock.now = late
    assert web.client.get(f"/confirm/{genuine[Purpose.CONFIRM][0]}").status_code == 410
    assert web.client.get(f"/d/{genuine[Purpose.DOWNLOAD][0]}").status_code == 410
    assert web.client.get(f"/u/{genuine[Purpose.UNSUBSCRIBE][0]}").status_code == 410
    assert _state(web) == before


def test_rotated_keys_keep_old_links_valid_through_the_routes(web: Web) -> None:
    genuine = _genuine(web)
    rotated = dataclasses.replace(
        web.settings, secret_keys=("new-key-2027", *web.settings.secret_keys)
    )
    dropped = dataclasses.replace(web.settings, secret_keys=("new-key-2027",))
    for settings, expect in ((rotated, 200), (dropped, 400)):
        app = create_app(settings, clock=web.clock)
        with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as client:
            assert client.get(f"/d/{genuine[Purpose.DOWNLOAD][0]}").status_code == expect
            assert client.get(f"/u/{genuine[Purpose.UNSUBSCRIBE][0]}").status_code == expect
            assert client.get(f"/confirm/{genuine[Purpose.CONFIRM][0]}").status_code == expect
            assert client.post(f"/confirm/{genuine[Purpose.CONFIRM][0]}").status_code == expect
            fresh = tokens.make_token(settings, Purpose.DOWNLOAD, genuine[Purpose.DOWNLOAD][1])
            assert client.get(f"/d/{fresh}").status_code == 200  # new links use the new key
            assert tokens.make_token(settings, Purpose.CHECKOUT, {"s": 1}) != tokens.make_token(
                web.settings, Purpose.CHECKOUT, {"s": 1}
            )
        app.state.lk.engine.dispose()
    with web.sessions() as s:
        assert (
            s.scalar(sa.select(Subscriber.status).where(Subscriber.email == "dominique@example.fr"))
            == "active"
        )


# --- canary secrets ---------------------------------------------------------------------------

CANARY_STRIPE = "sk_test_CANARY4f9b1c0d2e3a"
CANARY_WHSEC = "whsec_CANARYwebhook8a7b6c"
CANARY_SMTP_PW = "CANARYsmtpPw-91x"
CANARY_KEY = "CANARYsigningKey-5d4c3b2a1"
CANARIES = (CANARY_STRIPE, CANARY_WHSEC, CANARY_SMTP_PW, CANARY_KEY, "CANARY")


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


def _dump_database(url: str) -> str:
    engine = make_engine(url)
    chunks = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                chunks.extend(
                    json.dumps(v, default=str) if isinstance(v, dict | list) else str(v)
                    for v in row
                )
    engine.dispose()
    return "\n".join(chunks)


def _error_text(error: BaseException, *extra: Any) -> str:
    return (
        "".join(traceback.format_exception(error))
        + repr(error)
        + str(error)
        + "".join(map(repr, extra))
    )


def test_canary_secrets_never_leak(
    tmp_path, workspace_env, db_url, localstripe, caplog, now
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="markdown_it")  # its DEBUG traces every parser rule
    dead = free_port()  # nothing listens there: SMTP and Stripe calls fail
    env = {
        **workspace_env,
        "STRIPE_API_KEY": CANARY_STRIPE,
        "STRIPE_WEBHOOK_SECRET": CANARY_WHSEC,
        "LAUNCHKIT_SECRET_KEY": CANARY_KEY,
        "LAUNCHKIT_SMTP_URL": f"smtp://canary-user:{CANARY_SMTP_PW}@127.0.0.1:{dead}",
        "LAUNCHKIT_STRIPE_API_BASE": localstripe,
        "LAUNCHKIT_SENDER_EMAIL": "hello@atelier.example",
        "LAUNCHKIT_EMAIL_BACKEND": "smtp",
    }
    settings = load_settings(Path(workspace_env["LAUNCHKIT_HOME"]), env=env)
    assert settings.email_backend == "smtp" and settings.secret_key == CANARY_KEY
    shown: list[str] = [repr(settings), json.dumps(settings.public(), default=str)]

    # the web app: a purchase whose receipt cannot be sent (SMTP down), a bad webhook
    engine = make_engine(db_url)
    with sa.orm.Session(engine) as s, s.begin():
        offer = create_offer(s, now)
        subscriber_id = create_subscriber(s, now).id
        write_sequence(settings, "mini")
        sequences.attach_sequence(s, settings, "spring", "mini", now=now)
        meta = checkout.checkout_metadata(
            offer, s.get(Launch, offer.launch_id), 1, subscriber_id, False
        )
    engine.dispose()
    ts = int(now.timestamp())
    body = encode(Purchase(meta, "camille@example.fr", 49700, "EUR").completed(ts))
    app = create_app(settings, clock=lambda: now)
    with TestClient(app) as client:
        ok = client.post(
            "/stripe/webhook",
            content=body,
            headers={"Stripe-Signature": sign_payload(body, CANARY_WHSEC, ts)},
        )
        assert ok.status_code == 200
        bad = client.post(
            "/stripe/webhook", content=body, headers={"Stripe-Signature": "t=1,v1=00"}
        )
        assert bad.status_code == 400
        shown += [ok.text, bad.text, client.get("/healthz").text, client.get("/nope").text]
        token = tokens.make_token(settings, Purpose.CHECKOUT, {"s": subscriber_id})
        shown.append(client.get(f"/buy/cours?t={token}").text)
    app.state.lk.engine.dispose()

    # the CLI: several commands, including failing ones
    cli = Cli(env)
    export = tmp_path / "export.csv"
    send = ("send", "--now", (now - timedelta(hours=23)).isoformat())
    commands = [
        ("--help",), ("config", "show"), ("config", "show", "--json"), ("send", "--help"),
        ("offer", "sync"), ("offer", "list", "--json"), ("orders", "--json"), ("refund", "999"),
        ("schedule", "spring"), send, ("audience", "export", str(export)),
        ("launch", "list", "--json"), ("status", "spring"),
    ]  # fmt: skip
    failing = {
        **env,
        "LAUNCHKIT_STRIPE_API_BASE": f"http://127.0.0.1:{dead}",
    }
    results = [cli(*c) for c in commands] + [Cli(failing)("offer", "sync")]
    for result in results:
        shown.append(result.stdout + result.stderr + repr(result.exception or ""))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            shown.append(_error_text(result.exception))
    assert results[-1].exit_code == 1 and "Error:" in results[-1].stderr  # Stripe unreachable
    sent = results[commands.index(send)]
    schedule = results[commands.index(("schedule", "spring"))]
    assert "retry later 1" in sent.stdout, (schedule.output, sent.output)  # SMTP was tried

    # exceptions raised with a bad SMTP URL / password / host
    msg = mailer.OutgoingMessage(
        to_email="zoe@example.com", to_name="Zoé", from_email="hello@atelier.example",
        from_name="Atelier", subject="Test", html="<p>x</p>", text="x",
        message_id=mailer.make_message_id("test", 1, 1, "atelier.example"),
    )  # fmt: skip
    for url in (
        f"smtp://canary-user:{CANARY_SMTP_PW}@127.0.0.1:{dead}",
        f"smtp://canary-user:{CANARY_SMTP_PW}@127.0.0.1:{dead}?tls=starttls",
        f"smtps://canary-user:{CANARY_SMTP_PW}@127.0.0.1:{dead}",
        f"smtp://canary-user:{CANARY_SMTP_PW}@127.0.0.1:notaport",
        f"smtp://canary-user:{CANARY_SMTP_PW}@/nohost",
        f"ftp://canary-user:{CANARY_SMTP_PW}@127.0.0.1:25",
    ):
        try:
            messenger = mailer.SMTPMessenger(url, timeout=2)
            shown.append(repr(messenger))
            messenger.push(msg, mailer.build_message(msg, date=now))
            pytest.fail(f"sending through {mailer.mask_url(url)} should fail")
        except LaunchkitError as error:
            shown.append(_error_text(error))
    # logs, the database, and every file in the workspace (exports, outbox, config)
    shown.append("\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records))
    shown.append(caplog.text)
    shown.append(_dump_database(db_url))
    workspace = Path(workspace_env["LAUNCHKIT_HOME"])
    files = [p for p in [*workspace.rglob("*"), export] if p.is_file()]
    for path in files:
        shown.append(f"{path}: " + path.read_bytes().decode("utf-8", "replace"))
    assert export.exists() and files
    leaks = {i: _leaks(text) for i, text in enumerate(shown) if _leaks(text)}
    assert leaks == {}, {i: shown[i][:3000] for i in leaks}
    assert any("smtp://canary-user:***@" in text for text in shown)  # masked, but still useful
    records = len(caplog.records)
    print(f"canaries: {len(shown)} outputs checked, {records} log records, {len(files)} files")
