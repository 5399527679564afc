"""Ledger claims: who may send which row, and what happens to rows a dead sender left behind.

Policy (exactly once, except the window between DATA and 250):

- A row is claimed (``queued -> sending``, ``claimed_by``, ``claimed_at``) and the claim is
  COMMITTED before any SMTP traffic. Once the server answered 354 to DATA the row is marked
  "in flight" (committed); it is marked ``sent`` and committed right after the server's 250.
  No checkpoint is ever advanced at fetch time.
- A claim lives as long as its owner: on PostgreSQL a heartbeat renews ``claimed_at`` of the
  owner's rows every quarter of the lease, and the owner holds a session advisory lock. A row
  is taken back only when its owner is gone: the advisory lock is free (its connection is
  gone) or the lease passed without a heartbeat. On SQLite the workspace send lock means no
  other sender is alive. Every mark (in flight, sent, failed, bounced, skipped) is
  conditional on still owning the row (``WHERE claimed_by = :me``).
- At most one extra copy, with the same Message-ID, and only when a crash or a dropped
  connection falls between DATA and 250: such a row is sent once more ("resend"); if that
  resend is interrupted the same way, the row is recorded ``delivered_unconfirmed`` (final,
  never sent again). A row that may have been delivered once is never recorded ``failed``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, true, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from launchkit.config import Settings
from launchkit.errors import SendInProgress
from launchkit.models import (
    Email,
    EvergreenEntry,
    LaunchSequence,
    Send,
    SendStatus,
    Subscriber,
    Suppression,
)
from launchkit.sequences.schedule import SENDABLE

LEASE = timedelta(minutes=5)
IN_FLIGHT = "in flight"
IN_FLIGHT_AGAIN = "in flight again"
RESEND = "resend after an interrupted send"
UNCONFIRMED = "interrupted twice between DATA and 250; not sent again"
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


def recover_orphans(
    session: Session, conn: Connection | None, *, now: datetime, lease: timedelta = LEASE
) -> int:
    """Put rows left ``sending`` by dead senders back to ``queued``; returns how many rows
    were recovered (requeued or recorded ``delivered_unconfirmed``).

    A row marked "in flight" was between DATA and 250: it may have been delivered, so it is
    sent once more with the same Message-ID. A row found "in flight" on its resend is recorded
    ``delivered_unconfirmed`` rather than risk a third copy. Other claimed rows were never
    handed to the server.
    """
    orphaned = and_(Send.status == SendStatus.SENDING, _orphan_clause(session, conn, now, lease))
    unconfirmed = session.execute(
        update(Send)
        .where(orphaned, Send.reason == IN_FLIGHT_AGAIN)
        .values(
            status=SendStatus.DELIVERED_UNCONFIRMED,
            reason=UNCONFIRMED,
            sent_at=Send.claimed_at,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Send)
        .where(orphaned, Send.reason == IN_FLIGHT)
        .values(reason=RESEND)
        .execution_options(synchronize_session=False)
    )
    return int(unconfirmed.rowcount or 0) + _requeue(session, orphaned)


def _orphan_clause(
    session: Session, conn: Connection | None, now: datetime, lease: timedelta
) -> Any:
    if session.get_bind().dialect.name != "postgresql" or conn is None:
        return true()  # SQLite: we hold the workspace send lock, nobody else is sending
    owners = session.scalars(
        select(Send.claimed_by).where(Send.status == SendStatus.SENDING).distinct()
    ).all()
    dead = [o for o in owners if o and _owner_is_dead(conn, o)]
    # a live owner renews its claims (``Heartbeat``): a claim older than the lease means a
    # hung owner whose connection is still open
    return or_(Send.claimed_by.in_(dead), Send.claimed_by.is_(None), Send.claimed_at < now - lease)


class Heartbeat:
    """PostgreSQL: renew the claims of ``owners`` every quarter of the lease, on a connection
    of its own, while the run works (a context manager; nothing to do on SQLite)."""

    def __init__(
        self, engine: Engine, owners: list[str], clock: Callable[[], datetime], lease: timedelta
    ):
        self.engine, self.owners, self.clock = engine, owners, clock
        self.interval = max(lease.total_seconds() / 4, 0.05)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        if self.engine.dialect.name == "postgresql":
            self.thread = threading.Thread(target=self._run, name="claims-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stopped.wait(self.interval):
                try:
                    renew_claims(conn, self.owners, now=self.clock())
                    conn.commit()
                    self.beats += 1
                except SQLAlchemyError:  # the next beat tries again; marks stay conditional
                    conn.rollback()


def renew_claims(conn: Connection, owners: list[str], *, now: datetime) -> int:
    """Move ``claimed_at`` of the rows ``owners`` are sending to ``now``."""
    stmt = (
        update(Send)
        .where(Send.status == SendStatus.SENDING, Send.claimed_by.in_(owners))
        .values(claimed_at=now)
    )
    return int(conn.execute(stmt).rowcount or 0)


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
    Send.deadline_at,
    EvergreenEntry.cart_open_at,
    EvergreenEntry.cart_close_at,
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
    "deadline_at",  # evergreen: this person's own deadline for this email
    "cart_open_at",  # evergreen: this person's own cart (None for a fixed launch)
    "cart_close_at",
)


def load_rows(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """Everything needed to send the claimed rows, in one query, in due order."""
    query = (
        select(*ROW_COLUMNS)
        .join(Subscriber, Subscriber.id == Send.subscriber_id)
        .outerjoin(Suppression, Suppression.email == Subscriber.email)
        .join(Email, Email.id == Send.email_id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .outerjoin(
            EvergreenEntry,
            and_(
                EvergreenEntry.launch_id == LaunchSequence.launch_id,
                EvergreenEntry.subscriber_id == Send.subscriber_id,
            ),
        )
        .where(Send.id.in_(ids))
        .order_by(Send.due_at, Send.id)
    )
    return [dict(zip(ROW_KEYS, row, strict=True)) for row in session.execute(query)]
