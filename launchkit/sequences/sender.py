"""The delivery engine: send every due ledger row exactly once (see ``claims`` for the policy).

One run: lock (SQLite), schedule in full (whoever is eligible now and has no row gets one),
refuse to start when a message would lack its unsubscribe link or the postal address, put back
rows a dead sender left ``sending``, then each worker loops, in a straight line:

    claim a batch (committed) -> re-check each row (suppressed, unsubscribed, ``skip_if``,
    stale, past its deadline) -> for each row: compose -> ``messenger.start`` (up to the
    354) -> mark "in flight" (committed) -> ``messenger.finish`` (the body, the 250) ->
    mark ``sent`` (committed)

A messenger that declares ``idempotent`` (the file outbox: the same Message-ID overwrites the
same file) needs no in-flight mark, and its sent marks are committed ``messenger.batch`` at a
time. While the workers run, a heartbeat renews their claims (PostgreSQL); every mark holds
only while the row is still theirs.

4xx: retry later with exponential backoff, ``failed`` after ``max_attempts``. A drop between
DATA and 250: one resend with the same Message-ID, then ``delivered_unconfirmed``. 5xx:
``bounced`` and the address is suppressed. After ``max_send_errors`` consecutive failures the
sequence pauses itself and the run stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from launchkit.config import Settings
from launchkit.db import make_sessionmaker
from launchkit.errors import LaunchkitError
from launchkit.models import Email, LaunchSequence, Send, SendStatus, SequenceStatus
from launchkit.sequences import claims, ratelimit
from launchkit.sequences.compose import Composer, prepare_composer
from launchkit.sequences.marks import LedgerMarks
from launchkit.sequences.ratelimit import RateLimiter
from launchkit.sequences.schedule import set_status

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=2)
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
    lease: timedelta = claims.LEASE  # a claim not renewed for this long belongs to nobody


@dataclass
class SendReport:
    """What a run did; also the progress snapshot passed to the progress callback."""

    due: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    retried: int = 0
    unconfirmed: int = 0  # dropped between DATA and 250 twice: delivered_unconfirmed
    skipped: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    lost: int = 0  # rows another sender took back before this one marked them
    paused: list[str] = field(default_factory=list)
    stopped: str | None = None  # the delivery error that stopped the run
    later: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def done(self) -> int:
        counts = (self.sent, self.failed, self.bounced, self.retried, self.unconfirmed)
        return sum(counts) + sum(self.skipped.values())

    @property
    def remaining(self) -> int:
        return max(self.due - self.done, 0)

    def problems(self) -> list[str]:
        """Why this run needs a person (empty: it did its job): paused, stopped, failed rows."""
        found = []
        if self.paused:
            found.append(f"paused after repeated failures: {', '.join(self.paused)}")
        if self.stopped:
            found.append(f"stopped on a delivery error: {self.stopped}")
        if self.failed:
            found.append(f"{self.failed} message(s) failed for good")
        return found

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON), with the computed fields."""
        data = asdict(self)
        data.update(done=self.done, remaining=self.remaining, problems=self.problems())
        return data

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
        if self.unconfirmed:
            line += f"; {self.unconfirmed} delivered unconfirmed (dropped after DATA twice)"
        if self.recovered:
            line += f"; {self.recovered} interrupted sends resumed"
        if self.lost:
            line += f"; {self.lost} rows taken over by another sender"
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
    """Send everything due now; safe to rerun after any crash.

    A delivery error that stops the run (e.g. the SMTP login was refused) is in
    ``report.stopped``; its claimed rows are given back.
    """
    options = options or SendOptions()
    if messenger_factory is None:
        from launchkit import mailer

        messenger_factory = mailer.messenger_from_settings
    if engine.dialect.name == "sqlite":
        options = replace(options, workers=1)
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
    messenger_factory: Callable[[Settings], Any],
) -> SendReport:
    sessions = make_sessionmaker(engine, immediate=True)
    started = time.monotonic()
    report = SendReport(dry_run=options.dry_run)
    if options.dry_run:
        owner = claims.new_owner()
        with claims.owner_lock(engine, owner) as conn, sessions() as session:
            _dry_run(session, conn, settings, options, clock(), report)
            session.rollback()
        report.seconds = time.monotonic() - started
        return report
    from launchkit import mailer

    mailer.check_relay_links(settings)  # a real relay needs public https links
    with sessions.begin() as session:
        composer = prepare_composer(session, settings, options.launch, now=clock())
    if composer.links is not None:  # links first met while sending: their own transaction
        composer.links.sessions = sessions
    run = _Run(engine, sessions, settings, composer, clock, sleep, options, report, progress)
    run.start()
    with claims.owner_lock(engine, claims.new_owner()) as conn, sessions.begin() as session:
        report.recovered = claims.recover_orphans(session, conn, now=clock(), lease=options.lease)
    with sessions.begin() as session:
        report.due = _count(session, claims.due_filter(clock(), composer.launch_ids))
    owners = [claims.new_owner(n) for n in range(max(1, options.workers))]
    with claims.Heartbeat(engine, owners, clock, options.lease):
        _start_workers(run, owners, messenger_factory)
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
    session: Session,
    conn: Any,
    settings: Settings,
    options: SendOptions,
    now: datetime,
    report: SendReport,
) -> None:
    """The real run's steps and counts in one transaction the caller rolls back: schedule,
    recover orphans, count due, skip or compose each row the limit allows, count later."""
    composer = prepare_composer(session, settings, options.launch, now=now)
    report.recovered = claims.recover_orphans(session, conn, now=now, lease=options.lease)
    report.due = _count(session, claims.due_filter(now, composer.launch_ids))
    limit = options.limit if options.limit is not None else 10**12
    ids = list(session.scalars(claims.due_ids_query(now, composer.launch_ids, limit)))
    for start in range(0, len(ids), options.batch_size):
        rows = claims.load_rows(session, ids[start : start + options.batch_size])
        skips = composer.skip_reasons(session, rows, now)
        for row in rows:
            reason = skips.get(row["send_id"])
            if reason:
                report.skipped[reason] = report.skipped.get(reason, 0) + 1
                continue
            try:
                composer.compose(row, now)
            except LaunchkitError:  # the real run marks it failed for good
                report.failed += 1
                continue
            report.sent += 1
    report.later = _count_later(session, now, composer.launch_ids)


def _start_workers(
    run: _Run, owners: list[str], messenger_factory: Callable[[Settings], Any]
) -> None:
    if len(owners) == 1:
        run.work(owners[0], messenger_factory)
        return
    threads = [
        threading.Thread(target=run.work, args=(owner, messenger_factory), daemon=True)
        for owner in owners
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class _Run:
    """State shared by the workers of one run (each worker is one linear loop)."""

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
        self.limiter = RateLimiter(0, 0, clock, sleep, [])

    def start(self) -> None:
        per_second, per_hour = self.rates()
        recent: list[datetime] = []
        if per_hour > 0:
            with self.sessions.begin() as session:
                since = self.clock() - timedelta(hours=1)
                recent = list(session.scalars(select(Send.sent_at).where(Send.sent_at > since)))
        self.limiter = RateLimiter(per_second, per_hour, self.clock, self.sleep, recent)
        with self.sessions.begin() as session:
            self.failures = dict(
                session.execute(
                    select(LaunchSequence.id, LaunchSequence.consecutive_failures)
                ).all()
            )

    def rates(self) -> tuple[float, int]:
        """(per second, per hour): options, settings, defaults through a real relay, warm-up."""
        from launchkit import mailer

        real_relay = mailer.is_real_relay(self.settings)
        per_second, per_hour = ratelimit.effective_rates(
            self.options.rate_per_second
            if self.options.rate_per_second is not None
            else self.settings.rate_per_second,
            self.settings.rate_per_hour,
            real_relay=real_relay,
        )
        if real_relay and self.settings.warmup:
            since = self.clock() - timedelta(days=ratelimit.WARMUP_DAYS)
            with self.sessions.begin() as session:
                sent = session.scalar(select(func.count(Send.id)).where(Send.sent_at > since))
            per_hour = ratelimit.warmup_ceiling(per_hour, int(sent or 0))
        return per_second, per_hour

    def take_quota(self, wanted: int) -> int:
        with self.lock:
            granted = min(wanted, self.quota)
            self.quota -= granted
            return granted

    def give_back(self, count: int) -> None:
        with self.lock:
            self.quota += count
        self.limiter.release(count)

    def work(self, owner: str, messenger_factory: Callable[[Settings], Any]) -> None:
        try:
            with claims.owner_lock(self.engine, owner):
                messenger = messenger_factory(self.settings)
                marks = LedgerMarks(self.engine, owner)
                try:
                    while not self.stop.is_set() and self._one_batch(owner, messenger, marks):
                        pass
                finally:
                    messenger.close()
                    marks.close()
        except LaunchkitError as e:  # e.g. the SMTP login was refused: reported, rows given back
            with self.lock:
                self.report.stopped = self.report.stopped or str(e)
            self.stop.set()
        except BaseException as e:  # a bug: surfaced to the caller by send_due
            self.error = self.error or e
            self.stop.set()

    def _one_batch(self, owner: str, messenger: Any, marks: LedgerMarks) -> bool:
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
        _Batch(self, owner, messenger, marks, rows, skips).deliver()
        return True

    def note(self, **counts: int) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self.report, key, getattr(self.report, key) + value)
        if self.progress is not None:
            self.progress(self.report)

    def note_skip(self, reason: str) -> None:
        with self.lock:
            self.report.skipped[reason] = self.report.skipped.get(reason, 0) + 1


class _Batch:
    """One claimed batch, row after row: compose, start, in flight, finish, sent."""

    def __init__(
        self,
        run: _Run,
        owner: str,
        messenger: Any,
        marks: LedgerMarks,
        rows: list[dict[str, Any]],
        skips: dict[int, str],
    ):
        self.run, self.owner, self.messenger, self.marks = run, owner, messenger, marks
        self.rows, self.skips = rows, skips
        self.done: list[tuple[int, datetime, str]] = []
        self.skipped: list[tuple[int, str]] = []
        self.touched: set[int] = set()

    def deliver(self) -> None:
        for index, row in enumerate(self.rows):
            if self.run.stop.is_set():
                self._give_back(self.rows[index:])
                break
            try:
                self._deliver_one(row)
            except LaunchkitError:  # e.g. the SMTP login was refused: nothing was sent
                self._give_back(self.rows[index:])
                raise
        self.commit()

    def _deliver_one(self, row: dict[str, Any]) -> None:
        from launchkit import mailer

        run = self.run
        reason = self.skips.get(row["send_id"])
        if reason:
            self.skipped.append((row["send_id"], reason))
            run.limiter.release(1)
            run.note_skip(reason)
            return
        try:
            message, raw, seq_id = run.composer.compose(row, run.clock())
        except LaunchkitError as e:
            self._fail(row, None, f"render: {e}", final=True)
            return
        run.limiter.pace()
        try:
            self.messenger.start(message)
            if not self.messenger.idempotent and not self._in_flight(row, message.message_id):
                self.messenger.close()  # the row is another sender's now: abandon the DATA
                self._lost(1)
                return
            self.messenger.finish(raw)
        except mailer.InDoubt as e:
            self._in_doubt(row, seq_id, str(e))
            return
        except mailer.TemporaryFailure as e:
            self._fail(row, seq_id, str(e), final=False)
            self.messenger.close()  # retry later on a fresh connection
            return
        except mailer.PermanentFailure as e:
            if e.recipient:
                self._bounce(row, seq_id, str(e))
            else:  # refused for the sender or the content: not the address's fault
                self._fail(row, seq_id, str(e), final=True)
            return
        sent_at = run.clock()
        run.limiter.record(sent_at)
        self.done.append((row["send_id"], sent_at, message.message_id))
        self.touched.add(seq_id)
        if len(self.done) >= self.messenger.batch:
            self.commit()  # right after the 250: the window in doubt is just this commit

    def _in_flight(self, row: dict[str, Any], message_id: str) -> bool:
        """Commit the marks so far, then mark ``row`` in flight (the server holds the DATA)."""
        self.commit()
        again = row["reason"] == claims.RESEND
        mark = claims.IN_FLIGHT_AGAIN if again else claims.IN_FLIGHT
        return self.marks.in_flight(row["send_id"], mark, message_id)

    def commit(self) -> None:
        """Commit the sent and skipped marks since the last commit."""
        if not self.done and not self.skipped:
            return
        held = self.marks.commit(self.done, self.skipped, self._reset_ids())
        sent = len(self.done)
        self.done, self.skipped = [], []
        if held < sent:
            self._lost(sent - held)
        if held:
            self.run.note(sent=held)

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

    def _lost(self, count: int) -> None:
        self.run.limiter.release(count)
        self.run.note(lost=count)

    def _give_back(self, rows: list[dict[str, Any]]) -> None:
        self.commit()
        ids = [r["send_id"] for r in rows]
        with self.run.sessions.begin() as session:
            claims.release_claims(session, ids, self.owner)
        self.run.give_back(len(ids))

    def _mark(self, session: Session, row: dict[str, Any], **values: Any) -> bool:
        """Update ``row`` if it is still ours; False when another sender took it back."""
        stmt = (
            update(Send)
            .where(
                Send.id == row["send_id"],
                Send.claimed_by == self.owner,
                Send.status == SendStatus.SENDING,
            )
            .values(**values)
        )
        return bool(session.execute(stmt).rowcount)

    def _fail(self, row: dict[str, Any], seq_id: int | None, reason: str, *, final: bool) -> None:
        self.commit()
        run = self.run
        attempts = row["attempts"] + 1
        values: dict[str, Any] = {"attempts": attempts, "claimed_by": None, "claimed_at": None}
        maybe_delivered = row["reason"] == claims.RESEND
        if maybe_delivered and (final or attempts >= run.settings.max_attempts):
            # one copy may be out already: never "failed", never tried again
            values.update(status=SendStatus.DELIVERED_UNCONFIRMED, reason=f"{reason} (resend)")
            counter = "unconfirmed"
        elif final or attempts >= run.settings.max_attempts:
            values.update(status=SendStatus.FAILED, reason=f"{reason} (attempt {attempts})")
            counter = "failed"
        else:
            values.update(
                status=SendStatus.QUEUED,
                reason=claims.RESEND if maybe_delivered else reason,
                next_attempt_at=run.clock() + backoff(attempts),
            )
            counter = "retried"
        self._settle(row, seq_id, counter, values)

    def _in_doubt(self, row: dict[str, Any], seq_id: int, reason: str) -> None:
        """Dropped between DATA and 250: resend once (same Message-ID), then stop trying."""
        self.commit()
        run = self.run
        now = run.clock()
        attempts = row["attempts"] + 1
        values: dict[str, Any] = {"attempts": attempts, "claimed_by": None, "claimed_at": None}
        if row["reason"] == claims.RESEND:
            values.update(
                status=SendStatus.DELIVERED_UNCONFIRMED,
                reason=f"{claims.UNCONFIRMED}: {reason}",
                sent_at=now,
            )
            counter = "unconfirmed"
        else:
            values.update(
                status=SendStatus.QUEUED, reason=claims.RESEND, next_attempt_at=now + backoff(1)
            )
            counter = "retried"
        self._settle(row, seq_id, counter, values)

    def _settle(
        self, row: dict[str, Any], seq_id: int | None, counter: str, values: dict[str, Any]
    ) -> None:
        run = self.run
        with run.sessions.begin() as session:
            held = self._mark(session, row, **values)
            if held and seq_id is not None:
                self._count_failure(session, seq_id)
        if not held:
            self._lost(1)
            return
        run.limiter.release(1)
        run.note(**{counter: 1})

    def _bounce(self, row: dict[str, Any], seq_id: int, reason: str) -> None:
        from launchkit.models import SuppressionReason
        from launchkit.sequences.audience_glue import suppress_address

        self.commit()
        run = self.run
        with run.sessions.begin() as session:
            held = self._mark(
                session, row, status=SendStatus.BOUNCED, reason=reason, attempts=row["attempts"] + 1
            )
            if held:
                suppress_address(
                    session, row["email"], SuppressionReason.BOUNCED, run.clock(), detail=reason
                )
                self._count_failure(session, seq_id)
        if not held:
            self._lost(1)
            return
        run.limiter.release(1)
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
