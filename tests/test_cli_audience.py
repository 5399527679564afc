"""`launchkit audience ...` and `launchkit segment ...` through typer's runner and a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from launchkit.resources import starter_dir

SAMPLE = starter_dir("sample_data")


def _csv(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_prints_the_summary_and_writes_rejects(cli, workspace_env) -> None:
    r = cli("audience", "import", str(SAMPLE / "audience_mailchimp.csv"))
    assert r.exit_code == 0, r.stderr
    rejects = Path(workspace_env["LAUNCHKIT_HOME"]) / "imports" / "audience_mailchimp.rejects.csv"
    assert r.stdout.splitlines() == [
        "imported 4897 new, 0 updated, 25 duplicates, 13 invalid, 0 suppressed",
        f"13 rejected rows written to {rejects}",
    ]
    with rejects.open(encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["row", "email", "reason"]
    first = json.loads(cli("audience", "list", "--json", "--limit", "1").stdout)[0]
    with (SAMPLE / "audience_mailchimp.csv").open(encoding="utf-8") as handle:
        optin = {r["Email Address"]: r["OPTIN_TIME"] for r in csv.DictReader(handle)}
    assert first["signed_up_at"] == optin[first["email"]].replace(" ", "T") + "Z"  # UTC kept
    r = cli("audience", "import", str(SAMPLE / "audience_mailchimp_unsubscribed.csv"), "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["new"], data["updated"], data["format"], data["dry_run"]) == (
        90, 10, "mailchimp", False,
    )  # fmt: skip
    r = cli("audience", "stats", "--json")
    stats = json.loads(r.stdout)
    assert stats["by_status"]["active"] == 4887 and stats["by_status"]["unsubscribed"] == 100
    assert stats["by_source"]["webinar"] > 0 and stats["by_tag"]["fr"] > 0
    assert sum(stats["by_month"].values()) == 4887
    r = cli("audience", "stats")
    assert r.exit_code == 0 and r.stdout.startswith("4987 subscribers\n")


def test_latin1_dry_run_warns_and_writes_nothing(cli) -> None:
    r = cli("audience", "import", str(SAMPLE / "generic_contacts_latin1.csv"), "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == (
        "imported 20 new, 0 updated, 0 duplicates, 0 invalid, 0 suppressed "
        "(dry run: nothing written)\n"
    )
    warning = "Warning: generic_contacts_latin1.csv is not UTF-8; it was read as Windows-1252."
    assert warning in r.stderr
    assert json.loads(cli("audience", "stats", "--json").stdout)["total"] == 0


def test_import_options(cli, tmp_path) -> None:
    path = _csv(tmp_path / "crm.csv", "Contact;Mail;Groupes\nAnna;anna@ex.fr;a,b\nBob;bob@ex.fr;\n")
    r = cli("audience", "import", path, "--map", "Contact=first_name", "--map", "Mail=email",
            "--map", "Groupes=tags", "--source", "salon", "--tag", "paris", "--json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["new"] == 2
    r = cli("audience", "list", "--json", "--segment", "tag:paris and source:salon")
    people = json.loads(r.stdout)
    assert [(p["email"], p["first_name"], p["tags"]) for p in people] == [
        ("anna@ex.fr", "Anna", ["a", "b", "paris"]),
        ("bob@ex.fr", "Bob", ["paris"]),
    ]
    assert people[0]["status"] == "active" and people[0]["signed_up_at"] is None
    r = cli("audience", "import", path, "--map", "Contact")
    assert (r.exit_code, r.stderr) == (
        1, 'Error: --map "Contact" must look like COLUMN=field, e.g. "Prénom=first_name".\n',
    )  # fmt: skip
    r = cli("audience", "import", path, "--format", "excel")
    assert r.stderr == 'Error: --format "excel" must be one of auto, mailchimp, kit, generic.\n'


def test_bad_inputs_exit_1_with_one_line(cli, tmp_path) -> None:
    empty = _csv(tmp_path / "empty.csv", "")
    r = cli("audience", "import", empty)
    assert (r.exit_code, r.stderr) == (1, "Error: empty.csv: the file is empty.\n")
    nomail = _csv(tmp_path / "nomail.csv", "Nom,Téléphone\nA,1\n")
    r = cli("audience", "import", nomail)
    assert r.stderr == (
        'Error: nomail.csv row 1: no email column found (columns: "Nom", "Téléphone"); '
        "name it with --map COLUMN=email.\n"
    )
    r = cli("audience", "import", str(tmp_path / "missing.csv"))
    assert r.exit_code == 1 and "missing.csv: no such file." in r.stderr
    assert json.loads(cli("audience", "stats", "--json").stdout)["total"] == 0


def test_list_export_tag_unsubscribe_suppress(cli, tmp_path) -> None:
    path = _csv(tmp_path / "people.csv",
                "email,first_name,created_at,tags,status\n"
                "zoe@ex.fr,=cmd|' /C calc'!A0,2026-01-02 10:00:00 UTC,\"webinar,fr\",active\n"
                "max@ex.fr,Max,2026-03-02 10:00:00 UTC,webinar,active\n")  # fmt: skip
    assert cli("audience", "import", path).exit_code == 0
    r = cli("audience", "tag", "ZOE@ex.fr", "vip", "Buyer")
    assert (r.exit_code, r.stdout) == (0, "added 2 tags to zoe@ex.fr\n")
    r = cli("audience", "tag", "--segment", "tag:webinar and not tag:vip", "vip")
    assert r.stdout == 'added 1 tags to segment "tag:webinar and not tag:vip"\n'
    r = cli("audience", "tag", "max@ex.fr")
    assert r.stderr == (
        "Error: Give an address and at least one tag, or --segment EXPR and tags.\n"
    )
    r = cli("audience", "untag", "max@ex.fr", "vip")
    assert r.stdout == "removed 1 tags from max@ex.fr\n"
    out = tmp_path / "out.csv"
    r = cli("audience", "export", str(out), "--segment", "tag:buyer")
    assert r.stdout == f"exported 1 subscribers to {out}\n"
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["first_name"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["tags"] == "buyer,fr,vip,webinar"
    listed = json.loads(cli("audience", "list", "--json", "--limit", "1").stdout)
    assert listed[0]["signed_up_at"] == "2026-03-02T10:00:00Z"  # Kit times are UTC
    assert [p["email"] for p in listed] == ["max@ex.fr"]
    zoe = json.loads(cli("audience", "list", "--json", "--segment", "tag:buyer").stdout)[0]
    assert zoe["first_name"] == "=cmd|' /C calc'!A0"  # JSON keeps the exact value
    r = cli("audience", "unsubscribe", "Max@Ex.fr", "--reason", "asked")
    assert r.stdout == "unsubscribed max@ex.fr\n"
    r = cli("audience", "unsubscribe", "max@ex.fr")
    assert r.stdout == "max@ex.fr was already unsubscribed\n"
    r = cli("audience", "unsubscribe", "nobody@ex.fr")
    assert (r.exit_code, r.stderr) == (1, 'Error: No subscriber has the address "nobody@ex.fr".\n')
    bounces = _csv(tmp_path / "bounces.txt", "zoe@ex.fr\nnew@ex.fr\nbroken@\n")
    r = cli("audience", "suppress", "--file", bounces, "--reason", "bounced")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "suppressed 2 new, 0 already, 1 invalid\n"
    assert r.stderr.startswith("Warning: bounces.txt row 3: ")
    stats = json.loads(cli("audience", "stats", "--json").stdout)
    assert stats["by_status"] == {
        "pending": 0, "active": 0, "unsubscribed": 1, "bounced": 1, "complained": 0,
    }  # fmt: skip
    r = cli("audience", "suppress", "--file", bounces, "--reason", "spam")
    assert r.stderr.startswith('Error: --reason "spam" must be one of')


def test_segments(cli, tmp_path) -> None:
    path = _csv(tmp_path / "p.csv", 'email,tags\na@ex.fr,webinar\nb@ex.fr,"webinar,buyer"\n')
    cli("audience", "import", path)
    r = cli("segment", "save", "hot", "tag:webinar and not tag:buyer")
    assert (r.exit_code, r.stdout) == (0, 'saved segment "hot": 1 active subscribers\n')
    r = cli("segment", "show", "hot")
    assert r.stdout == (
        "hot: tag:webinar and not tag:buyer\n"
        "1 active, 0 pending, 0 unsubscribed, 0 bounced, 0 complained\n"
    )
    data = json.loads(cli("segment", "list", "--json").stdout)
    assert data == [{"name": "hot", "expression": "tag:webinar and not tag:buyer", "active": 1}]
    r = cli("audience", "list", "--segment", "hot", "--json")
    assert [p["email"] for p in json.loads(r.stdout)] == ["a@ex.fr"]
    r = cli("segment", "save", "bad", "tag:webinar and")
    assert (r.exit_code, r.stderr) == (
        1, 'Error: Segment "tag:webinar and": expected a condition at column 16\n',
    )  # fmt: skip
    r = cli("segment", "show", "nope")
    assert r.exit_code == 1 and r.stderr.startswith('Error: No saved segment is named "nope"')


def test_import_as_a_real_subprocess(workspace_env, tmp_path) -> None:
    env = {**os.environ, **workspace_env}
    command = [sys.executable, "-m", "launchkit", "audience", "import",
               str(SAMPLE / "kit_subscribers.csv")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported 200 new, 0 updated, 0 duplicates, 0 invalid, 0 suppressed\n"
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"PK\x03\x04\x00\x00binary")
    done = subprocess.run([*command[:-1], str(bad)], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == (
        "Error: bin.csv line 1: a NUL byte; this is a binary file, not a CSV text file.\n"
    )


def test_bad_bytes_are_one_line_errors_without_row_content(cli, tmp_path) -> None:
    rows = [f"p{i}@ex.fr;Prénom{i};salon" for i in range(1, 1001)]
    rows[800] = "secret@ex.fr;Zo\0é;salon"
    path = tmp_path / "nul.csv"
    path.write_bytes(("Email;Prénom;Source\n" + "\n".join(rows) + "\n").encode())
    r = cli("audience", "import", str(path))
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == (
        "Error: nul.csv line 802: a NUL byte; this is a binary file, not a CSV text file.\n"
    )
    path.write_bytes(path.read_bytes().replace(b"Zo\0", b"Zo\xe9"))  # one Latin-1 byte
    r = cli("audience", "import", str(path))
    assert r.exit_code == 1
    assert r.stderr == (
        "Error: nul.csv line 802: a byte that is not UTF-8 in a file that is otherwise UTF-8, "
        "so its encoding cannot be decided; save it as UTF-8 and import it again.\n"
    )
    assert json.loads(cli("audience", "stats", "--json").stdout)["total"] == 0


def test_rejects_and_exports_are_owner_only(cli, workspace_env, tmp_path) -> None:
    imports = Path(workspace_env["LAUNCHKIT_HOME"]) / "imports"
    shutil.rmtree(imports)  # a workspace made before the folder existed
    old_umask = os.umask(0o022)
    try:
        path = _csv(tmp_path / "p.csv", "email,first_name\nana@ex.fr,Ana\nnot-an-email,X\n")
        assert cli("audience", "import", path).exit_code == 0
        out = tmp_path / "export.csv"
        assert cli("audience", "export", str(out)).exit_code == 0
    finally:
        os.umask(old_umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (imports, *imports.iterdir(), out)}
    assert modes == {"imports": 0o700, "p.rejects.csv": 0o600, "export.csv": 0o600}
