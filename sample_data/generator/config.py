"""Fixed seed, calendar, column layouts and the documented counts."""

from __future__ import annotations

from datetime import datetime

SEED = 2026

# --------------------------------------------------------------------------
# Fixed calendar (no dependency on today's date)
# --------------------------------------------------------------------------
SIGNUP_START = datetime(2025, 6, 1, 0, 0, 0)
SIGNUP_END = datetime(2026, 11, 15, 23, 59, 59)
IMPORT_TIME = datetime(2025, 6, 3, 14, 2, 11)  # bulk import of the old list
EXPORT_TIME = datetime(2026, 11, 16, 8, 30, 0)  # moment the export was taken
WEBINARS = [  # (date, weight) - free webinars that drive registrations
    (datetime(2026, 3, 19, 18, 0), 0.2),
    (datetime(2026, 6, 18, 18, 0), 0.3),
    (datetime(2026, 10, 22, 18, 0), 0.5),
]
PRELAUNCH_PROMO_START = datetime(2026, 10, 1)

TS = "%Y-%m-%d %H:%M:%S"

# --------------------------------------------------------------------------
# Column layouts
# --------------------------------------------------------------------------
MC_COLUMNS = [
    "Email Address",
    "First Name",
    "Last Name",
    "Address",
    "Phone Number",
    "Source",
    "MEMBER_RATING",
    "OPTIN_TIME",
    "OPTIN_IP",
    "CONFIRM_TIME",
    "CONFIRM_IP",
    "LATITUDE",
    "LONGITUDE",
    "GMTOFF",
    "DSTOFF",
    "TIMEZONE",
    "CC",
    "REGION",
    "LAST_CHANGED",
    "LEID",
    "EUID",
    "NOTES",
    "TAGS",
]
UNSUB_EXTRA = [
    "UNSUB_TIME",
    "UNSUB_CAMPAIGN_TITLE",
    "UNSUB_CAMPAIGN_ID",
    "UNSUB_REASON",
    "UNSUB_REASON_OTHER",
]
_i = MC_COLUMNS.index("LAST_CHANGED") + 1
MC_UNSUB_COLUMNS = MC_COLUMNS[:_i] + UNSUB_EXTRA + MC_COLUMNS[_i:]
KIT_COLUMNS = ["email", "first_name", "created_at", "tags", "status"]
GENERIC_COLUMNS = ["Courriel", "Prénom", "Nom", "Date d'inscription", "Fuseau horaire"]
LATIN1_COLUMNS = ["Email", "Prenom", "Nom"]

# --------------------------------------------------------------------------
# Fixed defect counts (documented in README.md)
# --------------------------------------------------------------------------
N_INVALID = 12
N_DUPLICATES = 25
N_EMPTY = 1
KIT_ROWS = 200
KIT_OVERLAP_SUBSCRIBED = 30
KIT_OVERLAP_UNSUBSCRIBED = 5
KIT_STATUS_COUNTS = [("active", 170), ("cancelled", 16), ("bounced", 9), ("complained", 5)]
GENERIC_ROWS = 50
GENERIC_OVERLAP = 10
LATIN1_ROWS = 20

# Each invalid address and why it is invalid (stored verbatim in the CSV).
INVALID_EMAILS = [
    ("marie.dupont.gmail.com", "missing @"),
    ("jean..martin@orange.fr", "consecutive dots in local part"),
    ("paul durand@free.fr", "space inside the address"),
    ("sophie.bernard@gmail.com,", "trailing comma"),
    ("admin@localhost", "no domain dot / localhost"),
    ("lucas.robert@@yahoo.fr", "two @ signs"),
    ("chloe.petit@gmail..com", "consecutive dots in domain"),
    ("emma.roux@", "empty domain"),
    ("@hotmail.com", "empty local part"),
    ("thomas.moreau@outlook", "no top-level domain"),
    (".hugo.lambert@free.fr", "local part starts with a dot"),
    ("antoine.mercier@gmail,com", "comma instead of dot in domain"),
]
assert len(INVALID_EMAILS) == N_INVALID
