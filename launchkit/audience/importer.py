"""Importing audience CSV files (Mailchimp, Kit, generic) in chunks, inside one transaction.

Addresses are normalized and validated, merged within the file and against the database, and
written with DBAPI ``executemany`` on the session's connection. The suppression list always
wins: no import re-activates an unsubscribed, bounced or complained address.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.orm import Session

from launchkit import privacy
from launchkit.audience.parsing import (
    INACTIVE,
    FileInfo,
    ParsedChunk,
    Row,
    RowParser,
    check_headers,
    detect_format,
    map_columns,
    open_watched,
    parse_chunks,
    scan_file,
)
from launchkit.errors import InputError
from launchkit.files import CsvFile
from launchkit.models import (
    Consent,
    Import,
)

CHUNK_SIZE = 20_000
IN_BATCH = 5_000
IMPORT_CACHE_KB = -65_536


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
        hashed = {privacy.erased_key(e): e for e in emails}  # erased people: hash only
        found = {row[0] for row in self.select_in(sql, emails + list(hashed))}
        self.erased = {hashed[key] for key in found & hashed.keys()}  # never re-added
        return (found - hashed.keys()) | self.erased

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
STATUS_COLUMNS = ("subscriber_id", "status", "changed_at", "source")
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

    def apply(self, rows: dict[str, Row]) -> None:
        emails = sorted(rows)  # index-friendly order
        existing = self.w.existing(emails)
        suppressed = self.w.suppressed(emails)
        fresh = [rows[email] for email in emails if email not in existing]
        fresh = self._drop_suppressed(fresh, suppressed)
        self._insert_new(fresh, suppressed)
        self._merge_existing([(rows[e], existing[e]) for e in emails if e in existing], suppressed)

    def _drop_suppressed(self, fresh: list[Row], suppressed: set[str]) -> list[Row]:
        kept = [
            row
            for row in fresh
            if row.email not in self.w.erased
            and (row.status in INACTIVE or row.email not in suppressed)
        ]
        self.result.suppressed += len(fresh) - len(kept)
        return kept

    def _insert_new(self, fresh: list[Row], suppressed: set[str]) -> None:
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
        self._record_status([(ids[r.email], r) for r in fresh if r.status != "active"])
        self._suppress([r for r in fresh if r.status in INACTIVE and r.email not in suppressed])
        self.result.new += len(fresh)

    def _withdrawal(self, row: Row) -> tuple[Any, Any]:
        if row.status == "active":
            return None, None
        if row.status not in INACTIVE:
            return None, None
        return self.w.dt(row.status_at or self.w.now), f"import: {row.status}"

    def _record_status(self, pairs: list[tuple[int, Row]]) -> None:
        """Status history: an inactive row at the export's own date (else the import's time),
        a pending one from its join time."""
        w, rows = self.w, []
        for sid, r in pairs:
            at = r.status_at or (r.signed if r.status == "pending" else None)
            rows.append((sid, r.status, w.dt(at) if at else w.now_db, "import"))
        w.insert("subscriber_status_changes", STATUS_COLUMNS, rows)

    def _suppress(self, rows: list[Row]) -> None:
        self.w.insert(
            "suppressions",
            ("email", "reason", "detail", "created_at"),
            [(r.email, r.status, f"imported from {self.w.file_name}", self.w.now_db) for r in rows],
        )

    def _merge_existing(self, pairs: list[tuple[Row, Any]], suppressed: set[str]) -> None:
        if not pairs:
            return
        current_tags = self.w.tags_of([old.id for _, old in pairs])
        updates, new_tags, to_suppress, withdrawn, changed = [], [], [], [], []
        for row, old in pairs:
            if self._count_existing(row, old, suppressed):
                continue
            new_tags += [(old.id, t) for t in row.tags if (old.id, t) not in current_tags]
            change = self._changes(row, old)
            if row.status in INACTIVE and old.status not in INACTIVE:
                changed.append((old.id, row))
                withdrawn.append(old.id)
                if row.email not in suppressed:
                    to_suppress.append(row)
            if change is not None:
                updates.append(change)
        self.w.insert("subscriber_tags", ("subscriber_id", "tag"), new_tags)
        self._update(updates)
        self._record_status(changed)
        self._suppress(to_suppress)
        self._withdraw(withdrawn)

    def _count_existing(self, row: Row, old: Any, suppressed: set[str]) -> bool:
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

    def _changes(self, row: Row, old: Any) -> tuple[Any, ...] | None:
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
        self.out: CsvFile | None = None

    def add(self, number: int, email: str, reason: str) -> None:
        self.count += 1
        if self.path is None:
            return
        if self.out is None:
            self.out = CsvFile(self.path, ["row", "email", "reason"])
        self.out.writerow([number, email, reason])

    def finish(self, ok: bool) -> Path | None:
        if self.out is not None:
            self.out.close(ok)
        if self.path is None or not ok:
            return None
        if self.out is None:
            self.path.unlink(missing_ok=True)  # no stale rejects from an earlier run
            return None
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
        with _gc_paused(), session.begin_nested() as savepoint:  # all or nothing
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
    info: FileInfo,
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
    handle, watched, records = open_watched(path, info)
    with handle:
        headers = next(records, None)
        if not headers:
            raise InputError(f"{path.name}: the file is empty.")
        headers[0] = headers[0].lstrip("\ufeff")
        check_headers(path.name, headers)
        fmt = detect_format(headers, fmt)
        columns = map_columns(path.name, headers, fmt, mapping)
        result = ImportResult(format=fmt)
        if info.encoding == "cp1252":
            result.warnings.append(f"{path.name} is not UTF-8; it was read as Windows-1252.")
        source = (source or "").strip()
        zone = tz if fmt == "generic" else UTC  # Mailchimp and Kit write UTC
        tag_set = {t.strip().lower() for t in tags if t.strip()}
        parser = RowParser(columns, source, path.stem, tag_set, zone)
        parser.file_name = path.name
        parser.check_controls = info.controls
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
        chunks = parse_chunks(records, parser, chunk_size, progress)
        with writer.bigger_cache():
            _write_chunks(chunks, _Chunk(writer, result), rejects, result)
        watched.check_unchanged(info)
    if progress is not None:
        progress(result.rows)
    result.invalid = rejects.count
    result.import_id = record.id
    if parser.unknown_zones:
        result.warnings.append(f"{parser.unknown_zones} rows had an unknown timezone (left empty).")
    record.counts = {k: v for k, v in result.as_dict().items() if isinstance(v, int)}
    session.flush()
    return result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while importing: the import makes millions of short-lived,
    acyclic objects (freed by reference counting anyway), and the collector's passes over them
    cost about a sixth of a large import (measured with ``benchmarks/import_bench.py``)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_chunks(
    chunks: Iterator[ParsedChunk],
    chunk: _Chunk,
    rejects: _Rejects,
    result: ImportResult,
) -> None:
    """Apply each parsed chunk and count it."""
    for parsed in chunks:
        for number, email, reason in parsed.rejects:
            rejects.add(number, email, reason)
        result.rows += parsed.records
        result.duplicates += parsed.duplicates
        if parsed.rows:
            chunk.apply(parsed.rows)
