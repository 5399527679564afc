"""The per-message ledger commits, on a raw DB-API connection (they run twice per message).

Before each push the row is marked "in flight" (with its Message-ID); right after the server's
250 it is marked ``sent``. Each mark is usually one autocommitted statement (one round trip);
several marks at once share an explicit transaction (SQLite: ``BEGIN IMMEDIATE``). PostgreSQL
does not wait for the WAL flush on this connection (``synchronous_commit = off``): a killed
sender loses nothing; only a crash of the database server itself could lose the last marks,
and those rows would be resent with the same Message-ID.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from launchkit.models import Send, SendStatus


class LedgerMarks:
    """Prepared SQL for marking rows sent / skipped / in flight, on one DB-API connection."""

    def __init__(self, engine: Engine):
        self.sqlite = engine.dialect.name == "sqlite"
        self.conn = engine.raw_connection()
        self.driver: Any = self.conn.driver_connection
        if not self.sqlite:
            self.driver.autocommit = True
            self.driver.execute("SET synchronous_commit TO OFF")
        processor = Send.__table__.c.sent_at.type.bind_processor(engine.dialect)
        self._ts = processor or (lambda value: value)
        p = "?" if self.sqlite else "%s"
        self.sql_sent = (
            f"UPDATE sends SET status = '{SendStatus.SENT.value}', sent_at = {p}, reason = NULL, "
            f"message_id = {p} WHERE id = {p}"
        )
        self.sql_skipped = (
            f"UPDATE sends SET status = '{SendStatus.SKIPPED.value}', reason = {p} WHERE id = {p}"
        )
        self.sql_flight = f"UPDATE sends SET reason = {p}, message_id = {p} WHERE id = {p}"
        self.sql_reset = f"UPDATE launch_sequences SET consecutive_failures = 0 WHERE id = {p}"

    def commit(
        self,
        sent: list[tuple[int, datetime, str]],
        skipped: list[tuple[int, str]],
        flight: tuple[int, str, str] | None,
        reset: list[int],
    ) -> None:
        """Apply the marks atomically."""
        work: list[tuple[str, list[tuple[Any, ...]]]] = []
        if sent:
            work.append((self.sql_sent, [(self._ts(at), mid, sid) for sid, at, mid in sent]))
        if skipped:
            work.append((self.sql_skipped, [(why, sid) for sid, why in skipped]))
        if flight is not None:
            sid, mark, message_id = flight
            work.append((self.sql_flight, [(mark, message_id, sid)]))
        if reset:
            work.append((self.sql_reset, [(seq_id,) for seq_id in reset]))
        cursor = self.driver.cursor()
        try:
            if len(work) == 1 and len(work[0][1]) == 1:  # one statement: autocommitted
                cursor.execute(work[0][0], work[0][1][0])
                return
            self._transaction(cursor, work)
        finally:
            cursor.close()

    def _transaction(self, cursor: Any, work: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        cursor.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
        try:
            for sql, rows in work:
                cursor.executemany(sql, rows)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Restore the connection's defaults and return it to the pool."""
        if not self.sqlite:
            self.driver.execute("SET synchronous_commit TO DEFAULT")
            self.driver.autocommit = False
        self.conn.close()
