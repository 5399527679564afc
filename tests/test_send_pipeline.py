"""The sender's two pipelines: the outbox written in the background, and messages composed
ahead in helper processes. Neither may change what is sent, or count a message as sent
before it is."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from launchkit import mailer, sequences
from launchkit.errors import DeliveryError
from launchkit.mailer import FileMessenger, OutboxWriteFailed, OutgoingMessage, build_message
from launchkit.models import SendStatus
from launchkit.sequences import ahead
from tests.sendkit import CART_OPEN, FakeClock, ledger, populate, tune

BEFORE = CART_OPEN - timedelta(days=3)


def _message(n: int) -> OutgoingMessage:
    return OutgoingMessage(
        to_email=f"p{n}@example.com",
        to_name="Zoé",
        from_email="me@example.com",
        from_name="Me",
        subject=f"Bonjour {n}",
        html=f"<p>Bonjour {n}</p>",
        text=f"Bonjour {n}",
        message_id=f"<m{n}@example.com>",
    )


def _raw(msg: OutgoingMessage) -> bytes:
    return build_message(msg, date=CART_OPEN)


def _send(engine, settings, clock, **options):
    return sequences.send_due(
        engine, settings, clock=clock, sleep=clock.sleep, options=sequences.SendOptions(**options)
    )


def _masked(path: Path) -> tuple[str, str, str, str]:
    """Headers and text of a sent file, signed tokens masked (they carry their signing second)."""
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return str(msg["To"]), str(msg["Subject"]), TOKEN.sub("TOKEN", text), TOKEN.sub("TOKEN", html)


TOKEN = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}")


# --- the pipelined outbox -----------------------------------------------------------------------


def test_pipelined_outbox_writes_every_file_by_flush(tmp_path):
    outbox = FileMessenger(tmp_path / "outbox", pipelined=True)
    messages = [_message(n) for n in range(300)]  # more than the queue holds
    for msg in messages:
        outbox.push(msg, _raw(msg))
    outbox.flush()
    for msg in messages:
        assert outbox.path_for(msg).read_bytes() == _raw(msg)
    assert not list((tmp_path / "outbox").glob(".*.tmp"))
    outbox.close()
    outbox.close()  # twice is harmless


def test_pipelined_outbox_reports_the_files_it_could_not_write(tmp_path):
    outbox = FileMessenger(tmp_path / "outbox", pipelined=True)
    good, bad = _message(1), _message(2)
    (tmp_path / "outbox").mkdir()
    outbox.path_for(bad).mkdir()  # a directory where the file must go: the rename fails
    outbox.push(good, _raw(good))
    outbox.push(bad, _raw(bad))
    with pytest.raises(OutboxWriteFailed) as caught:
        outbox.flush()
    assert set(caught.value.failed) == {bad.message_id}
    assert "Cannot write" in caught.value.failed[bad.message_id]
    assert outbox.path_for(good).read_bytes() == _raw(good)
    outbox.flush()  # reported once
    outbox.close()


def test_a_file_not_written_is_not_marked_sent_and_is_sent_by_the_next_run(
    settings, engine, sessions
):
    settings = tune(settings)
    populate(sessions, settings, 12, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    with sessions.begin() as session:
        from launchkit.sequences.compose import prepare_composer

        composer = prepare_composer(session, settings, "spring", now=clock.now)
    row = next(r for r in ledger(sessions) if r.due_at <= clock.now)
    email_id = row.email_id
    victim = mailer.outbox_path(
        settings.outbox_dir,
        mailer.make_message_id("email", str(email_id), row.subscriber_id, composer.domain),
    )
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.mkdir()  # this one file cannot be written

    report = _send(engine, settings, clock)
    assert (report.sent, report.retried) == (11, 1)
    after = {r.subscriber_id: r for r in ledger(sessions) if r.email_id == email_id}
    assert after[row.subscriber_id].status == SendStatus.QUEUED
    assert after[row.subscriber_id].attempts == 1
    assert "Cannot write" in after[row.subscriber_id].reason

    victim.rmdir()
    clock.advance(hours=1)  # past the retry backoff
    again = _send(engine, settings, clock)
    assert again.sent == 1
    assert victim.is_file()
    sent = [r for r in ledger(sessions) if r.email_id == email_id]
    assert all(r.status == SendStatus.SENT for r in sent)
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 12


# --- composing ahead in helper processes --------------------------------------------------------


def test_helpers_send_the_same_messages_as_the_sender_itself(settings, engine, sessions, tmp_path):
    base = tune(settings)
    populate(sessions, base, 140, now=BEFORE)  # several chunks
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    inline = tune(base, compose_ahead=0)
    helped = tune(base, compose_ahead=1)
    report = _send(engine, helped, clock)
    assert (report.sent, report.failed) == (140, 0)
    assert ahead._HELPERS and all(h.alive() for h in ahead._HELPERS)
    files = sorted(Path(helped.outbox_dir).glob("*.eml"))
    assert len(files) == 140

    # the same rows composed in this process give the same messages
    from launchkit.sequences.compose import prepare_composer

    with sessions.begin() as session:
        composer = prepare_composer(session, inline, "spring", now=clock.now)
    from launchkit.sequences import claims

    ids = [r.id for r in ledger(sessions)]
    with sessions.begin() as session:
        rows = [r for r in claims.load_rows(session, ids) if r["email_id"] in composer.emails]
        composer.skip_reasons(session, rows, clock.now)
    mine = FileMessenger(tmp_path / "mine")
    for row in rows:
        if row["due_at"] <= clock.now:
            message, raw, _ = composer.compose(row, clock.now)
            mine.push(message, raw)
    theirs = {p.name: _masked(p) for p in files}
    ours = {p.name: _masked(p) for p in (tmp_path / "mine").glob("*.eml")}
    assert theirs == ours
    assert all(r.status == SendStatus.SENT for r in ledger(sessions) if r.due_at <= clock.now)


def test_a_second_sender_thread_composes_in_process_while_the_helpers_are_busy(settings, sessions):
    from launchkit.sequences import claims
    from launchkit.sequences.compose import prepare_composer

    settings = tune(settings, compose_ahead=1)
    populate(sessions, settings, 30, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    with sessions.begin() as session:
        composer = prepare_composer(session, settings, "spring", now=clock.now)
        ids = [r.id for r in ledger(sessions) if r.due_at <= clock.now]
        rows = [r for r in claims.load_rows(session, ids) if r["email_id"] in composer.emails]
        composer.skip_reasons(session, rows, clock.now)

    def raws(composed):
        return [raw for _, raw, _ in composed]

    first = ahead.stream(composer, rows, clock.now)
    second = ahead.stream(composer, rows, clock.now)  # e.g. another send_due in a thread
    assert isinstance(first, ahead.Stream) and not isinstance(second, ahead.Stream)
    assert raws(second) == raws(first)  # the same messages either way
    first.close()
    third = ahead.stream(composer, rows, clock.now)
    assert isinstance(third, ahead.Stream)  # the helpers are free again
    third.close()


def _killer(killed: list[int]):
    """A progress callback that kills the helpers the first time a message counts as sent."""

    def kill_helpers(report):
        if report.sent and not killed:
            pids = []
            for helper in ahead._HELPERS:
                pids.append(helper.process.pid)
                helper.process.kill()
                helper.process.join()
            killed.extend(pids)

    return kill_helpers


def test_helpers_that_die_between_batches_are_replaced(settings, engine, sessions):
    settings = tune(settings, compose_ahead=1)
    populate(sessions, settings, 400, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    killed: list[int] = []
    report = sequences.send_due(
        engine,
        settings,
        clock=clock,
        sleep=clock.sleep,
        options=sequences.SendOptions(batch_size=100),
        progress=_killer(killed),
    )
    assert killed and report.sent == 400
    assert not {h.process.pid for h in ahead._HELPERS} & set(killed)
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 400


def test_helpers_that_die_mid_batch_stop_the_run_and_the_rerun_sends_the_rest_once(
    settings, engine, sessions
):
    settings = tune(settings, compose_ahead=1)
    populate(sessions, settings, 800, now=BEFORE)
    clock = FakeClock(CART_OPEN + timedelta(minutes=5))
    killed: list[int] = []
    with pytest.raises(DeliveryError, match="compose helper"):
        sequences.send_due(
            engine,
            settings,
            clock=clock,
            sleep=clock.sleep,
            options=sequences.SendOptions(batch_size=800),
            progress=_killer(killed),
        )
    first = [r for r in ledger(sessions) if r.status == SendStatus.SENT]
    assert killed and 0 < len(first) < 800
    assert not [r for r in ledger(sessions) if r.status == SendStatus.SENDING]

    again = _send(engine, settings, clock)  # new helpers start
    assert again.sent + len(first) == 800
    assert all(r.status == SendStatus.SENT for r in ledger(sessions) if r.due_at <= clock.now)
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 800


@pytest.mark.parametrize(
    ("setting", "due", "running", "cores", "expected"),
    [
        (0, 10**6, False, 8, False),
        (1, 1, False, 1, True),
        (-1, 1_999, False, 2, False),
        (-1, 2_000, False, 2, True),
        (-1, 5_000, False, 1, False),
        (-1, 300, True, 2, True),
        (-1, 100, True, 2, False),
    ],
)
def test_when_helpers_are_used(monkeypatch, setting, due, running, cores, expected):
    monkeypatch.setattr(ahead.os, "cpu_count", lambda: cores)

    class Alive:
        def alive(self):
            return True

    monkeypatch.setattr(ahead, "_HELPERS", [Alive()] if running else [])
    assert ahead.wanted(setting, due) is expected
