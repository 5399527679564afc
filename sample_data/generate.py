#!/usr/bin/env python3
"""Generate launchkit's sample data (fictional people, fixed seed, stdlib only).

    python3 sample_data/generate.py                 # writes next to this file
    python3 sample_data/generate.py --out /tmp/sd   # writes elsewhere
    python3 sample_data/generate.py --audience 2000 # smaller audience

The output is byte-for-byte reproducible: one ``random.Random(2026)``, fixed
dates in 2025-2026, nothing read from the clock, the network or the locale.
After writing, the generator reads every CSV back with the ``csv`` module and
checks the documented counts (invalid rows, duplicates, overlaps); it exits
non-zero if any check fails.  README.md and expected.json are written from the
real numbers.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import unicodedata
from datetime import datetime, timedelta
from random import Random

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

# --------------------------------------------------------------------------
# Name pools (fictional combinations)
# --------------------------------------------------------------------------
FR_FEMALE = [
    "Hélène",
    "Anaïs",
    "Zoé",
    "Léa",
    "Bénédicte",
    "Gaëlle",
    "Chloé",
    "Émilie",
    "Céline",
    "Mélanie",
    "Élodie",
    "Clémence",
    "Inès",
    "Maëlle",
    "Noémie",
    "Sophie",
    "Camille",
    "Julie",
    "Marie",
    "Claire",
    "Manon",
    "Lucie",
    "Pauline",
    "Sarah",
    "Laura",
    "Aurélie",
    "Virginie",
    "Nathalie",
    "Isabelle",
    "Sandrine",
    "Valérie",
    "Stéphanie",
    "Agnès",
    "Françoise",
    "Geneviève",
    "Maïté",
    "Océane",
    "Andréa",
    "Joséphine",
    "Eléonore",
    "Margaux",
    "Justine",
    "Romane",
    "Louise",
    "Alice",
    "Juliette",
    "Capucine",
    "Solène",
    "Gwenaëlle",
    "Anne-Sophie",
    "Marie-Hélène",
    "Bérénice",
    "Rosalie",
    "Lætitia",
    "Noëlle",
]
FR_MALE = [
    "François",
    "Jérôme",
    "Noël",
    "Frédéric",
    "Stéphane",
    "Sébastien",
    "Grégoire",
    "Rémi",
    "Jérémy",
    "Loïc",
    "Gaël",
    "Joël",
    "Raphaël",
    "Mathéo",
    "Élie",
    "Thomas",
    "Nicolas",
    "Julien",
    "Pierre",
    "Antoine",
    "Maxime",
    "Alexandre",
    "Guillaume",
    "Vincent",
    "Olivier",
    "Laurent",
    "Christophe",
    "Benoît",
    "Cédric",
    "Hervé",
    "Thierry",
    "Clément",
    "Théo",
    "Hugo",
    "Lucas",
    "Louis",
    "Arthur",
    "Gabriel",
    "Mathis",
    "Baptiste",
    "Yannick",
    "Adrien",
    "Damien",
    "Jean-Pierre",
    "Jean-François",
    "Pierre-Yves",
    "Aurélien",
    "Valentin",
    "Étienne",
    "Bruno",
    "Léon",
    "Anthony",
    "Quentin",
    "Mickaël",
]
FR_LAST = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefebvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Müller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Masson",
    "Sanchez",
    "Gérard",
    "Nguyen",
    "Boyer",
    "Denis",
    "Lemaire",
    "Duval",
    "Joly",
    "Gautier",
    "Roger",
    "Roche",
    "Roy",
    "Noël",
    "Meyer",
    "Lucas",
    "Meunier",
    "Jean",
    "Pérez",
    "Marchand",
    "Dufour",
    "Blanchard",
    "Barbier",
    "Brun",
    "Dumas",
    "Brunet",
    "Schmitt",
    "Leroux",
    "Colin",
    "Fernandez",
    "Pierre",
    "Renard",
    "Arnaud",
    "Rolland",
    "Caron",
    "Aubert",
    "Giraud",
    "Leclerc",
    "Vidal",
    "Bourgeois",
    "Renaud",
    "Lemoine",
    "Picard",
    "Gaillard",
    "Philippe",
    "Leclercq",
    "Lacroix",
    "Fabre",
    "Dupuis",
    "Olivier",
    "Rodriguez",
    "Da Silva",
    "Hubert",
    "Louis",
    "Charles",
    "Guillot",
    "Rivière",
    "Le Gall",
    "Guillaume",
    "Adam",
    "Rey",
    "Moulin",
    "Gonzalez",
    "Berger",
    "Lecomte",
    "Ménard",
    "Fleury",
    "Deschamps",
    "Carpentier",
    "Julien",
    "Benoît",
    "Paris",
    "Maillard",
    "Marchal",
    "Aubry",
    "Vasseur",
    "Le Roux",
    "Renault",
    "Jacquet",
    "Collet",
    "Prévost",
    "Poirier",
    "Charpentier",
    "Royer",
    "Huet",
    "Baron",
    "Dupuy",
    "Pons",
    "Paul",
    "Laine",
    "Carré",
    "Bréval",
    "Hébert",
    "Besnard",
    "Cordier",
    "Lévêque",
    "Bouvier",
    "Brière",
    "Thébault",
    "Éluard",
    "Chrétien",
    "Benhamou",
    "Haddad",
    "El Amrani",
    "Benali",
    "Tremblay",
    "Gagnon",
    "Côté",
    "Bouchard",
    "Gagné",
    "Pelletier",
    "Bélanger",
    "Lévesque",
    "Bergeron",
    "Peeters",
    "Janssens",
    "Maes",
    "Dubois-Lemaire",
    "Vanderbeke",
    "Favre",
    "Rochat",
    "Bonvin",
]
EN_FEMALE = [
    "Emily",
    "Olivia",
    "Sophie",
    "Hannah",
    "Charlotte",
    "Grace",
    "Amelia",
    "Jessica",
    "Sarah",
    "Emma",
    "Lucy",
    "Chloe",
    "Megan",
    "Rachel",
    "Laura",
    "Rebecca",
    "Katie",
    "Amy",
    "Jennifer",
    "Ashley",
    "Lauren",
    "Madison",
    "Abigail",
    "Elizabeth",
    "Samantha",
    "Natalie",
    "Victoria",
    "Holly",
    "Zoe",
    "Ella",
    "Isla",
    "Freya",
    "Harper",
    "Avery",
    "Brooke",
    "Caitlin",
    "Siobhan",
    "Niamh",
    "Priya",
    "Aisha",
    "Mei",
    "Renée",
]
EN_MALE = [
    "James",
    "Oliver",
    "Jack",
    "Harry",
    "George",
    "Noah",
    "William",
    "Thomas",
    "Daniel",
    "Matthew",
    "Michael",
    "David",
    "Joshua",
    "Ryan",
    "Andrew",
    "Chris",
    "Benjamin",
    "Samuel",
    "Ethan",
    "Jacob",
    "Tyler",
    "Brandon",
    "Kevin",
    "Liam",
    "Connor",
    "Callum",
    "Owen",
    "Lewis",
    "Jamie",
    "Aidan",
    "Sean",
    "Patrick",
    "Raj",
    "Arjun",
    "Omar",
    "Wei",
    "Marcus",
    "Nathan",
    "Luke",
    "Adam",
]
EN_LAST = [
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Bennett",
    "Young",
    "Miller",
    "Anderson",
    "Garcia",
    "Martinez",
    "Rodriguez",
    "Lopez",
    "Campbell",
    "Mitchell",
    "Carter",
    "Murphy",
    "Kelly",
    "O'Brien",
    "O'Connor",
    "McDonald",
    "MacLeod",
    "Fitzgerald",
    "Sullivan",
    "Nguyen",
    "Chen",
    "Kim",
    "Singh",
    "Shah",
    "Khan",
    "Cohen",
    "Rossi",
    "Murray",
    "Graham",
    "Stewart",
    "Reid",
    "Ross",
    "Foster",
    "Hayes",
    "Price",
    "Barnes",
    "Fisher",
    "Sanders",
]

# Domains: (domain, weight) per origin.  The two IDNA domains are added by hand.
FR_DOMAINS = [
    ("gmail.com", 34),
    ("orange.fr", 11),
    ("free.fr", 8),
    ("yahoo.fr", 7),
    ("hotmail.fr", 4),
    ("hotmail.com", 4),
    ("outlook.com", 4),
    ("outlook.fr", 3),
    ("laposte.net", 5),
    ("sfr.fr", 4),
    ("wanadoo.fr", 4),
    ("icloud.com", 4),
    ("protonmail.com", 2),
    ("live.fr", 2),
    ("neuf.fr", 1),
    ("bbox.fr", 1),
    ("skynet.be", 1),
    ("bluewin.ch", 1),
    ("videotron.ca", 1),
    ("atelier-marchand.fr", 0.4),
    ("studio-lumiere.fr", 0.4),
    ("coaching-horizon.com", 0.3),
    ("cabinet-roche-avocats.fr", 0.2),
    ("ecole-des-createurs.fr", 0.3),
]
EN_DOMAINS = [
    ("gmail.com", 45),
    ("outlook.com", 10),
    ("hotmail.com", 7),
    ("yahoo.com", 8),
    ("icloud.com", 8),
    ("protonmail.com", 3),
    ("hotmail.co.uk", 3),
    ("btinternet.com", 2),
    ("aol.com", 1),
    ("me.com", 1),
    ("northwind-studio.co.uk", 0.4),
    ("brightpath-learning.com", 0.4),
    ("maplecreative.ca", 0.3),
]
IDNA_EMAILS = [  # (first, last, local, domain) - kept valid on purpose
    ("Amélie", "Crémieux", "amelie", "café-crème.fr"),
    ("Bastien", "Crémieux", "bastien.cremieux", "café-crème.fr"),
    ("Léonie", "Étoile", "contact", "éditions-étoile.fr"),
]

# Timezone -> list of (city, lat, lon, CC, REGION, weight); Mailchimp offsets in hours.
TZ_INFO = {
    "Europe/Paris": (
        "1",
        "2",
        [
            ("Paris", 48.8566, 2.3522, "FR", "IDF", 34),
            ("Lyon", 45.7640, 4.8357, "FR", "ARA", 12),
            ("Marseille", 43.2965, 5.3698, "FR", "PAC", 8),
            ("Toulouse", 43.6047, 1.4442, "FR", "OCC", 8),
            ("Bordeaux", 44.8378, -0.5792, "FR", "NAQ", 8),
            ("Nantes", 47.2184, -1.5536, "FR", "PDL", 7),
            ("Lille", 50.6292, 3.0573, "FR", "HDF", 7),
            ("Rennes", 48.1173, -1.6778, "FR", "BRE", 6),
            ("Strasbourg", 48.5734, 7.7521, "FR", "GES", 5),
            ("Montpellier", 43.6108, 3.8767, "FR", "OCC", 5),
            ("Nice", 43.7102, 7.2620, "FR", "PAC", 4),
            ("Grenoble", 45.1885, 5.7245, "FR", "ARA", 4),
            ("Dijon", 47.3220, 5.0415, "FR", "BFC", 2),
            ("Rouen", 49.4432, 1.0999, "FR", "NOR", 2),
            ("Saint-Denis", -20.8823, 55.4504, "RE", "RE", 1),
        ],
    ),
    "Europe/Brussels": (
        "1",
        "2",
        [
            ("Bruxelles", 50.8503, 4.3517, "BE", "BRU", 6),
            ("Liège", 50.6326, 5.5797, "BE", "WAL", 2),
            ("Namur", 50.4674, 4.8718, "BE", "WAL", 1),
            ("Gand", 51.0543, 3.7174, "BE", "VLG", 1),
        ],
    ),
    "Europe/Zurich": (
        "1",
        "2",
        [
            ("Genève", 46.2044, 6.1432, "CH", "GE", 5),
            ("Lausanne", 46.5197, 6.6323, "CH", "VD", 4),
            ("Zurich", 47.3769, 8.5417, "CH", "ZH", 2),
            ("Fribourg", 46.8065, 7.1620, "CH", "FR", 1),
        ],
    ),
    "America/Montreal": (
        "-5",
        "-4",
        [
            ("Montréal", 45.5019, -73.5674, "CA", "QC", 6),
            ("Québec", 46.8139, -71.2080, "CA", "QC", 2),
            ("Ottawa", 45.4215, -75.6972, "CA", "ON", 1),
            ("Toronto", 43.6532, -79.3832, "CA", "ON", 1),
        ],
    ),
    "Europe/London": (
        "0",
        "1",
        [
            ("London", 51.5074, -0.1278, "GB", "ENG", 6),
            ("Manchester", 53.4808, -2.2426, "GB", "ENG", 2),
            ("Edinburgh", 55.9533, -3.1883, "GB", "SCT", 1),
            ("Bristol", 51.4545, -2.5879, "GB", "ENG", 1),
            ("Dublin", 53.3498, -6.2603, "IE", "L", 1),
        ],
    ),
    "America/New_York": (
        "-5",
        "-4",
        [
            ("New York", 40.7128, -74.0060, "US", "NY", 5),
            ("Boston", 42.3601, -71.0589, "US", "MA", 2),
            ("Miami", 25.7617, -80.1918, "US", "FL", 1),
            ("Atlanta", 33.7490, -84.3880, "US", "GA", 1),
        ],
    ),
    "America/Los_Angeles": (
        "-8",
        "-7",
        [
            ("Los Angeles", 34.0522, -118.2437, "US", "CA", 4),
            ("San Francisco", 37.7749, -122.4194, "US", "CA", 3),
            ("Seattle", 47.6062, -122.3321, "US", "WA", 2),
            ("Portland", 45.5152, -122.6784, "US", "OR", 1),
        ],
    ),
    "Africa/Casablanca": (
        "1",
        "0",
        [
            ("Casablanca", 33.5731, -7.5898, "MA", "CAS", 3),
            ("Rabat", 34.0209, -6.8416, "MA", "RBA", 2),
            ("Marrakech", 31.6295, -7.9811, "MA", "MAR", 1),
        ],
    ),
}
FR_TZ = [
    ("Europe/Paris", 76),
    ("Europe/Brussels", 7),
    ("Europe/Zurich", 5),
    ("America/Montreal", 6),
    ("Africa/Casablanca", 3),
    ("", 3),
]
EN_TZ = [
    ("Europe/London", 32),
    ("America/New_York", 22),
    ("America/Los_Angeles", 12),
    ("America/Montreal", 9),
    ("Europe/Paris", 12),
    ("Europe/Brussels", 2),
    ("", 11),
]

# Acquisition source (Source merge field) -> tag, share of the audience.
SOURCES = [
    ("magnet:checklist-lancement", 36),
    ("magnet:mini-cours-email", 17),
    ("magnet:guide-tarifs", 13),
    ("webinar", 13),
    ("instagram", 6.5),
    ("youtube", 4.5),
    ("import", 10),
]
SOURCE_TAG = {
    "magnet:checklist-lancement": "magnet:checklist-lancement",
    "magnet:mini-cours-email": "magnet:mini-cours-email",
    "magnet:guide-tarifs": "magnet:guide-tarifs",
    "webinar": "webinar",
    "instagram": "social",
    "youtube": "social",
    "import": "import",
}
MAGNET_TAGS = ["magnet:checklist-lancement", "magnet:mini-cours-email", "magnet:guide-tarifs"]

UNSUB_CAMPAIGNS = [  # (title, send time or None for automations, weight)
    ("Mini-cours : leçon 3 — l'objet qui fait ouvrir", None, 2),
    ("Newsletter #8 — Les 3 erreurs de prix", datetime(2025, 9, 11, 8, 0), 2),
    ("Newsletter #11 — Ce que m'a appris mon premier lancement", datetime(2025, 12, 4, 8, 0), 2),
    ("Webinar : replay disponible 48 h", datetime(2026, 3, 20, 9, 0), 2),
    ("Newsletter #15 — Mon lancement de printemps en chiffres", datetime(2026, 4, 16, 8, 0), 3),
    ("Newsletter #19 — Faut-il une liste d'attente ?", datetime(2026, 8, 27, 8, 0), 2),
    ("Invitation webinar 22 octobre", datetime(2026, 10, 8, 8, 0), 3),
    ("Pré-lancement J-7 : la formation ouvre bientôt", datetime(2026, 11, 10, 8, 0), 4),
]
UNSUB_REASONS = [
    ("I no longer want to receive these emails", 45),
    ("I never signed up for this mailing list", 8),
    ("The emails are inappropriate", 3),
    ("The emails are spam and should be reported", 4),
    ("Other", 12),
    ("N/A (Unsubscribed by admin)", 6),
    ("", 22),
]
UNSUB_OTHER = [
    "Trop d'emails en ce moment",
    "Je ne lance pas de formation cette année",
    "Pas le bon moment",
    "Too many emails",
    "Je suis déjà cliente",
    "Contenu intéressant mais je n'ai pas le temps",
    "Changed jobs",
]
STREETS = [
    "rue des Lilas",
    "avenue Jean-Jaurès",
    "boulevard Voltaire",
    "rue de la République",
    "chemin des Écoliers",
    "place du Marché",
    "rue Émile-Zola",
    "impasse des Peupliers",
]


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


# --------------------------------------------------------------------------
# PDF (hand-assembled, PDF 1.4, Helvetica + WinAnsiEncoding, no compression)
# --------------------------------------------------------------------------
def pdf_text(s: str) -> bytes:
    out = bytearray(b"(")
    for b in s.encode("cp1252"):
        if b in (0x28, 0x29, 0x5C):
            out += b"\\" + bytes([b])
        elif b < 0x20 or b > 0x7E:
            out += b"\\%03o" % b
        else:
            out.append(b)
    return bytes(out + b")")


def pdf_info_string(s: str) -> bytes:
    return b"<FEFF" + s.encode("utf-16-be").hex().upper().encode() + b">"


# Helvetica advance widths (Adobe AFM, 1/1000 em) for ASCII 32..126.
_HELV = [
    278,
    278,
    355,
    556,
    556,
    889,
    667,
    191,
    333,
    333,
    389,
    584,
    278,
    333,
    278,
    278,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    556,
    278,
    278,
    584,
    584,
    584,
    556,
    1015,
    667,
    667,
    722,
    722,
    667,
    611,
    778,
    722,
    278,
    500,
    667,
    556,
    833,
    722,
    778,
    667,
    778,
    722,
    667,
    611,
    722,
    667,
    944,
    667,
    667,
    611,
    278,
    278,
    278,
    469,
    556,
    333,
    556,
    556,
    500,
    556,
    556,
    278,
    556,
    556,
    222,
    222,
    500,
    222,
    833,
    556,
    556,
    556,
    556,
    333,
    500,
    278,
    556,
    500,
    722,
    500,
    500,
    500,
    334,
    260,
    334,
    584,
]
_HELV_EXTRA = {"«": 556, "»": 556, "€": 556, "—": 1000, "–": 556, "’": 222, "×": 584, "…": 1000}


def text_width(s: str, size: float, bold: bool = False) -> float:
    total = 0
    for ch in s:
        if ch in _HELV_EXTRA:
            total += _HELV_EXTRA[ch]
            continue
        base = unicodedata.normalize("NFKD", ch)[:1] or " "
        o = ord(base)
        total += _HELV[o - 32] if 32 <= o <= 126 else 600
    return total * size / 1000 * (1.08 if bold else 1.0)


def wrap(text: str, max_width: float, size: float = 11) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if cur and text_width(cand, size) > max_width:
            lines.append(cur)
            cur = w
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


def page_stream(title: str | None, blocks, footer: str) -> bytes:
    """blocks: list of (kind, text); kind in h, p, item."""
    ops = [b"BT"]
    y = 790
    left = 56

    def line(font, size, x, yy, s):
        ops.append(b"/%s %d Tf 1 0 0 1 %d %d Tm %s Tj" % (font, size, x, yy, pdf_text(s)))

    if title:
        assert text_width(title, 20, bold=True) < 483, title
        line(b"F2", 20, left, y, title)
        y -= 34
    for kind, text in blocks:
        if kind == "h":
            y -= 8
            line(b"F2", 13, left, y, text)
            y -= 20
        elif kind == "item":
            first = True
            for ln in wrap(text, 483 - 26):
                if first:
                    line(b"F1", 11, left, y, "[  ]")
                line(b"F1", 11, left + 26, y, ln)
                first = False
                y -= 15
            y -= 3
        else:
            for ln in wrap(text, 483):
                line(b"F1", 11, left, y, ln)
                y -= 15
            y -= 6
        if y < 80:
            raise ValueError("page overflow")
    line(b"F1", 8, left, 40, footer)
    ops.append(b"ET")
    # thin rule under the title
    ops.append(b"0.6 w 56 772 m 539 772 l S" if title else b"")
    return b"\n".join(o for o in ops if o) + b"\n"


def build_pdf(title: str, pages: list[bytes]) -> bytes:
    objs: list[bytes] = []
    n_pages = len(pages)
    page_ids = [5 + 2 * i for i in range(n_pages)]
    info_id = 5 + 2 * n_pages
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % i for i in page_ids)
        + b"] /Count %d >>" % n_pages
    )
    objs.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    objs.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
    )
    for i, content in enumerate(pages):
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
            % (page_ids[i] + 1)
        )
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream")
    objs.append(
        b"<< /Title " + pdf_info_string(title) + b" /Author (launchkit sample data)"
        b" /Producer (launchkit sample_data/generate.py) /CreationDate (D:20260301090000Z) >>"
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n" % (len(objs) + 1)
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    doc_id = hashlib.md5(title.encode("utf-8")).hexdigest().upper().encode()
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R /ID [<%s> <%s>] >>\n" % (
        len(objs) + 1,
        info_id,
        doc_id,
        doc_id,
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


CHECKLIST_P1 = [
    (
        "p",
        "Une liste à cocher pour préparer le lancement de votre formation en ligne, "
        "semaine après semaine. Imprimez-la, cochez, et gardez-la près de votre écran.",
    ),
    ("h", "6 semaines avant : la promesse"),
    ("item", "Écrire la promesse en une phrase : « j'aide [qui] à [résultat] en [délai] »."),
    (
        "item",
        "Interroger 5 personnes de votre audience (15 minutes chacune) sur leur blocage principal.",
    ),
    ("item", "Choisir la date d'ouverture et la date de fermeture du panier (5 à 7 jours)."),
    ("item", "Fixer le prix et, si besoin, un tarif de lancement limité dans le temps."),
    ("h", "4 semaines avant : l'audience"),
    ("item", "Publier le lead magnet (checklist, mini-cours ou guide) et l'annoncer partout."),
    (
        "item",
        "Nettoyer la liste : doublons, adresses invalides, désinscrits à conserver comme tels.",
    ),
    ("item", "Segmenter par aimant : qui a téléchargé quoi, qui a assisté au webinar."),
    ("item", "Programmer 2 à 3 contenus gratuits par semaine qui mènent au lead magnet."),
    ("h", "3 semaines avant : la page de vente"),
    ("item", "Rédiger la page : problème, promesse, programme, preuves, prix, garantie, FAQ."),
    ("item", "Créer le produit et le lien de paiement en mode test, puis faire un achat test."),
    ("item", "Vérifier la TVA, les mentions légales et l'email de confirmation d'achat."),
]
CHECKLIST_P2 = [
    ("h", "2 semaines avant : la séquence email"),
    ("item", "Écrire 3 emails de préchauffe (histoire, erreur fréquente, étude de cas)."),
    ("item", "Écrire 5 à 7 emails d'ouverture du panier, dont la relance des dernières 24 h."),
    ("item", "Tester l'affichage sur mobile et vérifier chaque lien de paiement."),
    ("item", "Prévoir l'exclusion automatique des acheteurs des relances suivantes."),
    ("h", "Jour J : ouverture du panier"),
    (
        "item",
        "Envoyer l'email d'ouverture le matin (heure de Paris) et le publier sur les réseaux.",
    ),
    ("item", "Suivre les ventes toutes les 2 heures : taux d'ouverture, clics, paiements."),
    ("item", "Répondre aux questions en moins de 12 h : elles alimentent la FAQ."),
    ("h", "Après le lancement"),
    ("item", "Fermer le panier à l'heure annoncée, sans prolongation surprise."),
    ("item", "Calculer le taux de conversion par source : checklist, mini-cours, guide, webinar."),
    ("item", "Noter 3 choses à garder et 3 choses à changer pour le prochain lancement."),
    (
        "p",
        "Astuce : un lancement réussi, c'est d'abord une liste propre et une promesse claire. "
        "Le reste s'améliore à chaque édition.",
    ),
]
GUIDE_P1 = [
    (
        "p",
        "Combien vendre votre formation ? Ce guide d'une page vous donne une méthode simple "
        "en quatre étapes, avec un exemple chiffré.",
    ),
    ("h", "1. Partir de la valeur, pas du temps passé"),
    (
        "p",
        "Estimez ce que le résultat promis rapporte ou fait économiser à votre client sur un an. "
        "Un prix entre 5 % et 10 % de cette valeur est généralement bien accepté.",
    ),
    ("h", "2. Regarder le marché"),
    (
        "p",
        "Relevez le prix de 5 formations proches. Placez-vous dans la fourchette, puis "
        "justifiez l'écart par ce que vous apportez en plus (accompagnement, communauté, bonus).",
    ),
    ("h", "3. Choisir une structure"),
    ("item", "Une seule offre : plus simple à vendre, idéale pour un premier lancement."),
    (
        "item",
        "Deux offres (essentiel / premium) : la version premium rend l'essentiel plus accessible.",
    ),
    ("item", "Paiement en 3 fois : environ 10 % plus cher au total, il débloque des ventes."),
    ("h", "4. Exemple"),
    (
        "p",
        "Formation « Lancer sa première formation » : 297 € en paiement unique ou 3 × 109 €. "
        "Tarif de lancement : 247 € pendant 72 heures. Objectif : 2 % de conversion sur une "
        "liste de 5 000 contacts, soit environ 100 ventes.",
    ),
    ("h", "À retenir"),
    (
        "p",
        "Annoncez le prix clairement, ne le baissez pas pendant le lancement, et mesurez le "
        "taux de conversion de chaque source pour décider du prix de la prochaine édition.",
    ),
]

MINI_COURS_MD = """# Mini-cours : écrire des emails qui vendent sans forcer

*5 leçons courtes, une par jour. Lead magnet d'exemple fourni avec launchkit (données fictives).*

## Leçon 1 — Une liste, pas un mégaphone

Vos abonnés vous ont donné leur adresse en échange d'une promesse. Chaque email doit tenir
cette promesse : une idée utile, une seule. Avant d'écrire, notez en une phrase ce que le
lecteur saura faire après la lecture.

**Exercice :** relisez vos trois derniers emails et écrivez pour chacun l'idée unique qu'il
transmet. S'il y en a deux, coupez.

## Leçon 2 — L'objet qui fait ouvrir

L'objet n'a qu'un rôle : donner envie d'ouvrir. Les objets courts, précis et un peu
intrigants fonctionnent mieux que les promesses en majuscules. « La phrase qui a doublé mes
inscriptions » bat « NOUVEAU !!! Découvrez ma méthode ».

**Exercice :** écrivez dix objets pour le même email, puis gardez les deux meilleurs pour un
test A/B.

## Leçon 3 — Raconter avant d'expliquer

Une courte histoire (un élève, une erreur, un déclic) fait passer une idée mieux qu'une liste
de conseils. Structure simple : situation, obstacle, déclic, résultat.

**Exercice :** racontez en 120 mots la première fois qu'un de vos élèves a obtenu un résultat.

## Leçon 4 — Un seul appel à l'action

Un email, un lien, une action. Si vous demandez à la fois de répondre, de regarder une vidéo
et d'acheter, le lecteur ne fait rien. Placez le lien tôt, puis répétez-le en fin d'email.

**Exercice :** pour votre prochain email, écrivez l'appel à l'action en premier, puis le
texte qui y mène.

## Leçon 5 — La séquence de lancement

Une séquence type tient en sept emails : trois emails de préchauffe (histoire, erreur
fréquente, étude de cas), l'ouverture du panier, une FAQ, un témoignage, et la relance des
dernières 24 heures. Excluez les acheteurs des relances dès leur paiement.

**Exercice :** dessinez votre séquence sur une feuille, avec la date et l'objet de chaque
email.

---

Merci d'avoir suivi ce mini-cours ! Répondez à cet email pour me dire quelle leçon vous a
été la plus utile.
"""


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


# --------------------------------------------------------------------------
# README / expected.json
# --------------------------------------------------------------------------
def md_table(d: dict, k1: str, k2: str) -> str:
    lines = [f"| {k1} | {k2} |", "|---|---:|"]
    lines += [f"| `{k}` | {v:,} |" for k, v in d.items()]
    return "\n".join(lines)


def write_readme(out: str, info: dict, c: dict) -> None:
    inv = "\n".join(f"| `{x['email']}` | {x['reason']} |" for x in info["invalid"])
    dup_ex = "\n".join(
        f"| `{d['original']}` | `{d['duplicate']}` | {', '.join(d['differences'])} |"
        for d in info["duplicates"][:5]
    )
    text = (
        f"""# launchkit sample data

<!-- Generated by generate.py: edit the template there, not this file. -->

Fictional data for trying out and testing launchkit end to end (audience import →
lead magnets → email sequences → checkout → analysis). Every person is invented:
names are random combinations, IP addresses come from the documentation ranges
(RFC 5737 `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, RFC 3849
`2001:db8::/32`) and phone numbers from ranges reserved for fiction (ARCEP
`06 39 98 xx xx`, Ofcom `07700 900xxx`, NANP `555-01xx`). Email domains are real
providers, so **never send real email to these addresses**.

## Regenerate

```
python3 sample_data/generate.py                 # writes into sample_data/
python3 sample_data/generate.py --out /tmp/sd   # anywhere else
python3 sample_data/generate.py --audience 2000 # different size (defects stay fixed)
```

Python 3.11 standard library only. Seed `random.Random({SEED})`, every date is
fixed (signups 2025-06-01 → 2026-11-15, export taken 2026-11-16 08:30 UTC), so
the output is byte-for-byte identical on every run. The generator reads every
file back with `csv`, checks the counts below, validates the PDF cross-reference
tables, then rewrites this README and `expected.json` with the real numbers.
The numbers below are for the default `--audience {info["audience"]}`.

## Files

| File | What it is | Rows |
|---|---|---:|
| `audience_mailchimp.csv` | Mailchimp audience export, *subscribed* members | {c["subscribed_rows"]:,} |
| `audience_mailchimp_unsubscribed.csv` | Mailchimp export, *unsubscribed* members | {c["unsubscribed_rows"]:,} |
| `kit_subscribers.csv` | Kit (ConvertKit) subscriber export | {c["kit_rows"]:,} |
| `generic_contacts.csv` | French Excel CSV (`;`, UTF-8 with BOM, CRLF) | {c["generic_rows"]:,} |
| `generic_contacts_latin1.csv` | the first {c["latin1_rows"]} rows of the above, Latin-1 | {c["latin1_rows"]:,} |
| `magnets/checklist-lancement.pdf` | lead magnet, 2-page PDF | – |
| `magnets/guide-tarifs.pdf` | lead magnet, 1-page PDF | – |
| `magnets/mini-cours-email.md` | lead magnet, 5-lesson email mini-course (French) | – |
| `expected.json` | the counts below plus the exact defect lists, for tests | – |
| `generate.py` | the generator | – |

### `audience_mailchimp.csv`

Exact Mailchimp column order:
`{",".join(MC_COLUMNS)}`.
UTF-8 without BOM, comma-delimited, CRLF line endings, every field quoted
(`csv.QUOTE_ALL`). Times are UTC, `YYYY-MM-DD HH:MM:SS`. `GMTOFF`/`DSTOFF` are
hour offsets as Mailchimp writes them; `LATITUDE`/`LONGITUDE`/`CC`/`REGION` are
empty when `TIMEZONE` is empty. `TAGS` holds a quoted, comma-separated list in one
cell, e.g. the cell value `"magnet:checklist-lancement","fr"` (written to disk as
`\"\"\"magnet:checklist-lancement\"\",\"\"fr\"\"\"`); parse it with
`next(csv.reader([cell]))`. Language tags `fr` / `en` are present on most rows.

`Source` is a custom merge field with the acquisition source:

| Source | Tag | Rows |
|---|---|---:|
"""
        + "\n".join(
            f"| `{s}` | `{SOURCE_TAG[s]}` | {c['by_source'].get(s, 0):,} |" for s, _ in SOURCES
        )
        + f"""

Imported rows (`import`, the old list migrated on 2025-06-03) have no opt-in IP
and `CONFIRM_TIME` = `OPTIN_TIME`; all other rows are double opt-in. Some people
carry a second magnet tag or `webinar`.

Tag counts (a row can have several):

{md_table(c["by_tag"], "Tag", "Rows")}

Timezones:

{md_table(c["by_timezone"], "TIMEZONE", "Rows")}

Signups per month (`OPTIN_TIME`), growing toward the launch:

{md_table(c["by_month"], "Month", "Rows")}

About {round(c["french_first_name_share"] * 100)} % of rows have a French first name (with accents:
Hélène, François, Anaïs, Jérôme, Zoé, Noël, Gaëlle…), the rest English names.
{c["subscribed_idna_rows"]} rows use IDNA domains (`café-crème.fr`, `éditions-étoile.fr`) and are **valid**.

#### Deliberate defects

| Defect | Rows |
|---|---:|
| Invalid address | **{c["subscribed_invalid"]}** |
| Duplicate row (same person again) | **{c["subscribed_duplicate_rows"]}** |
| Empty `Email Address` | **{c["subscribed_empty"]}** |
| Valid address in mixed case (needs lowercasing) | {c["subscribed_mixed_case_cells"]} (incl. duplicates) |
| Valid address with surrounding spaces (needs trimming) | {c["subscribed_whitespace_cells"]} (incl. duplicates) |

Reference rules (implemented by `normalize_email` / `is_valid_email` in
`generate.py`): normalize = `strip()` then `lower()`; valid = exactly one `@`,
non-empty dot-atom local part (no leading/trailing/double dots, no spaces or
commas), domain of at least two labels after IDNA encoding, labels of letters,
digits and inner hyphens, alphabetic TLD of 2+ characters.

The {c["subscribed_invalid"]} invalid addresses:

| Address (verbatim) | Why |
|---|---|
{inv}

Duplicates: {c["subscribed_duplicate_rows"]} distinct people appear a second time, with a
different case and/or whitespace; half also carry a different tag/Source, and
most have a later `OPTIN_TIME`. Their `LEID`/`EUID` differ. Examples (the full
list is in `expected.json`):

| First row | Duplicate row | Differences |
|---|---|---|
{dup_ex}

### `audience_mailchimp_unsubscribed.csv`

Same columns, plus `{",".join(UNSUB_EXTRA)}` inserted after `LAST_CHANGED`, as
Mailchimp does. {c["unsubscribed_rows"]} rows; **{c["unsubscribed_also_in_subscribed"]}** of
them are also in `audience_mailchimp.csv` spelled in another case: an importer
must keep those people unsubscribed.

### Totals across both Mailchimp files

| | Count |
|---|---:|
| Distinct valid addresses, subscribed file | {c["subscribed_unique_valid"]:,} |
| Distinct valid addresses, both files | {c["distinct_valid_emails_both_files"]:,} |
| People incl. the invalid and empty rows | {c["people_total_incl_invalid_and_empty"]:,} |
| Expected **subscribed** after a correct import | **{c["expected_active_after_import"]:,}** |
| Expected **unsubscribed** after a correct import | **{c["expected_unsubscribed_after_import"]:,}** |
| Expected rejected rows (invalid + empty) | **{c["subscribed_invalid"] + c["subscribed_empty"]}** |

### `kit_subscribers.csv`

Kit export: `{",".join(KIT_COLUMNS)}`, UTF-8, LF line endings, minimal quoting.
`created_at` like `2026-02-03 10:11:12 UTC`; `tags` is a comma-separated list in
one quoted cell ({c["kit_rows_with_multiple_tags"]} rows have several tags). Status counts:
{", ".join(f"`{k}` {v}" for k, v in c["kit_status"].items())}. {c["kit_in_mailchimp_subscribed"]} addresses are also in the
subscribed Mailchimp file and {c["kit_in_mailchimp_unsubscribed"]} in the unsubscribed one (about 30 % of
those in another case). A few `first_name` cells are empty.

### `generic_contacts.csv` and `generic_contacts_latin1.csv`

`generic_contacts.csv`: what Excel (French locale) saves as "CSV UTF-8":
`;`-delimited, UTF-8 **with BOM**, CRLF, headers
`{";".join(GENERIC_COLUMNS)}`, dates `JJ/MM/AAAA`, some empty timezones.
{c["generic_rows"]} rows, {c["generic_in_mailchimp_subscribed"]} of them also in the subscribed Mailchimp file.

`generic_contacts_latin1.csv`: the first {c["latin1_rows"]} rows (email, first and last
name only) in **Latin-1** (ISO-8859-1), `;`-delimited, CRLF, headers
`{";".join(LATIN1_COLUMNS)}`. Every row has an accented name, so the file is not
valid UTF-8: it exercises the non-UTF-8 path (read as Windows-1252,
which decodes these Latin-1 letters identically, with a warning).

### Lead magnets (`magnets/`)

- `checklist-lancement.pdf`: "Checklist : réussir son lancement", 2 pages.
- `guide-tarifs.pdf`: "Guide : fixer le prix de sa formation", 1 page.
- `mini-cours-email.md`: "Mini-cours : écrire des emails qui vendent sans forcer", 5 lessons.

The PDFs are hand-assembled PDF 1.4 (standard Helvetica / Helvetica-Bold with
`WinAnsiEncoding`, so é, à, ç, « », € and — render correctly; uncompressed
content streams; exact `xref` offsets checked by the generator).
"""
    )
    with open(os.path.join(out, "README.md"), "wb") as fh:
        fh.write(text.encode("utf-8"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        default=os.path.dirname(os.path.abspath(__file__)),
        help="output directory (default: this script's folder)",
    )
    ap.add_argument(
        "--audience",
        type=int,
        default=5000,
        help="people across both Mailchimp files (default 5000)",
    )
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    info = generate(args.out, args.audience)
    counts = check(args.out, info)
    expected = {
        "seed": SEED,
        "audience": args.audience,
        "counts": counts,
        "invalid_emails": info["invalid"],
        "empty_email_rows": N_EMPTY,
        "duplicates": info["duplicates"],
        "unsubscribed_also_in_subscribed": info["unsub_overlap"],
        "kit_overlap": info["kit"],
        "generic_overlap_subscribed": info["generic_overlap"],
    }
    with open(os.path.join(args.out, "expected.json"), "wb") as fh:
        fh.write((json.dumps(expected, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    write_readme(args.out, info, counts)
    for k, v in counts.items():
        if not isinstance(v, dict):
            print(f"{k:42s} {v}")
    for k in ("by_source", "kit_status"):
        print(f"{k:42s} {json.dumps(counts[k])}")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
