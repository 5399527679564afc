"""The delivery engine: send every due ledger row exactly once (see ``claims`` for the policy).

One run: lock (SQLite), schedule (adds subscribers who joined since), refuse to start when a
message would lack its unsubscribe link or the postal address, put back rows a dead sender left
``sending``, then workers loop: claim a batch (committed) -> re-check each row (suppressed,
unsubscribed, ``skip_if``, stale, past its deadline) -> render -> push -> mark ``sent`` and
commit (a messenger that is idempotent by Message-ID, the file outbox, needs no in-flight
mark and gets its sent marks in groups of ``IDEMPOTENT_GROUP``: a message pushed again after
a crash overwrites the same file). 4xx: retry later with exponential backoff, ``failed`` after
``max_attempts``. 5xx: ``bounced`` and the address is suppressed. After ``max_send_errors``
consecutive failures the sequence pauses itself and the run stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from launchkit.config import Settings
from launchkit.db import make_sessionmaker
from launchkit.errors import LaunchkitError
from launchkit.models import Email, LaunchSequence, Send, SendStatus, SequenceStatus
from launchkit.sequences import ahead, claims
from launchkit.sequences.compose import Composer, prepare_composer
from launchkit.sequences.marks import LedgerMarks
from launchkit.sequences.ratelimit import RateLimiter
from launchkit.sequences.schedule import set_status

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=2)
IDEMPOTENT_GROUP = 100  # sent marks committed together for an idempotent messenger
Clock = Callable[[], datetime]


@dataclass
class SendOptions:
    """Knobs of one ``launchkit send`` run."""

    launch: str | None = None
    limit: int | None = None
    rate_per_second: float | None = None  # None: settings.rate_per_second
    workers: int = 1
    dry_run: bool = False
    batch_size: int = 200


@dataclass
class SendReport:
    """What a run did; also the progress snapshot passed to the progress callback."""

    due: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    retried: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    paused: list[str] = field(default_factory=list)
    later: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.bounced + self.retried + sum(self.skipped.values())

    @property
    def remaining(self) -> int:
        return max(self.due - self.done, 0)

    def summary(self) -> str:
        """One line for people."""
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "0"
        verb = "would send" if self.dry_run else "sent"
        rate = self.sent / self.seconds if self.seconds else 0.0
        line = (
            f"{verb} {self.sent}, retry later {self.retried}, failed {self.failed}, "
            f"bounced {self.bounced}, skipped {skipped}, remaining {self.remaining}, "
            f"not yet due {self.later} ({rate:.0f} msg/s)"
        )
        if self.recovered:
            line += f"; {self.recovered} interrupted sends resumed"
        if self.paused:
            line += f"; paused after repeated failures: {', '.join(self.paused)}"
        return line


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts``: 1, 2, 4, 8 ... minutes, capped at 2 hours."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


def send_due(
    engine: Engine,
    settings: Settings,
    *,
    clock: Clock,
    sleep: Callable[[float], None] = time.sleep,
    options: SendOptions | None = None,
    progress: Callable[[SendReport], None] | None = None,
    messenger_factory: Callable[[Settings], Any] | None = None,
) -> SendReport:
    """Send everything due now; safe to rerun after any crash."""
    options = options or SendOptions()
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        options.workers = 1
        with claims.workspace_send_lock(settings):
            return _run(engine, settings, clock, sleep, options, progress, messenger_factory)
    return _run(engine, settings, clock, sleep, options, progress, messenger_factory)


def _run(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    sleep: Callable[[float], None],
    options: SendOptions,
    progress: Callable[[SendReport], None] | None,
    messenger_factory: Callable[[Settings], Any] | None,
) -> SendReport:
    sessions = make_sessionmaker(engine, immediate=True)
    started = time.monotonic()
    report = SendReport(dry_run=options.dry_run)
    if options.dry_run:
        with sessions() as session:
            _dry_run(session, settings, options, clock(), report)
            session.rollback()
        report.seconds = time.monotonic() - started
        return report
    with sessions.begin() as session:
        composer = prepare_composer(session, settings, options.launch, now=clock())
    run = _Run(engine, sessions, settings, composer, clock, sleep, options, report, progress)
    run.start()
    with claims.owner_lock(engine, claims.new_owner()) as conn, sessions.begin() as session:
        report.recovered = claims.recover_orphans(session, conn, now=clock())
    with sessions.begin() as session:
        report.due = _count(session, claims.due_filter(clock(), composer.launch_ids))
    # one helper per process: runs with several worker threads compose in those threads
    run.ahead = options.workers <= 1 and ahead.wanted(settings.compose_ahead, report.due)
    _start_workers(run, messenger_factory)
    with sessions.begin() as session:
        report.later = _count_later(session, clock(), composer.launch_ids)
    report.seconds = time.monotonic() - started
    if run.error is not None:
        raise run.error
    return report


def _count(session: Session, where: list[Any]) -> int:
    query = (
        select(func.count(Send.id))
        .join(Email, Email.id == Send.email_id)
        .join(LaunchSequence, LaunchSequence.id == Email.sequence_id)
        .where(*where)
    )
    return int(session.scalar(query) or 0)


def _count_later(session: Session, now: datetime, launch_ids: list[int] | None) -> int:
    where = [
        Send.status == SendStatus.QUEUED,
        LaunchSequence.status != SequenceStatus.CANCELLED,
        or_(Send.due_at > now, Send.next_attempt_at > now),
    ]
    if launch_ids is not None:
        where.append(LaunchSequence.launch_id.in_(launch_ids))
    return _count(session, where)


def _dry_run(
    session: Session, settings: Settings, options: SendOptions, now: datetime, report: SendReport
) -> None:
    composer = prepare_composer(session, settings, options.launch, now=now)
    limit = options.limit or 10**9
    ids = list(session.scalars(claims.due_ids_query(now, composer.launch_ids, limit)))
    report.due = len(ids)
    for start in range(0, len(ids), 500):
        for row in claims.load_rows(session, ids[start : start + 500]):
            reason = composer.skip_reason(session, row, now)
            if reason:
                report.skipped[reason] = report.skipped.get(reason, 0) + 1
                continue
            composer.compose(row, now)
            report.sent += 1


def _close_quietly(composed: Any) -> None:
    """Drop the messages composed ahead but not pushed (a broken helper is restarted)."""
    try:
        composed.close()
    except LaunchkitError:
        ahead.discard_helper()


def _start_workers(run: _Run, messenger_factory: Callable[[Settings], Any] | None) -> None:
    if messenger_factory is None:
        from launchkit import mailer

        messenger_factory = partial(mailer.messenger_from_settings, pipelined=True)
    if run.options.workers <= 1:
        run.work(0, messenger_factory)
        return
    threads = [
        threading.Thread(target=run.work, args=(n, messenger_factory), daemon=True)
        for n in range(max(1, run.options.workers))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class _Run:
    """State shared by the workers of one run."""

    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        settings: Settings,
        composer: Composer,
        clock: Clock,
        sleep: Callable[[float], None],
        options: SendOptions,
        report: SendReport,
        progress: Callable[[SendReport], None] | None,
    ):
        self.engine, self.sessions, self.settings = engine, sessions, settings
        self.composer, self.clock, self.sleep = composer, clock, sleep
        self.options, self.report, self.progress = options, report, progress
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.quota = options.limit if options.limit is not None else 10**12
        self.failures: dict[int, int] = {}
        self.error: BaseException | None = None
        self.limiter: RateLimiter | None = None
        self.local = threading.local()
        self.ahead = False  # compose in the helper process (see ``ahead``)

    def marks(self) -> LedgerMarks:
        """This worker's raw connection for the per-message ledger commits."""
        marks = getattr(self.local, "marks", None)
        if marks is None:
            marks = self.local.marks = LedgerMarks(self.engine)
        return marks

    def start(self) -> None:
        per_second = self.options.rate_per_second
        if per_second is None:
            per_second = self.settings.rate_per_second
        recent: list[datetime] = []
        if self.settings.rate_per_hour > 0:
            with self.sessions.begin() as session:
                since = self.clock() - timedelta(hours=1)
                recent = list(session.scalars(select(Send.sent_at).where(Send.sent_at > since)))
        self.limiter = RateLimiter(
            per_second, self.settings.rate_per_hour, self.clock, self.sleep, recent
        )
        with self.sessions.begin() as session:
            self.failures = dict(
                session.execute(
                    select(LaunchSequence.id, LaunchSequence.consecutive_failures)
                ).all()
            )

    def compose(self, rows: list[dict[str, Any]]) -> Any:
        """The composed messages of ``rows`` in order (an iterator with ``close``)."""
        if self.ahead and rows:
            return ahead.stream(self.composer, rows, self.clock())
        return ahead.in_process(self.composer, rows, self.clock)

    def take_quota(self, wanted: int) -> int:
        with self.lock:
            granted = min(wanted, self.quota)
            self.quota -= granted
            return granted

    def give_back(self, count: int) -> None:
        with self.lock:
            self.quota += count
        assert self.limiter is not None
        self.limiter.release(count)

    def work(self, number: int, messenger_factory: Callable[[Settings], Any]) -> None:
        owner = claims.new_owner(number)
        try:
            with claims.owner_lock(self.engine, owner):
                messenger = messenger_factory(self.settings)
                try:
                    while not self.stop.is_set() and self._one_batch(owner, messenger):
                        pass
                finally:
                    messenger.close()
                    if getattr(self.local, "marks", None) is not None:
                        self.local.marks.close()
                        self.local.marks = None
        except BaseException as e:  # surfaced to the caller by send_due
            self.error = self.error or e
            self.stop.set()

    def _one_batch(self, owner: str, messenger: Any) -> bool:
        assert self.limiter is not None
        wanted = self.take_quota(self.options.batch_size)
        if wanted == 0:
            return False
        granted = self.limiter.budget(wanted)
        with self.lock:
            self.quota += wanted - granted
        now = self.clock()
        with self.sessions.begin() as session:
            ids = claims.claim_batch(
                session, owner, now=now, launch_ids=self.composer.launch_ids, limit=granted
            )
        self.give_back(granted - len(ids))
        if not ids:
            return False
        with self.sessions.begin() as session:
            rows = claims.load_rows(session, ids)
            skips = self.composer.skip_reasons(session, rows, now)
        _Batch(self, owner, messenger, rows, skips).deliver()
        return True

    def note(self, **counts: int) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self.report, key, getattr(self.report, key) + value)
        self.notify()

    def note_skip(self, reason: str) -> None:
        with self.lock:
            self.report.skipped[reason] = self.report.skipped.get(reason, 0) + 1

    def notify(self) -> None:
        if self.progress is not None:
            self.progress(self.report)


class _Batch:
    """One claimed batch: push each message, commit its outcome in small groups."""

    def __init__(
        self,
        run: _Run,
        owner: str,
        messenger: Any,
        rows: list[dict[str, Any]],
        skips: dict[int, str],
    ):
        self.run, self.owner, self.messenger = run, owner, messenger
        self.rows, self.skips = rows, skips
        # a messenger that writes the same message for the same Message-ID (the file outbox)
        # may receive a message twice harmlessly: no in-flight marks, sent marks in groups
        self.idempotent = bool(getattr(messenger, "idempotent", False))
        # a pipelined outbox writes in the background: its messages count as sent only once
        # ``messenger.flush()`` confirmed the writes (see ``_settle``)
        self.pipelined = self.idempotent and bool(getattr(messenger, "pipelined", False))
        self.pushed: dict[str, tuple[dict[str, Any], int]] = {}
        self.done: list[tuple[int, datetime, str]] = []
        self.skipped: list[tuple[int, str]] = []
        self.touched: set[int] = set()

    def deliver(self) -> None:
        from launchkit import mailer

        run = self.run
        composed = run.compose([r for r in self.rows if not self.skips.get(r["send_id"])])
        try:
            for index, row in enumerate(self.rows):
                if run.stop.is_set():
                    self._give_back(self.rows[index:])
                    break
                try:
                    self._deliver_one(row, mailer, composed)
                except LaunchkitError:  # e.g. the SMTP login was refused: nothing was sent
                    self._give_back(self.rows[index:])
                    raise
        finally:
            _close_quietly(composed)
        self.flush()

    def _deliver_one(self, row: dict[str, Any], mailer: Any, composed: Any) -> None:
        run = self.run
        reason = self.skips.get(row["send_id"])
        if reason:
            self.skipped.append((row["send_id"], reason))
            run.limiter.release(1)  # type: ignore[union-attr]
            run.note_skip(reason)
            return
        result = next(composed)
        if isinstance(result, LaunchkitError):
            self._fail(row, None, f"render: {result}", final=True)
            return
        message, raw, seq_id = result
        run.limiter.pace()  # type: ignore[union-attr]
        # The row becomes "in flight" only once the server answered 354 to DATA: a sender killed
        # before that point sent nothing, so its claim is simply requeued (never assumed sent).
        commit_point = None if self.idempotent else partial(self._in_flight, row, message)
        try:
            self.messenger.push(message, raw, on_commit_point=commit_point)
        except mailer.TemporaryFailure as e:
            self._fail(row, seq_id, str(e), final=False)
            self.messenger.close()  # retry later on a fresh connection
            return
        except mailer.PermanentFailure as e:
            reason = str(e)
            if getattr(e, "recipient", True):
                self._bounce(row, seq_id, reason)
            else:  # refused for the sender or the content: not the address's fault
                self._fail(row, seq_id, reason, final=True)
            return
        sent_at = run.clock()
        run.limiter.record(sent_at)  # type: ignore[union-attr]
        self.done.append((row["send_id"], sent_at, message.message_id))
        if self.pipelined:
            self.pushed[message.message_id] = (row, seq_id)
        self.touched.add(seq_id)
        if not self.idempotent or len(self.done) >= IDEMPOTENT_GROUP:
            self.flush()  # right after the 250: the window in doubt is just this commit

    def _in_flight(self, row: dict[str, Any], message: Any) -> None:
        self.flush(in_flight=(row, message.message_id))

    def flush(self, in_flight: tuple[dict[str, Any], str] | None = None) -> None:
        """Commit what happened since the last flush, and mark the next row as in flight.

        Runs right before each push (marking the row "in flight" with its Message-ID) and
        right after each 250 (marking it sent): a sender killed at any point leaves at most
        one row per worker in doubt, and the ledger says which (see ``claims``).
        """
        if not self.done and not self.skipped and in_flight is None:
            return
        unwritten = self._settle()
        run = self.run
        flight = None
        if in_flight is not None:
            row, message_id = in_flight
            again = row["reason"] == claims.RESEND
            mark = claims.IN_FLIGHT_AGAIN if again else claims.IN_FLIGHT
            flight = (row["send_id"], mark, message_id)
        run.marks().commit(self.done, self.skipped, flight, self._reset_ids())
        sent = len(self.done)
        self.done, self.skipped = [], []
        if sent:
            run.note(sent=sent)
        for row, seq_id, reason in unwritten:
            self._fail(row, seq_id, reason, final=False)

    def _settle(self) -> list[tuple[dict[str, Any], int, str]]:
        """Wait for a pipelined outbox's writes; drop the unwritten from ``done`` and return
        them (row, sequence, reason), to be retried."""
        if not self.pipelined or not self.pushed:
            return []
        from launchkit import mailer

        pushed, self.pushed = self.pushed, {}
        try:
            self.messenger.flush()
        except mailer.OutboxWriteFailed as e:
            self.done = [d for d in self.done if d[2] not in e.failed]
            return [(*pushed[mid], reason) for mid, reason in e.failed.items() if mid in pushed]
        return []

    def _reset_ids(self) -> list[int]:
        """Sequences that delivered again: their consecutive-failure counter goes back to 0."""
        if not self.touched:
            return []
        run = self.run
        with run.lock:
            reset = [s for s in self.touched if run.failures.get(s)]
            for seq_id in reset:
                run.failures[seq_id] = 0
        self.touched = set()
        return reset

    def _give_back(self, rows: list[dict[str, Any]]) -> None:
        self.flush()
        ids = [r["send_id"] for r in rows]
        with self.run.sessions.begin() as session:
            claims.release_claims(session, ids, self.owner)
        self.run.give_back(len(ids))

    def _fail(self, row: dict[str, Any], seq_id: int | None, reason: str, *, final: bool) -> None:
        self.flush()
        run = self.run
        attempts = row["attempts"] + 1
        now = run.clock()
        values: dict[str, Any] = {"attempts": attempts, "claimed_by": None, "claimed_at": None}
        if final or attempts >= run.settings.max_attempts:
            values.update(status=SendStatus.FAILED, reason=f"{reason} (attempt {attempts})")
            counter = "failed"
        else:
            values.update(
                status=SendStatus.QUEUED, reason=reason, next_attempt_at=now + backoff(attempts)
            )
            counter = "retried"
        with run.sessions.begin() as session:
            session.execute(update(Send).where(Send.id == row["send_id"]).values(**values))
            if seq_id is not None:
                self._count_failure(session, seq_id)
        run.limiter.release(1)  # type: ignore[union-attr]
        run.note(**{counter: 1})

    def _bounce(self, row: dict[str, Any], seq_id: int, reason: str) -> None:
        from launchkit.models import SuppressionReason
        from launchkit.sequences.audience_glue import suppress_address

        self.flush()
        run = self.run
        with run.sessions.begin() as session:
            session.execute(
                update(Send)
                .where(Send.id == row["send_id"])
                .values(status=SendStatus.BOUNCED, reason=reason, attempts=row["attempts"] + 1)
            )
            suppress_address(
                session, row["email"], SuppressionReason.BOUNCED, run.clock(), detail=reason
            )
            self._count_failure(session, seq_id)
        run.limiter.release(1)  # type: ignore[union-attr]
        run.note(bounced=1)

    def _count_failure(self, session: Session, seq_id: int) -> None:
        run = self.run
        with run.lock:
            run.failures[seq_id] = run.failures.get(seq_id, 0) + 1
            count = run.failures[seq_id]
        seq = session.get(LaunchSequence, seq_id)
        assert seq is not None
        seq.consecutive_failures = count
        if count >= run.settings.max_send_errors and seq.status != SequenceStatus.PAUSED:
            set_status(session, seq, SequenceStatus.PAUSED)
            with run.lock:
                run.report.paused.append(seq.name)
            run.stop.set()
