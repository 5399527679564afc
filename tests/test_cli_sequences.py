"""CLI: sequence attach/list/preview/test/pause/resume, schedule and send."""

from __future__ import annotations

import email
import json
from email import policy

import pytest

from tests.sendkit import ready_workspace


@pytest.fixture
def ready(cli, workspace_env):
    people = (
        "email,first_name,timezone\nana@example.com,Ana,Europe/Paris\n"
        "bob@example.com,Bob,America/New_York\n"
    )
    return ready_workspace(cli, workspace_env, people=people)


def test_attach_list_and_schedule(cli, ready):
    r = cli("sequence", "attach", "spring", "launch-fr")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == 'Attached sequence "launch-fr" (10 emails) to launch "spring".'
    r = cli("sequence", "attach", "spring", "launch-fr")
    assert r.exit_code == 1
    assert r.stderr == 'Error: Sequence "launch-fr" is already attached to launch "spring".\n'
    r = cli("schedule", "spring", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["step"] for d in data][:1] == ["01-prelaunch-1"]
    first = data[0]
    assert first["audience"] == 2 and first["counts"] == {"queued": 2}
    # 09:00 local in Paris and New York
    assert (first["utc_min"], first["utc_max"]) == ("2026-11-24T08:00:00Z", "2026-11-24T14:00:00Z")
    close3h = next(d for d in data if d["step"] == "09-close-3h")
    assert close3h["send_time"] == "2026-12-08T19:59:00Z"
    assert close3h["deadline"] == "2026-12-08T22:59:00Z"
    r = cli("schedule", "spring")
    assert r.exit_code == 0 and "09-close-3h" in r.stdout and "emails scheduled in" in r.stdout
    r = cli("sequence", "list", "--json")
    listed = json.loads(r.stdout)
    assert listed[0]["sends"] == {"queued": 20} and listed[0]["status"] == "active"


def test_launch_update_moves_unsent_emails(cli, ready):
    cli("sequence", "attach", "spring", "launch-fr")
    cli("schedule", "spring")
    r = cli("launch", "update", "spring", "--cart-close", "2026-12-09 23:59")
    assert r.exit_code == 0, r.stderr
    data = json.loads(cli("schedule", "spring", "--json").stdout)
    close3h = next(d for d in data if d["step"] == "09-close-3h")
    assert close3h["send_time"] == "2026-12-09T19:59:00Z"
    assert close3h["utc_min"] == "2026-12-09T19:59:00Z"


def test_send_dry_run_then_send_then_pause(cli, ready):
    cli("sequence", "attach", "spring", "mini")
    r = cli("send", "--now", "2026-12-01 14:05", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "would send 2," in r.stdout
    assert list((ready / "outbox").glob("*.eml")) == []
    r = cli("send", "--launch", "spring", "--now", "2026-12-01 14:05")
    assert r.exit_code == 0, r.stderr
    assert "sent 2," in r.stdout and "remaining 0" in r.stdout
    assert len(list((ready / "outbox").glob("*.eml"))) == 2
    r = cli("sequence", "pause", "spring", "mini")
    assert r.stdout.strip() == "Paused: mini."
    r = cli("send", "--now", "2026-12-08 21:00")
    assert "sent 0," in r.stdout
    r = cli("sequence", "pause", "spring", "mini")
    assert r.stdout.strip() == "Nothing to pause."
    r = cli("sequence", "resume", "spring")
    assert r.stdout.strip() == "Resumed: mini."
    r = cli("send", "--now", "2026-12-08 21:00")
    assert "sent 2," in r.stdout
    r = cli("sequence", "resume", "spring", "nope")
    assert r.stderr == 'Error: Sequence "nope" is not attached to launch "spring".\n'


def test_send_refuses_without_postal_address(cli, ready):
    cli("sequence", "attach", "spring", "mini")
    toml = ready / "launchkit.toml"
    toml.write_text(toml.read_text().replace("postal_address = ", "postal_address_old = "))
    r = cli("send", "--now", "2026-12-01 10:05")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: sender.postal_address is empty in launchkit.toml")


def test_preview_writes_files_and_lints(cli, ready):
    cli("sequence", "attach", "spring", "mini")
    out = ready / "pv"
    r = cli("sequence", "preview", "spring", "--as", "ana@example.com", "--out", str(out))
    assert r.exit_code == 1 and "link(s) are not https" in r.stderr  # init's loopback base_url
    toml = ready / "launchkit.toml"
    toml.write_text(toml.read_text().replace("http://127.0.0.1:8000", "https://atelier.example"))
    r = cli("sequence", "preview", "spring", "--as", "ana@example.com", "--out", str(out))
    assert r.exit_code == 0, r.stderr + r.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "01-01-open.eml", "01-01-open.html", "02-02-last-call.eml", "02-02-last-call.html",
        "index.html",
    ]  # fmt: skip
    assert "Bonjour Ana" in (out / "01-01-open.html").read_text()
    msg = email.message_from_bytes((out / "01-01-open.eml").read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "ana@example.com"
    assert "Atelier Photo est ouvert" in (out / "index.html").read_text()
    # an undefined variable is an error, and so is a long subject: exit 1 naming the email
    (ready / "emails" / "mini" / "02-last-call.md").write_text(
        '---\nsubject: "' + "Dernier appel " * 7 + '"\nsend_at: "cart_close -3h"\n---\n'
        "Bonjour {{ prenom }}\n"
    )
    r = cli("sequence", "preview", "spring", "--out", str(out))
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: 1 email(s) have problems: mini/02-last-call: ")
    assert "prenom" in r.stderr


def test_test_send_goes_to_the_given_addresses_only(cli, ready, workspace_env, smtp_sink):
    cli("sequence", "attach", "spring", "mini")
    env = {**workspace_env, "LAUNCHKIT_SMTP_URL": smtp_sink.url, "LAUNCHKIT_EMAIL_BACKEND": "smtp"}
    from tests.conftest import Cli

    smtp_cli = Cli(env)
    r = smtp_cli("sequence", "test", "spring", "--to", "me@example.com", "--to", "you@example.com")
    assert r.exit_code == 0, r.stderr
    assert "[TEST 1/2] Atelier Photo est ouvert" in r.stdout
    messages = smtp_sink.wait_for(4)
    subjects = [(m["To"], m["Subject"]) for m in messages]
    assert subjects == [
        ("me@example.com", "[TEST 1/2] Atelier Photo est ouvert"),
        ("you@example.com", "[TEST 1/2] Atelier Photo est ouvert"),
        ("me@example.com", "[TEST 2/2] Dernier appel"),
        ("you@example.com", "[TEST 2/2] Dernier appel"),
    ]
    assert len({m["Message-ID"] for m in messages}) == 4
    data = json.loads(cli("sequence", "list", "--json").stdout)
    assert data[0]["sends"] == {}  # no delivery record touched
