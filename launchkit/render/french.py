"""French that reads like French: elision, typographic spaces, dates, times and money.

``elide("de", "Atelier")`` gives ``d'Atelier``; ``typography_text`` / ``typography_html`` put a
no-break space before ``: ; ! ?`` and inside guillemets « »; ``format_moment`` writes
``vendredi 5 décembre à 23 h 59 (heure de Paris)`` or ``Friday, December 5 at 11:59 PM CET``;
``format_number`` and ``format_money`` follow the language (``1 234,56 €``). Email folders come
in both French address forms: ``launch-fr`` (*vous*) and ``launch-fr-tu`` (*tu*).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal

from launchkit.config import ADDRESS_FORMS, LANGUAGES, Settings

NBSP = "\u00a0"  # before ":" and inside guillemets
NNBSP = "\u202f"  # narrow no-break space before ";", "!" and "?"

# words that lose their vowel before a vowel or a mute h ("jusque" -> "jusqu'")
_ELIDED = {
    "de": "d'", "le": "l'", "la": "l'", "que": "qu'", "je": "j'", "me": "m'", "te": "t'",
    "se": "s'", "ne": "n'", "ce": "c'", "jusque": "jusqu'", "lorsque": "lorsqu'",
    "puisque": "puisqu'", "si": "s'",
}  # fmt: skip
# h aspiré: no elision ("le hasard", "de Hollande")
_ASPIRATED_H = (
    "hache", "haie", "haine", "hall", "hamac", "hameau", "hamster", "hanche", "handicap",
    "hangar", "hardi", "harpe", "hasard", "hâte", "haut", "hausse", "héros", "hibou", "hockey",
    "hollande", "homard", "honte", "hors", "hublot", "huit", "hurl", "hutte",
)  # fmt: skip
_VOWELS = "aeiouyæœ"


def _starts_with_vowel_sound(word: str) -> bool:
    text = word.strip().lstrip("«\"'“ ").lower()
    if not text:
        return False
    base = unicodedata.normalize("NFD", text[0])[0]
    if base in _VOWELS:
        return True
    if base == "h":
        plain = _strip(text)
        first = re.split(r"[\s'’-]", plain, maxsplit=1)[0]
        return first != "huit" and not plain.startswith(_ASPIRATED_H_PLAIN)
    return False


def _strip(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


_ASPIRATED_H_PLAIN = tuple(_strip(w) for w in _ASPIRATED_H if w != "huit")


def elide(word: str, following: object) -> str:
    """``de`` + ``Atelier`` -> ``d'Atelier``; ``de`` + ``Watercolour`` -> ``de Watercolour``.

    Used in templates as ``{{ "de" | elide(product) }}``; ``si`` only elides before ``il(s)``.
    """
    nxt = str(following)
    key = word.lower()
    short = _ELIDED.get(key)
    elides = short is not None and _starts_with_vowel_sound(nxt)
    if key == "si":
        elides = bool(re.match(r"ils?\b", nxt.strip(), re.IGNORECASE))
    if not elides:
        return f"{word} {nxt}"
    assert short is not None
    if word[:1].isupper():
        short = short[0].upper() + short[1:]
    return f"{short}{nxt}"


# --- typography -----------------------------------------------------------------------------

_SPACE_BEFORE = re.compile(r"[ \u00a0\u202f]+([:;!?»])")
_AFTER_OPEN = re.compile(r"«[ \u00a0\u202f]+")
_TAGS_AND_ENTITIES = re.compile(r"(<[^>]*>|&#?\w+;)")
_URL = re.compile(r"((?:\b(?:https?|mailto):|www\.)[^\s<>()]+|[\w.+-]+@[\w-]+\.[\w.-]+)")
_RAW_TEXT = re.compile(r"(<(style|script)\b.*?</\2\s*>)", re.IGNORECASE | re.DOTALL)


def _space_for(mark: str) -> str:
    return NBSP if mark in ":»" else NNBSP


def _typography(text: str) -> str:
    text = _SPACE_BEFORE.sub(lambda m: _space_for(m[1]) + m[1], text)
    return _AFTER_OPEN.sub("«" + NBSP, text)


def typography_text(text: str) -> str:
    """French spacing in plain text: the space before ``: ; ! ?`` and inside « » becomes a
    no-break one (URLs and e-mail addresses left alone; no character is ever added, so text
    typed as ``Bravo!`` or subscriber data keeps its own spacing).

    Worked out line by line, each line kept by its text (most lines of an email are the same
    for every recipient). Exact: none of the patterns (``_URL``, ``_SPACE_BEFORE``,
    ``_AFTER_OPEN``) can match across a line break (``\\n`` is in none of their character
    classes, and ``\\b`` sees a line break and the start of a string alike), so the text is
    the lines done one by one, joined again.
    """
    if "\n" not in text:
        return _LINES_TEXT.get(text, _typography_text_line)
    return "\n".join([_LINES_TEXT.get(line, _typography_text_line) for line in text.split("\n")])


def _typography_text_line(text: str) -> str:
    parts = _URL.split(text)
    return "".join(p if i % 2 else _typography(p) for i, p in enumerate(parts))


def typography_html(html: str) -> str:
    """``typography_text`` on the text of an HTML fragment (never inside tags or entities).

    Line by line too when no tag spans a line break and there is no ``<style>``/``<script>``
    block: tags and entities then never hold a line break, so the text between them splits at
    the same line breaks as the whole, and each line is what the whole gives for it.
    """
    if _RAW_TEXT.search(html) is None and _TAG_ACROSS_LINES.search(html) is None:
        return "\n".join([_LINES_HTML.get(line, _typography_segments) for line in html.split("\n")])
    return _typography_html_whole(html)


def _typography_html_whole(html: str) -> str:
    out = []
    for index, block in enumerate(_RAW_TEXT.split(html)):
        if index % 3 == 1:
            out.append(block)
        elif index % 3 == 0:
            out.append(_typography_segments(block))
    return "".join(out)


def _typography_segments(html: str) -> str:
    parts = _TAGS_AND_ENTITIES.split(html)
    return "".join(p if i % 2 else typography_text(p) for i, p in enumerate(parts))


# a "<" with no ">" before the next line break: a tag might span lines
_TAG_ACROSS_LINES = re.compile(r"<[^>\n]*\n")


class _LineMemo:
    """Results of a pure function of one line, kept by the line (bounded, thread-safe)."""

    MAX = 20_000

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def get(self, line: str, compute: Callable[[str], str]) -> str:
        found = self.found.get(line)
        if found is None:
            found = compute(line)
            if len(self.found) >= self.MAX:
                self.found = {}
            self.found[line] = found
        return found


_LINES_TEXT = _LineMemo()
_LINES_HTML = _LineMemo()


# --- dates, times, numbers, money -----------------------------------------------------------

_PATTERNS = {"fr": "EEEE d MMMM 'à' H 'h' mm", "en": "EEEE, MMMM d 'at' h:mm a"}
_PATTERNS_YEAR = {"fr": "EEEE d MMMM y 'à' H 'h' mm", "en": "EEEE, MMMM d, y 'at' h:mm a"}


def zone_label(moment: datetime, zone: str, language: str) -> str:
    """``heure de Paris`` / ``CET``: how a reader recognises the timezone of a time."""
    local = moment.astimezone(ZoneInfo(zone))
    if language == "fr":
        city = zone.rpartition("/")[2].replace("_", " ")
        if zone in ("UTC", "Etc/UTC", "GMT"):
            return "heure UTC"
        return "heure " + elide("de", city)
    name = local.tzname() or zone
    return f"UTC{name}" if name[:1] in "+-" else name


@lru_cache(maxsize=512)
def format_moment(moment: datetime | None, language: str, zone: str, *, year: bool = False) -> str:
    """``vendredi 5 décembre à 23 h 59 (heure de Paris)`` / ``Friday, December 5 at 11:59 PM CET``
    (the timezone always named)."""
    if moment is None:
        return ""
    patterns = _PATTERNS_YEAR if year else _PATTERNS
    pattern = patterns.get(language, patterns["en"])
    text = format_datetime(moment, pattern, tzinfo=ZoneInfo(zone), locale=language)
    label = zone_label(moment, zone, language)
    return f"{text} ({label})" if language == "fr" else f"{text} {label}"


def format_date(moment: datetime, language: str, zone: str) -> str:
    """``mardi 3 décembre 2026`` / ``Tuesday, December 3, 2026`` (no time)."""
    pattern = "EEEE d MMMM y" if language == "fr" else "EEEE, MMMM d, y"
    return format_datetime(moment, pattern, tzinfo=ZoneInfo(zone), locale=language)


def format_number(value: int | float | Decimal, language: str) -> str:
    """``12 345`` / ``12,345``; ``2,5`` / ``2.5``."""
    return format_decimal(value, locale="fr_FR" if language == "fr" else "en_US")


def format_money(cents: int, currency: str, language: str) -> str:
    """``1 234,56 €`` / ``€1,234.56``."""
    locale = "fr_FR" if language == "fr" else "en_US"
    return format_currency(Decimal(cents) / 100, currency, locale=locale)


# --- address forms --------------------------------------------------------------------------


def folder_language(name: str) -> str | None:
    """``launch-fr`` / ``launch-fr-tu`` -> ``fr``; ``launch-en`` -> ``en``; otherwise None."""
    parts = name.split("-")
    if parts and parts[-1] in ADDRESS_FORMS and len(parts) > 1:
        parts = parts[:-1]
    return parts[-1] if parts and parts[-1] in LANGUAGES else None


def folder_form(name: str) -> str:
    """The French address form a folder is written in: ``-tu`` folders say *tu*."""
    return "tu" if name.endswith("-tu") else "vous"


def email_folder(kind: str, language: str, address_form: str = "vous") -> str:
    """``transactional-fr`` (vous), ``transactional-fr-tu`` (tu) or ``transactional-en``."""
    if language == "fr" and address_form == "tu":
        return f"{kind}-fr-tu"
    return f"{kind}-{language}"


def transactional_folder(settings: Settings) -> str:
    """Where the workspace's transactional emails live, by language and address form."""
    return email_folder("transactional", settings.language, settings.address_form)
