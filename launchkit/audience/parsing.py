"""Reading audience CSV files: encoding, delimiter, columns, and rows parsed in chunks.

Pure (no database): a chunk holds the file's unique addresses merged, the rejected rows and
counts, ready for ``launchkit.audience.importer`` to write.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import available_timezones

from launchkit.audience.addresses import _header_key, _slow_normalize, _unneutralize, fast_valid
from launchkit.errors import InputError

PROGRESS_EVERY = 1_000
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


# --- the file ---------------------------------------------------------------------------------


@dataclass
class FileInfo:
    """What the scan found: the encoding to read with, and what the import checks at its end."""

    encoding: str
    sha256: str
    lines: int
    size: int = 0
    mtime_ns: int = 0
    controls: bool = False  # some byte that may be a control character (rows get checked)


BLOCK = 1 << 20
_C0 = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])  # not tab, LF, CR
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")
_HIGH = bytes(range(0x80, 0x100))
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


class _Scan:
    """One pass over the bytes: hash, line count, NUL bytes, UTF-8 validity, control bytes."""

    def __init__(self, name: str):
        self.name, self.digest, self.lines, self.size = name, hashlib.sha256(), 0, 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.bad_utf8_line: int | None = None
        self.controls, self.start, self.last = False, b"", b""

    def feed(self, block: bytes) -> None:
        nul = block.find(b"\0")
        if nul >= 0:
            line = self.lines + block.count(b"\n", 0, nul) + 1
            raise InputError(
                f"{self.name} line {line}: a NUL byte; this is a binary file, not a CSV text file."
            )
        self.start = self.start or block[:4096]
        self.digest.update(block)
        if self.bad_utf8_line is None:
            pending = self.decoder.getstate()[0]
            try:
                self.decoder.decode(block)
            except UnicodeDecodeError as e:
                at = max(0, e.start - len(pending))
                self.bad_utf8_line = self.lines + block.count(b"\n", 0, at) + 1
        if not self.controls:
            self.controls = bool(
                len(block.translate(None, _C0)) != len(block)
                or _C1_UTF8.search(block)
                or _C1_UTF8.match(self.last + block[:1])
            )
        self.lines += block.count(b"\n")
        self.size += len(block)
        self.last = block[-1:]

    def finish(self) -> None:
        if self.bad_utf8_line is None:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.bad_utf8_line = self.lines + 1


def scan_file(path: Path) -> FileInfo:
    """Check a CSV is text and decide its encoding: UTF-8 (with or without BOM), else
    Windows-1252; a file that is neither, or mostly UTF-8 with stray bytes, is refused."""
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    before = path.stat()
    scan = _Scan(path.name)
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            scan.feed(block)
        after = os.fstat(handle.fileno())
    scan.finish()
    if _stamp(before) != _stamp(after) or scan.size != after.st_size:
        raise InputError(changed_message(path.name))
    if scan.size == 0 or not scan.start.strip(b"\xef\xbb\xbf \r\n\t"):
        raise InputError(f"{path.name}: the file is empty.")
    encoding = "utf-8-sig" if scan.bad_utf8_line is None else _eight_bit(path, scan.bad_utf8_line)
    return FileInfo(
        encoding=encoding,
        sha256=scan.digest.hexdigest(),
        lines=scan.lines + 1,
        size=scan.size,
        mtime_ns=before.st_mtime_ns,
        controls=scan.controls,
    )


def _stamp(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_size, stat.st_mtime_ns


def changed_message(name: str) -> str:
    return (
        f"{name} changed while it was being read (its size, modification time or content "
        "differ from the start); nothing was imported. Import it again once it is complete."
    )


def _eight_bit(path: Path, bad_utf8_line: int) -> str:
    """Windows-1252 (what Excel saves in Western Europe), when the file is not mostly UTF-8
    (no more valid multi-byte UTF-8 sequences than stray bytes) and every byte decodes."""
    sequences = stray = lines = 0
    bad: tuple[int, int] | None = None
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            if not block.isascii():
                found = _UTF8_SEQUENCE.findall(block)
                sequences += len(found)
                stray += len(block) - len(block.translate(None, _HIGH)) - sum(map(len, found))
                if bad is None:
                    try:
                        block.decode("cp1252")
                    except UnicodeDecodeError as e:
                        bad = (lines + block.count(b"\n", 0, e.start) + 1, block[e.start])
            lines += block.count(b"\n")
    if sequences >= stray:
        raise InputError(
            f"{path.name} line {bad_utf8_line}: a byte that is not UTF-8 in a file that is "
            "otherwise UTF-8, so its encoding cannot be decided; save it as UTF-8 and import "
            "it again."
        )
    if bad is not None:
        raise InputError(
            f"{path.name} line {bad[0]}: byte 0x{bad[1]:02X} is neither UTF-8 nor Windows-1252 "
            "text; save the file as UTF-8 and import it again."
        )
    return "cp1252"


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
class Columns:
    index: dict[str, int]  # field -> column index
    headers: list[str]
    format: str
    unsub_at: int | None = None
    cleaned_at: int | None = None
    status_at: int | None = None  # generic/Kit: when the status (e.g. unsubscribed) was set


def check_headers(name: str, headers: list[str]) -> None:
    """Refuse duplicate column names and a header that is one column with another delimiter."""
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


def detect_format(headers: list[str], requested: str) -> str:
    """mailchimp, kit or generic: the format asked for, or the one the headers show."""
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


def map_columns(name: str, headers: list[str], fmt: str, mapping: dict[str, str] | None) -> Columns:
    """Which column holds each field: known header names, then ``--map COLUMN=field``."""
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
    columns = Columns(index=index, headers=headers, format=fmt)
    if fmt == "mailchimp":
        columns.unsub_at = _find(keys, "unsubtime")
        columns.cleaned_at = _find(keys, "cleantime")
    else:
        found = [k for k in _STATUS_AT_KEYS if k in keys]
        columns.status_at = keys.index(found[0]) if found else None
    return columns


# a status date column of Kit and generic files (header keys)
_STATUS_AT_KEYS = ("unsubscribedat", "cancelledat", "canceledat", "statuschangedat",
                   "statusdate", "statusat", "bouncedat", "complainedat", "unsubtime")  # fmt: skip


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


# --- rows ------------------------------------------------------------------------------


class Row:
    """One person's row: the address normalized, fields trimmed, dates in UTC."""

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

    def merge(self, other: Row) -> None:
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


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refuse_controls(values: tuple[str, ...]) -> None:
    """A control character (C0 but tab and line breaks, DEL, C1) never reaches a stored field."""
    for name, value in zip(_PARSED, values, strict=True):
        found = _CONTROL.search(value)
        if found:
            raise ValueError(f"{name}: control character U+{ord(found.group()):04X}")


class RowParser:
    """Turns CSV records into ``Row`` objects or a reject reason."""

    def __init__(self, columns: Columns, source: str, stem: str, tags: set[str], tz: tzinfo):
        self.columns, self.source, self.stem, self.tags, self.tz = columns, source, stem, tags, tz
        self.get = {name: columns.index.get(name) for name in MAP_FIELDS}
        self.file_name = stem
        self.width = len(columns.headers)
        self.unknown_zones = 0
        # one C call fetches every field; a missing column reads the "" appended to each record
        at = [self.width if self.get[name] is None else self.get[name] for name in _PARSED]
        self.fields = itemgetter(*at)
        self.plain_status = columns.unsub_at is None and columns.cleaned_at is None
        self.plain_status = self.plain_status and columns.status_at is None
        self.check_controls = True  # the importer turns it off when the scan saw no such byte

    def parse(self, record: list[str], number: int) -> Row:
        if len(record) != self.width:
            if len(record) > self.width:
                raise ValueError(f"{len(record)} fields where the header has {self.width}")
            record = record + [""] * (self.width - len(record))
        record.append("")
        values = self.fields(record)
        if self.check_controls:
            _refuse_controls(values)
        raw, first, last, signed, confirmed, zone, tags, source, status, ip = values
        raw = _unneutralize(raw.strip())
        if not raw:
            raise ValueError("empty email address")
        email = raw.lower()
        if not fast_valid(email):
            email = _slow_normalize(email)
        row = Row()
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
        at = self.columns.status_at
        when = record[at].strip() if at is not None else ""
        if not text:
            return ("unsubscribed", self._date(when, "status date")) if when else ("active", None)
        status = _STATUS_WORDS.get(_header_key(text))
        if status is None:
            raise ValueError(
                f'status "{text}" is not one of active, pending, unsubscribed, '
                "cancelled, bounced, complained"
            )
        return status, self._date(when, "status date") if status in INACTIVE else None


class WatchedFile(io.RawIOBase):
    """The file's bytes as the import reads them, hashed on the way, so that the import can
    tell at its end whether they are the bytes the scan saw (``check_unchanged``)."""

    def __init__(self, path: Path):
        self.path = path
        self.file = path.open("rb", buffering=0)
        self.digest, self.size = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        count = self.file.readinto(buffer)
        if count:
            data = bytes(memoryview(buffer)[:count])
            if b"\0" in data:  # the scan found none: the file is being rewritten
                raise InputError(changed_message(self.path.name))
            self.digest.update(data)
            self.size += count
        return count

    def close(self) -> None:
        self.file.close()
        super().close()

    def check_unchanged(self, info: FileInfo) -> None:
        """Refuse when the bytes read, or the file's size or time, differ from the scan's."""
        try:
            now = _stamp(self.path.stat())
        except OSError:
            now = (-1, -1)
        read = (self.size, self.digest.hexdigest())
        if read != (info.size, info.sha256) or now != (info.size, info.mtime_ns):
            raise InputError(changed_message(self.path.name))


def open_watched(path: Path, info: FileInfo) -> tuple[TextIO, WatchedFile, Iterator[list[str]]]:
    """The decoded file, its ``WatchedFile`` and a CSV reader on it (header first)."""
    watched = WatchedFile(path)
    handle = io.TextIOWrapper(
        io.BufferedReader(watched, 1 << 16), encoding=info.encoding, newline=""
    )
    try:
        header_line = handle.readline()
    except UnicodeDecodeError:
        handle.close()
        raise InputError(changed_message(path.name)) from None
    delimiter = _sniff_delimiter(header_line)
    return handle, watched, csv.reader(itertools.chain([header_line], handle), delimiter=delimiter)


def open_records(path: Path, encoding: str) -> tuple[TextIO, Iterator[list[str]], str]:
    """The open file, a CSV reader on it (header first) and the delimiter sniffed."""
    handle = path.open(encoding=encoding, newline="")
    header_line = handle.readline()
    handle.seek(0)
    delimiter = _sniff_delimiter(header_line)
    return handle, csv.reader(handle, delimiter=delimiter), delimiter


# --- chunks ------------------------------------------------------------------------------------


@dataclass
class ParsedChunk:
    """Up to ``chunk_size`` unique addresses of the file (later rows merged into earlier ones),
    the rows rejected on the way as (row number, address, reason), and counts."""

    rows: dict[str, Row] = field(default_factory=dict)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    records: int = 0
    duplicates: int = 0


def parse_chunks(
    records: Iterator[list[str]],
    parser: RowParser,
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ParsedChunk]:
    """The data records (header already read) in chunks; the last one may hold no rows.

    ``progress`` gets the count of records read every ``PROGRESS_EVERY`` records.
    """
    chunk, seen = ParsedChunk(), 0
    width = len(parser.columns.headers)
    numbered = enumerate(records, start=2)
    while True:
        try:
            number, record = next(numbered)
        except StopIteration:
            break
        except csv.Error as e:
            line = getattr(records, "line_num", "?")
            raise InputError(
                f"{parser.file_name} line {line}: {e} (an unclosed quote runs on to here?)."
            ) from None
        except UnicodeDecodeError:  # the scan decoded every byte: the file changed since
            raise InputError(changed_message(parser.file_name)) from None
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        seen += 1
        chunk.records += 1
        if seen == 1:
            _check_first_row(parser.file_name, record, width, number)
        _add_record(chunk, parser, record, number)
        if len(chunk.rows) >= chunk_size:
            yield chunk
            chunk = ParsedChunk()
        if progress is not None and seen % PROGRESS_EVERY == 0:
            progress(seen)
    yield chunk


def _add_record(chunk: ParsedChunk, parser: RowParser, record: list[str], number: int) -> None:
    try:
        row = parser.parse(record, number)
    except ValueError as e:
        email_at = parser.get["email"]
        raw = record[email_at] if email_at is not None and email_at < len(record) else ""
        chunk.rejects.append((number, raw.strip(), str(e)))
        return
    earlier = chunk.rows.get(row.email)
    if earlier is None:
        chunk.rows[row.email] = row
    else:
        earlier.merge(row)
        chunk.duplicates += 1


def _check_first_row(file_name: str, record: list[str], width: int, number: int) -> None:
    if width > 1 and len(record) == 1:
        for delimiter in (";", ",", "\t"):
            if delimiter in record[0]:
                shown = "tab" if delimiter == "\t" else f'"{delimiter}"'
                raise InputError(
                    f"{file_name} row {number}: 1 field where the header has {width}, "
                    f"and it contains {shown}; the rows use another delimiter than the header."
                )
