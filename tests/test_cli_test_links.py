"""`sequence test`: links open a page saying it is a test; the command says where mail went."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path

from sqlalchemy import func, select
from starlette.testclient import TestClient

from launchkit.models import Send, Subscriber, SubscriberStatusChange
from launchkit.web import create_app
from tests.test_cli_sequences import ready  # noqa: F401 (fixture)


def _count(sessions, model) -> int:
    with sessions.begin() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def test_test_send_links_open_a_test_page(cli, ready, settings, sessions):  # noqa: F811
    assert cli("offer", "add", "spring", "cours", "--product", "P", "--price", "97").exit_code == 0
    cli("sequence", "attach", "spring", "mini")
    r = cli("sequence", "test", "spring", "--to", "me@example.com")
    assert r.exit_code == 0, r.stderr
    outbox = ready / "outbox"
    assert f"(2 messages via the outbox {outbox};" in r.stdout.replace("\n", " ")
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    base = settings.base_url.rstrip("/")
    header = message["List-Unsubscribe"]
    text = message.get_body(("plain",)).get_content()
    links = set(re.findall(re.escape(base) + r"/[a-z]+/[^\s>)\]]+", text + header))
    assert links and all(link.startswith(f"{base}/t/") for link in links), links
    before = [_count(sessions, m) for m in (Send, SubscriberStatusChange, Subscriber)]
    with TestClient(create_app(settings)) as client:
        pages = {link: client.get(link.removeprefix(base)) for link in links}
        assert all(p.status_code == 200 for p in pages.values())
        bodies = " ".join(p.text for p in pages.values())
        assert "email de test" in bodies
        assert "désinscription" in bodies and "paiement" in bodies
        assert client.get("/t/forged").status_code == 404
    after = [_count(sessions, m) for m in (Send, SubscriberStatusChange, Subscriber)]
    assert before == after


def test_test_send_says_the_smtp_host(cli, ready, workspace_env, smtp_sink):  # noqa: F811
    from tests.conftest import Cli

    cli("sequence", "attach", "spring", "mini")
    env = {**workspace_env, "LAUNCHKIT_SMTP_URL": smtp_sink.url, "LAUNCHKIT_EMAIL_BACKEND": "smtp"}
    r = Cli(env)("sequence", "test", "spring", "--to", "a@example.com", "--to", "b@example.com")
    assert r.exit_code == 0, r.stderr
    host = smtp_sink.url.split("@")[-1].split("//")[-1].rstrip("/")
    assert f"(4 messages via SMTP {host};" in r.stdout.replace("\n", " ")
    assert not list(Path(workspace_env["LAUNCHKIT_HOME"], "outbox").glob("*.eml"))
