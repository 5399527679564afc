"""Benchmark: `launchkit audience import` of a Mailchimp export vs a raw sqlite3 baseline.

    python benchmarks/import_bench.py [--rows 1000000] [--keep DIR]

1. Generates N Mailchimp-like rows (the 23 columns of a real export, 2-3 tags per row, 1 % of
   rows repeated in another case, 0.1 % invalid addresses) into a CSV file.
2. launchkit side, in a child process so its peak memory is its own: a fresh SQLite workspace
   (`launchkit.workspace.init_workspace`), then the library call behind the CLI command,
   `audience.import_subscribers` in one transaction, committed (the CLI adds only its
   progress bar). Subscribers, tags, consents and the import record are all written.
3. Raw baseline, same process as 1: stdlib `sqlite3`, read the same CSV with `csv.reader`,
   lowercase/trim the address, `executemany` the rows into one table with a UNIQUE index on
   email (INSERT OR IGNORE for the repeats), one transaction. Its insert-only time (rows
   parsed beforehand) is printed too.
4. Write floor: the rows launchkit's import wrote (subscribers, tags, consents), read back
   and replayed with stdlib `sqlite3` `executemany` into a fresh database with launchkit's
   own schema and connection settings, one transaction. No importer that writes these rows
   can beat it, so `ceiling` = baseline time / replay time is the best ratio reachable
   without storing less.

Prints rows/s of each side, the peak RSS (`resource.getrusage` maxrss) of the launchkit
child, the ceiling, and ends with `ratio: X.XX` = launchkit rows/s / baseline rows/s (file
to database).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

HEADER = [
    "Email Address", "First Name", "Last Name", "Address", "Phone Number", "Source",
    "MEMBER_RATING", "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LATITUDE",
    "LONGITUDE", "GMTOFF", "DSTOFF", "TIMEZONE", "CC", "REGION", "LAST_CHANGED", "LEID",
    "EUID", "NOTES", "TAGS",
]  # fmt: skip
FIRST = ["Hélène", "François", "Anaïs", "Jérôme", "Zoé", "Noël", "Emma", "Oliver", "Lucas"]
LAST = ["Martin", "Bernard", "Dubois", "Lefèvre", "Smith", "Jones", "Taylor", "Moreau"]
DOMAINS = ["gmail.com", "orange.fr", "free.fr", "hotmail.fr", "outlook.com", "yahoo.fr"]
SOURCES = [
    ("magnet:checklist-lancement", "magnet:checklist-lancement"),
    ("magnet:guide-tarifs", "magnet:guide-tarifs"),
    ("webinar", "webinar"),
    ("instagram", "social"),
]
ZONES = ["Europe/Paris", "Europe/London", "America/Montreal", ""]


def ascii_name(name: str) -> str:
    """Zoé -> zoe: what people's addresses look like."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def generate(path: Path, rows: int) -> None:
    """Write a Mailchimp-like export with a few duplicates and invalid addresses."""
    rng = random.Random(2026)
    start = datetime(2025, 6, 1, tzinfo=UTC)
    recent: deque[str] = deque(maxlen=100)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(HEADER)
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{ascii_name(first)}.{ascii_name(last)}{i}@{rng.choice(DOMAINS)}"
            recent.append(email)
            if i % 100 == 99:  # a repeat of an earlier person, in another case
                email = f" {recent[-50].upper()} "
            if i % 1000 == 500:
                email = email.replace("@", "@@")
            source, tag = rng.choice(SOURCES)
            tags = f'"{tag}","{rng.choice(["fr", "en"])}"'
            if i % 3 == 0:
                tags += ',"webinar"' if tag != "webinar" else ',"vip"'
            optin = start + timedelta(seconds=i * 37 % 46_000_000)
            stamp = optin.strftime("%Y-%m-%d %H:%M:%S")
            writer.writerow([
                email, first, last, "", "", source, "2", stamp, f"192.0.2.{i % 250}", stamp,
                f"192.0.2.{i % 250}", "", "", "1", "2", rng.choice(ZONES), "FR", "", stamp,
                str(100000000 + i), f"{i:010x}", "", tags,
            ])  # fmt: skip


def run_launchkit(csv_path: Path, workdir: Path) -> dict[str, float]:
    """The launchkit side (runs in the child process)."""
    from launchkit import audience
    from launchkit.db import make_engine, make_sessionmaker
    from launchkit.workspace import init_workspace

    settings = init_workspace(workdir / "ws", name="Bench", env={})
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    started = time.perf_counter()
    with sessions.begin() as session:
        result = audience.import_subscribers(
            session, csv_path, now=datetime.now(UTC), rejects_path=workdir / "rejects.csv"
        )
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        written = sum(
            conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            for table in ("subscribers", "subscriber_tags", "consents", "suppressions", "imports")
        )
    engine.dispose()
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "maxrss_mb": maxrss_mb, "written": written, **result.as_dict()}


def run_baseline(csv_path: Path, db_path: Path) -> tuple[float, float, int]:
    """Raw sqlite3: file to table (timed), then insert-only of pre-parsed rows (timed)."""

    def rows():
        with csv_path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for r in reader:
                yield (r[0].strip().lower(), r[1], r[2], r[5], r[7], r[8], r[9], r[15], r[22])

    sql = "INSERT OR IGNORE INTO subscribers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    timings = []
    for pre_parsed in (False, True):
        db_path.unlink(missing_ok=True)
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE subscribers (email TEXT, first_name TEXT, last_name TEXT, source TEXT,"
            " optin_time TEXT, optin_ip TEXT, confirm_time TEXT, timezone TEXT, tags TEXT)"
        )
        conn.execute("CREATE UNIQUE INDEX ux_email ON subscribers (email)")
        data = list(rows()) if pre_parsed else rows()
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, data)
        conn.execute("COMMIT")
        timings.append(time.perf_counter() - started)
        count = conn.execute("SELECT count(*) FROM subscribers").fetchone()[0]
        conn.close()
        del data
    return timings[0], timings[1], count


REPLAYED = ("imports", "subscribers", "subscriber_tags", "consents")
# launchkit's connection settings (launchkit/db.py) and the importer's page cache
LAUNCHKIT_PRAGMAS = ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                     "cache_size = -65536")  # fmt: skip


def run_replay(source_db: Path, db_path: Path) -> float:
    """Raw sqlite3: launchkit's written rows into its own schema, one transaction (timed)."""
    source = sqlite3.connect(source_db)
    schema = [sql for (sql,) in source.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
    )]  # fmt: skip
    tables = {name: source.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
              for name in REPLAYED}  # fmt: skip
    source.close()
    db_path.unlink(missing_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    for pragma in LAUNCHKIT_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    for sql in schema:
        conn.execute(sql)
    imports = tables.pop("imports")
    conn.executemany(f"INSERT INTO imports VALUES ({', '.join('?' * len(imports[0]))})", imports)
    started = time.perf_counter()
    conn.execute("BEGIN")
    for name, rows in tables.items():
        conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--child", nargs=2, metavar=("CSV", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_launchkit(Path(args.child[0]), Path(args.child[1]))))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="lk-import-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "audience.csv"
    started = time.perf_counter()
    generate(csv_path, args.rows)
    size_mb = csv_path.stat().st_size / 1e6
    elapsed = time.perf_counter() - started
    print(f"generated {args.rows:,} rows ({size_mb:.0f} MB) in {elapsed:.1f} s")
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(csv_path), str(work / "lk")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    lk = json.loads(child.stdout.strip().splitlines()[-1])
    lk_rate = args.rows / lk["seconds"]
    file_s, insert_s, count = run_baseline(csv_path, work / "baseline.db")
    base_rate, insert_rate = args.rows / file_s, args.rows / insert_s
    replay_s = run_replay(work / "lk" / "ws" / "launchkit.db", work / "replay.db")
    print(
        f"launchkit audience import (library call, SQLite): {lk['seconds']:.2f} s, "
        f"{lk_rate:,.0f} rows/s, peak RSS {lk['maxrss_mb']:.0f} MB "
        f"({lk['new']:,} new, {lk['duplicates']:,} duplicates, {lk['invalid']:,} invalid; "
        f"{lk['written']:,} database rows written, {lk['written'] / lk['seconds']:,.0f} rows/s)"
    )
    print(f"raw sqlite3 baseline, CSV file to table: {file_s:.2f} s, {base_rate:,.0f} rows/s "
          f"({count:,} rows)")  # fmt: skip
    print(f"raw sqlite3 baseline, executemany only (rows pre-parsed): {insert_s:.2f} s, "
          f"{insert_rate:,.0f} rows/s (launchkit/this: {lk_rate / insert_rate:.2f})")  # fmt: skip
    print(f"write floor, launchkit's rows replayed by raw sqlite3 into its schema: "
          f"{replay_s:.2f} s, {args.rows / replay_s:,.0f} rows/s; "
          f"ceiling: {file_s / replay_s:.2f}")  # fmt: skip
    print(f"ratio: {lk_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
