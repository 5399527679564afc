"""Importing audience CSV files (Mailchimp, Kit, generic) in chunks, inside one transaction.

Addresses are normalized and validated, merged within the file and against the database, and
written with DBAPI ``executemany`` on the session's connection. The suppression list always
wins: no import re-activates an unsubscribed, bounced or complained address.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import available_timezones

from sqlalchemy import Connection, update
from sqlalchemy.orm import Session

from launchkit.audience.addresses import (
    _header_key,
    _slow_normalize,
    _unneutralize,
    fast_valid,
    neutralize_cell,
)
from launchkit.errors import InputError
from launchkit.models import (
    Consent,
    Import,
)

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
    "timezone": {"timezone", "fuseauhoraire", "tz", "zone"},
    "tags": {"tags", "tag", "etiquettes"},
    "source": {"source", "origine"},
    "status": {"status", "statut"},
    "ip": {"optinip", "ip", "signupip"},
}
_KEY_OF = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}


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
    with path.open("rb") as handle:
        start = handle.read(4096)
    if size == 0 or not start.strip(b"\xef\xbb\xbf \r\n\t"):
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
    if cell[0] == cell[-1] == '"' and '""' not in cell and " " not in cell:  # "a","b"
        tags = set(cell[1:-1].lower().split('","'))
        tags.discard("")
        return tags
    if '"' not in cell:
        parts = cell.split(",")
    elif cell[0] == cell[-1] == '"' and '""' not in cell:  # Mailchimp: "a","b"
        parts = cell[1:-1].split('","')
    else:
        parts = next(csv.reader([cell]))
    return {tag.strip().lower() for tag in parts if tag and not tag.isspace()}


_PARSED = ("email", "first_name", "last_name", "signed_up_at", "confirmed_at", "timezone", "tags",
           "source", "status", "ip")  # fmt: skip


class _RowParser:
    """Turns CSV records into ``_Row`` objects or a reject reason."""

    def __init__(self, columns: _Columns, source: str, stem: str, tags: set[str], tz: tzinfo):
        self.columns, self.source, self.stem, self.tags, self.tz = columns, source, stem, tags, tz
        self.get = {name: columns.index.get(name) for name in MAP_FIELDS}
        self.file_name = stem
        self.width = len(columns.headers)
        self.unknown_zones = 0
        # one C call fetches every field; a missing column reads the "" appended to each record
        at = [self.width if self.get[name] is None else self.get[name] for name in _PARSED]
        self.fields = itemgetter(*at)
        self.plain_status = columns.unsub_at is None and columns.cleaned_at is None

    def parse(self, record: list[str], number: int) -> _Row:
        if len(record) != self.width:
            if len(record) > self.width:
                raise ValueError(f"{len(record)} fields where the header has {self.width}")
            record = record + [""] * (self.width - len(record))
        record.append("")
        raw, first, last, signed, confirmed, zone, tags, source, status, ip = self.fields(record)
        raw = _unneutralize(raw.strip())
        if not raw:
            raise ValueError("empty email address")
        email = raw.lower()
        if not fast_valid(email):
            email = _slow_normalize(email)
        row = _Row()
        row.email, row.number = email, number
        row.first = _unneutralize(first.strip())
        row.last = _unneutralize(last.strip())
        row.source = self.source or source.strip() or self.stem
        zone = zone.strip()
        row.tz = _timezone(zone)
        if zone and row.tz is None:
            self.unknown_zones += 1
        row.signed = self._date(signed.strip(), "signed_up_at")
        row.confirmed = self._date(confirmed.strip(), "confirmed_at")
        row.ip = ip.strip() or None
        row.tags = _split_tags(tags.strip())
        if self.tags:
            row.tags |= self.tags
        if self.plain_status and not status:
            row.status, row.status_at = "active", None
        else:
            row.status, row.status_at = self._status(record, status.strip())
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

    def _status(self, record: list[str], text: str) -> tuple[str, datetime | None]:
        for position, status in (
            (self.columns.unsub_at, "unsubscribed"),
            (self.columns.cleaned_at, "bounced"),
        ):
            if position is not None:
                text = record[position].strip()
                when = record[position].strip()
                return status, parse_datetime(when) if when else None
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
        if self.tmp is None or self.path is None:
            return None
        if not ok:
            self.tmp.unlink(missing_ok=True)
            return None
        if not self.tmp.exists():
            self.path.unlink(missing_ok=True)  # no stale rejects from an earlier run
            return None
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

    The work runs in a savepoint: an error (or ``dry_run``) rolls all of it back. ``tz`` is
    the zone of dates written without one in generic files.
    """
    path = Path(path)
    info = scan_file(path)
    rejects = _Rejects(rejects_path)
    ok = False
    try:
        with session.begin_nested() as savepoint:  # all or nothing, even if the caller goes on
            result = _run_import(
                session, path, info, rejects, now, format, source, tags, mapping, progress, tz,
                chunk_size,
            )  # fmt: skip
            if dry_run:
                savepoint.rollback()
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
        zone = tz if fmt == "generic" else UTC  # Mailchimp and Kit write UTC
        tag_set = {t.strip().lower() for t in tags if t.strip()}
        parser = _RowParser(columns, source, path.stem, tag_set, zone)
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
