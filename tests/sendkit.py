"""Helpers shared by the sender tests: a fake clock, a tiny sequence, a populated launch (in the
database, or through the CLI in a workspace)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from launchkit import sequences
from launchkit.config import Settings
from launchkit.launches import create_launch
from launchkit.models import Send, Subscriber, SubscriberTag
from tests.conftest import Cli

CART_OPEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CART_CLOSE = datetime(2026, 12, 8, 20, 0, tzinfo=UTC)

MINI = {
    "01-open.md": (
        '---\nsubject: "{{ product }} est ouvert"\npreheader: "Jusqu\'au {{ cart_close }}"\n'
        'send_at: "cart_open +0h"\nkind: sales\n---\n'
        'Bonjour {{ first_name | default("toi", true) }},\n\n'
        "Les portes sont ouvertes jusqu'au {{ cart_close }}.\n\n"
        "[Je m'inscris]({{ checkout_url }})\n"
    ),
    "02-last-call.md": (
        '---\nsubject: "Dernier appel"\nsend_at: "cart_close -3h"\nkind: sales\n'
        'skip_if: "tag:buyer"\n---\nBonjour {{ first_name | default("toi", true) }}, '
        "c'est la fin.\n\n[Je m'inscris]({{ checkout_url }})\n"
    ),
}


class FakeClock:
    """An injected clock: ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def write_sequence(settings: Settings, name: str = "mini", files: dict[str, str] | None = None):
    folder = Path(settings.emails_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in (files or MINI).items():
        (folder / file_name).write_text(text, encoding="utf-8")
    return folder


def tune(settings: Settings, **kw) -> Settings:
    base = {"send_window": "00:00-24:00", "max_delay": timedelta(days=30)}
    base.update(kw)
    return dataclasses.replace(settings, **base)


def populate(
    sessions: sessionmaker[Session],
    settings: Settings,
    count: int,
    *,
    now: datetime,
    sequence: str = "mini",
    tags: dict[int, list[str]] | None = None,
) -> list[int]:
    """A launch "spring" with ``count`` subscribers n0000@example.com ... and the sequence."""
    write_sequence(settings, sequence) if sequence == "mini" else None
    with sessions.begin() as session:
        create_launch(
            session,
            "spring",
            product="Atelier Photo",
            currency="EUR",
            now=now,
            cart_open=CART_OPEN,
            cart_close=CART_CLOSE,
        )
        rows = [
            {
                "email": f"n{i:05d}@example.com",
                "first_name": f"N{i}",
                "last_name": "",
                "status": "active",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        session.execute(insert(Subscriber), rows)
        ids = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        for index, tag_list in (tags or {}).items():
            for tag in tag_list:
                session.add(SubscriberTag(subscriber_id=ids[index], tag=tag))
        sequences.attach_sequence(session, settings, "spring", sequence, now=now)
    return ids


def ledger(sessions: sessionmaker[Session]) -> list[Send]:
    with sessions.begin() as session:
        return list(session.scalars(select(Send).order_by(Send.id)))


def status_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in ledger(sessions):
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


SPRING = (
    "launch", "create", "spring", "--product", "Atelier Photo",
    "--prelaunch-start", "2026-11-24 09:00", "--cart-open", "2026-12-01 10:00",
    "--cart-close", "2026-12-08 23:59",
)  # fmt: skip
ANA_AND_BOB = "email,first_name\nana@example.com,Ana\nbob@example.com,Bob\n"


def ready_workspace(
    cli: Cli,
    workspace_env: dict[str, str],
    *,
    launch: Sequence[str] = SPRING,
    people: str = ANA_AND_BOB,
) -> Path:
    """The CLI workspace with the ``MINI`` sequence, ``launch`` created and ``people`` imported."""
    ws = Path(workspace_env["LAUNCHKIT_HOME"])
    write_mini_sequence(ws)
    r = cli(*launch)
    assert r.exit_code == 0, r.stderr
    csv = ws / "people.csv"
    csv.write_text(people)
    r = cli("audience", "import", str(csv))
    assert r.exit_code == 0, r.stderr
    return ws


def write_mini_sequence(workspace: Path) -> None:
    """Put the ``MINI`` sequence in ``workspace/emails/mini`` (CLI tests attach it by name)."""
    folder = workspace / "emails" / "mini"
    folder.mkdir()
    for name, text in MINI.items():
        (folder / name).write_text(text, encoding="utf-8")
