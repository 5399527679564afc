"""Ledger claims: who may send which row, and what happens to rows a dead sender left behind.

Policy (exactly once, except the RFC 1047 window):

- A row is claimed (``queued -> sending``, ``claimed_by``, ``claimed_at``) and the claim is
  COMMITTED before any SMTP traffic; it is marked ``sent`` and committed right after the
  server's ``250``, in small groups. No checkpoint is ever advanced at fetch time.
- A row left ``sending`` by a sender that died is put back to ``queued`` and sent again, with
  the same deterministic Message-ID. "Died" means: on SQLite, we hold the workspace send lock,
  so no other sender is alive; on PostgreSQL, the claimer's session advisory lock is free (its
  connection is gone) or its claim is older than the lease (5 minutes; claims are sized to be
  sent within seconds). Only rows pushed in the window between the ``250`` and the commit can
  arrive twice, and the copy carries the same Message-ID, so receiving servers and people can
  recognise it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, text, true, update
from sqlalchemy.orm import Session

from launchkit.config import Settings
from launchkit.errors import SendInProgress
from launchkit.models import Email, LaunchSequence, Send, SendStatus, Subscriber, Suppression
from launchkit.sequences.schedule import SENDABLE

LEASE = timedelta(minutes=5)
IN_FLIGHT = "in flight"
IN_FLIGHT_AGAIN = "in flight again"
RESEND = "resend after an interrupted send"
ASSUMED = "assumed delivered after two interrupted sends"
LOCK_FILE = ".send.lock"


def new_owner(worker: int = 0) -> str:
    """A unique claimer id: host, pid, a random part and the worker number."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{worker}"


def owner_key(owner: str) -> int:
    """The 64-bit PostgreSQL advisory lock key of a claimer."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:8], "big", signed=True)


@contextmanager
def workspace_send_lock(settings: Settings) -> Iterator[None]:
    """SQLite runs one sender at a time: an exclusive flock on ``workspace/.send.lock``."""
    path = settings.workspace / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise SendInProgress(
                f"Another `launchkit send` is running on this workspace (pid {holder}); "
                "SQLite runs one sender at a time."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


@contextmanager
def owner_lock(engine: Engine, owner: str) -> Iterator[Connection | None]:
    """PostgreSQL: hold a session advisory lock for ``owner`` while it sends."""
    if engine.dialect.name != "postgresql":
        yield None
        return
    conn = engine.connect()
    try:
        conn.execute(select(func.pg_advisory_lock(owner_key(owner))))
        conn.commit()
        yield conn
    finally:
        conn.close()


def fast_commit(session: Session) -> None:
    """PostgreSQL: don't wait for the WAL flush on ledger marks (a process crash loses
    nothing; only a database server crash could lose the last marks, which then resend with
    the same Message-ID)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def recover_orphans(session: Session, conn: Connection | None, *, now: datetime) -> int:
    """Put rows left ``sending`` by dead senders back to ``queued``; returns how many rows
    were recovered (requeued or recorded as assumed delivered).

    A row marked "in flight" was being pushed: it may have been delivered, so it is sent once
    more with the same Message-ID. A row found "in flight" a second time is recorded as sent
    (assumed delivered) rather than risk a third copy. Other claimed rows were never pushed.
    """
    orphaned = and_(Send.status == SendStatus.SENDING, _orphan_clause(session, conn, now))
    assumed = session.execute(
        update(Send)
        .where(orphaned, Send.reason == IN_FLIGHT_AGAIN)
        .values(status=SendStatus.SENT, reason=ASSUMED, sent_at=Send.claimed_at)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Send)
        .where(orphaned, Send.reason == IN_FLIGHT)
        .values(reason=RESEND)
        .execution_options(synchronize_session=False)
    )
    return int(assumed.rowcount or 0) + _requeue(session, orphaned)


def _orphan_clause(session: Session, conn: Connection | None, now: datetime) -> Any:
    if session.get_bind().dialect.name != "postgresql" or conn is None:
        return true()  # SQLite: we hold the workspace send lock, nobody else is sending
    owners = session.scalars(
        select(Send.claimed_by).where(Send.status == SendStatus.SENDING).distinct()
    ).all()
    dead = [o for o in owners if o and _owner_is_dead(conn, o)]
    return or_(Send.claimed_by.in_(dead), Send.claimed_by.is_(None), Send.claimed_at < now - LEASE)


def _owner_is_dead(conn: Connection, owner: str) -> bool:
    key = owner_key(owner)
    got = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
    if got:
        conn.execute(select(func.pg_advisory_unlock(key)))
    conn.commit()
    return got


def _requeue(session: Session, *where: Any) -> int:
    stmt = (
        update(Send)
        .where(*where)
        .values(status=SendStatus.QUEUED, claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(stmt).rowcount or 0)


def release_claims(session: Session, ids: list[int], owner: str) -> int:
    """Give back claimed rows that were not attempted (pause, stop)."""
    if not ids:
        return 0
    return _requeue(
        session, Send.id.in_(ids), Send.status == SendStatus.SENDING, Send.claimed_by == owner
    )


def due_filter(now: datetime, launch_ids: list[int] | None) -> list[Any]:
    """Rows that may be sent now: queued, due, retry time reached, sequence sendable."""
    where = [
        Send.status == SendStatus.QUEUED,
        Send.due_at <= now,
        or_(Send.next_attempt_at.is_(None), Send.next_attempt_at <= now),
        LaunchSequence.status.in_(list(SENDABLE)),
    ]
    if launch_ids is not None:
        where.append(LaunchSequence.launch_id.in_(launch_ids))
    return where


def due_ids_query(now: datetime, launch_ids: list[int] | None, limit: int) -> Any:
    """The next due rows, oldest first (by due time, then id)."""
    return (
        select(Send.id)
        .join(Email, Email.id == Send.email_id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(*due_filter(now, launch_ids))
        .order_by(Send.due_at, Send.id)
        .limit(limit)
    )


def claim_batch(
    session: Session, owner: str, *, now: datetime, launch_ids: list[int] | None, limit: int
) -> list[int]:
    """Move up to ``limit`` due rows to ``sending`` for ``owner`` (caller commits at once)."""
    query = due_ids_query(now, launch_ids, limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Send)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(Send)
            .where(Send.id.in_(ids))
            .values(status=SendStatus.SENDING, claimed_by=owner, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


ROW_COLUMNS = (
    Send.id,
    Send.email_id,
    Send.subscriber_id,
    Send.due_at,
    Send.attempts,
    Send.reason,
    Subscriber.email,
    Subscriber.first_name,
    Subscriber.last_name,
    Subscriber.status,
    Subscriber.timezone,
    Subscriber.language,
    Suppression.reason,
)
ROW_KEYS = (
    "send_id",
    "email_id",
    "id",
    "due_at",
    "attempts",
    "reason",
    "email",
    "first_name",
    "last_name",
    "status",
    "timezone",
    "language",
    "suppressed",
)


def load_rows(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """Everything needed to send the claimed rows, in one query, in due order."""
    query = (
        select(*ROW_COLUMNS)
        .join(Subscriber, Subscriber.id == Send.subscriber_id)
        .outerjoin(Suppression, Suppression.email == Subscriber.email)
        .where(Send.id.in_(ids))
        .order_by(Send.due_at, Send.id)
    )
    return [dict(zip(ROW_KEYS, row, strict=True)) for row in session.execute(query)]
