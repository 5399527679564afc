"""Opt-in POSTs per second against a real `launchkit serve`, on SQLite and PostgreSQL.

Each run makes a throwaway workspace (FileMessenger backend: confirmation emails are written to
the outbox, so SMTP is not measured), starts `launchkit serve` (uvicorn) in a subprocess on a
free loopback port, then drives it from this process with httpx clients in threads (bounded by
--requests and --max-seconds). The baseline is GET /healthz on the same server with the same
concurrency; the last line is ``ratio: X.XX`` = opt-in rate / healthz rate (the lowest over the
databases measured).

    .venv/bin/python benchmarks/optin_bench.py --requests 400 --db both
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import throwaway_database  # noqa: E402

from launchkit import magnets  # noqa: E402
from launchkit.db import make_engine, make_sessionmaker  # noqa: E402
from launchkit.workspace import init_workspace  # noqa: E402

PG_ADMIN = os.environ.get(
    "LAUNCHKIT_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_database(kind: str, folder: Path) -> tuple[str, Callable[[], None]]:
    """A database URL for the run and a function that drops it."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}", lambda: None
    return throwaway_database(PG_ADMIN)


def prepare_workspace(folder: Path, url: str) -> Path:
    ws = folder / "ws"
    sender = {"name": "Bench", "email": "bench@example.com", "postal_address": "1 rue Bench, Paris"}
    settings = init_workspace(ws, name="Bench", database_url=url, env={}, sender=sender)
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        magnets.add_magnet(
            session, settings, "bench", title="Bench guide", url="https://example.com/guide",
            now=datetime.now(UTC),
        )  # fmt: skip
    engine.dispose()
    return ws


def start_server(ws: Path, url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LAUNCHKIT_HOME": str(ws),
        "LAUNCHKIT_DATABASE_URL": url,
        "LAUNCHKIT_EMAIL_BACKEND": "file",
        "LAUNCHKIT_SMTP_URL": "",
        "LAUNCHKIT_WEB_RATE_LIMIT": "0",
        "LAUNCHKIT_BASE_URL": f"http://127.0.0.1:{port}",
    }
    cmd = [sys.executable, "-m", "launchkit", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"launchkit serve exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("launchkit serve did not start")


def drive(
    base: str, total: int, workers: int, max_seconds: float, optin: bool
) -> tuple[int, float, list[float]]:
    """Send up to ``total`` requests with ``workers`` clients; (done, seconds, latencies)."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            token = ""
            if optin:
                page = client.get("/m/bench")
                token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                if optin:
                    email = f"lead{i}-{uuid.uuid4().hex[:6]}@example.com"
                    data = {"email": email, "first_name": "Lead", "consent": "yes"}
                    data["csrf_token"] = token
                    r = client.post("/m/bench", data=data)
                    ok = r.status_code == 303
                else:
                    ok = client.get("/healthz").status_code == 200
                elapsed = time.perf_counter() - start
                if not ok:
                    raise SystemExit(f"request failed: {r.status_code} {r.text[:300]}")
                with lock:
                    latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker) for _ in range(workers)]:
            future.result()
    return len(latencies), time.perf_counter() - start, latencies


def report(label: str, done: int, seconds: float, latencies: list[float]) -> float:
    rate = done / seconds
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(ordered)
    print(f"  {label:<8} {done:>6} req in {seconds:6.2f}s  {rate:8.1f} req/s  "
          f"median {median * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms")  # fmt: skip
    return rate


def run(kind: str, requests: int, workers: int, max_seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="lk-optin-bench-") as tmp:
        folder = Path(tmp)
        url, drop = make_database(kind, folder)
        proc = None
        try:
            ws = prepare_workspace(folder, url)
            port = free_port()
            proc = start_server(ws, url, port, folder / "serve.log")
            base = f"http://127.0.0.1:{port}"
            drive(base, min(50, requests), workers, max_seconds, optin=True)  # warm up
            print(f"{kind}: {workers} concurrent clients, FileMessenger outbox")
            base_rate = report("healthz", *drive(base, requests, workers, max_seconds, False))
            optin_rate = report("opt-in", *drive(base, requests, workers, max_seconds, True))
            sent = len(list((ws / "outbox").rglob("*.eml")))
            print(f"  confirmation emails written: {sent}")
            print(f"  {kind} ratio {optin_rate / base_rate:.2f}")
            return optin_rate / base_rate
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound per phase")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    ratios = [run(kind, args.requests, args.workers, args.max_seconds) for kind in kinds]
    print(f"ratio: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
