"""Audience library: normalization, imports of every format, dedupe, suppression, consent."""

from __future__ import annotations

import csv
import gc
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import email_validator
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from launchkit import audience
from launchkit.errors import InputError, NotFound
from launchkit.models import (
    Consent,
    Import,
    Subscriber,
    SubscriberTag,
    Suppression,
    SuppressionReason,
)
from launchkit.resources import starter_dir

SAMPLE = starter_dir("sample_data")
EXPECTED = json.loads((SAMPLE / "expected.json").read_text())["counts"]
SCALE = float(os.environ.get("LAUNCHKIT_TEST_SCALE", "1"))
MC_HEADER = ["Email Address", "First Name", "Last Name", "Source", "OPTIN_TIME", "OPTIN_IP",
             "CONFIRM_TIME", "TIMEZONE", "TAGS"]  # fmt: skip


def write_csv(path: Path, header: list[str], rows: list[list[str]], **kw) -> Path:
    encoding = kw.pop("encoding", "utf-8")
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, **kw)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def mc_row(email, first="", last="", source="webinar", optin="2026-03-01 10:00:00", ip="",
           tz="Europe/Paris", tags='"webinar"'):  # fmt: skip
    return [email, first, last, source, optin, ip, optin, tz, tags]


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def subscriber(session, email) -> Subscriber:
    return session.scalar(select(Subscriber).where(Subscriber.email == email))


def tags_of(session, email) -> list[str]:
    query = select(SubscriberTag.tag).join(Subscriber).where(Subscriber.email == email)
    return sorted(session.scalars(query))


# --- normalization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jean.Dupont@Example.COM ", "jean.dupont@example.com"),
        ("MARIE@CAFÉ.FR", "marie@xn--caf-dma.fr"),
        ("marie@café.fr", "marie@xn--caf-dma.fr"),
        ("zoé@éditions-étoile.fr", "zoé@xn--ditions-toile-9gbi.fr"),
        ("o'neil+news@ex.co.uk", "o'neil+news@ex.co.uk"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert audience.normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "it is empty"),
        ("jean..martin@orange.fr", "two periods in a row"),
        ("admin@localhost", "It should have a period"),
        ("emma@", "something after the @-sign"),
        ("x@example.test", "special-use or reserved name"),
    ],
)
def test_normalize_email_says_why(raw: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as caught:
        audience.normalize_email(raw)
    assert "is not a valid email address" in str(caught.value)


ATOMS = st.text(alphabet="abcz09_+-.!#'é", min_size=0, max_size=12)
LABELS = st.text(alphabet="abxz09-é", min_size=0, max_size=12)
TLDS = st.sampled_from(["fr", "com", "test", "local", "x", "c0m", "museum", "localhost", "arpa"])


@settings(max_examples=600, deadline=None)
@given(
    local=ATOMS,
    labels=st.lists(LABELS, min_size=0, max_size=3),
    tld=TLDS,
    extra=st.sampled_from(["", "@", ".", "..", " ", "xn--", "-"]),
)
def test_fast_path_is_a_subset(local: str, labels: list[str], tld: str, extra: str) -> None:
    """Whatever the regex fast path accepts, email-validator accepts unchanged."""
    for email in (f"{local}@{'.'.join([*labels, tld])}", f"{local}{extra}@{extra}{tld}.fr",
                  f"{local}@{extra}{'.'.join(labels)}.{tld}"):  # fmt: skip
        if audience.fast_valid(email):
            valid = email_validator.validate_email(email, check_deliverability=False)
            assert valid.normalized == email
            assert valid.ascii_email == email


def test_fast_path_handles_the_common_case() -> None:
    assert audience.fast_valid("jean.dupont-2+news@mail.orange.fr")
    for rejected in ("a@xn--caf-dma.fr", "a@b.test", "a@b.local", "a.@b.fr", "a@b", "a@-b.fr"):
        assert not audience.fast_valid(rejected)
    assert not audience.fast_valid("a" * 65 + "@b.fr")


def test_neutralize_cell() -> None:
    for risky in ("=1+2", "+33 6", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert audience.neutralize_cell(risky) == "'" + risky
    for safe in ("Zoé", "", "a=b", "'quoted"):
        assert audience.neutralize_cell(safe) == safe


# --- sample files ------------------------------------------------------------------------------


def test_mailchimp_sample_then_unsubscribed(session, now, tmp_path) -> None:
    rejects = tmp_path / "rejects.csv"
    result = audience.import_subscribers(
        session, SAMPLE / "audience_mailchimp.csv", now=now, rejects_path=rejects
    )
    assert result.format == "mailchimp"
    assert result.rows == EXPECTED["subscribed_rows"]
    assert result.new == EXPECTED["subscribed_unique_valid"]
    assert result.duplicates == EXPECTED["subscribed_duplicate_rows"]
    assert result.invalid == EXPECTED["subscribed_invalid"] + EXPECTED["subscribed_empty"]
    assert (result.updated, result.suppressed) == (0, 0)
    with rejects.open(encoding="utf-8") as handle:
        rejected = list(csv.DictReader(handle))
    assert len(rejected) == 13
    assert {r["email"].lstrip("'") for r in rejected if r["email"]} == {
        item["email"] for item in json.loads((SAMPLE / "expected.json").read_text())[
            "invalid_emails"]
    }  # fmt: skip
    assert all(int(r["row"]) >= 2 and r["reason"] for r in rejected)
    assert subscriber(session, "m.maillard@outlook.fr") is not None  # duplicate merged

    result = audience.import_subscribers(
        session, SAMPLE / "audience_mailchimp_unsubscribed.csv", now=now
    )
    assert (result.new, result.updated) == (90, 10)
    statuses = dict(
        session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    )
    assert statuses == {
        "active": EXPECTED["expected_active_after_import"],
        "unsubscribed": EXPECTED["expected_unsubscribed_after_import"],
    }
    assert count(session, Suppression) == 100
    stats = audience.audience_stats(session)
    assert stats["by_status"]["active"] == 4887
    assert sum(stats["by_month"].values()) == 4887
    assert count(session, Consent) == 4987
    withdrawn = select(func.count()).select_from(Consent).where(Consent.withdrawn_at.is_not(None))
    assert session.scalar(withdrawn) == 100


def test_unsubscribed_first_then_subscribed_keeps_them_out(session, now) -> None:
    audience.import_subscribers(session, SAMPLE / "audience_mailchimp_unsubscribed.csv", now=now)
    result = audience.import_subscribers(session, SAMPLE / "audience_mailchimp.csv", now=now)
    assert result.suppressed == EXPECTED["unsubscribed_also_in_subscribed"]
    assert result.new == 4887
    assert audience.count_subscribers(session) == 4887
    assert audience.count_subscribers(session, statuses=("unsubscribed",)) == 100


def test_kit_and_generic_samples(session, now) -> None:
    result = audience.import_subscribers(session, SAMPLE / "kit_subscribers.csv", now=now)
    assert result.format == "kit"
    assert result.new == EXPECTED["kit_rows"]
    by_status = {s: audience.count_subscribers(session, statuses=(s,)) for s in
                 ("active", "unsubscribed", "bounced", "complained")}  # fmt: skip
    assert by_status == {"active": 170, "unsubscribed": 16, "bounced": 9, "complained": 5}
    assert count(session, Suppression) == 30
    result = audience.import_subscribers(session, SAMPLE / "generic_contacts.csv", now=now)
    assert (result.format, result.rows, result.invalid, result.warnings) == ("generic", 50, 0, [])
    first = session.scalar(
        select(Subscriber).where(Subscriber.source == "generic_contacts").limit(1)
    )
    assert first.first_name and first.signed_up_at is not None
    result = audience.import_subscribers(session, SAMPLE / "generic_contacts_latin1.csv", now=now)
    assert result.warnings == [
        "generic_contacts_latin1.csv is not UTF-8; it was read as Windows-1252."
    ]
    assert (result.new, result.updated) == (0, 20)


# --- rules --------------------------------------------------------------------------------------


def test_dedupe_and_merge_within_file_and_against_db(session, now, tmp_path) -> None:
    path = write_csv(tmp_path / "one.csv", MC_HEADER, [
        mc_row("anna@ex.fr", "", "Martin", optin="2026-05-01 10:00:00", tags='"a"'),
        mc_row(" ANNA@EX.FR ", "Anna", "Other", optin="2026-02-01 10:00:00", tags='"b","fr"'),
        mc_row("bob@ex.fr", "Bob", "", optin="2026-06-01 10:00:00", tags='"a"'),
    ])  # fmt: skip
    result = audience.import_subscribers(session, path, now=now, tags=["Imported"])
    assert (result.new, result.duplicates, result.rows) == (2, 1, 3)
    anna = subscriber(session, "anna@ex.fr")
    assert (anna.first_name, anna.last_name, anna.language) == ("Anna", "Martin", "fr")
    assert anna.signed_up_at == datetime(2026, 2, 1, 10, tzinfo=UTC)
    assert tags_of(session, "anna@ex.fr") == ["a", "b", "fr", "imported"]
    path2 = write_csv(tmp_path / "two.csv", MC_HEADER, [
        mc_row("Bob@Ex.fr", "Robert", "Durand", optin="2026-01-01 08:00:00", tags='"c"'),
    ])  # fmt: skip
    result = audience.import_subscribers(session, path2, now=now)
    assert (result.new, result.updated) == (0, 1)
    bob = subscriber(session, "bob@ex.fr")
    assert (bob.first_name, bob.last_name) == ("Bob", "Durand")  # filled, not overwritten
    assert bob.signed_up_at == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert tags_of(session, "bob@ex.fr") == ["a", "c", "imported"]


def test_mailchimp_unsubscribed_and_cleaned_exports(session, now, tmp_path) -> None:
    header = [*MC_HEADER[:7], "UNSUB_TIME", "UNSUB_REASON", *MC_HEADER[7:]]
    unsub = write_csv(tmp_path / "unsub.csv", header, [
        ["u@ex.fr", "U", "", "webinar", "2026-01-01 10:00:00", "", "", "2026-05-02 08:00:00",
         "N/A", "Europe/Paris", '"webinar"'],
    ])  # fmt: skip
    header = [*MC_HEADER[:7], "CLEAN_TIME", "CLEAN_CAMPAIGN_TITLE", *MC_HEADER[7:]]
    cleaned = write_csv(tmp_path / "cleaned.csv", header, [
        ["c@ex.fr", "C", "", "webinar", "2026-01-01 10:00:00", "", "", "2026-06-01 08:00:00",
         "", "", ""],
    ])  # fmt: skip
    assert audience.import_subscribers(session, unsub, now=now).new == 1
    assert audience.import_subscribers(session, cleaned, now=now).new == 1
    u, c = subscriber(session, "u@ex.fr"), subscriber(session, "c@ex.fr")
    assert (u.status, u.unsubscribed_at) == ("unsubscribed", datetime(2026, 5, 2, 8, tzinfo=UTC))
    assert (c.status, c.unsubscribed_at) == ("bounced", None)
    reasons = dict(session.execute(select(Suppression.email, Suppression.reason)).all())
    assert reasons == {"u@ex.fr": "unsubscribed", "c@ex.fr": "bounced"}
    consent = session.scalar(select(Consent).where(Consent.subscriber_id == u.id))
    assert consent.withdrawn_at == datetime(2026, 5, 2, 8, tzinfo=UTC)


def test_stale_rejects_file_is_removed(session, now, tmp_path) -> None:
    rejects = tmp_path / "r.csv"
    path = write_csv(tmp_path / "a.csv", MC_HEADER, [mc_row("bad@"), mc_row("ok@ex.fr")])
    assert audience.import_subscribers(session, path, now=now, rejects_path=rejects).rejects_path
    path = write_csv(tmp_path / "a.csv", MC_HEADER, [mc_row("ok2@ex.fr")])
    result = audience.import_subscribers(session, path, now=now, rejects_path=rejects)
    assert result.rejects_path is None and not rejects.exists()


def test_consent_is_recorded_once_and_never_overwritten(session, now, tmp_path) -> None:
    first = write_csv(
        tmp_path / "first.csv",
        MC_HEADER,
        [mc_row("c@ex.fr", ip="192.0.2.7", optin="2026-04-01 09:00:00")],
    )
    audience.import_subscribers(session, first, now=now)
    second = write_csv(
        tmp_path / "second.csv",
        MC_HEADER,
        [mc_row("C@EX.FR", ip="198.51.100.9", optin="2026-01-01 09:00:00")],
    )
    audience.import_subscribers(session, second, now=now, source="other")
    consents = list(session.scalars(select(Consent)))
    assert len(consents) == 1
    consent = consents[0]
    assert (consent.method, consent.ip, consent.source) == ("import", "192.0.2.7", "webinar")
    assert consent.given_at == datetime(2026, 4, 1, 9, tzinfo=UTC)
    record = session.get(Import, consent.import_id)
    assert record.file_name == "first.csv" and len(record.file_sha256) == 64
    assert record.counts["new"] == 1


@pytest.mark.parametrize("variant", ["Marie@Café.fr", "MARIE@xn--caf-dma.fr", " marie@CAFÉ.FR"])
def test_suppression_wins_on_reimport(session, now, tmp_path, variant) -> None:
    audience.suppress(session, "marie@café.fr", SuppressionReason.COMPLAINED, now=now)
    path = write_csv(tmp_path / "again.csv", MC_HEADER, [mc_row(variant), mc_row("new@ex.fr")])
    result = audience.import_subscribers(session, path, now=now)
    assert (result.new, result.suppressed) == (1, 1)
    assert subscriber(session, "marie@xn--caf-dma.fr") is None
    assert audience.is_suppressed(session, variant)
    assert not audience.is_suppressed(session, "new@ex.fr")


def test_unsubscribed_subscriber_is_never_reactivated(session, now, tmp_path) -> None:
    path = write_csv(tmp_path / "a.csv", MC_HEADER, [mc_row("paul@ex.fr", tags='"a"')])
    audience.import_subscribers(session, path, now=now)
    paul = subscriber(session, "paul@ex.fr")
    assert audience.unsubscribe(session, paul.id, now=now, method="link", reason="too many")
    assert not audience.unsubscribe(session, paul.id, now=now, method="link")
    again = write_csv(tmp_path / "b.csv", MC_HEADER, [mc_row("PAUL@ex.fr", tags='"b"')])
    result = audience.import_subscribers(session, again, now=now)
    assert (result.updated, result.suppressed) == (0, 1)
    session.refresh(paul)
    assert paul.status == "unsubscribed" and paul.unsubscribed_at == now
    assert tags_of(session, "paul@ex.fr") == ["a"]
    consent = session.scalar(select(Consent).where(Consent.subscriber_id == paul.id))
    assert (consent.withdrawn_at, consent.withdrawal_method) == (now, "link")
    assert session.scalar(select(Suppression.detail)) == "link: too many"


def test_suppress_sets_status_and_is_idempotent(session, now, tmp_path) -> None:
    path = write_csv(tmp_path / "a.csv", MC_HEADER, [mc_row("b@ex.fr")])
    audience.import_subscribers(session, path, now=now)
    audience.suppress(session, "B@EX.FR", SuppressionReason.BOUNCED, now=now, detail="550")
    audience.suppress(session, "b@ex.fr", SuppressionReason.BOUNCED, now=now)
    assert count(session, Suppression) == 1
    assert subscriber(session, "b@ex.fr").status == "bounced"
    with pytest.raises(InputError):
        audience.suppress(session, "not-an-address", SuppressionReason.MANUAL, now=now)


def test_suppress_file(session, now, tmp_path) -> None:
    plain = tmp_path / "bounces.txt"
    plain.write_text("x@ex.fr\nX@EX.FR\nnot-an-email\n\ny@ex.fr\n", encoding="utf-8")
    result = audience.suppress_file(session, plain, now=now)
    assert (result.added, result.already, result.invalid) == (2, 1, 1)
    assert result.invalid_rows[0].startswith("row 3: ")
    with_header = write_csv(tmp_path / "list.csv", ["Name", "Courriel"], [["Z", "z@ex.fr"]],
                            delimiter=";")  # fmt: skip
    assert audience.suppress_file(session, with_header, now=now).added == 1
    assert count(session, Suppression) == 3


def test_tags(session, now, tmp_path) -> None:
    path = write_csv(tmp_path / "a.csv", MC_HEADER, [mc_row("a@ex.fr"), mc_row("b@ex.fr")])
    audience.import_subscribers(session, path, now=now)
    ids = audience.segment_ids(session, "tag:webinar")
    assert audience.add_tags(session, ids, [" VIP ", "buyer"]) == 4
    assert audience.add_tags(session, ids, ["vip"]) == 0
    assert audience.count_subscribers(session, "tag:vip and tag:buyer") == 2
    assert audience.remove_tags(session, ids[:1], ["vip", "nope"]) == 1
    assert audience.count_subscribers(session, "tag:vip") == 1
    assert audience.add_tags(session, ids, [" "]) == 0
    with pytest.raises(NotFound):
        audience.get_subscriber(session, "nobody@ex.fr")


def test_export_round_trip_neutralizes_formulas(session, now, tmp_path) -> None:
    names = ['=HYPERLINK("http://x")', "+33 6", "-Zoé", "@SUM(A1)", "Hélène"]
    rows = [mc_row(f"p{i}@ex.fr", name, "Ok") for i, name in enumerate(names)]
    rows.append(mc_row("-dash@ex.fr", "Dash"))
    audience.import_subscribers(session, write_csv(tmp_path / "in.csv", MC_HEADER, rows), now=now)
    out = tmp_path / "out.csv"
    assert audience.export_subscribers(session, out) == 6
    with out.open(encoding="utf-8", newline="") as handle:
        exported = {r["email"]: r for r in csv.DictReader(handle)}
    assert exported["p0@ex.fr"]["first_name"] == '\'=HYPERLINK("http://x")'
    assert exported["p1@ex.fr"]["first_name"] == "'+33 6"
    assert exported["p2@ex.fr"]["first_name"] == "'-Zoé"
    assert exported["p3@ex.fr"]["first_name"] == "'@SUM(A1)"
    assert exported["p4@ex.fr"]["first_name"] == "Hélène"
    assert exported["'-dash@ex.fr"]["signed_up_at"] == "2026-03-01 10:00:00"
    for cell in (c for r in exported.values() for c in r.values()):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    # the export imports back to the same people and names
    session.execute(Subscriber.__table__.delete())
    result = audience.import_subscribers(session, out, now=now)
    assert (result.new, result.invalid) == (6, 0)
    assert subscriber(session, "p0@ex.fr").first_name == names[0]
    assert subscriber(session, "-dash@ex.fr").first_name == "Dash"


# --- bad input and transactions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty.csv: the file is empty."),
        (b"\xef\xbb\xbf\r\n", "empty.csv: the file is empty."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
         "empty.csv line 3: a NUL byte; this is a binary file, not a CSV text file."),
        (b"Name,Phone\nAnna,0639980000\n",
         'empty.csv row 1: no email column found (columns: "Name", "Phone"); '
         "name it with --map COLUMN=email."),
        (b"Email,Name,email\na@ex.fr,A,b@ex.fr\n",
         'empty.csv row 1: duplicate column "email" (columns 1 and 3).'),
        (b'"Email;Name"\n"a@ex.fr;A"\n',
         'empty.csv row 1: the only column "Email;Name" contains ";"; '
         "the delimiter looks wrong (use ; , or tab)."),
        (b"Email,Name,Tags\na@ex.fr;Anna;x\n",
         'empty.csv row 2: 1 field where the header has 3, and it contains ";"; '
         "the rows use another delimiter than the header."),
    ],
)  # fmt: skip
def test_bad_files_fail_in_one_line(session, now, tmp_path, content, message) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        audience.import_subscribers(session, path, now=now)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert count(session, Import) == 0


def test_unclosed_quote_names_the_line(session, now, tmp_path) -> None:
    path = tmp_path / "quote.csv"
    path.write_bytes(b'Email,Name\na@ex.fr,"Anna\n' + b"b@ex.fr,B\n" * 20_000)
    with pytest.raises(InputError) as caught:
        audience.import_subscribers(session, path, now=now)
    assert re.fullmatch(
        r"quote\.csv line \d+: field larger than field limit \(131072\) "
        r"\(an unclosed quote runs on to here\?\)\.",
        str(caught.value),
    )
    assert count(session, Import) == 0 and count(session, Subscriber) == 0


def test_garbage_collection_is_back_on_after_an_import(session, now, tmp_path) -> None:
    good = write_csv(tmp_path / "good.csv", ["email"], [["a@ex.fr"]])
    assert audience.import_subscribers(session, good, now=now).new == 1
    assert gc.isenabled()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"Email,Name,Tags\na@ex.fr;Anna;x\n")
    with pytest.raises(InputError):
        audience.import_subscribers(session, bad, now=now)
    assert gc.isenabled()


def test_mapping_and_generic_columns(session, now, tmp_path) -> None:
    path = write_csv(
        tmp_path / "crm.csv",
        ["Contact", "Adresse e-mail", "Joined", "Zone", "Statut"],
        [["Anna", "anna@ex.fr", "03/02/2026", "Europe/Paris", "actif"],
         ["Bob", "bob@ex.fr", "2026-02-04", "Mars/Base", "désabonné"]],
        delimiter="\t",
    )  # fmt: skip
    result = audience.import_subscribers(
        session, path, now=now, mapping={"Contact": "first_name", "Joined": "signed_up_at"}
    )
    assert (result.new, result.invalid) == (2, 0)
    assert result.warnings == ["1 rows had an unknown timezone (left empty)."]
    anna, bob = subscriber(session, "anna@ex.fr"), subscriber(session, "bob@ex.fr")
    assert (anna.first_name, anna.source, anna.timezone) == ("Anna", "crm", "Europe/Paris")
    assert anna.signed_up_at == datetime(2026, 2, 3, tzinfo=UTC)
    assert (bob.status, bob.timezone) == ("unsubscribed", None)
    with pytest.raises(InputError, match='--map "Nope=first_name": crm.csv has no column "Nope"'):
        audience.import_subscribers(session, path, now=now, mapping={"Nope": "first_name"})
    with pytest.raises(InputError, match='--map "Contact=age": the field must be one of'):
        audience.import_subscribers(session, path, now=now, mapping={"Contact": "age"})


def _big_file(path: Path, rows: int, bad: dict[int, str]) -> Path:
    data = [mc_row(bad.get(i, f"person{i}@example.fr"), f"P{i}") for i in range(rows)]
    return write_csv(path, MC_HEADER, data, lineterminator="\r\n", quoting=csv.QUOTE_ALL)


def test_three_bad_rows_among_ten_thousand(session, now, tmp_path) -> None:
    rows = max(100, int(10_000 * SCALE))
    bad = {17: "nobody.example.fr", rows // 2: "two@@example.fr", rows - 1: ""}
    path = _big_file(tmp_path / "big.csv", rows, bad)
    rejects = tmp_path / "big.rejects.csv"
    result = audience.import_subscribers(
        session, path, now=now, rejects_path=rejects, chunk_size=3_000
    )
    assert (result.new, result.invalid, result.rows) == (rows - 3, 3, rows)
    with rejects.open(encoding="utf-8") as handle:
        rejected = list(csv.reader(handle))
    assert [r[:2] for r in rejected[1:]] == [
        ["19", "nobody.example.fr"], [str(rows // 2 + 2), "two@@example.fr"], [str(rows + 1), ""]
    ]  # fmt: skip
    assert rejected[3][2] == "empty email address"
    assert count(session, Subscriber) == rows - 3
    assert count(session, Consent) == rows - 3


def test_interrupted_import_leaves_nothing(sessions, now, tmp_path) -> None:
    rows = max(2_000, int(10_000 * SCALE))
    path = _big_file(tmp_path / "big.csv", rows, {3: "bad@@x.fr"})
    rejects = tmp_path / "big.rejects.csv"

    def stop(done: int) -> None:
        if done >= rows // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), sessions.begin() as session:
        audience.import_subscribers(
            session, path, now=now, progress=stop, chunk_size=500, rejects_path=rejects
        )
    with sessions.begin() as session:
        for model in (Subscriber, SubscriberTag, Consent, Import, Suppression):
            assert count(session, model) == 0, model
    assert not rejects.exists()
    assert not list(tmp_path.glob("*.part"))


def test_dry_run_writes_nothing(session, now, tmp_path) -> None:
    path = write_csv(tmp_path / "a.csv", MC_HEADER, [mc_row("a@ex.fr"), mc_row("bad@")])
    result = audience.import_subscribers(
        session, path, now=now, dry_run=True, rejects_path=tmp_path / "r.csv"
    )
    assert (result.new, result.invalid) == (1, 1)
    assert count(session, Subscriber) == 0 and count(session, Import) == 0
    assert (tmp_path / "r.csv").exists()


# --- encodings, control characters, NUL bytes, files that change -------------------------------

FR_ROWS = [
    ("zoe@ex.fr", "Zoé", "L’Œuvre", "salon à 10 €"),
    ("ana@ex.fr", "Anaïs", "Dupont–Moreau", "« webinar »"),
    ("jo@ex.fr", "Jérôme", "Lefèvre", "instagram"),
]


def _fr_bytes(encoding: str, rows=FR_ROWS) -> bytes:
    lines = ["Email;Prénom;Nom;Source", *(";".join(row) for row in rows)]
    return "".join(line + "\r\n" for line in lines).encode(encoding)


def _stored_people(session) -> list[tuple[str, str, str, str]]:
    query = select(Subscriber.email, Subscriber.first_name, Subscriber.last_name, Subscriber.source)
    return sorted(tuple(row) for row in session.execute(query))


def test_windows_1252_file_decodes_as_such(session, now, tmp_path) -> None:
    raw = _fr_bytes("cp1252")
    assert b"\x92" in raw and b"\x80" in raw and b"\x8c" in raw  # ’ € Œ, C1 in Latin-1
    path = tmp_path / "excel.csv"
    path.write_bytes(raw)
    result = audience.import_subscribers(session, path, now=now)
    assert result.warnings == ["excel.csv is not UTF-8; it was read as Windows-1252."]
    assert _stored_people(session) == sorted(FR_ROWS)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_utf8_with_or_without_bom(session, now, tmp_path, encoding) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(_fr_bytes(encoding))
    assert audience.import_subscribers(session, path, now=now).warnings == []
    assert _stored_people(session) == sorted(FR_ROWS)


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"x@ex.fr;Andr\xe9;Roy;salon\r\n",  # one Latin-1 byte in a UTF-8 file
         "mixed.csv line 5: a byte that is not UTF-8 in a file that is otherwise UTF-8, so its "
         "encoding cannot be decided; save it as UTF-8 and import it again."),
        (b"x@ex.fr;Andr\xc3;Roy;salon\r\n",  # a UTF-8 sequence cut short
         "mixed.csv line 5: a byte that is not UTF-8 in a file that is otherwise UTF-8, so its "
         "encoding cannot be decided; save it as UTF-8 and import it again."),
    ],
)  # fmt: skip
def test_mostly_utf8_with_a_stray_byte_is_refused(session, now, tmp_path, tail, message) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(_fr_bytes("utf-8") + tail + _fr_bytes("utf-8").split(b"\r\n", 1)[1])
    with pytest.raises(InputError) as caught:
        audience.import_subscribers(session, path, now=now)
    assert str(caught.value) == message
    assert (count(session, Import), count(session, Subscriber)) == (0, 0)


def test_byte_neither_utf8_nor_windows_1252_is_refused(session, now, tmp_path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(_fr_bytes("cp1252") + b"x@ex.fr;Andr\x81;Roy;salon\r\n")
    with pytest.raises(InputError) as caught:
        audience.import_subscribers(session, path, now=now)
    assert str(caught.value) == (
        "odd.csv line 5: byte 0x81 is neither UTF-8 nor Windows-1252 text; "
        "save the file as UTF-8 and import it again."
    )
    assert (count(session, Import), count(session, Subscriber)) == (0, 0)


def test_nul_byte_after_the_first_8_kb_names_its_line(session, now, tmp_path) -> None:
    rows = [f"p{i}@ex.fr;Prénom{i};Nom{i};salon" for i in range(1, 1001)]
    rows[700] = "secret@ex.fr;Zo\0é;Privé;salon"
    path = tmp_path / "nul.csv"
    path.write_bytes(("Email;Prénom;Nom;Source\n" + "\n".join(rows) + "\n").encode())
    assert path.read_bytes().index(b"\0") > 20_000
    with pytest.raises(InputError) as caught:
        audience.import_subscribers(session, path, now=now)
    assert str(caught.value) == (
        "nul.csv line 702: a NUL byte; this is a binary file, not a CSV text file."
    )
    assert (count(session, Import), count(session, Subscriber)) == (0, 0)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_control_characters_never_reach_a_stored_name(session, now, tmp_path, encoding) -> None:
    rows = [
        *FR_ROWS,
        ("bell@ex.fr", "Be\x07ll", "Ok", "salon"),
        ("tab@ex.fr", "Tab\tbed", "Ok", "salon"),  # a tab is kept
        ("del@ex.fr", "Ok", "De\x7fl", "salon"),
        ("esc@ex.fr", "Ok", "Ok", "sa\x1blon"),
    ]
    if encoding == "utf-8":
        rows.append(("c1@ex.fr", "Ok", "Nel\x85", "salon"))  # a C1 control, only UTF-8 has them
    path = tmp_path / "ctl.csv"
    path.write_bytes(_fr_bytes(encoding, rows))
    rejects = tmp_path / "ctl.rejects.csv"
    result = audience.import_subscribers(session, path, now=now, rejects_path=rejects)
    with rejects.open(encoding="utf-8", newline="") as handle:
        rejected = [row[1:] for row in csv.reader(handle)][1:]
    expected = [["bell@ex.fr", "first_name: control character U+0007"],
                ["del@ex.fr", "last_name: control character U+007F"],
                ["esc@ex.fr", "source: control character U+001B"]]  # fmt: skip
    if encoding == "utf-8":
        expected.append(["c1@ex.fr", "last_name: control character U+0085"])
    assert rejected == expected
    assert result.invalid == len(expected)
    assert _stored_people(session) == sorted([*FR_ROWS, ("tab@ex.fr", "Tab\tbed", "Ok", "salon")])


def _change_during_import(path: Path, how: str) -> None:
    before = path.stat()
    if how == "append":
        with path.open("ab") as handle:
            handle.write(b"late@ex.fr;Late;Row;salon\n")
    elif how == "truncate":
        os.truncate(path, before.st_size // 2)
    elif how in ("same size and time", "undecodable"):
        new = b"zz@ex.fr;Zz;Zz;zz" if how == "same size and time" else b"zz@ex.fr;\x81\x81;Zz;zz"
        with path.open("r+b") as handle:
            handle.seek(before.st_size - len(new) - 1)
            handle.write(new)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (
            before.st_size,
            before.st_mtime_ns,
        )


@pytest.mark.parametrize("how", ["append", "truncate", "same size and time", "undecodable"])
def test_file_changed_while_read_aborts_and_rolls_back(session, now, tmp_path, how) -> None:
    path = tmp_path / "moving.csv"
    rows = [f"p{i}@ex.fr;Prénom{i};Nom{i};salon" for i in range(6_000)]
    path.write_bytes(("Email;Prénom;Nom;Source\n" + "\n".join(rows) + "\n").encode("cp1252"))
    calls = []

    def progress(done: int) -> None:
        if not calls:
            _change_during_import(path, how)
        calls.append(done)

    rejects = tmp_path / "moving.rejects.csv"
    with pytest.raises(InputError) as caught:
        audience.import_subscribers(
            session, path, now=now, progress=progress, chunk_size=500, rejects_path=rejects
        )
    assert calls and str(caught.value) == (
        "moving.csv changed while it was being read (its size, modification time or content "
        "differ from the start); nothing was imported. Import it again once it is complete."
    )
    assert (count(session, Import), count(session, Subscriber), count(session, Consent)) == (
        0,
        0,
        0,
    )
    assert not rejects.exists()
