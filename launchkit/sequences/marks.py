"""The per-message ledger commits, on a raw DB-API connection (they run twice per message).

Once the server answered 354 to DATA the row is marked "in flight" (with its Message-ID);
right after the server's 250 it is marked ``sent``. Every mark holds only while the row is
still ``sending`` for this owner (``WHERE claimed_by = :me``): a row another sender took back
is never marked by this one. Each mark is usually one autocommitted statement (one round
trip); several marks at once share an explicit transaction (SQLite: ``BEGIN IMMEDIATE``).
PostgreSQL does not wait for the WAL flush on this connection (``synchronous_commit = off``):
a killed sender loses nothing; only a crash of the database server itself could lose the last
marks, and those rows would be resent with the same Message-ID.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from launchkit.models import Send, SendStatus


class LedgerMarks:
    """Prepared SQL for marking one owner's rows sent / skipped / in flight."""

    def __init__(self, engine: Engine, owner: str):
        self.sqlite = engine.dialect.name == "sqlite"
        self.owner = owner
        self.conn = engine.raw_connection()
        self.driver: Any = self.conn.driver_connection
        if not self.sqlite:
            self.driver.autocommit = True
            self.driver.execute("SET synchronous_commit TO OFF")
        processor = Send.__table__.c.sent_at.type.bind_processor(engine.dialect)
        self._ts = processor or (lambda value: value)
        p = "?" if self.sqlite else "%s"
        mine = f"id = {p} AND claimed_by = {p} AND status = '{SendStatus.SENDING.value}'"
        self.sql_sent = (
            f"UPDATE sends SET status = '{SendStatus.SENT.value}', sent_at = {p}, reason = NULL, "
            f"message_id = {p} WHERE {mine}"
        )
        self.sql_skipped = (
            f"UPDATE sends SET status = '{SendStatus.SKIPPED.value}', reason = {p} WHERE {mine}"
        )
        self.sql_flight = f"UPDATE sends SET reason = {p}, message_id = {p} WHERE {mine}"
        self.sql_reset = f"UPDATE launch_sequences SET consecutive_failures = 0 WHERE id = {p}"

    def in_flight(self, send_id: int, mark: str, message_id: str) -> bool:
        """Mark one row in flight; False when the row is no longer this owner's."""
        cursor = self.driver.cursor()
        try:
            cursor.execute(self.sql_flight, (mark, message_id, send_id, self.owner))
            return bool(cursor.rowcount == 1)
        finally:
            cursor.close()

    def commit(
        self,
        sent: list[tuple[int, datetime, str]],
        skipped: list[tuple[int, str]],
        reset: list[int],
    ) -> int:
        """Apply the marks atomically; returns how many sent marks held (rows still ours)."""
        me = self.owner
        work: list[tuple[str, list[tuple[Any, ...]]]] = []
        if sent:
            work.append((self.sql_sent, [(self._ts(at), mid, sid, me) for sid, at, mid in sent]))
        if skipped:
            work.append((self.sql_skipped, [(why, sid, me) for sid, why in skipped]))
        if reset:
            work.append((self.sql_reset, [(seq_id,) for seq_id in reset]))
        if not work:
            return 0
        cursor = self.driver.cursor()
        try:
            if len(work) == 1 and len(work[0][1]) == 1:  # one statement: autocommitted
                cursor.execute(work[0][0], work[0][1][0])
                return int(cursor.rowcount) if sent else 0
            return self._transaction(cursor, work, len(sent))
        finally:
            cursor.close()

    def _transaction(
        self, cursor: Any, work: list[tuple[str, list[tuple[Any, ...]]]], sent: int
    ) -> int:
        cursor.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
        held = 0
        try:
            for sql, rows in work:
                if sql is self.sql_sent:
                    for row in rows:  # one by one: each row's count tells whether it held
                        cursor.execute(sql, row)
                        held += max(int(cursor.rowcount), 0)
                else:
                    cursor.executemany(sql, rows)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        return held if sent else 0

    def close(self) -> None:
        """Restore the connection's defaults and return it to the pool."""
        if not self.sqlite:
            self.driver.execute("SET synchronous_commit TO DEFAULT")
            self.driver.autocommit = False
        self.conn.close()
