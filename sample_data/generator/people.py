"""Random helpers and fictional people: names, unique emails, signup times, IPs, phones."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from random import Random

from generator.config import (
    IMPORT_TIME,
    PRELAUNCH_PROMO_START,
    SIGNUP_END,
    SIGNUP_START,
    TS,
    WEBINARS,
)
from generator.names import EN_FEMALE, EN_LAST, EN_MALE, FR_FEMALE, FR_LAST, FR_MALE
from generator.vocab import EN_DOMAINS, EN_TZ, FR_DOMAINS, FR_TZ, SOURCES


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def wchoice(rng: Random, pairs):
    """Weighted choice over [(value, weight), ...]."""
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for value, w in pairs:
        x -= w
        if x < 0:
            return value
    return pairs[-1][0]


def ascii_slug(s: str) -> str:
    s = s.replace("æ", "ae").replace("Æ", "AE").replace("œ", "oe").replace("Œ", "OE")
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")
    s = s.lower().replace(" ", "-").replace("'", "")
    return re.sub(r"[^a-z0-9.\-]", "", s)


ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*$")
LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?$")


def normalize_email(raw: str) -> str:
    """Reference normalization documented in README: trim + lowercase."""
    return raw.strip().lower()


def is_valid_email(raw: str) -> bool:
    """Reference validator documented in README (applied after normalize)."""
    e = normalize_email(raw)
    if e.count("@") != 1:
        return False
    local, domain = e.split("@")
    if not local or len(local) > 64 or not ATEXT.match(local):
        return False
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(LABEL.match(lb) for lb in labels):
        return False
    tld = labels[-1]
    return len(tld) >= 2 and (tld.isalpha() or tld.startswith("xn--"))


def ts(d: datetime | None) -> str:
    return d.strftime(TS) if d else ""


def rand_between(rng: Random, a: datetime, b: datetime) -> datetime:
    span = int((b - a).total_seconds())
    return a + timedelta(seconds=rng.randint(0, max(span, 0)))


def signup_time(rng: Random, source: str) -> datetime:
    if source == "import":
        return IMPORT_TIME + timedelta(seconds=rng.randint(0, 1100))
    if source == "webinar":
        wdate = wchoice(rng, WEBINARS)
        return rand_between(rng, wdate - timedelta(days=14), wdate - timedelta(minutes=5))
    if rng.random() < 0.16:  # pre-launch surge
        return rand_between(rng, PRELAUNCH_PROMO_START, SIGNUP_END)
    # density grows linearly toward the launch
    t = rng.random() ** 0.5
    span = (SIGNUP_END - SIGNUP_START).total_seconds()
    d = SIGNUP_START + timedelta(seconds=int(t * span))
    # nudge into waking hours (07:00-23:59 UTC) for realism
    if d.hour < 7:
        d = d.replace(hour=rng.randint(7, 22))
    return min(d, SIGNUP_END)


def test_ip(rng: Random) -> str:
    """Addresses from the RFC 5737 / RFC 3849 documentation ranges only."""
    r = rng.random()
    if r < 0.34:
        return f"192.0.2.{rng.randint(1, 254)}"
    if r < 0.67:
        return f"198.51.100.{rng.randint(1, 254)}"
    if r < 0.93:
        return f"203.0.113.{rng.randint(1, 254)}"
    return f"2001:db8:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"


def fake_phone(rng: Random, cc: str) -> str:
    """Numbers from ranges reserved for fiction (ARCEP, Ofcom, NANP 555-01xx)."""
    if cc in ("FR", "RE"):
        return f"+33 6 39 98 {rng.randint(0, 99):02d} {rng.randint(0, 99):02d}"
    if cc == "GB":
        return f"+44 7700 900{rng.randint(0, 999):03d}"
    if cc in ("US", "CA"):
        return f"+1 {rng.choice(['212', '514', '415', '617'])}-555-01{rng.randint(0, 99):02d}"
    return ""


# --------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------
class Ctx:
    def __init__(self, rng: Random):
        self.rng = rng
        self.used_emails: set[str] = set()  # membership only, never iterated
        self.used_leid: set[int] = set()
        self.used_euid: set[str] = set()

    def leid(self) -> str:
        while True:
            v = self.rng.randint(100_000_000, 999_999_999)
            if v not in self.used_leid:
                self.used_leid.add(v)
                return str(v)

    def euid(self) -> str:
        while True:
            v = "".join(self.rng.choice("0123456789abcdef") for _ in range(10))
            if v not in self.used_euid:
                self.used_euid.add(v)
                return v


def make_name(rng: Random, origin: str):
    if origin == "fr":
        first = rng.choice(FR_FEMALE if rng.random() < 0.62 else FR_MALE)
        last = rng.choice(FR_LAST)
    else:
        first = rng.choice(EN_FEMALE if rng.random() < 0.6 else EN_MALE)
        last = rng.choice(EN_LAST)
    return first, last


def make_email(ctx: Ctx, first: str, last: str, origin: str) -> str:
    rng = ctx.rng
    f, l = ascii_slug(first), ascii_slug(last).replace("-", "")
    for _ in range(200):
        style = rng.random()
        if style < 0.40:
            local = f"{f}.{l}"
        elif style < 0.55:
            local = f"{f}{l}"
        elif style < 0.65:
            local = f"{f[0]}.{l}"
        elif style < 0.72:
            local = f"{f}_{l}"
        elif style < 0.84:
            local = f"{f}.{l}{rng.randint(1, 99)}"
        elif style < 0.92:
            local = f"{f}{rng.choice(['', '.'])}{rng.randint(1960, 2004)}"
        else:
            local = f"{l}.{f}{rng.randint(1, 9)}"
        domain = wchoice(rng, FR_DOMAINS if origin == "fr" else EN_DOMAINS)
        email = f"{local}@{domain}"
        if email not in ctx.used_emails and is_valid_email(email):
            ctx.used_emails.add(email)
            return email
    raise RuntimeError("could not build a unique email")


def make_person(ctx: Ctx, source: str | None = None, origin: str | None = None) -> dict:
    rng = ctx.rng
    origin = origin or ("fr" if rng.random() < 0.6 else "en")
    first, last = make_name(rng, origin)
    email = make_email(ctx, first, last, origin)
    tz = wchoice(rng, FR_TZ if origin == "fr" else EN_TZ)
    source = source or wchoice(rng, SOURCES)
    return {
        "origin": origin,
        "first": first,
        "last": last,
        "email": email,
        "tz": tz,
        "source": source,
        "signup": signup_time(rng, source),
    }
