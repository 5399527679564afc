"""Lead magnets: the domain functions and the `magnet`, `secret` commands, on both databases."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from launchkit import magnets
from launchkit.config import SECRET_FILE, Settings, load_settings, settings_for_test
from launchkit.errors import AlreadyExists, InputError, NotFound
from launchkit.models import Magnet, WebEvent
from launchkit.resources import starter_dir

SAMPLE_PDF = starter_dir("sample_data") / "magnets" / "checklist-lancement.pdf"


def test_magnet_add_copies_file_and_lists(cli, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    r = cli(
        "magnet", "add", "checklist", "--title", "La checklist du lancement",
        "--file", str(SAMPLE_PDF), "--tag", "lead", "--tag", "pdf",
        "--description", "Tout ce qu'il faut vérifier.\n- 40 points",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == 'Added magnet "checklist": http://127.0.0.1:8000/m/checklist'
    copied = settings.magnets_dir / "checklist" / "checklist-lancement.pdf"
    assert copied.read_bytes() == SAMPLE_PDF.read_bytes()

    r = cli("magnet", "list", "--json")
    assert r.exit_code == 0
    [item] = json.loads(r.stdout)
    assert (
        item["slug"] == "checklist" and item["file"] == "magnets/checklist/checklist-lancement.pdf"
    )
    assert item["tags"] == ["magnet:checklist", "lead", "pdf"]

    r = cli("magnet", "show", "checklist", "--json")
    assert json.loads(r.stdout)["page"] == "http://127.0.0.1:8000/m/checklist"
    r = cli("magnet", "show", "checklist")
    assert r.exit_code == 0 and "La checklist du lancement" in r.stdout
    r = cli("magnet", "list")
    assert r.exit_code == 0 and "checklist" in r.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["BAD SLUG", "--title", "x", "--url", "https://e.com"], 'Magnet slug "BAD SLUG" must be'),
        (["ok", "--title", "x"], "Give exactly one of --file or --url."),
        (["ok", "--title", "x", "--url", "https://e.com", "--file", "a.pdf"], "Give exactly one"),
        (["ok", "--title", "x", "--file", "/nonexistent.pdf"], "--file /nonexistent.pdf: no such"),
        (["ok", "--title", "x", "--url", "javascript:alert(1)"], '--url "javascript:alert(1)"'),
        (["ok", "--title", " ", "--url", "https://e.com"], "--title must not be empty."),
    ],
)
def test_magnet_add_bad_input(cli, args: list[str], error: str) -> None:  # type: ignore[no-untyped-def]
    r = cli("magnet", "add", *args)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: ") and error in r.stderr
    assert json.loads(cli("magnet", "list", "--json").stdout) == []


def test_magnet_duplicate_and_unknown(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("magnet", "add", "m1", "--title", "T", "--url", "https://e.com").exit_code == 0
    r = cli("magnet", "add", "m1", "--title", "T", "--url", "https://e.com")
    assert r.exit_code == 1 and r.stderr.strip() == 'Error: A magnet "m1" already exists.'
    r = cli("magnet", "show", "nope")
    assert r.exit_code == 1 and r.stderr.strip() == 'Error: No magnet "nope".'


def test_stats_per_day(cli, session: Session, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    assert cli("magnet", "add", "m1", "--title", "T", "--url", "https://e.com").exit_code == 0
    magnet = magnets.get_magnet(session, "m1")
    day1 = datetime(2026, 11, 20, 22, 30, tzinfo=settings.tz)  # local day, not UTC day
    day2 = day1 + timedelta(days=1)
    for kind, count, when in [
        ("magnet_view", 4, day1), ("signup", 2, day1), ("confirm", 1, day1),
        ("magnet_view", 2, day2), ("signup", 1, day2), ("confirm", 1, day2),
        ("download", 3, day2), ("checkout_start", 5, day2),
    ]:  # fmt: skip
        for _ in range(count):
            magnets.record_event(session, kind, now=when, magnet_id=magnet.id)
    session.commit()
    r = cli("magnet", "stats", "--json")
    assert r.exit_code == 0
    [row] = json.loads(r.stdout)
    assert row["page_views"] == 6 and row["signups"] == 3 and row["confirmations"] == 2
    assert row["downloads"] == 3 and row["confirm_rate"] == 0.6667
    assert [d["day"] for d in row["days"]] == ["2026-11-20", "2026-11-21"]
    assert row["days"][0] == {
        "day": "2026-11-20", "page_views": 4, "signups": 2, "confirmations": 1, "downloads": 0,
    }  # fmt: skip
    r = cli("magnet", "stats")
    assert r.exit_code == 0 and "67%" in r.stdout and "2026-11-21" in r.stdout


def test_stats_empty_magnet_has_no_rate(cli) -> None:  # type: ignore[no-untyped-def]
    cli("magnet", "add", "m1", "--title", "T", "--url", "https://e.com")
    [row] = json.loads(cli("magnet", "stats", "m1", "--json").stdout)
    assert row["confirm_rate"] is None and row["days"] == []
    assert cli("magnet", "stats", "nope").exit_code == 1


def test_domain_add_rolls_back_on_duplicate(session: Session, tmp_path: Path, now) -> None:  # type: ignore[no-untyped-def]
    s = settings_for_test(tmp_path)
    magnets.add_magnet(session, s, "a", title="A", url="https://e.com/a", now=now)
    with pytest.raises(AlreadyExists):
        magnets.add_magnet(session, s, "a", title="A2", url="https://e.com/b", now=now)
    assert [m.title for m in magnets.list_magnets(session)] == ["A"]
    with pytest.raises(NotFound):
        magnets.get_magnet(session, "b")
    with pytest.raises(InputError):
        magnets.add_magnet(session, s, "c", title="C", url="https://e.com", language="de", now=now)


def test_validate_signup() -> None:
    ok, errors = magnets.validate_signup(
        {"email": "  Camille@Example.FR ", "first_name": " Camille  Dupont ", "consent": "yes"}
    )
    assert errors == {} and ok == magnets.SignupInput("camille@example.fr", "Camille Dupont")
    _, errors = magnets.validate_signup({"email": "x@", "first_name": "a\x00b"})
    assert errors == {"email": "invalid", "first_name": "invalid", "consent": "required"}
    assert magnets.is_bot({"website": "x"}) and not magnets.is_bot({"website": " "})


def test_consent_wording_hash_and_custom_version(tmp_path: Path, now) -> None:  # type: ignore[no-untyped-def]
    s = settings_for_test(tmp_path, sender_name="Atelier", language="en")
    magnet = Magnet(slug="g", title="The guide", language=None, created_at=now)
    default = magnets.consent_wording(s, magnet)
    assert "The guide" in default.text and "Atelier" in default.text
    assert default.version == "en-2026-11" and len(default.sha256) == 64
    s.templates_dir.mkdir(parents=True)
    (s.templates_dir / "consent-en.txt").write_text("Yes, send me {title}.\n")
    custom = magnets.consent_wording(s, magnet)
    assert custom.text == "Yes, send me The guide."
    assert custom.version == f"custom-{custom.sha256[:10]}"


def test_magnet_file_refuses_paths_outside_the_folder(tmp_path: Path, now) -> None:  # type: ignore[no-untyped-def]
    s = settings_for_test(tmp_path)
    (tmp_path / "secret.txt").write_text("x")
    magnet = Magnet(slug="g", title="G", file_path="magnets/../secret.txt", created_at=now)
    assert magnets.magnet_file(s, magnet) is None


def test_events_are_recorded(session: Session, tmp_path: Path, now) -> None:  # type: ignore[no-untyped-def]
    s = settings_for_test(tmp_path)
    magnet = magnets.add_magnet(session, s, "a", title="A", url="https://e.com/a", now=now)
    magnets.record_event(session, magnets.EVENT_VIEW, now=now, magnet_id=magnet.id, ip="::1")
    session.flush()
    [event] = session.query(WebEvent).all()
    assert (event.kind, event.ip, event.occurred_at) == ("magnet_view", "::1", now)


def test_secret_rotate_keeps_old_keys(cli, workspace_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    ws = Path(workspace_env["LAUNCHKIT_HOME"])
    before = load_settings(ws, env={}).secret_keys
    r = cli("secret", "rotate")
    assert r.exit_code == 0, r.stderr
    after = load_settings(ws, env={}).secret_keys
    assert after[1:] == before and after[0] not in before
    assert stat.S_IMODE(os.stat(ws / SECRET_FILE).st_mode) == 0o600
    assert after[0] not in r.stdout
