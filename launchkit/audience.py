"""Audience lists: import, normalization, dedupe, suppression, consent, tags, stats and exports.

The importer streams a CSV in chunks inside the caller's transaction (it never commits):
addresses are normalized and validated, merged within the file and against the database,
and written with DBAPI ``executemany``. The suppression list always wins: no import
re-activates an unsubscribed, bounced or complained address.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import available_timezones

import email_validator
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.orm import Session

from launchkit.errors import InputError, NotFound
from launchkit.models import (
    Consent,
    Import,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
    Suppression,
    SuppressionReason,
)
from launchkit.segments import resolve_segment, segment_filter

CHUNK_SIZE = 20_000
PROGRESS_EVERY = 1_000
IN_BATCH = 5_000
IMPORT_CACHE_KB = -65_536
FORMATS = ("auto", "mailchimp", "kit", "generic")
MAP_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "signed_up_at",
    "confirmed_at",
    "timezone",
    "tags",
    "source",
    "status",
    "ip",
    "ignore",
)
INACTIVE = frozenset({"unsubscribed", "bounced", "complained"})
_RANK = {"pending": 0, "active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
_REASON_STATUS = {
    SuppressionReason.UNSUBSCRIBED: SubscriberStatus.UNSUBSCRIBED,
    SuppressionReason.MANUAL: SubscriberStatus.UNSUBSCRIBED,
    SuppressionReason.BOUNCED: SubscriberStatus.BOUNCED,
    SuppressionReason.COMPLAINED: SubscriberStatus.COMPLAINED,
}
_STATUS_WORDS = {
    "active": "active",
    "subscribed": "active",
    "confirmed": "active",
    "actif": "active",
    "abonne": "active",
    "pending": "pending",
    "unconfirmed": "pending",
    "unsubscribed": "unsubscribed",
    "cancelled": "unsubscribed",
    "canceled": "unsubscribed",
    "desabonne": "unsubscribed",
    "bounced": "bounced",
    "cleaned": "bounced",
    "complained": "complained",
    "spam": "complained",
}
_ALIASES = {
    "email": {
        "email",
        "emailaddress",
        "mail",
        "courriel",
        "adresseemail",
        "adressemail",
        "adressecourriel",
        "emailadresse",
        "courrielelectronique",
        "adresseelectronique",
    },
    "first_name": {"firstname", "prenom", "givenname", "fname"},
    "last_name": {"lastname", "nom", "surname", "familyname", "nomdefamille", "lname"},
    "signed_up_at": {
        "signedupat",
        "signedup",
        "signupdate",
        "optintime",
        "createdat",
        "subscribedat",
        "dateinscription",
        "datedinscription",
        "dateajout",
    },
    "confirmed_at": {"confirmtime", "confirmedat"},
    "timezone": {"timezone", "fuseauhoraire", "tz"},
    "tags": {"tags", "tag", "etiquettes"},
    "source": {"source", "origine"},
    "status": {"status", "statut"},
    "ip": {"optinip", "ip", "signupip"},
}
_KEY_OF = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_CELL_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# --- email addresses --------------------------------------------------------------------------

_LOCAL = r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_EMAIL = re.compile(rf"({_LOCAL})@((?:{_LABEL}\.)+[a-z]{{2,63}})")
_SPECIAL_SUFFIXES = tuple("." + name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)


def fast_valid(email: str) -> bool:
    """True when ``email`` (already trimmed and lowercased) is certainly valid and normalized.

    A strict ASCII subset of what email-validator accepts: dot-atom local part of
    ``[a-z0-9_+-]``, LDH labels without ``--`` in positions 3-4 (no IDNA A-labels),
    an alphabetic TLD, no special-use domain, RFC length limits. Anything else goes
    through email-validator (see ``tests/test_audience.py::test_fast_path_is_a_subset``).
    """
    match = _FAST_EMAIL.fullmatch(email)
    if match is None or len(email) > 254 or len(match.group(1)) > 64:
        return False
    domain = match.group(2)
    if len(domain) > 253 or ("." + domain).endswith(_SPECIAL_SUFFIXES):
        return False
    return "--" not in domain or not any(label[2:4] == "--" for label in domain.split("."))


def normalize_email(raw: str) -> str:
    """Trim, lowercase and IDNA-encode the domain; ``InputError`` says why an address is invalid."""
    email = raw.strip().lower()
    if fast_valid(email):
        return email
    try:
        return _slow_normalize(email)
    except ValueError as e:
        raise InputError(f'"{raw.strip()}" is not a valid email address: {e}') from None


def _slow_normalize(email: str) -> str:
    """email-validator's verdict on a trimmed, lowercased address; ``ValueError`` says why."""
    if not email:
        raise ValueError("it is empty.")
    try:
        valid = email_validator.validate_email(email, check_deliverability=False)
    except email_validator.EmailNotValidError as e:
        raise ValueError(str(e)) from None
    return f"{valid.local_part}@{valid.ascii_domain}"


# --- CSV cells ---------------------------------------------------------------------------------


def neutralize_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula with a quote (OWASP CSV injection)."""
    return "'" + value if value.startswith(_CELL_TRIGGERS) else value


def _unneutralize(value: str) -> str:
    return value[1:] if value[:1] == "'" and value[1:2] in _CELL_TRIGGERS and value[1:2] else value


def _header_key(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.strip().lstrip("\ufeff")).lower()
    return "".join(ch for ch in text if ch.isalnum() and ch.isascii())


# --- import: reading the file ------------------------------------------------------------------


@dataclass
class ImportResult:
    """What an import did (or would do, with ``dry_run``)."""

    new: int = 0
    updated: int = 0
    duplicates: int = 0
    invalid: int = 0
    suppressed: int = 0
    rows: int = 0
    warnings: list[str] = field(default_factory=list)
    rejects_path: Path | None = None
    format: str = "generic"
    import_id: int | None = None

    def summary(self) -> str:
        return (
            f"imported {self.new} new, {self.updated} updated, {self.duplicates} duplicates, "
            f"{self.invalid} invalid, {self.suppressed} suppressed"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        return data


@dataclass
class _FileInfo:
    encoding: str
    sha256: str
    lines: int


def scan_file(path: Path) -> _FileInfo:
    """Check a CSV is readable text; pick UTF-8 (with or without BOM) or Latin-1."""
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    digest, lines, utf8, size = hashlib.sha256(), 0, True, 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            if size == 0 and b"\0" in block[:8192]:
                raise InputError(f"{path.name}: this is a binary file, not a CSV text file.")
            size += len(block)
            digest.update(block)
            lines += block.count(b"\n")
            if utf8:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    utf8 = False
    encoding = "utf-8-sig" if utf8 else "latin-1"
    if size == 0 or not path.read_bytes()[:4096].strip(b"\xef\xbb\xbf \r\n\t"):
        raise InputError(f"{path.name}: the file is empty.")
    return _FileInfo(encoding, digest.hexdigest(), lines + 1)


def _sniff_delimiter(header_line: str) -> str:
    counts = {";": 0, ",": 0, "\t": 0}
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


@dataclass
class _Columns:
    index: dict[str, int]  # field -> column index
    headers: list[str]
    format: str
    unsub_at: int | None = None
    cleaned_at: int | None = None


def _check_headers(name: str, headers: list[str]) -> None:
    seen: dict[str, int] = {}
    for number, header in enumerate(headers, start=1):
        key = header.strip().lower()
        if key and key in seen:
            raise InputError(
                f'{name} row 1: duplicate column "{header.strip()}" '
                f"(columns {seen[key]} and {number})."
            )
        seen[key] = number
    if len(headers) == 1:
        for delimiter in (";", ",", "\t", "|"):
            if delimiter in headers[0]:
                shown = "tab" if delimiter == "\t" else f'"{delimiter}"'
                raise InputError(
                    f'{name} row 1: the only column "{headers[0]}" contains {shown}; '
                    "the delimiter looks wrong (use ; , or tab)."
                )


def _detect_format(headers: list[str], requested: str) -> str:
    if requested not in FORMATS:
        raise InputError(f'--format "{requested}" must be one of {", ".join(FORMATS)}.')
    if requested != "auto":
        return requested
    names = {h.strip() for h in headers}
    lowered = {h.lower() for h in names}
    if "Email Address" in names:
        return "mailchimp"
    if {"email", "first_name", "created_at", "status"} <= lowered:
        return "kit"
    return "generic"


def _map_columns(
    name: str, headers: list[str], fmt: str, mapping: dict[str, str] | None
) -> _Columns:
    index: dict[str, int] = {}
    keys = [_header_key(h) for h in headers]
    for position, key in enumerate(keys):
        target = _KEY_OF.get(key)
        if target and target not in index:
            index[target] = position
    for column, target in (mapping or {}).items():
        _apply_mapping(name, headers, index, column, target)
    if "email" not in index:
        found = ", ".join(f'"{h}"' for h in headers)
        raise InputError(
            f"{name} row 1: no email column found (columns: {found}); "
            "name it with --map COLUMN=email."
        )
    columns = _Columns(index=index, headers=headers, format=fmt)
    if fmt == "mailchimp":
        columns.unsub_at = _find(keys, "unsubtime")
        columns.cleaned_at = _find(keys, "cleantime")
    return columns


def _find(keys: list[str], key: str) -> int | None:
    return keys.index(key) if key in keys else None


def _apply_mapping(
    name: str, headers: list[str], index: dict[str, int], column: str, target: str
) -> None:
    if target not in MAP_FIELDS:
        raise InputError(
            f'--map "{column}={target}": the field must be one of {", ".join(MAP_FIELDS)}.'
        )
    stripped = [h.strip().lstrip("\ufeff") for h in headers]
    if column.strip() not in stripped:
        found = ", ".join(f'"{h}"' for h in stripped)
        raise InputError(f'--map "{column}={target}": {name} has no column "{column}" ({found}).')
    position = stripped.index(column.strip())
    for key, value in list(index.items()):
        if value == position:
            del index[key]
    if target != "ignore":
        index[target] = position


# --- import: rows ------------------------------------------------------------------------------


class _Row:
    __slots__ = (
        "email",
        "first",
        "last",
        "source",
        "tz",
        "signed",
        "confirmed",
        "ip",
        "status",
        "status_at",
        "tags",
        "number",
    )

    def merge(self, other: _Row) -> None:
        """Fold a later row for the same address into this one."""
        self.tags.update(other.tags)
        if other.signed is not None and (self.signed is None or other.signed < self.signed):
            self.signed, self.ip, self.confirmed = other.signed, other.ip, other.confirmed
        self.first = self.first or other.first
        self.last = self.last or other.last
        self.tz = self.tz or other.tz
        if _RANK[other.status] > _RANK[self.status]:
            self.status, self.status_at = other.status, other.status_at


_VALID_ZONES: frozenset[str] = frozenset()


def _timezone(value: str) -> str | None:
    global _VALID_ZONES
    if not value:
        return None
    if not _VALID_ZONES:
        _VALID_ZONES = frozenset(available_timezones())
    return value if value in _VALID_ZONES else None


def parse_datetime(text: str, tz: tzinfo = UTC) -> datetime:
    """``2026-02-03 10:11:12``, ``... UTC``, ISO 8601 or French ``03/02/2026 [10:11]`` to UTC."""
    value = text.strip()
    if value.endswith((" UTC", " GMT", "Z")):
        value = value[:-1] if value.endswith("Z") else value[:-4]
        tz = UTC
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_day_first(value)
    if parsed is None:
        raise ValueError(f'"{text}" is not a date like 2026-02-03 or 03/02/2026')
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _parse_day_first(value: str) -> datetime | None:
    for fmt in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def _split_tags(cell: str) -> set[str]:
    if not cell:
        return set()
    if '"' not in cell:
        parts = cell.split(",")
    elif cell[0] == cell[-1] == '"' and '""' not in cell:  # Mailchimp: "a","b"
        parts = cell[1:-1].split('","')
    else:
        parts = next(csv.reader([cell]))
    return {tag.strip().lower() for tag in parts if tag and not tag.isspace()}


class _RowParser:
    """Turns CSV records into ``_Row`` objects or a reject reason."""

    def __init__(self, columns: _Columns, source: str, stem: str, tags: set[str], tz: tzinfo):
        self.columns, self.source, self.stem, self.tags, self.tz = columns, source, stem, tags, tz
        self.get = {name: columns.index.get(name) for name in MAP_FIELDS}
        self.file_name = stem
        self.width = len(columns.headers)
        self.unknown_zones = 0
        self.at = [(name, self.get[name]) for name in MAP_FIELDS if name != "ignore"]

    def cell(self, record: list[str], name: str) -> str:
        position = self.get[name]
        return record[position].strip() if position is not None else ""

    def cells(self, record: list[str]) -> dict[str, str]:
        return {name: "" if at is None else record[at].strip() for name, at in self.at}

    def parse(self, record: list[str], number: int) -> _Row:
        if len(record) > self.width:
            raise ValueError(f"{len(record)} fields where the header has {self.width}")
        if len(record) < self.width:
            record = record + [""] * (self.width - len(record))
        cell = self.cells(record)
        raw = _unneutralize(cell["email"])
        if not raw:
            raise ValueError("empty email address")
        email = raw.lower()
        if not fast_valid(email):
            email = _slow_normalize(email)
        row = _Row()
        row.email, row.number = email, number
        row.first = _unneutralize(cell["first_name"])
        row.last = _unneutralize(cell["last_name"])
        row.source = self.source or cell["source"] or self.stem
        zone = cell["timezone"]
        row.tz = _timezone(zone)
        self.unknown_zones += bool(zone) and row.tz is None
        row.signed = self._date(cell["signed_up_at"], "signed_up_at")
        row.confirmed = self._date(cell["confirmed_at"], "confirmed_at")
        row.ip = cell["ip"] or None
        row.tags = _split_tags(cell["tags"]) | self.tags if self.tags else _split_tags(cell["tags"])
        row.status, row.status_at = self._status(record)
        return row

    def _date(self, text: str, name: str) -> datetime | None:
        if not text:
            return None
        if self.tz is UTC and len(text) == 19 and text[10] == " ":
            try:  # the common "2026-02-03 10:11:12" UTC of Mailchimp, without the slow path
                return datetime.fromisoformat(text + "+00:00")
            except ValueError:
                pass
        try:
            return parse_datetime(text, self.tz)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    def _status(self, record: list[str]) -> tuple[str, datetime | None]:
        for position, status in (
            (self.columns.unsub_at, "unsubscribed"),
            (self.columns.cleaned_at, "bounced"),
        ):
            if position is not None:
                text = record[position].strip()
                return status, parse_datetime(text) if text else None
        text = self.cell(record, "status")
        if not text:
            return "active", None
        status = _STATUS_WORDS.get(_header_key(text))
        if status is None:
            raise ValueError(
                f'status "{text}" is not one of active, pending, unsubscribed, '
                "cancelled, bounced, complained"
            )
        return status, None


def _open_records(path: Path, encoding: str) -> tuple[TextIO, Iterator[list[str]], str]:
    handle = path.open(encoding=encoding, newline="")
    header_line = handle.readline()
    handle.seek(0)
    delimiter = _sniff_delimiter(header_line)
    return handle, csv.reader(handle, delimiter=delimiter), delimiter


# --- import: writing ---------------------------------------------------------------------------


class _Writer:
    """Writes one chunk of merged rows with DBAPI executemany on the session's connection."""

    def __init__(self, conn: Connection, import_id: int, now: datetime, file_name: str):
        self.conn, self.import_id, self.now, self.file_name = conn, import_id, now, file_name
        self.sqlite = conn.dialect.name == "sqlite"
        self.mark = "?" if self.sqlite else "%s"
        self.now_db = self.dt(now)
        self.touched: set[int] = set()

    def dt(self, value: datetime | None) -> Any:
        if value is None or not self.sqlite:
            return value
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.isoformat(" ", "microseconds")[:26]  # SQLAlchemy's naive-UTC text

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            marks = ", ".join([self.mark] * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            self.conn.exec_driver_sql(sql, rows)

    def select_in(self, sql: str, values: Sequence[Any]) -> Iterator[Any]:
        """Rows of ``sql`` (with one ``{in}`` placeholder list) for values, in batches."""
        for batch in _batches(values, IN_BATCH):
            marks = ", ".join([self.mark] * len(batch))
            yield from self.conn.exec_driver_sql(sql.format(marks=marks), tuple(batch))

    def existing(self, emails: list[str]) -> dict[str, Any]:
        sql = (
            "SELECT id, email, status, first_name, last_name, signed_up_at, timezone, import_id "
            "FROM subscribers WHERE email IN ({marks})"
        )
        found = {}
        for row in self.select_in(sql, emails):
            signed = row[5]
            if isinstance(signed, str):
                signed = datetime.fromisoformat(signed).replace(tzinfo=UTC)
            found[row[1]] = _Existing(row[0], row[2], row[3], row[4], signed, row[6], row[7])
        return found

    def suppressed(self, emails: list[str]) -> set[str]:
        sql = "SELECT email FROM suppressions WHERE email IN ({marks})"
        return {row[0] for row in self.select_in(sql, emails)}

    def ids(self, emails: list[str]) -> dict[str, int]:
        """Ids of rows just inserted, in order; SQLite gives consecutive rowids (checked)."""
        if self.sqlite:
            last = self.conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
            first = last - len(emails) + 1
            sql = "SELECT id FROM subscribers WHERE email IN (?, ?) ORDER BY id"
            check = [row[0] for row in self.conn.exec_driver_sql(sql, (emails[0], emails[-1]))]
            if check in ([first, last], [first]) and (len(emails) > 1 or first == last):
                return dict(zip(emails, range(first, last + 1), strict=True))
        sql = "SELECT email, id FROM subscribers WHERE email IN ({marks})"
        return {row[0]: row[1] for row in self.select_in(sql, emails)}

    def tags_of(self, ids: list[int]) -> set[tuple[int, str]]:
        sql = "SELECT subscriber_id, tag FROM subscriber_tags WHERE subscriber_id IN ({marks})"
        return {(row[0], row[1]) for row in self.select_in(sql, ids)}

    @contextmanager
    def bigger_cache(self) -> Iterator[None]:
        """A 64 MB page cache on SQLite while importing (the default 2 MB thrashes)."""
        if not self.sqlite:
            yield
            return
        before = self.conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
        self.conn.exec_driver_sql(f"PRAGMA cache_size = {IMPORT_CACHE_KB}")
        try:
            yield
        finally:
            self.conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


@dataclass(frozen=True, slots=True)
class _Existing:
    id: int
    status: str
    first_name: str
    last_name: str
    signed_up_at: datetime | None
    timezone: str | None
    import_id: int | None


SUBSCRIBER_COLUMNS = (
    "email", "first_name", "last_name", "status", "source", "timezone", "language",
    "signed_up_at", "confirmed_at", "unsubscribed_at", "created_at", "updated_at", "import_id",
)  # fmt: skip
CONSENT_COLUMNS = (
    "subscriber_id", "method", "source", "given_at", "ip", "import_id", "confirmed_at",
    "withdrawn_at", "withdrawal_method",
)  # fmt: skip


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _language(tags: set[str]) -> str | None:
    return "fr" if "fr" in tags else "en" if "en" in tags else None


class _Chunk:
    """Applies one chunk of rows (unique addresses) to the database and counts them."""

    def __init__(self, writer: _Writer, result: ImportResult):
        self.w, self.result = writer, result

    def apply(self, rows: dict[str, _Row]) -> None:
        emails = sorted(rows)  # index-friendly order
        existing = self.w.existing(emails)
        suppressed = self.w.suppressed(emails)
        fresh = [rows[email] for email in emails if email not in existing]
        fresh = self._drop_suppressed(fresh, suppressed)
        self._insert_new(fresh, suppressed)
        self._merge_existing([(rows[e], existing[e]) for e in emails if e in existing], suppressed)

    def _drop_suppressed(self, fresh: list[_Row], suppressed: set[str]) -> list[_Row]:
        kept = [row for row in fresh if row.status in INACTIVE or row.email not in suppressed]
        self.result.suppressed += len(fresh) - len(kept)
        return kept

    def _insert_new(self, fresh: list[_Row], suppressed: set[str]) -> None:
        if not fresh:
            return
        w, now, import_id = self.w, self.w.now_db, self.w.import_id
        subscribers, dates = [], []
        for r in fresh:
            signed, confirmed = w.dt(r.signed), w.dt(r.confirmed)
            dates.append((signed, confirmed))
            unsub = w.dt(r.status_at or w.now) if r.status == "unsubscribed" else None
            subscribers.append(
                (
                    r.email,
                    r.first,
                    r.last,
                    r.status,
                    r.source,
                    r.tz,
                    _language(r.tags),
                    signed,
                    confirmed,
                    unsub,
                    now,
                    now,
                    import_id,
                )
            )
        w.insert("subscribers", SUBSCRIBER_COLUMNS, subscribers)
        ids = w.ids([r.email for r in fresh])
        w.insert(
            "subscriber_tags",
            ("subscriber_id", "tag"),
            [(ids[r.email], tag) for r in fresh for tag in r.tags],
        )
        consents = [
            (
                ids[r.email],
                "import",
                r.source,
                signed,
                r.ip,
                import_id,
                confirmed,
                *self._withdrawal(r),
            )
            for r, (signed, confirmed) in zip(fresh, dates, strict=True)
        ]
        w.insert("consents", CONSENT_COLUMNS, consents)
        self._suppress([r for r in fresh if r.status in INACTIVE and r.email not in suppressed])
        self.result.new += len(fresh)

    def _withdrawal(self, row: _Row) -> tuple[Any, Any]:
        if row.status == "active":
            return None, None
        if row.status not in INACTIVE:
            return None, None
        return self.w.dt(row.status_at or self.w.now), f"import: {row.status}"

    def _suppress(self, rows: list[_Row]) -> None:
        self.w.insert(
            "suppressions",
            ("email", "reason", "detail", "created_at"),
            [(r.email, r.status, f"imported from {self.w.file_name}", self.w.now_db) for r in rows],
        )

    def _merge_existing(self, pairs: list[tuple[_Row, Any]], suppressed: set[str]) -> None:
        if not pairs:
            return
        current_tags = self.w.tags_of([old.id for _, old in pairs])
        updates, new_tags, to_suppress, withdrawn = [], [], [], []
        for row, old in pairs:
            if self._count_existing(row, old, suppressed):
                continue
            new_tags += [(old.id, t) for t in row.tags if (old.id, t) not in current_tags]
            change = self._changes(row, old)
            if row.status in INACTIVE and old.status not in INACTIVE:
                withdrawn.append(old.id)
                if row.email not in suppressed:
                    to_suppress.append(row)
            if change is not None:
                updates.append(change)
        self.w.insert("subscriber_tags", ("subscriber_id", "tag"), new_tags)
        self._update(updates)
        self._suppress(to_suppress)
        self._withdraw(withdrawn)

    def _count_existing(self, row: _Row, old: Any, suppressed: set[str]) -> bool:
        """Count the row; True when it must not touch the subscriber (suppression wins)."""
        duplicate = old.import_id == self.w.import_id or old.id in self.w.touched
        blocked = row.status not in INACTIVE and (old.status in INACTIVE or row.email in suppressed)
        if duplicate:
            self.result.duplicates += 1
        elif blocked:
            self.result.suppressed += 1
        else:
            self.result.updated += 1
            self.w.touched.add(old.id)
        return blocked

    def _changes(self, row: _Row, old: Any) -> tuple[Any, ...] | None:
        signed = old.signed_up_at
        if row.signed is not None and (signed is None or row.signed < signed):
            signed = row.signed
        status, unsub = old.status, None
        if row.status in INACTIVE and old.status not in INACTIVE:
            status = row.status
            unsub = row.status_at or self.w.now if status == "unsubscribed" else None
        new = (
            old.first_name or row.first,
            old.last_name or row.last,
            signed,
            old.timezone or row.tz,
            status,
        )
        if new == (old.first_name, old.last_name, old.signed_up_at, old.timezone, old.status):
            return None
        w = self.w
        return (new[0], new[1], w.dt(signed), new[3], status, w.dt(unsub), w.now_db, old.id)

    def _update(self, updates: list[tuple[Any, ...]]) -> None:
        if updates:
            m = self.w.mark
            self.w.conn.exec_driver_sql(
                f"UPDATE subscribers SET first_name = {m}, last_name = {m}, signed_up_at = {m}, "
                f"timezone = {m}, status = {m}, "
                f"unsubscribed_at = COALESCE(unsubscribed_at, {m}), updated_at = {m} "
                f"WHERE id = {m}",
                updates,
            )

    def _withdraw(self, ids: list[int]) -> None:
        for batch in _batches(ids, IN_BATCH):
            self.w.conn.execute(
                update(Consent)
                .where(Consent.subscriber_id.in_(batch), Consent.withdrawn_at.is_(None))
                .values(withdrawn_at=self.w.now, withdrawal_method="import")
            )


# --- import: the driver ------------------------------------------------------------------------


class _Rejects:
    """Rejected rows, written to a CSV that only appears when the import succeeds."""

    def __init__(self, path: Path | None):
        self.path, self.count = path, 0
        self.tmp = path.with_name(path.name + ".part") if path else None
        self.handle: TextIO | None = None
        self.writer: Any = None

    def add(self, number: int, email: str, reason: str) -> None:
        self.count += 1
        if self.tmp is None:
            return
        if self.handle is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.tmp.open("w", encoding="utf-8", newline="")
            self.writer = csv.writer(self.handle)
            self.writer.writerow(["row", "email", "reason"])
        self.writer.writerow([number, neutralize_cell(email), neutralize_cell(reason)])

    def finish(self, ok: bool) -> Path | None:
        if self.handle is not None:
            self.handle.close()
        if self.tmp is None or not self.tmp.exists():
            return None
        if not ok:
            self.tmp.unlink()
            return None
        assert self.path is not None
        self.tmp.replace(self.path)
        return self.path


def import_subscribers(
    session: Session,
    path: Path,
    *,
    now: datetime,
    format: str = "auto",  # noqa: A002
    source: str | None = None,
    tags: Iterable[str] = (),
    mapping: dict[str, str] | None = None,
    dry_run: bool = False,
    rejects_path: Path | None = None,
    progress: Callable[[int], None] | None = None,
    tz: tzinfo = UTC,
    chunk_size: int = CHUNK_SIZE,
) -> ImportResult:
    """Import an audience CSV inside the caller's transaction (never commits).

    ``tz`` is the zone of dates without one in generic files. With ``dry_run`` the work
    is done inside a savepoint that is rolled back.
    """
    path = Path(path)
    info = scan_file(path)
    rejects = _Rejects(rejects_path)
    ok = False
    try:
        if dry_run:
            with session.begin_nested() as savepoint:
                result = _run_import(
                    session,
                    path,
                    info,
                    rejects,
                    now,
                    format,
                    source,
                    tags,
                    mapping,
                    progress,
                    tz,
                    chunk_size,
                )
                savepoint.rollback()
        else:
            result = _run_import(
                session,
                path,
                info,
                rejects,
                now,
                format,
                source,
                tags,
                mapping,
                progress,
                tz,
                chunk_size,
            )
        ok = True
    finally:
        result_path = rejects.finish(ok)
    result.rejects_path = result_path
    return result


def _run_import(
    session: Session,
    path: Path,
    info: _FileInfo,
    rejects: _Rejects,
    now: datetime,
    fmt: str,
    source: str | None,
    tags: Iterable[str],
    mapping: dict[str, str] | None,
    progress: Callable[[int], None] | None,
    tz: tzinfo,
    chunk_size: int,
) -> ImportResult:
    handle, records, _ = _open_records(path, info.encoding)
    with handle:
        headers = next(records, None)
        if not headers:
            raise InputError(f"{path.name}: the file is empty.")
        headers[0] = headers[0].lstrip("\ufeff")
        _check_headers(path.name, headers)
        fmt = _detect_format(headers, fmt)
        columns = _map_columns(path.name, headers, fmt, mapping)
        result = ImportResult(format=fmt)
        if info.encoding == "latin-1":
            result.warnings.append(f"{path.name} is not UTF-8; it was read as Latin-1.")
        source = (source or "").strip()
        parser = _RowParser(
            columns, source, path.stem, {t.strip().lower() for t in tags if t.strip()}, tz
        )
        parser.file_name = path.name
        file_source = None if "source" in columns.index else path.stem
        record = Import(
            file_name=str(path.name),
            file_sha256=info.sha256,
            format=fmt,
            source=source or file_source,
            created_at=now,
        )
        session.add(record)
        session.flush()
        writer = _Writer(session.connection(), record.id, now, path.name)
        with writer.bigger_cache():
            _stream(records, parser, _Chunk(writer, result), rejects, result, progress, chunk_size)
    result.invalid = rejects.count
    result.import_id = record.id
    if parser.unknown_zones:
        result.warnings.append(f"{parser.unknown_zones} rows had an unknown timezone (left empty).")
    record.counts = {k: v for k, v in result.as_dict().items() if isinstance(v, int)}
    session.flush()
    return result


def _stream(
    records: Iterator[list[str]],
    parser: _RowParser,
    chunk: _Chunk,
    rejects: _Rejects,
    result: ImportResult,
    progress: Callable[[int], None] | None,
    chunk_size: int,
) -> None:
    pending: dict[str, _Row] = {}
    name = parser.columns.headers
    for number, record in enumerate(records, start=2):
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        result.rows += 1
        if result.rows == 1:
            _check_first_row(parser.file_name, record, len(name), number)
        try:
            row = parser.parse(record, number)
        except ValueError as e:
            email_at = parser.get["email"]
            raw = record[email_at] if email_at is not None and email_at < len(record) else ""
            rejects.add(number, raw.strip(), str(e))
        else:
            earlier = pending.get(row.email)
            if earlier is None:
                pending[row.email] = row
            else:
                earlier.merge(row)
                result.duplicates += 1
        if len(pending) >= chunk_size:
            chunk.apply(pending)
            pending = {}
        if progress is not None and result.rows % PROGRESS_EVERY == 0:
            progress(result.rows)
    if pending:
        chunk.apply(pending)
    if progress is not None:
        progress(result.rows)


def _check_first_row(file_name: str, record: list[str], width: int, number: int) -> None:
    if width > 1 and len(record) == 1:
        for delimiter in (";", ",", "\t"):
            if delimiter in record[0]:
                shown = "tab" if delimiter == "\t" else f'"{delimiter}"'
                raise InputError(
                    f"{file_name} row {number}: 1 field where the header has {width}, "
                    f"and it contains {shown}; the rows use another delimiter than the header."
                )


# --- suppression, unsubscribe, tags ------------------------------------------------------------


def _normalized_or_lower(email: str) -> str:
    try:
        return normalize_email(email)
    except InputError:
        return email.strip().lower()


def is_suppressed(session: Session, email: str) -> bool:
    """True when the address must not be mailed (suppression list or an inactive subscriber)."""
    email = _normalized_or_lower(email)
    if session.scalar(select(Suppression.id).where(Suppression.email == email)) is not None:
        return True
    status = session.scalar(select(Subscriber.status).where(Subscriber.email == email))
    return status in INACTIVE


def suppress(
    session: Session,
    email: str,
    reason: SuppressionReason,
    *,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Add an address to the suppression list (idempotent) and update a matching subscriber."""
    email = normalize_email(email)
    reason = SuppressionReason(reason)
    if session.scalar(select(Suppression.id).where(Suppression.email == email)) is None:
        session.add(Suppression(email=email, reason=reason, detail=detail, created_at=now))
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is not None and _RANK[subscriber.status] < _RANK[_REASON_STATUS[reason]]:
        subscriber.status = _REASON_STATUS[reason]
        subscriber.updated_at = now
        if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
            subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
        _withdraw_consents(session, subscriber.id, now, f"suppressed: {reason}")
    session.flush()


def _withdraw_consents(session: Session, subscriber_id: int, now: datetime, method: str) -> int:
    result = session.execute(
        update(Consent)
        .where(Consent.subscriber_id == subscriber_id, Consent.withdrawn_at.is_(None))
        .values(withdrawn_at=now, withdrawal_method=method)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def unsubscribe(
    session: Session, subscriber_id: int, *, now: datetime, method: str, reason: str | None = None
) -> bool:
    """Unsubscribe a subscriber (idempotent); True when something changed."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound(f"No subscriber has id {subscriber_id}.")
    changed = False
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now
        subscriber.updated_at = now
        changed = True
    if session.scalar(select(Suppression.id).where(Suppression.email == subscriber.email)) is None:
        detail = f"{method}: {reason}" if reason else method
        session.add(
            Suppression(
                email=subscriber.email,
                reason=SuppressionReason.UNSUBSCRIBED,
                detail=detail,
                created_at=now,
            )
        )
        changed = True
    changed = _withdraw_consents(session, subscriber.id, now, method) > 0 or changed
    session.flush()
    return changed


def get_subscriber(session: Session, email: str) -> Subscriber:
    """A subscriber by address (any spelling of it)."""
    normalized = _normalized_or_lower(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == normalized))
    if subscriber is None:
        raise NotFound(f'No subscriber has the address "{email.strip()}".')
    return subscriber


def _clean_tags(tags: Iterable[str]) -> list[str]:
    cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
    if not cleaned:
        raise InputError("Give at least one tag.")
    return cleaned


def add_tags(session: Session, subscriber_ids: Iterable[int], tags: Iterable[str]) -> int:
    """Tag subscribers; returns how many (subscriber, tag) pairs were added."""
    ids, wanted = sorted(set(subscriber_ids)), _clean_tags(tags)
    have: set[tuple[int, str]] = set()
    for batch in _batches(ids, IN_BATCH):
        query = select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
            SubscriberTag.subscriber_id.in_(batch), SubscriberTag.tag.in_(wanted)
        )
        have.update((sid, tag) for sid, tag in session.execute(query))
    rows = [{"subscriber_id": i, "tag": t} for i in ids for t in wanted if (i, t) not in have]
    if rows:
        session.execute(insert(SubscriberTag), rows)
    return len(rows)


def remove_tags(session: Session, subscriber_ids: Iterable[int], tags: Iterable[str]) -> int:
    """Remove tags from subscribers; returns how many (subscriber, tag) pairs were removed."""
    ids, wanted, removed = sorted(set(subscriber_ids)), _clean_tags(tags), 0
    for batch in _batches(ids, IN_BATCH):
        result = session.execute(
            delete(SubscriberTag).where(
                SubscriberTag.subscriber_id.in_(batch), SubscriberTag.tag.in_(wanted)
            )
        )
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed


@dataclass
class SuppressResult:
    added: int = 0
    already: int = 0
    invalid: int = 0
    invalid_rows: list[str] = field(default_factory=list)


def suppress_file(
    session: Session,
    path: Path,
    *,
    now: datetime,
    reason: SuppressionReason = SuppressionReason.MANUAL,
) -> SuppressResult:
    """Suppress every address of a file: one per line, or a CSV with an email column."""
    info = scan_file(path)
    result = SuppressResult()
    for number, raw in _addresses(path, info.encoding):
        try:
            email = normalize_email(raw)
        except InputError as e:
            result.invalid += 1
            result.invalid_rows.append(f"row {number}: {e}")
            continue
        if is_suppressed(session, email) and session.scalar(
            select(Suppression.id).where(Suppression.email == email)
        ):
            result.already += 1
            continue
        suppress(session, email, reason, now=now, detail=f"suppressed from {path.name}")
        result.added += 1
    return result


def _addresses(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    handle, records, _ = _open_records(path, encoding)
    with handle:
        first = next(records, None)
        if not first:
            raise InputError(f"{path.name}: the file is empty.")
        first[0] = first[0].lstrip("\ufeff")
        if len(first) == 1 and "@" in first[0]:
            yield 1, first[0]
            position = 0
        else:
            _check_headers(path.name, first)
            position = _map_columns(path.name, first, "generic", None).index["email"]
        for number, record in enumerate(records, start=2):
            if record and position < len(record) and record[position].strip():
                yield number, record[position]


# --- reading the list --------------------------------------------------------------------------


def _where(session: Session, segment: str | None, statuses: Sequence[str] | None) -> list[Any]:
    clauses: list[Any] = []
    if segment:
        clauses.append(segment_filter(resolve_segment(session, segment)))
    if statuses:
        clauses.append(Subscriber.status.in_(list(statuses)))
    return clauses


def count_subscribers(
    session: Session, segment: str | None = None, statuses: Sequence[str] | None = ("active",)
) -> int:
    """How many subscribers match a segment (saved name or expression) and statuses."""
    query = select(func.count()).select_from(Subscriber).where(*_where(session, segment, statuses))
    return int(session.scalar(query) or 0)


def segment_ids(
    session: Session, segment: str | None, statuses: Sequence[str] | None = None
) -> list[int]:
    """Ids of the subscribers in a segment."""
    query = select(Subscriber.id).where(*_where(session, segment, statuses)).order_by(Subscriber.id)
    return list(session.scalars(query))


EXPORT_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "status",
    "source",
    "timezone",
    "language",
    "signed_up_at",
    "confirmed_at",
    "unsubscribed_at",
    "tags",
)


def iter_subscribers(
    session: Session,
    segment: str | None = None,
    *,
    statuses: Sequence[str] | None = None,
    limit: int | None = None,
    batch: int = 2_000,
) -> Iterator[dict[str, Any]]:
    """Subscribers as dicts (``EXPORT_COLUMNS``, tags as a sorted list), streamed by id."""
    where, last_id, left = _where(session, segment, statuses), 0, limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        query = select(Subscriber).where(Subscriber.id > last_id, *where)
        rows = list(session.scalars(query.order_by(Subscriber.id).limit(size)))
        if not rows:
            return
        tags: dict[int, list[str]] = {}
        tag_query = select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
            SubscriberTag.subscriber_id.in_([r.id for r in rows])
        )
        for sid, tag in session.execute(tag_query.order_by(SubscriberTag.tag)):
            tags.setdefault(sid, []).append(tag)
        for row in rows:
            item = {name: getattr(row, name, None) for name in EXPORT_COLUMNS[:-1]}
            yield {"id": row.id, **item, "tags": tags.get(row.id, [])}
        last_id = rows[-1].id
        left = None if left is None else left - len(rows)
        session.expunge_all()


def export_subscribers(
    session: Session,
    path: Path,
    segment: str | None = None,
    statuses: Sequence[str] | None = None,
) -> int:
    """Write subscribers to a UTF-8 CSV safe to open in a spreadsheet; returns the row count."""
    count = 0
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        for item in iter_subscribers(session, segment, statuses=statuses):
            writer.writerow([_export_cell(item[name]) for name in EXPORT_COLUMNS])
            count += 1
    tmp.replace(path)
    return count


def _export_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return neutralize_cell(",".join(value))
    return neutralize_cell(str(value))


def _counts(session: Session, query: Any) -> dict[str, int]:
    return {str(key): int(count) for key, count in session.execute(query)}


def audience_stats(session: Session) -> dict[str, Any]:
    """Counts by status (everyone) and, for active subscribers, by source, tag and signup month."""
    active = Subscriber.status == SubscriberStatus.ACTIVE
    source = func.coalesce(Subscriber.source, "")
    by_status = _counts(
        session, select(Subscriber.status, func.count()).group_by(Subscriber.status)
    )
    by_source = _counts(session, select(source, func.count()).where(active).group_by(source))
    by_tag = _counts(
        session,
        select(SubscriberTag.tag, func.count())
        .join(Subscriber)
        .where(active)
        .group_by(SubscriberTag.tag),
    )
    months: Counter[str] = Counter()
    query = select(Subscriber.signed_up_at).where(active).execution_options(yield_per=10_000)
    for signed in session.execute(query).scalars():
        months[signed.strftime("%Y-%m") if signed else "unknown"] += 1
    return {
        "total": sum(by_status.values()),
        "by_status": {s.value: by_status.get(s, 0) for s in SubscriberStatus},
        "by_source": _sorted_counts(by_source),
        "by_tag": _sorted_counts(by_tag),
        "by_month": dict(sorted(months.items())),
    }


def _sorted_counts(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
