"""Read-back checks: every CSV and PDF read again and counted."""

from __future__ import annotations

import csv
import os
import re

from generator.config import (
    GENERIC_COLUMNS,
    GENERIC_OVERLAP,
    KIT_COLUMNS,
    KIT_OVERLAP_SUBSCRIBED,
    KIT_OVERLAP_UNSUBSCRIBED,
    KIT_ROWS,
    KIT_STATUS_COUNTS,
    LATIN1_COLUMNS,
    LATIN1_ROWS,
    MC_COLUMNS,
    MC_UNSUB_COLUMNS,
    N_DUPLICATES,
    N_EMPTY,
    N_INVALID,
)
from generator.names import FR_FEMALE, FR_MALE
from generator.people import is_valid_email, normalize_email


# --------------------------------------------------------------------------
# Read-back checks
# --------------------------------------------------------------------------
def read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def read_csv(path, encoding="utf-8", delimiter=","):
    with open(path, encoding=encoding, newline="") as fh:
        return list(csv.reader(fh, delimiter=delimiter))


def check_pdf(path: str, pages: int) -> None:
    data = read_bytes(path)
    assert data.startswith(b"%PDF-1.4\n"), path
    assert data.rstrip().endswith(b"%%EOF"), path
    sx = data.rindex(b"startxref")
    xref_at = int(data[sx:].split()[1])
    assert data[xref_at : xref_at + 4] == b"xref", "startxref does not point at xref"
    lines = data[xref_at:].split(b"\n")
    first, count = map(int, lines[1].split())
    assert first == 0
    for num in range(1, count):
        entry = lines[2 + num] + b"\n"
        assert len(entry) == 20, entry
        off = int(entry[:10])
        assert data[off:].startswith(b"%d 0 obj" % num), (path, num, off)
    for m in re.finditer(rb"<< /Length (\d+) >>\nstream\n", data):
        start = m.end()
        assert data[start + int(m.group(1)) :].startswith(b"endstream"), "bad /Length"
    assert data.count(b"/Type /Page ") == pages, path


def check(out: str, info: dict) -> dict:
    counts = {}
    rows = read_csv(os.path.join(out, "audience_mailchimp.csv"))
    raw = read_bytes(os.path.join(out, "audience_mailchimp.csv"))
    assert not raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") == raw.count(b"\n")
    assert rows[0] == MC_COLUMNS and all(len(r) == len(MC_COLUMNS) for r in rows)
    body = rows[1:]
    emails = [r[0] for r in body]
    empty = [e for e in emails if e.strip() == ""]
    invalid = [e for e in emails if e.strip() and not is_valid_email(e)]
    seen, dups = set(), []
    for e in emails:
        if e.strip() and is_valid_email(e):
            n = normalize_email(e)
            if n in seen:
                dups.append(e)
            seen.add(n)
    assert len(empty) == N_EMPTY, len(empty)
    assert len(invalid) == N_INVALID, invalid
    assert len(dups) == N_DUPLICATES, len(dups)
    counts["subscribed_rows"] = len(body)
    counts["subscribed_unique_valid"] = len(seen)
    counts["subscribed_empty"] = len(empty)
    counts["subscribed_invalid"] = len(invalid)
    counts["subscribed_duplicate_rows"] = len(dups)
    counts["subscribed_mixed_case_cells"] = sum(1 for e in emails if e.strip() != e.strip().lower())
    counts["subscribed_whitespace_cells"] = sum(1 for e in emails if e != e.strip())
    counts["subscribed_idna_rows"] = sum(1 for e in emails if not e.isascii())
    counts["by_source"] = {}
    for r in body:
        counts["by_source"][r[5]] = counts["by_source"].get(r[5], 0) + 1
    counts["by_source"] = dict(sorted(counts["by_source"].items(), key=lambda kv: -kv[1]))
    counts["by_timezone"] = {}
    for r in body:
        k = r[15] or "(empty)"
        counts["by_timezone"][k] = counts["by_timezone"].get(k, 0) + 1
    counts["by_timezone"] = dict(sorted(counts["by_timezone"].items(), key=lambda kv: -kv[1]))
    counts["by_tag"] = {}
    for r in body:
        for t in next(csv.reader([r[22]])) if r[22] else []:
            counts["by_tag"][t] = counts["by_tag"].get(t, 0) + 1
    counts["by_tag"] = dict(sorted(counts["by_tag"].items(), key=lambda kv: (-kv[1], kv[0])))
    counts["by_month"] = {}
    for r in body:
        m = r[7][:7]
        counts["by_month"][m] = counts["by_month"].get(m, 0) + 1
    counts["by_month"] = dict(sorted(counts["by_month"].items()))
    fr_names = set(FR_FEMALE + FR_MALE)
    counts["french_first_name_share"] = round(
        sum(1 for r in body if r[1] in fr_names) / len(body), 3
    )

    urows = read_csv(os.path.join(out, "audience_mailchimp_unsubscribed.csv"))
    assert urows[0] == MC_UNSUB_COLUMNS and all(len(r) == len(MC_UNSUB_COLUMNS) for r in urows)
    unsub_norm = [normalize_email(r[0]) for r in urows[1:]]
    assert all(is_valid_email(e) for e in unsub_norm) and len(set(unsub_norm)) == len(unsub_norm)
    overlap = [e for e in unsub_norm if e in seen]
    assert len(overlap) == info["n_unsub_overlap"]
    sub_cells = {normalize_email(e): e for e in emails}
    assert all(
        sub_cells[normalize_email(r[0])] != r[0] for r in urows[1:] if normalize_email(r[0]) in seen
    ), "overlap must differ in case"
    counts["unsubscribed_rows"] = len(urows) - 1
    counts["unsubscribed_also_in_subscribed"] = len(overlap)
    all_valid = seen | set(unsub_norm)
    counts["distinct_valid_emails_both_files"] = len(all_valid)
    counts["expected_active_after_import"] = len(seen) - len(overlap)
    counts["expected_unsubscribed_after_import"] = len(unsub_norm)
    counts["people_total_incl_invalid_and_empty"] = len(all_valid) + N_INVALID + N_EMPTY

    krows = read_csv(os.path.join(out, "kit_subscribers.csv"))
    assert krows[0] == KIT_COLUMNS and all(len(r) == 5 for r in krows)
    knorm = [normalize_email(r[0]) for r in krows[1:]]
    assert len(set(knorm)) == KIT_ROWS and all(is_valid_email(e) for e in knorm)
    counts["kit_rows"] = len(krows) - 1
    counts["kit_status"] = {s: sum(1 for r in krows[1:] if r[4] == s) for s, _ in KIT_STATUS_COUNTS}
    counts["kit_in_mailchimp_subscribed"] = sum(1 for e in knorm if e in seen)
    counts["kit_in_mailchimp_unsubscribed"] = sum(1 for e in knorm if e in set(unsub_norm))
    counts["kit_rows_with_multiple_tags"] = sum(1 for r in krows[1:] if "," in r[3])
    assert counts["kit_in_mailchimp_subscribed"] == KIT_OVERLAP_SUBSCRIBED
    assert counts["kit_in_mailchimp_unsubscribed"] == KIT_OVERLAP_UNSUBSCRIBED

    graw = read_bytes(os.path.join(out, "generic_contacts.csv"))
    assert graw.startswith(b"\xef\xbb\xbf") and graw.count(b"\r\n") == graw.count(b"\n")
    grows = read_csv(os.path.join(out, "generic_contacts.csv"), "utf-8-sig", ";")
    assert grows[0] == GENERIC_COLUMNS and all(len(r) == 5 for r in grows)
    counts["generic_rows"] = len(grows) - 1
    counts["generic_in_mailchimp_subscribed"] = sum(
        1 for r in grows[1:] if normalize_email(r[0]) in seen
    )
    assert counts["generic_in_mailchimp_subscribed"] == GENERIC_OVERLAP

    lraw = read_bytes(os.path.join(out, "generic_contacts_latin1.csv"))
    try:
        lraw.decode("utf-8")
        raise AssertionError("latin-1 file must not be valid UTF-8")
    except UnicodeDecodeError:
        pass
    lrows = read_csv(os.path.join(out, "generic_contacts_latin1.csv"), "latin-1", ";")
    assert lrows[0] == LATIN1_COLUMNS
    assert [r[:3] for r in grows[1 : LATIN1_ROWS + 1]] == lrows[1:]
    counts["latin1_rows"] = len(lrows) - 1

    check_pdf(os.path.join(out, "magnets", "checklist-lancement.pdf"), 2)
    check_pdf(os.path.join(out, "magnets", "guide-tarifs.pdf"), 1)
    return counts
