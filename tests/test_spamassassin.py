"""Every starter email, built into the exact MIME message launchkit sends, scored by SpamAssassin.

SpamAssassin (Debian's ``spamassassin`` package, installed by ``.ci/run``) runs with local
tests only (``-L``: no DNS blocklists, no network) over one mbox holding all the messages, so
the whole check costs one Perl start-up. A message fails above ``MAX_SCORE`` and the failure
prints the rules it hit.

Scored: the launch folders and the evergreen (deadline funnel) folders in both French address
forms and English, every transactional
email of each form (``transactional-fr``, ``transactional-fr-tu``, ``transactional-en``) and
every membership email (``membership-fr``, ``membership-en``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from launchkit import evergreen, mailer, sequences
from launchkit.config import load_settings
from launchkit.db import make_engine, make_sessionmaker
from launchkit.render import make_environment, sample_context
from launchkit.resources import starter_dir
from launchkit.workspace import init_workspace
from tests.sendkit import CART_OPEN, populate

pytestmark = pytest.mark.deliverability

MAX_SCORE = 0.5
EVERGREEN_FOLDERS = ("evergreen-fr", "evergreen-fr-tu", "evergreen-en")
FORMS = (("fr", "vous"), ("fr", "tu"), ("en", "vous"))  # (language, address form)
GTUBE = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n"
    b"Message-ID: <gtube@example.com>\r\n\r\n"
    b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"
)  # the standard test string: proves the scores are read from a real run
_RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.MULTILINE)


def _launch_messages(settings, out: Path) -> dict[str, bytes]:
    """The ``.eml`` of every launch email (FR and EN), built by the sender's composer: the
    fixed launch's folders, and the evergreen folders previewed on an evergreen launch."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    populate(sessions, settings, 1, now=CART_OPEN - timedelta(days=30), sequence="launch-fr")
    with sessions.begin() as session:
        for folder in ("launch-fr-tu", "launch-en"):
            sequences.attach_sequence(session, settings, "spring", folder, now=CART_OPEN)
    with sessions.begin() as session:
        evergreen.create_evergreen_launch(
            session, "toujours", product="Atelier Aquarelle", entry="tag:atelier",
            cart_open="entry +7d", cart_close="entry +10d", currency="EUR", tz=settings.tz,
            now=CART_OPEN,
        )  # fmt: skip
        for folder in EVERGREEN_FOLDERS:
            sequences.attach_sequence(session, settings, "toujours", folder, now=CART_OPEN)
    with sessions.begin() as session:
        items = sequences.preview_launch(session, settings, "spring", out, now=CART_OPEN)
        items += sequences.preview_launch(
            session, settings, "toujours", out / "evergreen", now=CART_OPEN
        )
    engine.dispose()
    assert len(items) == 30 + 12 and all(i.eml_path for i in items), [i.problems for i in items]
    return {item.label: item.eml_path.read_bytes() for item in items if item.eml_path}


def _transactional_messages(settings, out: Path) -> dict[str, bytes]:
    """Every transactional starter email of each form as ``send_transactional`` sends it."""
    found = {}
    for language, form in FORMS:
        local = dataclasses.replace(settings, language=language, address_form=form)
        env = make_environment(local)
        messenger = mailer.FileMessenger(out)
        folder = starter_dir("emails") / mailer.transactional_folder(local)
        for kind in sorted(path.stem for path in folder.glob("*.md")):
            message_id = mailer.send_transactional(
                local, messenger, env, kind,
                to_email="camille.martin@example.com", to_name="Camille",
                context=sample_context(language, settings.base_url), subscriber_id=1,
                key=f"{kind}-{language}-{form}", now=CART_OPEN, unsubscribe_url=None,
            )  # fmt: skip
            path = mailer.outbox_path(out, message_id)
            found[f"{folder.name}/{kind}"] = path.read_bytes()
    return found


def _membership_messages(settings, out: Path) -> dict[str, bytes]:
    """Every membership starter email (FR and EN) as ``memberships.notify.deliver`` sends it."""
    from launchkit.memberships.notify import deliver

    found = {}
    for language in ("fr", "en"):
        local = dataclasses.replace(settings, language=language)
        env = make_environment(local)
        messenger = mailer.FileMessenger(out)
        folder = starter_dir("emails") / f"membership-{language}"
        context = {
            "first_name": "Camille", "email": "camille.martin@example.com",
            "product": "Club photo", "creator_name": "Camille Martin",
            "amount": "29 €" if language == "fr" else "€29", "interval": "month",
            "period_end": "mardi 5 janvier 2027" if language == "fr" else "January 5, 2027",
            "trial_end": "", "account_url": f"{settings.base_url}/account",
            "account_link": f"{settings.base_url}/account/sample-token",
            "update_card_url": "https://invoice.stripe.com/i/sample",
        }  # fmt: skip
        for template in sorted(path.stem for path in folder.glob("*.md")):
            before = set(out.glob("**/*.eml"))
            deliver(local, messenger, env, template, f"{template}-{language}",
                    "camille.martin@example.com", 1, context, CART_OPEN)  # fmt: skip
            [path] = set(out.glob("**/*.eml")) - before
            found[f"{folder.name}/{template}"] = path.read_bytes()
    return found


def _mbox(messages: dict[str, bytes]) -> bytes:
    parts = []
    for raw in messages.values():
        body = re.sub(rb"(?m)^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n"))
        parts.append(b"From launchkit@localhost Mon Nov 30 09:00:00 2026\n" + body + b"\n")
    return b"".join(parts)


def _score_all(messages: dict[str, bytes], home: Path) -> dict[str, list[tuple[float, str]]]:
    """(points, rule) hits per message label, from one ``spamassassin -L -t --mbox`` run.

    SpamAssassin may reorder an mbox (it sorts by date), so each output message is matched
    back to its input by its Message-ID.
    """
    result = subprocess.run(
        ["spamassassin", "-L", "-t", "--mbox"],
        input=_mbox(messages),
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"},
        timeout=240,
        check=True,
    )
    labels = {_message_id(raw.decode("utf-8", "replace")): label for label, raw in messages.items()}
    scored = {}
    for chunk in re.split(r"(?m)^From ", result.stdout.decode("utf-8", "replace"))[1:]:
        report = chunk.split("Content analysis details:", 1)[1].split("\n\n", 2)[1]
        hits = [(float(points), rule) for points, rule in _RULE_LINE.findall(report)]
        scored[labels[_message_id(chunk)]] = hits
    assert scored.keys() == messages.keys(), result.stderr.decode()[-2000:]
    return scored


def _message_id(text: str) -> str:
    found = re.search(r"(?mi)^Message-ID:\s*(<[^>\s]+>)", text)
    assert found, text[:500]
    return found[1]


@pytest.fixture(scope="module")
def starter_messages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("spamassassin")
    workspace = root / "ws"
    init_workspace(workspace, name="Atelier Aquarelle", env={})
    settings = dataclasses.replace(
        load_settings(workspace, env={}),
        sender_name="Camille Martin",
        sender_email="camille@atelier-aquarelle.example",
        base_url="https://atelier-aquarelle.example",
        send_window="00:00-24:00",
    )
    messages = _launch_messages(settings, root / "preview")
    messages.update(_transactional_messages(settings, root / "outbox"))
    messages.update(_membership_messages(settings, root / "members"))
    return messages


def test_every_starter_email_scores_at_most_half_a_point(
    starter_messages: dict[str, bytes], tmp_path: Path
) -> None:
    assert shutil.which("spamassassin"), "install Debian's spamassassin package (see .ci/run)"
    assert len(starter_messages) == 30 + 12 + 3 * 7 + 2 * 7
    hits = _score_all({**starter_messages, "gtube": GTUBE}, tmp_path)
    assert any(r == "GTUBE" and p >= 100 for p, r in hits.pop("gtube"))  # SpamAssassin ran
    assert all(any(r == "HTML_MESSAGE" for _, r in rules) for rules in hits.values())
    failures = []
    for label, rules in hits.items():
        score = sum(p for p, _ in rules)
        if score > MAX_SCORE:
            rules_hit = ", ".join(f"{rule} {points}" for points, rule in rules)
            failures.append(f"{label}: {score:.1f} points: {rules_hit}")
    assert not failures, "SpamAssassin scores above 0.5:\n" + "\n".join(failures)
