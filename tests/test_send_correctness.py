"""The two defects of issue 20, tested through the whole send path (schedule, compose, outbox):

- a template that tests a personal value gives every recipient their own branch (a render
  shortcut once sent the else-branch to everyone it had "learned" from a marker render);
- whoever becomes eligible between runs (a tag moved, added, a new or confirmed subscriber)
  gets the email on the next send (a schedule memo once missed people whose tag moved).
"""

from __future__ import annotations

import email
import random
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update

from launchkit import sequences
from launchkit.models import Subscriber, SubscriberTag
from tests.sendkit import CART_OPEN, FakeClock, populate, tune, write_sequence

BEFORE = CART_OPEN - timedelta(days=3)
SEND_AT = CART_OPEN + timedelta(minutes=5)

PEOPLE = [
    ("camille@gmail.com", "Camille", "Martin"),
    ("camille@example.fr", "Camille", "Blanc"),
    ("zoe@gmail.com", "Zoé", "Durand"),
    ("obrien@example.org", "Seán", "O'Brien"),
    ("marc@gmail.com.evil.example", "Camille ", "Martinez"),
    ("anna@example.com", "Anna_Lee", "Dupont"),
    ("x@example.com", "Jo <b>&amp;", 'Le "Grand"'),
]
EVERYONE = [("n00000@example.com", "N0", ""), *PEOPLE]


def _outbox(settings) -> dict[str, str]:
    """Recipient address -> the plain-text part of the message written for them."""
    out = {}
    for path in Path(settings.outbox_dir).glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        out[str(message["To"].addresses[0].addr_spec)] = message.get_body(("plain",)).get_content()
    return out


CONDITIONS = {
    "endswith": ('{% if email.endswith("@gmail.com") %}[GMAIL]{% else %}[OTHER-MAIL]{% endif %}',
                 lambda a, f, la: "[GMAIL]" if a.endswith("@gmail.com") else "[OTHER-MAIL]"),
    "equals": ('{% if first_name == "Camille" %}[CAMILLE]{% else %}[NOT-CAMILLE]{% endif %}',
               lambda a, f, la: "[CAMILLE]" if f == "Camille" else "[NOT-CAMILLE]"),
    "in-list": ('{% if last_name in ["Martin", "Durand"] %}[FAMILY]{% else %}[NO-FAMILY]'
                "{% endif %}",
                lambda a, f, la: "[FAMILY]" if la in ("Martin", "Durand") else "[NO-FAMILY]"),
    "filters": ("[UP:{{ first_name | upper }}] [LEN:{{ first_name | length }}]",
                lambda a, f, la: f"[UP:{f.upper()}] [LEN:{len(f)}]"),
}  # fmt: skip


def _send_to_people(settings, engine, sessions, template: str) -> dict[str, str]:
    source = (
        '---\nsubject: "Pour {{ first_name }}"\nsend_at: "cart_open +0h"\n---\n'
        f"Bonjour {{{{ first_name }}}},\n\n{template}\n"
    )
    write_sequence(settings, "branches", {"01-open.md": source})
    populate(sessions, settings, 1, now=BEFORE, sequence="branches")  # n00000@example.com
    with sessions.begin() as session:
        session.execute(
            insert(Subscriber),
            [
                {"email": a, "first_name": f, "last_name": la, "status": "active",
                 "created_at": BEFORE, "updated_at": BEFORE}
                for a, f, la in PEOPLE
            ],
        )  # fmt: skip
    clock = FakeClock(SEND_AT)
    report = sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep)
    assert report.sent == len(EVERYONE)
    return _outbox(settings)


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_personal_conditions_give_every_recipient_their_own_branch(
    settings, engine, sessions, condition
):
    template, expected = CONDITIONS[condition]
    texts = _send_to_people(tune(settings), engine, sessions, template)
    assert set(texts) == {a for a, _, _ in EVERYONE}
    for address, first, last in EVERYONE:
        assert expected(address, first, last) in texts[address], (address, texts[address])


def _vip(session, ids: list[int]) -> None:
    session.execute(delete(SubscriberTag).where(SubscriberTag.tag == "vip"))
    for sid in ids:
        session.add(SubscriberTag(subscriber_id=sid, tag="vip"))


def _eligible(session) -> set[int]:
    """Active subscribers tagged ``vip``, read straight from the tables."""
    query = (
        select(Subscriber.id)
        .join(SubscriberTag, SubscriberTag.subscriber_id == Subscriber.id)
        .where(SubscriberTag.tag == "vip", Subscriber.status == "active")
    )
    return set(session.scalars(query))


def _change(session, number: int, ids: list[int]) -> None:
    """Besides the tag moves: a late joiner (run 3), a subscriber pending (4) then confirmed (6)."""
    if number == 3:
        session.execute(
            insert(Subscriber).values(
                email="late@example.com", first_name="Late", last_name="", status="active",
                created_at=BEFORE, updated_at=BEFORE,
            )
        )  # fmt: skip
        late = session.scalar(select(Subscriber.id).where(Subscriber.email == "late@example.com"))
        session.add(SubscriberTag(subscriber_id=late, tag="vip"))
    if number in (4, 6):
        status = "pending" if number == 4 else "active"
        session.execute(update(Subscriber).where(Subscriber.id == ids[9]).values(status=status))


def test_everyone_newly_eligible_gets_the_email_on_the_next_send(settings, engine, sessions):
    """The ``vip`` tag moves from ids {1,4} to {2,3}, then at random for eight more runs; a
    late joiner and a confirmed subscriber come in. After each run, the recipients are exactly
    the people who were eligible at some run so far, each once."""
    settings = tune(settings)
    vip_only = (
        '---\nsubject: "Pour {{ first_name }}"\nsegment: "tag:vip"\nsend_at: "cart_open +0h"\n'
        "---\nBonjour {{ first_name }}\n"
    )
    write_sequence(settings, "vip", {"01-open.md": vip_only})
    ids = populate(
        sessions, settings, 10, now=BEFORE, sequence="vip", tags={1: ["vip"], 4: ["vip"]}
    )
    clock = FakeClock(SEND_AT)
    rng = random.Random(20)
    rounds: list[list[int]] = [[ids[1], ids[4]], [ids[2], ids[3]]]
    rounds += [sorted({*rng.sample(ids, rng.randint(0, 5)), ids[9]}) for _ in range(8)]
    eligible_so_far: set[int] = set()
    for number, vip in enumerate(rounds):
        with sessions.begin() as session:
            _vip(session, vip)
            _change(session, number, ids)
        with sessions.begin() as session:
            eligible_so_far |= _eligible(session)
        clock.advance(minutes=10)
        before = len(list(Path(settings.outbox_dir).glob("*.eml")))
        report = sequences.send_due(engine, settings, clock=clock, sleep=clock.sleep)
        with sessions.begin() as session:
            by_address = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
        got = [by_address[a] for a in _outbox(settings)]
        assert sorted(got) == sorted(eligible_so_far), f"run {number}: vip {sorted(vip)}"
        assert report.sent == len(got) - before  # each newcomer once, nobody twice
