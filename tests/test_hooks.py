"""Outgoing webhooks (issue #16) against a real HTTP receiver on a loopback port, in its own
process: it checks the Standard Webhooks signature (verified here again, written from the spec,
not with launchkit's code), answers 500, hangs past the timeout, and is killed mid-delivery; the
delivery runner is killed mid-request too. Every event arrives, with the same id on retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from launchkit import hooks
from launchkit.errors import InputError
from launchkit.models import WebhookDelivery
from tests.conftest import free_port

RECEIVER = r"""
import base64, hashlib, hmac, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode, log, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
key = base64.b64decode(secret.split("_", 1)[1])

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        msg_id, ts = self.headers["webhook-id"], self.headers["webhook-timestamp"]
        expected = base64.b64encode(
            hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        given = [s.split(",", 1)[1] for s in self.headers["webhook-signature"].split(" ")]
        ok = any(hmac.compare_digest(expected, g) for g in given)
        with open(log, "a") as f:
            f.write(json.dumps({"id": msg_id, "ts": ts, "ok": ok, "mode": mode,
                                "sig": self.headers["webhook-signature"],
                                "body": body.decode()}) + "\n")
        if mode == "hang":
            time.sleep(120)
        status = 401 if not ok else (500 if mode == "fail" else 204)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class Receiver:
    """The receiving endpoint, restartable in another mode on the same port."""

    def __init__(self, folder: Path, port: int, secret: str):
        self.script = folder / "receiver.py"
        self.script.write_text(RECEIVER)
        self.log = folder / "received.jsonl"
        self.port, self.secret = port, secret
        self.proc: subprocess.Popen | None = None

    def start(self, mode: str) -> None:
        self.stop()
        args = [sys.executable, str(self.script), str(self.port), mode, str(self.log), self.secret]
        self.proc = subprocess.Popen(args)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def received(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def wait_for(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {len(self.received())} < {count} requests")
            time.sleep(0.02)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, from the spec: HMAC-SHA256 over "id.timestamp.body" with
    the base64-decoded part of the secret after "whsec_"; "v1,<base64>" signatures, space
    separated."""
    key = base64.b64decode(secret[len("whsec_") :])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body.decode()}"
    mac = base64.b64encode(hmac.new(key, content.encode(), hashlib.sha256).digest()).decode()
    for part in headers["webhook-signature"].split():
        version, _, signature = part.partition(",")
        if version == "v1" and hmac.compare_digest(signature, mac):
            return True
    return False


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def statuses(sessions) -> dict[str, tuple[str, int]]:
    with sessions.begin() as s:
        return {d.id: (d.status, d.attempts) for d in s.scalars(select(WebhookDelivery))}


def test_signature_matches_the_spec_and_its_published_example():
    # the example of the Standard Webhooks reference libraries (python/tests)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    header = hooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = hooks.headers_for(secret, "msg_1", 1700000000, body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")


def test_urls_must_be_https_except_loopback(session, now):
    for good in ("https://hooks.example/in", "http://127.0.0.1:9/x", "http://localhost/x"):
        assert hooks.check_url(good) == good
    for bad in ("http://hooks.example/in", "ftp://x", "https://", "http://10.0.0.1/x"):
        with pytest.raises(InputError, match="must be https"):
            hooks.check_url(bad)
    with pytest.raises(InputError, match='"access.deleted" is unknown'):
        hooks.add_hook(session, "https://h.example", ["access.deleted"], now=now)


def test_every_event_arrives_through_failures_timeouts_and_kills(
    sessions, settings, workspace_env, tmp_path
):
    port = free_port()
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    with sessions.begin() as s:
        hook = hooks.add_hook(s, f"http://127.0.0.1:{port}/in", ["access.granted"], now=clock())
        secret = hook.secret
        for n in range(3):
            hooks.enqueue(s, "access.granted", {"order": n}, key=f"e{n}", now=clock())
            hooks.enqueue(s, "access.granted", {"order": n}, key=f"e{n}", now=clock())  # once
        hooks.enqueue(s, "access.revoked", {"order": 9}, key="r9", now=clock())  # not followed
    ids = set(statuses(sessions))
    assert len(ids) == 3
    receiver = Receiver(tmp_path, port, secret)
    try:
        # 0. the delivery runner is killed mid-request (the real CLI, in its own process)
        receiver.start("hang")
        seen = 0
        env = {**os.environ, **workspace_env}
        runner = subprocess.Popen(
            [sys.executable, "-m", "launchkit", "hook", "deliver", "--timeout", "60"], env=env
        )
        receiver.wait_for(seen + 1, timeout=30)
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        killed_id = receiver.received()[-1]["id"]
        assert statuses(sessions)[killed_id][0] == "pending"  # claimed, never marked delivered
        receiver.stop()
        clock.advance(timedelta(minutes=3))  # past the killed runner's lease
        # 1. nobody listens: connection refused, retried later
        report = hooks.deliver_due(sessions, clock=clock, timeout=1)
        assert sorted(report.retrying) == sorted(ids)
        assert hooks.deliver_due(sessions, clock=clock, timeout=1).retrying == []  # not due yet
        # 2. the receiver answers 500
        receiver.start("fail")
        clock.advance(timedelta(minutes=6))  # the backoff: 5 s, then 5 min, 30 min, 2 h...
        assert len(hooks.deliver_due(sessions, clock=clock, timeout=1).retrying) == 3
        assert {st for st, _ in statuses(sessions).values()} == {"pending"}
        # 3. the receiver hangs past the timeout
        receiver.start("hang")
        clock.advance(timedelta(minutes=31))
        report = hooks.deliver_due(sessions, clock=clock, timeout=0.5)
        assert len(report.retrying) == 3
        with sessions.begin() as s:
            errors = set(s.scalars(select(WebhookDelivery.last_error)))
        assert errors == {"timed out after 0.5 s"}
        # 4. the receiver is killed while it holds a request
        receiver.start("hang")
        clock.advance(timedelta(hours=2, minutes=1))
        seen = len(receiver.received())
        worker = threading.Thread(
            target=hooks.deliver_due, args=(sessions,), kwargs={"clock": clock, "timeout": 30}
        )
        worker.start()
        receiver.wait_for(seen + 1)
        receiver.stop()
        worker.join(30)
        assert not worker.is_alive()
        assert all(st == "pending" for st, _ in statuses(sessions).values())
        # 5. the receiver works again: everything goes out, once more at most
        receiver.start("ok")
        clock.advance(timedelta(days=1))
        report = hooks.deliver_due(sessions, clock=clock, timeout=5)
        assert sorted(report.delivered) == sorted(ids)
        assert {st for st, _ in statuses(sessions).values()} == {"delivered"}
        clock.advance(timedelta(days=1))
        assert hooks.deliver_due(sessions, clock=clock).delivered == []
    finally:
        receiver.stop()
    got = receiver.received()
    assert {r["id"] for r in got} == ids  # the same ids on every retry, nothing else
    assert {r["id"] for r in got if r["mode"] == "ok"} == ids  # each delivered
    for r in got:
        headers = {
            "webhook-id": r["id"],
            "webhook-timestamp": r["ts"],
            "webhook-signature": r["sig"],
        }
        assert r["ok"] and verify(secret, headers, r["body"].encode())
    bodies: dict[str, set[str]] = {}
    for r in got:
        bodies.setdefault(r["id"], set()).add(r["body"])
    assert all(len(b) == 1 for b in bodies.values())  # the same bytes on every attempt
    orders = sorted(json.loads(next(iter(b)))["data"]["order"] for b in bodies.values())
    assert orders == [0, 1, 2]


def test_give_up_after_the_schedule_then_retry_by_hand(sessions, now):
    port = free_port()  # nothing listens there
    clock = Clock(now)
    with sessions.begin() as s:
        hook = hooks.add_hook(s, f"http://127.0.0.1:{port}/in", ["order.paid"], now=now)
        hooks.enqueue(s, "order.paid", {"order": 1}, key="o1", now=now)
    for _ in range(hooks.MAX_ATTEMPTS):
        hooks.deliver_due(sessions, clock=clock, timeout=1)
        clock.advance(timedelta(hours=11))
    assert list(statuses(sessions).values()) == [("failed", hooks.MAX_ATTEMPTS)]
    with sessions.begin() as s:
        assert hooks.retry_failed(s, hook.id, now=clock()) == 1
    assert list(statuses(sessions).values()) == [("pending", 0)]


def test_cli_hooks(cli, sessions):
    added = cli("hook", "add", "https://hooks.example/in", "--event", "access.granted")
    assert added.exit_code == 0, added.output
    secret = added.output.split("keep it): ", 1)[1].split()[0]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    listed = cli("hook", "list")
    assert "hooks.example" in listed.output and secret not in listed.output
    bad = cli("hook", "add", "http://hooks.example/in", "--event", "access.granted")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: Webhook URL")
    assert cli("hook", "log", "--json").output.strip() == "[]"
    assert cli("hook", "remove", "7").stderr.startswith('Error: Webhook "7" does not exist')
    assert cli("hook", "remove", "1").exit_code == 0
    assert cli("hook", "list", "--json").output.strip() == "[]"


def test_run_tick_delivers_webhooks(cli, settings, sessions, tmp_path):
    from tests.test_orchestrator import make_plan

    make_plan(settings.workspace)
    port = free_port()
    with sessions.begin() as s:
        hook = hooks.add_hook(
            s, f"http://127.0.0.1:{port}/in", ["order.paid"], now=datetime.now(UTC)
        )
        hooks.enqueue(s, "order.paid", {"order": 1}, key="o1", now=datetime.now(UTC))
    receiver = Receiver(tmp_path, port, hook.secret)
    receiver.start("ok")
    try:
        result = cli("run", "--tick", "--now", "2026-11-20 10:00")
        assert result.exit_code == 0, result.output
        assert "webhooks: 1 delivered, 0 to retry" in result.stdout
    finally:
        receiver.stop()
    assert [r["ok"] for r in receiver.received()] == [True]
    assert "webhooks" not in cli("run", "--tick", "--now", "2026-11-20 10:05").stdout


def test_concurrent_runners_never_post_the_same_attempt_twice(sessions, tmp_path):
    port = free_port()
    start = datetime.now(UTC)
    with sessions.begin() as s:
        hook = hooks.add_hook(s, f"http://127.0.0.1:{port}/in", ["order.paid"], now=start)
        for n in range(12):
            hooks.enqueue(s, "order.paid", {"order": n}, key=f"o{n}", now=start)
    receiver = Receiver(tmp_path, port, hook.secret)
    receiver.start("ok")
    reports: list[hooks.DeliveryReport] = []
    try:
        runners = [
            threading.Thread(
                target=lambda: reports.append(hooks.deliver_due(sessions, clock=lambda: start))
            )
            for _ in range(3)
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(60)
    finally:
        receiver.stop()
    got = [r["id"] for r in receiver.received()]
    assert len(got) == 12 and len(set(got)) == 12
    assert sorted(d for r in reports for d in r.delivered) == sorted(got)
