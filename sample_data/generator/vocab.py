"""Email domains, time zones, acquisition sources, unsubscribe campaigns and reasons, streets."""

from __future__ import annotations

from datetime import datetime

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
