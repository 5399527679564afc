"""CSV rows per export format (Mailchimp cells, tags) and the CSV writer."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from random import Random

from generator.config import EXPORT_TIME, WEBINARS
from generator.people import Ctx, fake_phone, rand_between, test_ip, ts, wchoice
from generator.vocab import MAGNET_TAGS, SOURCE_TAG, STREETS, TZ_INFO


def case_variant(rng: Random, email: str) -> str:
    """A differently-cased spelling of email (never identical to it)."""
    local, domain = email.split("@")
    options = [
        email.upper(),
        local.capitalize() + "@" + domain,
        ".".join(p.capitalize() for p in local.split(".")) + "@" + domain.capitalize(),
        local + "@" + domain.upper(),
    ]
    options = [o for o in options if o != email]
    return rng.choice(options)


def mc_row(ctx: Ctx, p: dict, email_cell: str, tags: list[str]) -> dict:
    rng = ctx.rng
    tz = p["tz"]
    lat = lon = gmt = dst = cc = region = ""
    if tz:
        gmt, dst, cities = TZ_INFO[tz]
        city, la, lo, cc, region, _w = wchoice(rng, [(c, c[5]) for c in cities])
        lat = f"{la + rng.uniform(-0.08, 0.08):.7f}"
        lon = f"{lo + rng.uniform(-0.08, 0.08):.7f}"
    else:
        city = ""
    optin = p["signup"]
    if p["source"] == "import":
        optin_ip = confirm_ip = ""
        confirm = optin
    else:
        optin_ip = test_ip(rng)
        r = rng.random()
        if r < 0.7:
            confirm = optin + timedelta(seconds=rng.randint(20, 900))
        elif r < 0.95:
            confirm = optin + timedelta(seconds=rng.randint(900, 6 * 3600))
        else:
            confirm = optin + timedelta(seconds=rng.randint(6 * 3600, 3 * 86400))
        confirm = min(confirm, EXPORT_TIME - timedelta(minutes=30))
        confirm_ip = optin_ip if rng.random() < 0.8 else test_ip(rng)
    if rng.random() < 0.55:
        last_changed = confirm
    else:
        last_changed = rand_between(rng, confirm, EXPORT_TIME - timedelta(minutes=5))
    address = phone = notes = ""
    if rng.random() < 0.03 and cc in ("FR", "BE", "CH"):
        # Mailchimp joins addr1, addr2, city, state, zip, country with two spaces
        address = (
            f"{rng.randint(1, 120)} {rng.choice(STREETS)}    {city}    "
            f"{rng.randint(10, 95)}{rng.randint(0, 999):03d}  {cc}"
        )
    if rng.random() < 0.07:
        phone = fake_phone(rng, cc)
    if rng.random() < 0.004:
        notes = rng.choice(
            ["Cliente formation 2024", "A demandé une facture", "Partenaire affilié"]
        )
    rating = wchoice(rng, [("1", 3), ("2", 58), ("3", 20), ("4", 13), ("5", 6)])
    return {
        "Email Address": email_cell,
        "First Name": p["first"],
        "Last Name": p["last"],
        "Address": address,
        "Phone Number": phone,
        "Source": p["source"],
        "MEMBER_RATING": rating,
        "OPTIN_TIME": ts(optin),
        "OPTIN_IP": optin_ip,
        "CONFIRM_TIME": ts(confirm),
        "CONFIRM_IP": confirm_ip,
        "LATITUDE": lat,
        "LONGITUDE": lon,
        "GMTOFF": gmt,
        "DSTOFF": dst,
        "TIMEZONE": tz,
        "CC": cc,
        "REGION": region,
        "LAST_CHANGED": ts(last_changed),
        "LEID": ctx.leid(),
        "EUID": ctx.euid(),
        "NOTES": notes,
        "TAGS": tags_cell(tags),
    }


def tags_cell(tags: list[str]) -> str:
    return ",".join(f'"{t}"' for t in tags)


def person_tags(rng: Random, p: dict) -> list[str]:
    tags = [SOURCE_TAG[p["source"]]]
    if rng.random() < 0.12:  # grabbed a second magnet later
        extra = rng.choice(MAGNET_TAGS)
        if extra not in tags:
            tags.append(extra)
    if p["source"] != "webinar" and p["signup"] < WEBINARS[-1][0] and rng.random() < 0.08:
        tags.append("webinar")
    if rng.random() < 0.85:
        tags.append(p["origin"])
    return tags


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------
def write_csv(
    path,
    columns,
    rows,
    *,
    delimiter=",",
    quoting=csv.QUOTE_MINIMAL,
    lineterminator="\r\n",
    encoding="utf-8",
):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator=lineterminator)
    w.writerow(columns)
    for r in rows:
        w.writerow([r[c] for c in columns] if isinstance(r, dict) else r)
    with open(path, "wb") as fh:
        fh.write(buf.getvalue().encode(encoding))
