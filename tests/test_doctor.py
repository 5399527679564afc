"""`launchkit doctor`, the checks run before schedule/send, and `init` without placeholders."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.sendkit import ready_workspace


@pytest.fixture
def ready(cli, workspace_env):
    ws = ready_workspace(cli, workspace_env)
    assert cli("sequence", "attach", "spring", "mini").exit_code == 0
    return ws


def _edit_toml(ws: Path, old: str, new: str) -> None:
    toml = ws / "launchkit.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new))


def _findings(cli, *args: str) -> tuple[int, list[dict[str, str]]]:
    r = cli("doctor", "--json", *args)
    return r.exit_code, json.loads(r.stdout)


def _levels(findings: list[dict[str, str]], check: str) -> list[str]:
    return [f["level"] for f in findings if f["check"] == check]


def test_doctor_clean_workspace_warns_about_local_base_url(cli, ready):
    code, found = _findings(cli, "--now", "2026-11-20 10:00")
    assert code == 0
    assert _levels(found, "sender") == ["ok"]
    assert _levels(found, "templates") == ["ok"]
    assert _levels(found, "milestones") == ["ok"]
    assert _levels(found, "base_url") == ["warning"]
    r = cli("doctor", "--now", "2026-11-20 10:00")
    assert r.exit_code == 0
    assert "warning base_url: web.base_url is http://127.0.0.1:8000" in r.stdout


def test_placeholder_sender_is_an_error_and_refuses_send(cli, ready):
    _edit_toml(ready, 'email = "bonjour@atelier-test.fr"', 'email = "hello@example.com"')
    _edit_toml(ready, "12 rue des Tanneurs, 69001 Lyon", "10 rue de l'Exemple, 75001 Paris")
    code, found = _findings(cli)
    assert code == 1
    messages = [f["message"] for f in found if f["level"] == "error"]
    assert messages == [
        "sender.email is hello@example.com in launchkit.toml: your own address is the From "
        "of your emails.",
        "sender.postal_address is 10 rue de l'Exemple, 75001 Paris, France in launchkit.toml: "
        "every marketing email must show your real postal address.",
    ]
    r = cli("send", "--now", "2026-12-01 14:05")
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error: {messages[0]} {messages[1]} Nothing was done: send refused "
        "(see `launchkit doctor`).\n"
    )
    assert list((ready / "outbox").glob("*.eml")) == []
    r = cli("send", "--now", "2026-12-01 14:05", "--dry-run")
    assert r.exit_code == 1 and "send refused" in r.stderr


def test_empty_sender_name_is_an_error(cli, ready):
    _edit_toml(ready, 'name = "Atelier Test"\nemail', 'name = ""\nemail')
    code, found = _findings(cli)
    assert code == 1
    assert [f["message"] for f in found if f["level"] == "error"] == [
        "sender.name is empty in launchkit.toml: the From name of your emails."
    ]


@pytest.mark.parametrize(
    ("url", "level"),
    [
        ("https://atelier.fr", "ok"),
        ("http://localhost:8000", "warning"),
        ("http://atelier.fr", "error"),
        ("ftp://atelier.fr", "error"),
    ],
)
def test_base_url_must_be_https(cli, ready, url, level):
    _edit_toml(ready, 'base_url = "http://127.0.0.1:8000"', f'base_url = "{url}"')
    code, found = _findings(cli)
    assert _levels(found, "base_url") == [level]
    assert code == (1 if level == "error" else 0)


def test_offers_without_stripe_keys_warn(cli, ready):
    code, found = _findings(cli)
    assert [f["message"] for f in found if f["check"] == "stripe"] == ["no offers yet"]
    assert cli("offer", "add", "spring", "cours", "--product", "P", "--price", "97").exit_code == 0
    code, found = _findings(cli)
    stripe = [f for f in found if f["check"] == "stripe"]
    assert [f["level"] for f in stripe] == ["warning", "warning"]
    assert "STRIPE_API_KEY is not set" in stripe[0]["message"]
    assert "STRIPE_WEBHOOK_SECRET is not set" in stripe[1]["message"]
    assert code == 0


def test_milestones_in_the_past_warn_on_doctor_schedule_and_send(cli, ready):
    now = "2026-12-05 10:00"  # cart opened four days ago; max_delay is 12h
    code, found = _findings(cli, "--now", now)
    late = [f for f in found if f["check"] == "milestones"]
    assert late == [
        {
            "check": "milestones",
            "level": "warning",
            "message": 'Launch "spring": 1 email(s) were due more than their max_delay ago '
            "(mini/01-open); send would skip them as stale. Move the milestones with "
            "`launchkit launch update spring`.",
        }
    ]
    r = cli("send", "--now", now)
    assert r.exit_code == 0
    assert 'Warning: Launch "spring": 1 email(s) were due' in r.stderr
    assert "skipped stale 2" in r.stdout


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ("{{ first_name | nope }}", 'Email "mini/01-open.md": template syntax error'),
        ("{{ missing.deep }}", 'Email "mini/01-open.md": undefined variable "missing"'),
    ],
)
def test_template_that_fails_to_render_is_an_error(cli, ready, body, start):
    (ready / "emails" / "mini" / "01-open.md").write_text(
        f'---\nsubject: "Ouvert"\nsend_at: "cart_open +0h"\n---\nBonjour {body}\n'
    )
    code, found = _findings(cli)
    assert code == 1
    errors = [f["message"] for f in found if f["level"] == "error"]
    assert len(errors) == 1 and errors[0].startswith(start), errors


def test_narrow_send_window_and_utc_timezone_warn(cli, ready):
    _edit_toml(ready, 'send_window = "08:00-21:00"', 'send_window = "02:00-03:00"')
    _edit_toml(ready, 'timezone = "Europe/Paris"', 'timezone = "UTC"')
    code, found = _findings(cli)
    assert code == 0
    assert _levels(found, "send_window") == ["warning", "warning"]
    assert _levels(found, "timezone") == ["warning"]


def test_init_writes_no_placeholder_sender(tmp_path, db_url):
    cli = Cli({"COLUMNS": "200", "LAUNCHKIT_DATABASE_URL": db_url})
    ws = tmp_path / "blank"
    r = cli("init", str(ws))
    assert r.exit_code == 0, r.stderr
    assert "fill [sender] in launchkit.toml before sending" in r.stdout
    sender = tomllib.loads((ws / "launchkit.toml").read_text())["sender"]
    assert sender == {"name": "", "email": "", "postal_address": ""}
    r = cli("-w", str(ws), "doctor")
    assert r.exit_code == 1
    assert "error   sender: sender.email is empty in launchkit.toml" in r.stdout


def test_init_takes_the_sender_as_options(tmp_path, db_url):
    cli = Cli({"COLUMNS": "200", "LAUNCHKIT_DATABASE_URL": db_url})
    ws = tmp_path / "full"
    r = cli(
        "init", str(ws), "--sender-name", "Camille Photo", "--sender-email", "camille@photo.fr",
        "--postal-address", "3 place Bellecour, 69002 Lyon",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "fill [sender]" not in r.stdout
    sender = tomllib.loads((ws / "launchkit.toml").read_text())["sender"]
    assert sender == {
        "name": "Camille Photo",
        "email": "camille@photo.fr",
        "postal_address": "3 place Bellecour, 69002 Lyon",
    }
    r = cli("init", str(tmp_path / "bad"), "--sender-email", "not an address")
    assert r.exit_code == 1
    assert r.stderr == 'Error: --sender-email "not an address" is not an email address.\n'
    assert not (tmp_path / "bad").exists()


def test_schedule_shows_subjects_and_preheaders_rendered(cli, ready):
    (ready / "emails" / "mini" / "01-open.md").write_text(
        '---\nsubject: "{{ first_name }}, {{ product }} est ouvert"\n'
        'preheader: "Jusqu\'au {{ cart_close }}"\nsend_at: "cart_open +0h"\n---\n'
        "Bonjour {{ first_name }}\n"
    )
    r = cli("schedule", "spring", "--json")
    assert r.exit_code == 0, r.stderr
    first = json.loads(r.stdout)[0]
    assert first["subject"] == "{{ first_name }}, {{ product }} est ouvert"
    assert first["subject_shown"] == "[first_name], Atelier Photo est ouvert"
    assert first["preheader_shown"] == "Jusqu'au mardi 8 décembre à 23 h 59 (heure de Paris)"
    r = cli("schedule", "spring")
    assert "[first_name]," in r.stdout and "Atelier Photo" in r.stdout
    assert "{{" not in r.stdout
