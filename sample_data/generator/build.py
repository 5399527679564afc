"""The generation itself: every list, its overlaps and mistakes, and the magnets."""

from __future__ import annotations

import csv
import os
from datetime import datetime, timedelta
from random import Random

from generator.config import (
    EXPORT_TIME,
    GENERIC_COLUMNS,
    GENERIC_OVERLAP,
    GENERIC_ROWS,
    INVALID_EMAILS,
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
    SEED,
    SIGNUP_END,
    TS,
)
from generator.magnets import CHECKLIST_P1, CHECKLIST_P2, GUIDE_P1, MINI_COURS_MD
from generator.pdf import build_pdf, page_stream
from generator.people import Ctx, make_person, rand_between, signup_time, ts, wchoice
from generator.rows import case_variant, mc_row, person_tags, write_csv
from generator.vocab import IDNA_EMAILS, MAGNET_TAGS, UNSUB_CAMPAIGNS, UNSUB_OTHER, UNSUB_REASONS


# --------------------------------------------------------------------------
# Main generation
# --------------------------------------------------------------------------
def generate(out: str, audience: int) -> dict:
    if audience < 600:
        raise SystemExit("--audience must be at least 600")
    rng = Random(SEED)
    ctx = Ctx(rng)

    n_unsub = max(20, round(audience * 0.02))  # 100 for 5000
    n_unsub_overlap = max(2, round(audience * 0.002))  # 10 for 5000
    n_unsub_only = n_unsub - n_unsub_overlap  # 90
    # people = valid unique subscribed + invalid rows + empty row + unsub-only
    n_sub_valid = audience - n_unsub_only - N_INVALID - N_EMPTY

    # ---- subscribed people ------------------------------------------------
    people = []
    for first, last, local, domain in IDNA_EMAILS:
        email = f"{local}@{domain}"
        ctx.used_emails.add(email)
        src = rng.choice(MAGNET_TAGS)
        people.append(
            {
                "origin": "fr",
                "first": first,
                "last": last,
                "email": email,
                "tz": "Europe/Paris",
                "source": src,
                "signup": signup_time(rng, src),
            }
        )
    while len(people) < n_sub_valid:
        people.append(make_person(ctx))

    rows = []  # (sort_key, row_dict, kind)
    n_mixed_case = n_spaces = 0
    for p in people:
        cell = p["email"]
        r = rng.random()
        if "xn--" not in cell and r < 0.035:
            cell = case_variant(rng, cell)
            n_mixed_case += 1
        elif r < 0.05:
            cell = rng.choice([" " + cell, cell + " ", "  " + cell + " ", cell + "  "])
            n_spaces += 1
        p["cell"] = cell
        p["tags"] = person_tags(rng, p)
        rows.append((p["signup"], mc_row(ctx, p, cell, p["tags"]), "ok"))

    # ---- duplicates (exactly N_DUPLICATES extra rows, distinct people) -----
    pool = [p for p in people if "xn--" not in p["email"] and p["email"] == p["cell"]]
    dup_people = rng.sample(pool, N_DUPLICATES)
    duplicates = []
    for i, p in enumerate(dup_people):
        variant = case_variant(rng, p["email"])
        if i % 3 == 0:
            variant = " " + variant + " "
        elif i % 3 == 1:
            variant = variant + "  "
        q = dict(p)
        kinds = []
        if i % 2 == 0:  # different tag
            other = [t for t in MAGNET_TAGS + ["webinar"] if t not in p["tags"]]
            new_tag = rng.choice(other)
            q["source"] = new_tag
            q["tags"] = [new_tag] + [t for t in p["tags"] if t in ("fr", "en")]
            kinds.append("different tag")
        else:
            q["tags"] = list(p["tags"])
        if i % 5 != 4:  # later OPTIN_TIME most of the time
            q["signup"] = min(
                p["signup"] + timedelta(days=rng.randint(1, 200), seconds=rng.randint(0, 86399)),
                SIGNUP_END,
            )
            kinds.append("later OPTIN_TIME")
        row = mc_row(ctx, q, variant, q["tags"])
        rows.append((q["signup"], row, "dup"))
        duplicates.append(
            {
                "original": p["cell"],
                "duplicate": variant,
                "normalized": p["email"],
                "differences": ["case/whitespace"] + kinds,
            }
        )

    # ---- invalid + empty rows --------------------------------------------
    invalid_rows = []
    for bad, why in INVALID_EMAILS:
        p = make_person(ctx)
        ctx.used_emails.discard(p["email"])
        row = mc_row(ctx, p, bad, person_tags(rng, p))
        rows.append((p["signup"], row, "invalid"))
        invalid_rows.append({"email": bad, "reason": why})
    p = make_person(ctx)
    ctx.used_emails.discard(p["email"])
    rows.append((p["signup"], mc_row(ctx, p, "", person_tags(rng, p)), "empty"))

    rows.sort(key=lambda t: (t[0], t[1]["LEID"]))
    sub_path = os.path.join(out, "audience_mailchimp.csv")
    write_csv(sub_path, MC_COLUMNS, [r for _, r, _ in rows], quoting=csv.QUOTE_ALL)

    # ---- unsubscribed ----------------------------------------------------
    dup_set = {p["email"] for p in dup_people}
    overlap_pool = [
        p
        for p in people
        if p["email"] not in dup_set and "xn--" not in p["email"] and p["email"] == p["cell"]
    ]
    overlap_people = rng.sample(overlap_pool, n_unsub_overlap)
    unsub_rows = []
    unsub_only_people = []
    campaign_ids = {}
    for title, _sent, _w in UNSUB_CAMPAIGNS:
        campaign_ids[title] = "".join(rng.choice("0123456789abcdef") for _ in range(10))

    def unsub_row(p, cell):
        base = mc_row(ctx, p, cell, p.get("tags") or person_tags(rng, p))
        start = datetime.strptime(base["CONFIRM_TIME"], TS) + timedelta(days=1)
        start = min(start, EXPORT_TIME - timedelta(days=1))
        reason = wchoice(rng, UNSUB_REASONS)
        # only campaigns sent after the person joined; admin removals have none
        sent_after = [
            (c, w) for c in UNSUB_CAMPAIGNS for w in [c[2]] if c[1] is None or c[1] > start
        ]
        if reason.startswith("N/A") or rng.random() < 0.05:
            title = ""
            ut = rand_between(rng, start, EXPORT_TIME - timedelta(hours=1))
        else:
            title, sent, _w = wchoice(rng, sent_after)
            if sent is None:
                ut = rand_between(rng, start, EXPORT_TIME - timedelta(hours=1))
            else:
                ut = min(
                    sent + timedelta(seconds=int(rng.expovariate(1 / 30000)) + 120),
                    EXPORT_TIME - timedelta(hours=1),
                )
        base["LAST_CHANGED"] = ts(ut)
        base.update(
            {
                "UNSUB_TIME": ts(ut),
                "UNSUB_CAMPAIGN_TITLE": title,
                "UNSUB_CAMPAIGN_ID": campaign_ids.get(title, ""),
                "UNSUB_REASON": reason,
                "UNSUB_REASON_OTHER": rng.choice(UNSUB_OTHER) if reason == "Other" else "",
            }
        )
        return (ut, base)

    unsub_overlap = []
    for p in overlap_people:
        cell = case_variant(rng, p["email"])
        unsub_rows.append(unsub_row(p, cell))
        unsub_overlap.append(
            {"subscribed_file": p["cell"], "unsubscribed_file": cell, "normalized": p["email"]}
        )
    for _ in range(n_unsub_only):
        p = make_person(ctx)
        unsub_only_people.append(p)
        unsub_rows.append(unsub_row(p, p["email"]))
    unsub_rows.sort(key=lambda t: (t[0], t[1]["LEID"]))
    write_csv(
        os.path.join(out, "audience_mailchimp_unsubscribed.csv"),
        MC_UNSUB_COLUMNS,
        [r for _, r in unsub_rows],
        quoting=csv.QUOTE_ALL,
    )

    # ---- Kit -------------------------------------------------------------
    overlap_set = {p["email"] for p in overlap_people}
    kit_pool = [p for p in people if p["email"] not in overlap_set]
    kit_sub = rng.sample(kit_pool, KIT_OVERLAP_SUBSCRIBED)
    kit_uns = rng.sample(unsub_only_people, KIT_OVERLAP_UNSUBSCRIBED)
    kit_new = [make_person(ctx) for _ in range(KIT_ROWS - len(kit_sub) - len(kit_uns))]
    statuses = [s for s, n in KIT_STATUS_COUNTS for _ in range(n)]
    rng.shuffle(statuses)
    kit_people = (
        [("subscribed", p) for p in kit_sub]
        + [("unsubscribed", p) for p in kit_uns]
        + [("new", p) for p in kit_new]
    )
    rng.shuffle(kit_people)
    kit_rows = []
    kit_summary = {"overlap_subscribed": [], "overlap_unsubscribed": []}
    for (kind, p), status in zip(kit_people, statuses):
        email = p["email"]
        if kind != "new" and rng.random() < 0.3:
            email = case_variant(rng, email)
        created = rand_between(rng, datetime(2025, 9, 1), SIGNUP_END)
        tags = []
        if rng.random() < 0.75:
            tags.append(rng.choice(MAGNET_TAGS))
        if rng.random() < 0.25:
            tags.append("webinar")
        if rng.random() < 0.15:
            tags.append("client-2025")
        kit_rows.append(
            [
                email,
                p["first"] if rng.random() < 0.93 else "",
                created.strftime(TS) + " UTC",
                ",".join(tags),
                status,
            ]
        )
        if kind != "new":
            kit_summary["overlap_" + kind].append(p["email"])
    write_csv(os.path.join(out, "kit_subscribers.csv"), KIT_COLUMNS, kit_rows, lineterminator="\n")

    # ---- generic French-Excel CSV ----------------------------------------
    gen_people = []
    for _ in range(LATIN1_ROWS):  # the first 20 rows (also in the Latin-1 file): accented names
        while True:
            p = make_person(ctx, origin="fr")
            if (
                p["first"].encode("ascii", "ignore").decode() != p["first"]
                or p["last"].encode("ascii", "ignore").decode() != p["last"]
            ):
                break
            ctx.used_emails.discard(p["email"])
        gen_people.append(("new", p))
    later = [("subscribed", p) for p in rng.sample(kit_pool, GENERIC_OVERLAP)]
    later += [
        ("new", make_person(ctx, origin="fr" if rng.random() < 0.8 else "en"))
        for _ in range(GENERIC_ROWS - LATIN1_ROWS - GENERIC_OVERLAP)
    ]
    rng.shuffle(later)
    gen_people += later
    gen_rows = []
    generic_overlap = []
    for kind, p in gen_people:
        d = rand_between(rng, datetime(2025, 6, 1), SIGNUP_END)
        tz = p["tz"] if rng.random() < 0.85 else ""
        gen_rows.append([p["email"], p["first"], p["last"], d.strftime("%d/%m/%Y"), tz])
        if kind == "subscribed":
            generic_overlap.append(p["email"])
    write_csv(
        os.path.join(out, "generic_contacts.csv"),
        GENERIC_COLUMNS,
        gen_rows,
        delimiter=";",
        encoding="utf-8-sig",
    )
    write_csv(
        os.path.join(out, "generic_contacts_latin1.csv"),
        LATIN1_COLUMNS,
        [r[:3] for r in gen_rows[:LATIN1_ROWS]],
        delimiter=";",
        encoding="latin-1",
    )

    # ---- lead magnets ----------------------------------------------------
    mdir = os.path.join(out, "magnets")
    os.makedirs(mdir, exist_ok=True)
    t1 = "Checklist : réussir son lancement"
    pdf1 = build_pdf(
        t1,
        [
            page_stream(t1, CHECKLIST_P1, "launchkit — lead magnet d'exemple (fictif) — page 1/2"),
            page_stream(
                None, CHECKLIST_P2, "launchkit — lead magnet d'exemple (fictif) — page 2/2"
            ),
        ],
    )
    t2 = "Guide : fixer le prix de sa formation"
    pdf2 = build_pdf(
        t2, [page_stream(t2, GUIDE_P1, "launchkit — lead magnet d'exemple (fictif) — page 1/1")]
    )
    with open(os.path.join(mdir, "checklist-lancement.pdf"), "wb") as fh:
        fh.write(pdf1)
    with open(os.path.join(mdir, "guide-tarifs.pdf"), "wb") as fh:
        fh.write(pdf2)
    with open(os.path.join(mdir, "mini-cours-email.md"), "wb") as fh:
        fh.write(MINI_COURS_MD.encode("utf-8"))

    return {
        "audience": audience,
        "n_sub_valid": n_sub_valid,
        "n_unsub": n_unsub,
        "n_unsub_overlap": n_unsub_overlap,
        "n_unsub_only": n_unsub_only,
        "n_mixed_case": n_mixed_case,
        "n_spaces": n_spaces,
        "invalid": invalid_rows,
        "duplicates": duplicates,
        "unsub_overlap": unsub_overlap,
        "kit": kit_summary,
        "generic_overlap": generic_overlap,
    }
