"""Compose ahead: render and build a batch's messages in a helper process while the sender
pushes the ones already built, so a large send uses a second core.

Composing (Jinja render, MIME build, signed links) is pure: it reads the sequence files and
the row, and writes nothing. The sender keeps everything that decides what is sent (claims,
skips, the ledger marks, the push and its commit point) in its own process; the helper only
turns rows into bytes, so the delivery guarantee is the same with or without it.

The helper is started once per process (``forkserver``: never a fork of a threaded process)
and reused by every send run; it gets the run's composer recipe (settings, emails) once per
run. Rows travel in chunks, a few chunks ahead of the push. If the helper dies, the run stops
with an error and the claimed rows are put back like after any crash.
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing
import os
import pickle
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from launchkit.errors import DeliveryError, LaunchkitError

CHUNK = 50  # rows per request to the helper
AHEAD = 3  # chunks in flight per helper before the sender waits
MAX_HELPERS = 4
MIN_ROWS = 2_000  # due rows worth starting the helper for (starting it costs ~0.5 s)
MIN_ROWS_RUNNING = 200  # due rows worth handing to a helper already running

Composed = tuple[Any, bytes, int] | LaunchkitError  # (message, raw, sequence id) or why not


def wanted(setting: int, due: int) -> bool:
    """Whether a run with ``due`` rows should compose in a helper process.

    ``setting`` (``email.compose_ahead``): 1 always, 0 never, -1 automatic (two or more
    cores and at least ``MIN_ROWS`` due, or ``MIN_ROWS_RUNNING`` once the helper runs).
    """
    if setting >= 0:
        return setting > 0
    running = bool(_HELPERS) and all(h.alive() for h in _HELPERS)
    return (os.cpu_count() or 1) > 1 and due >= (MIN_ROWS_RUNNING if running else MIN_ROWS)


def in_process(composer: Any, rows: list[dict[str, Any]], clock: Callable[[], datetime]) -> Any:
    """The plain way: compose each row when the sender asks for it."""
    for row in rows:
        yield _compose(composer, row, clock())


def _compose(composer: Any, row: dict[str, Any], now: datetime) -> Composed:
    try:
        return composer.compose(row, now)
    except LaunchkitError as e:
        return e


# --- the sender's side ------------------------------------------------------------------------


class Stream:
    """The composed messages of ``rows``, in order; ``close`` drops what was not taken.

    Chunks go round-robin to the helpers; answers are read back in the order asked.
    """

    def __init__(
        self, helpers: list[Helper], rows: list[dict[str, Any]], now: datetime, magnets: Any
    ):
        self.released = False
        self.helpers = helpers
        self.chunks = deque(rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK))
        self.now, self.magnets = now, magnets
        self.asked: deque[Helper] = deque()  # who owes the next answers, oldest first
        self.turn = 0
        self.ready: deque[Composed] = deque()
        self._fill()

    def __iter__(self) -> Iterator[Composed]:
        return self

    def __next__(self) -> Composed:
        if not self.ready:
            if not self.asked:
                self._release()
                raise StopIteration
            self.ready.extend(self.asked.popleft().receive())
            self._fill()
        return self.ready.popleft()

    def _fill(self) -> None:
        while self.chunks and len(self.asked) < AHEAD * len(self.helpers):
            chunk = self.chunks.popleft()
            titles = {r["id"]: self.magnets[r["id"]] for r in chunk if r["id"] in self.magnets}
            helper = self.helpers[self.turn % len(self.helpers)]
            self.turn += 1
            helper.send(("compose", chunk, self.now, titles))
            self.asked.append(helper)

    def close(self) -> None:
        """Collect the answers still owed (a helper answers every request), then let another
        sender thread have the helpers."""
        self.chunks.clear()
        try:
            while self.asked:
                self.asked.popleft().receive()
        finally:
            self.ready.clear()
            self._release()

    def _release(self) -> None:
        if not self.released:
            self.released = True
            _IN_USE.release()


def stream(composer: Any, rows: list[dict[str, Any]], now: datetime) -> Iterator[Composed]:
    """Compose ``rows`` at ``now`` for this composer in the shared helpers, a few chunks ahead.

    The helpers serve one stream at a time: while another sender thread of this process holds
    them, the rows are composed here instead (same messages, one core).
    """
    if not _IN_USE.acquire(blocking=False):
        return in_process(composer, rows, lambda: now)
    try:
        helpers = shared_helpers()
        for helper in helpers:
            helper.load(composer)
        return Stream(helpers, rows, now, composer.magnets)
    except BaseException:
        _IN_USE.release()
        raise


class Helper:
    """One helper process and the pipe to it (used by one sender thread at a time)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["launchkit.sequences.compose"])
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=serve, args=(child,), name="launchkit-compose", daemon=True
        )
        self.process.start()
        child.close()
        self.recipe: str | None = None

    def load(self, composer: Any) -> None:
        """Give the helper this run's composer (once per run)."""
        # the helper signs links but never talks to SMTP or Stripe: it gets no such secret
        settings = replace(
            composer.settings, smtp_url=None, stripe_api_key=None, stripe_webhook_secret=None
        )
        recipe = (settings, composer.emails, composer.launch_ids)
        key = hashlib.sha256(pickle.dumps(recipe)).hexdigest()
        if key != self.recipe:
            self.send(("recipe", recipe))
            self.receive()
            self.recipe = key

    def send(self, request: Any) -> None:
        try:
            self.conn.send(request)
        except (OSError, EOFError) as e:
            raise DeliveryError(f"The compose helper process stopped: {e}.") from e

    def receive(self) -> Any:
        try:
            kind, payload = self.conn.recv()
        except (OSError, EOFError) as e:
            raise DeliveryError("The compose helper process stopped unexpectedly.") from e
        if kind == "crash":
            raise DeliveryError(f"The compose helper process failed: {payload}")
        return payload

    def alive(self) -> bool:
        return self.process.is_alive() and not self.conn.closed

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, EOFError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


_HELPERS: list[Helper] = []
_LOCK = threading.Lock()
_IN_USE = threading.Lock()  # held by the one Stream using the helpers


def helper_count() -> int:
    """Helpers to run: one per core, at most ``MAX_HELPERS`` (measured on 2 cores: two
    helpers beat one, as the sender itself mostly waits on the disk and the database)."""
    return max(1, min(MAX_HELPERS, os.cpu_count() or 1))


def shared_helpers() -> list[Helper]:
    """This process's helpers, started on first use (and again if one died)."""
    with _LOCK:
        if len(_HELPERS) != helper_count() or not all(h.alive() for h in _HELPERS):
            for helper in _HELPERS:
                helper.stop()
            _HELPERS[:] = [Helper() for _ in range(helper_count())]
        return list(_HELPERS)


def discard_helper() -> None:
    """Stop the helpers (they are restarted when needed): after an error, or at exit."""
    with _LOCK:
        helpers, _HELPERS[:] = list(_HELPERS), []
    for helper in helpers:
        helper.stop()


def _forget_helpers() -> None:
    """In a forked child: the parent's helpers are not ours to use or stop."""
    global _LOCK, _IN_USE
    _HELPERS.clear()
    _LOCK = threading.Lock()
    _IN_USE = threading.Lock()


atexit.register(discard_helper)
os.register_at_fork(after_in_child=_forget_helpers)


# --- the helper's side ------------------------------------------------------------------------


def serve(conn: Any) -> None:
    """The helper's loop: build the composer from a recipe, compose chunks, until told to stop."""
    from launchkit.sequences.compose import Composer

    composer = None
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            if request[0] == "recipe":
                settings, emails, launch_ids = request[1]
                composer = Composer(settings, emails, launch_ids)
                conn.send(("ok", None))
                continue
            _, rows, now, titles = request
            assert composer is not None, "no recipe before the first chunk"
            composer.magnets.update(titles)
            conn.send(("ok", [_slim(_compose(composer, row, now)) for row in rows]))
        except Exception as e:  # noqa: BLE001 - reported to the sender, which stops the run
            conn.send(("crash", f"{type(e).__name__}: {e}"))


def _slim(result: Composed) -> Composed:
    """The message without its bodies (the raw bytes hold them): half the bytes to copy."""
    if isinstance(result, LaunchkitError):
        return DeliveryError(str(result))  # plain, so it always unpickles
    message, raw, seq_id = result
    return message.slim(), raw, seq_id
