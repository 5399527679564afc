"""Send benchmark: `launchkit send` (ledger, exactly-once) vs raw Jinja2 + smtplib.

Usage: python benchmarks/send_bench.py [--subscribers 100000] [--db URL]

With a PostgreSQL ``--db``, the run uses a fresh database on that server, dropped at the end.

Both sides send one email to N subscribers over SMTP to the same loopback sink, a minimal
raw-socket SMTP responder running in its own process (so the sink is not the bottleneck; its
CPU time is printed). Like the relays senders use (Postfix, Amazon SES, Mailgun...), the sink
offers PIPELINING (RFC 2920): launchkit sends MAIL FROM, RCPT TO and DATA in one write,
smtplib's ``sendmail`` one by one. ``--no-pipelining``: a sink that does not offer it.

(a) baseline: the same email by hand, per subscriber: subject, preheader and Markdown body
    rendered with a plain ``jinja2.Environment``, the body converted with markdown-it and put
    in the same ``base.html`` layout, a multipart/alternative message (HTML + text, 8bit, no
    quoted-printable) assembled with an f-string, sent with ``smtplib.SMTP.sendmail`` over one
    connection. No ledger, no sandbox, no CSS inlining, no header checks.
(b) launchkit: ``send_due`` through the SMTP backend with the ledger (claims committed before
    DATA, one commit per message after the 250), the sandboxed renderer, multipart HTML + text.

Prints messages/s of each, the CPU time per message of each side (this process; steadier
than the wall clock on a shared machine), the time to schedule (materialize the ledger for N
subscribers), and ends with ``ratio: X.XX`` (launchkit rate / baseline rate).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import shutil
import smtplib
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import throwaway_database  # noqa: E402

from launchkit import sequences  # noqa: E402
from launchkit.db import make_engine, make_sessionmaker  # noqa: E402
from launchkit.launches import create_launch, get_launch  # noqa: E402
from launchkit.models import Subscriber  # noqa: E402
from launchkit.render import parse_email_file  # noqa: E402
from launchkit.workspace import init_workspace  # noqa: E402

CART_OPEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CART_CLOSE = datetime(2026, 12, 8, 22, 59, tzinfo=UTC)
EMAIL = "04-cart-open.md"


# --- the sink: a minimal SMTP responder in its own process ------------------------------------


class _SinkProtocol(asyncio.Protocol):
    def __init__(self, counter: mp.Value, pipelining: bool):  # type: ignore[valid-type]
        self.counter = counter
        self.ehlo = b"250-sink\r\n250-8BITMIME\r\n" + (b"250-PIPELINING\r\n" * pipelining)
        self.ehlo += b"250 SIZE 50000000\r\n"
        self.buf = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                self.buf = self.buf[end + 5 :]
                self.in_data = False
                self.counter.value += 1  # type: ignore[attr-defined]
                out.append(b"250 2.0.0 queued\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line, self.buf = self.buf[:end], self.buf[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(self.ehlo)
            elif verb == b"DATA":
                out.append(b"354 go ahead\r\n")
                self.in_data = True
                self.buf = b"\r\n" + self.buf  # so an immediate "." line is found
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.transport.write(b"".join(out))  # type: ignore[attr-defined]
                self.transport.close()
                return
            else:
                out.append(b"250 OK\r\n")
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


def _run_sink(
    port: int, counter: mp.Value, stop: mp.Event, cpu: mp.Queue, pipelining: bool
) -> None:  # type: ignore[valid-type]
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _SinkProtocol(counter, pipelining), "127.0.0.1", port
        )
        while not stop.is_set():  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu.put(usage.ru_utime + usage.ru_stime)  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    def __init__(self, *, pipelining: bool = True) -> None:
        self.port = _free_port()
        self.counter = mp.Value("q", 0)
        self.stop_event = mp.Event()
        self.cpu: mp.Queue = mp.Queue()
        self.proc = mp.Process(
            target=_run_sink,
            args=(self.port, self.counter, self.stop_event, self.cpu, pipelining),
        )
        self.proc.start()
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the benchmark sink did not start")

    @property
    def count(self) -> int:
        return int(self.counter.value)  # type: ignore[attr-defined]

    def stop(self) -> float:
        self.stop_event.set()
        seconds = float(self.cpu.get(timeout=10))
        self.proc.join(timeout=10)
        return seconds


# --- setup --------------------------------------------------------------------------------------


def make_workspace(folder: Path, count: int, db: str | None):
    sender = {"name": "Bench", "email": "bench@example.com", "postal_address": "1 rue Bench, Paris"}
    settings = init_workspace(folder / "ws", name="Bench", database_url=db, env={}, sender=sender)
    source_dir = folder / "ws" / "emails" / "bench"
    source_dir.mkdir()
    shutil.copy(folder / "ws" / "emails" / "launch-fr" / EMAIL, source_dir / EMAIL)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    now = CART_OPEN - timedelta(days=10)
    with sessions.begin() as session:
        create_launch(
            session, "bench", product="Atelier Photo", currency="EUR", now=now,
            cart_open=CART_OPEN, cart_close=CART_CLOSE,
        )  # fmt: skip
        rows = [
            {
                "email": f"reader{i:06d}@example.com", "first_name": f"Prenom{i}",
                "last_name": "Martin", "status": "active", "created_at": now, "updated_at": now,
            }
            for i in range(count)
        ]  # fmt: skip
        for start in range(0, count, 20_000):
            session.execute(insert(Subscriber), rows[start : start + 20_000])
        sequences.attach_sequence(session, settings, "bench", "bench", now=now)
    return settings, engine, sessions


# --- (a) baseline ---------------------------------------------------------------------------


def run_baseline(settings, sessions, port: int, count: int) -> tuple[float, float]:
    """The same email done by hand: plain Jinja2 + Markdown + the same layout, smtplib."""
    source = parse_email_file(settings.emails_dir / "bench" / EMAIL)
    env = jinja2.Environment(  # noqa: S701 (layout .html is autoescaped below)
        loader=jinja2.FileSystemLoader(str(settings.emails_dir)),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    subject_t = env.from_string(source.subject)
    preheader_t = env.from_string(source.preheader)
    body_t = env.from_string(source.body)
    layout_t = env.get_template("base.html")
    markdown = MarkdownIt("commonmark", {"html": True})
    with sessions.begin() as session:
        people = session.execute(
            Subscriber.__table__.select().with_only_columns(
                Subscriber.id, Subscriber.email, Subscriber.first_name, Subscriber.last_name
            )
        ).all()
    base = {
        "product": "Atelier Photo", "creator_name": settings.sender_name,
        "cart_open": "lundi 1 décembre à 10:00", "cart_close": "lundi 8 décembre à 23:59",
        "price": "", "plans": [], "guarantee_days": 30, "magnet_title": "",
        "download_url": "", "confirm_url": "", "language": "fr",
        "sender_name": settings.sender_name, "postal_address": settings.postal_address,
    }  # fmt: skip
    started = time.perf_counter()
    cpu = time.process_time()
    smtp = smtplib.SMTP("127.0.0.1", port)
    for sid, address, first, last in people[:count]:
        ctx = {**base, "first_name": first, "last_name": last, "email": address,
               "checkout_url": f"{settings.base_url}/buy/bench?s={sid}",
               "unsubscribe_url": f"{settings.base_url}/u/{sid}"}  # fmt: skip
        ctx["subject"] = subject_t.render(ctx)
        ctx["preheader"] = preheader_t.render(ctx)
        body = body_t.render(ctx)
        html = layout_t.render(ctx, body_html=markdown.render(body))
        text = f"{body}\n-- \n{settings.postal_address}\n{ctx['unsubscribe_url']}\n"
        msg = (
            f"From: {settings.sender_email}\r\nTo: {address}\r\n"
            f"Subject: {ctx['subject']}\r\nMessage-ID: <b{sid}@bench.invalid>\r\n"
            f"List-Unsubscribe: <{ctx['unsubscribe_url']}>\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
            "--b\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--b--\r\n"
        )
        smtp.sendmail(settings.sender_email, [address], msg.encode("utf-8"))
    smtp.quit()
    return time.perf_counter() - started, time.process_time() - cpu


# --- (b) launchkit ----------------------------------------------------------------------------


def run_launchkit(
    settings, engine, port: int, compose_ahead: int | None = None
) -> tuple[float, float, sequences.SendReport]:
    import dataclasses

    smtp_settings = dataclasses.replace(
        settings, email_backend="smtp", smtp_url=f"smtp://127.0.0.1:{port}"
    )
    if compose_ahead is not None:  # only the code before #20 had the helper process
        smtp_settings = dataclasses.replace(smtp_settings, compose_ahead=compose_ahead)
    start_at = CART_OPEN + timedelta(minutes=5)
    origin = time.monotonic()

    def clock() -> datetime:
        return start_at + timedelta(seconds=time.monotonic() - origin)

    started = time.perf_counter()
    cpu = time.process_time()
    report = sequences.send_due(engine, smtp_settings, clock=clock)
    return time.perf_counter() - started, time.process_time() - cpu, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite file)")
    parser.add_argument(
        "--compose-ahead", type=int, default=None, help="(code before #20 only) helper process"
    )
    parser.add_argument(
        "--no-pipelining", action="store_true", help="a sink that does not offer PIPELINING"
    )
    parser.add_argument(
        "--no-track-clicks", action="store_true", help="direct links (email.track_clicks = false)"
    )
    args = parser.parse_args()
    db, drop_database = args.db, lambda: None
    if db is not None and db.startswith("postgresql"):  # a fresh database on that server
        db, drop_database = throwaway_database(db)
    try:
        run_bench(args, db)
    finally:
        drop_database()


def run_bench(args: argparse.Namespace, db: str | None) -> None:
    count = args.subscribers
    with tempfile.TemporaryDirectory() as tmp:
        settings, engine, sessions = make_workspace(Path(tmp), count, db)
        if args.no_track_clicks:
            import dataclasses

            settings = dataclasses.replace(settings, track_clicks=False)
        started = time.perf_counter()
        with sessions.begin() as session:
            result = sequences.schedule_launch(session, settings, get_launch(session, "bench"))
        schedule_seconds = time.perf_counter() - started
        print(f"schedule: {result.added} ledger rows in {schedule_seconds:.2f} s")
        # what each send run pays: a full schedule of the launch, nothing left to add
        started = time.perf_counter()
        with sessions.begin() as session:
            again = sequences.schedule_launch(session, settings, get_launch(session, "bench"))
        print(
            f"schedule per run: {again.added} rows added in {time.perf_counter() - started:.3f} s"
        )
        sink = Sink(pipelining=not args.no_pipelining)
        try:
            base_seconds, base_cpu = run_baseline(settings, sessions, sink.port, count)
            base_count = sink.count
            lk_seconds, lk_cpu, report = run_launchkit(
                settings, engine, sink.port, args.compose_ahead
            )
            lk_count = sink.count - base_count
        finally:
            sink_cpu = sink.stop()
        engine.dispose()
    base_rate = base_count / base_seconds
    lk_rate = report.sent / lk_seconds
    print(f"baseline (jinja2 + smtplib): {base_count} messages in {base_seconds:.2f} s = "
          f"{base_rate:.0f} msg/s")  # fmt: skip
    print(f"launchkit send (ledger + SMTP): {report.sent} sent ({lk_count} at the sink) in "
          f"{lk_seconds:.2f} s = {lk_rate:.0f} msg/s")  # fmt: skip
    print(f"sink CPU: {sink_cpu:.2f} s for {base_count + lk_count} messages")
    if lk_count != count or report.sent != count:
        print(f"WARNING: expected {count} messages from launchkit")
    print(f"CPU per message: baseline {base_cpu / base_count * 1000:.3f} ms, launchkit "
          f"{lk_cpu / max(report.sent, 1) * 1000:.3f} ms (this process), CPU ratio "
          f"{(base_cpu / base_count) / (lk_cpu / max(report.sent, 1)):.2f}")  # fmt: skip
    print(f"ratio: {lk_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
