"""The per-message ledger commit, on a raw DB-API connection (it runs once per message).

Two small transactions per message: "in flight" (with its Message-ID) before the push, ``sent``
right after the server's 250. SQLite takes the write lock at BEGIN (``BEGIN IMMEDIATE``); PostgreSQL skips
waiting for the WAL flush (``synchronous_commit off``: a killed sender loses nothing, only a
crash of the database server itself could lose the last marks, which would then be resent
with the same Message-ID).
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
        processor = Send.__table__.c.sent_at.type.bind_processor(engine.dialect)
        self._ts = processor or (lambda value: value)
        p = "?" if self.sqlite else "%s"
        self.sql_sent = (
            f"UPDATE sends SET status = '{SendStatus.SENT.value}', sent_at = {p}, reason = NULL "
            f"WHERE id = {p}"
        )
        self.sql_skipped = (
            f"UPDATE sends SET status = '{SendStatus.SKIPPED.value}', reason = {p} WHERE id = {p}"
        )
        self.sql_flight = f"UPDATE sends SET reason = {p}, message_id = {p} WHERE id = {p}"
        self.sql_reset = f"UPDATE launch_sequences SET consecutive_failures = 0 WHERE id = {p}"

    def commit(
        self,
        sent: list[tuple[int, datetime]],
        skipped: list[tuple[int, str]],
        flight: tuple[int, str, str] | None,
        reset: list[int],
    ) -> None:
        """Apply the marks in one transaction and commit."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(
                "BEGIN IMMEDIATE" if self.sqlite else "SET LOCAL synchronous_commit TO OFF"
            )
            if sent:
                cursor.executemany(self.sql_sent, [(self._ts(at), sid) for sid, at in sent])
            if skipped:
                cursor.executemany(self.sql_skipped, [(why, sid) for sid, why in skipped])
            if flight is not None:
                sid, mark, message_id = flight
                cursor.execute(self.sql_flight, (mark, message_id, sid))
            if reset:
                cursor.executemany(self.sql_reset, [(seq_id,) for seq_id in reset])
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LedgerMarks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
