"""Preview a launch's emails as files (with lint), and send the whole sequence as a test.

Neither touches the delivery ledger: previews and test sends are never recorded as sends.
"""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.clock import format_local
from launchkit.config import Settings
from launchkit.errors import DeliveryError, InputError, LaunchkitError, NotFound
from launchkit.launches import get_launch, milestones
from launchkit.models import Email, Launch, Subscriber
from launchkit.sequences.compose import Composer, EmailInfo
from launchkit.sequences.context import SAMPLE, load_launch_data
from launchkit.sequences.schedule import launch_sequences, load_sources
from launchkit.sequences.timing import Window, due_time, parse_send_at
from launchkit.tokens import unsubscribe_url


@dataclass
class PreviewItem:
    """One previewed email: where its files are and what lint found."""

    number: int
    label: str
    subject: str
    send_time: datetime | None
    problems: list[str] = field(default_factory=list)
    html_path: Path | None = None
    eml_path: Path | None = None


def _sample_row(session: Session, as_email: str | None) -> dict[str, Any]:
    if not as_email:
        return dict(SAMPLE)
    from launchkit.audience import normalize_email

    sub = session.scalar(select(Subscriber).where(Subscriber.email == normalize_email(as_email)))
    if sub is None:
        raise NotFound(f'Subscriber "{as_email}" does not exist; see `launchkit audience list`.')
    return {
        "id": sub.id,
        "email": sub.email,
        "first_name": sub.first_name,
        "last_name": sub.last_name,
        "timezone": sub.timezone,
        "language": sub.language,
    }


def sample_milestones(settings: Settings, launch: Launch) -> dict[str, datetime | None]:
    """What previews time emails from: the launch's milestones, or for an evergreen launch
    those of a sample person entering when its entry period starts."""
    from launchkit import evergreen

    if not evergreen.is_evergreen(launch):
        return milestones(launch)
    return dict(evergreen.person_milestones(launch, launch.cart_open, settings.tz))


def _sample_person(
    session: Session, settings: Settings, launch_slug: str, as_email: str | None
) -> dict[str, Any]:
    """The sample row; in an evergreen launch it carries that sample person's own cart."""
    row = _sample_row(session, as_email)
    launch = get_launch(session, launch_slug)
    if launch.mode == "evergreen":
        marks = sample_milestones(settings, launch)
        row.update(cart_open_at=marks["cart_open"], cart_close_at=marks["cart_close"])
    return row


def launch_emails(
    session: Session, settings: Settings, launch_slug: str
) -> tuple[Composer, list[tuple[EmailInfo, datetime | None]]]:
    """Every email of a launch's sequences in order, read from the files, with its send time."""
    launch = get_launch(session, launch_slug)
    sequences = launch_sequences(session, launch)
    if not sequences:
        raise NotFound(
            f'Launch "{launch.slug}" has no sequence; attach one with '
            f"`launchkit sequence attach {launch.slug} SEQUENCE`."
        )
    data = load_launch_data(session, launch)
    marks, window = sample_milestones(settings, launch), Window.parse(settings.send_window)
    items: list[tuple[EmailInfo, datetime | None]] = []
    for seq in sequences:
        ids = dict(
            session.execute(select(Email.step, Email.id).where(Email.sequence_id == seq.id)).all()
        )
        for source in load_sources(settings, seq.name):
            spec = parse_send_at(str(source.meta["send_at"]), where=source.display_name)
            when = due_time(
                spec,
                marks,
                workspace_tz=settings.tz,
                subscriber_tz=None,
                local=bool(source.meta.get("local")),
                window=window,
            )
            info = EmailInfo(
                ids.get(source.step, 0),
                seq.id,
                seq.name,
                source.step,
                source,
                None,
                None,
                settings.max_delay,
                data,
            )
            items.append((info, when))
    composer = Composer(settings, {i.id: i for i, _ in items}, [launch.id])
    return composer, items


def preview_launch(
    session: Session,
    settings: Settings,
    launch_slug: str,
    out_dir: Path,
    *,
    now: datetime,
    as_email: str | None = None,
) -> list[PreviewItem]:
    """Write ``NN-step.html`` and ``.eml`` per email plus ``index.html``; lint each email."""
    from launchkit import render

    composer, items = launch_emails(session, settings, launch_slug)
    row = _sample_person(session, settings, launch_slug, as_email)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for number, (info, when) in enumerate(items, start=1):
        item = PreviewItem(number, info.label, info.source.subject, when)
        stem = f"{number:02d}-{info.step}"
        try:
            rendered = composer.render(info, row, unsubscribe_url(settings, row["id"], info.id))
            message, raw, _ = composer.compose({**row, "email_id": info.id}, now)
        except LaunchkitError as e:
            item.problems.append(str(e))
        else:
            item.subject = rendered.subject
            item.problems.extend(render.lint_email(rendered, info.source))
            item.problems.extend(link_scheme_problems(rendered.html, rendered.text))
            item.html_path = out_dir / f"{stem}.html"
            item.html_path.write_text(rendered.html, encoding="utf-8")
            item.eml_path = out_dir / f"{stem}.eml"
            item.eml_path.write_bytes(raw)
        results.append(item)
    (out_dir / "index.html").write_text(index_page(settings, launch_slug, results), "utf-8")
    return results


_HREF = re.compile(r"""(?i)\bhref\s*=\s*["']?([^"'\s>]+)""")
_TEXT_URL = re.compile(r"(?i)\bhttps?://[^\s<>\"')\]]+")


_PLURAL = {
    "is not https": "are not https",
    "points at this machine (loopback)": "point at this machine (loopback)",
}


def link_scheme_problems(html_body: str, text: str) -> list[str]:
    """Links a recipient could not open safely (http, or this machine), one line per kind."""
    from launchkit import mailer

    links = [html.unescape(m) for m in _HREF.findall(html_body)] + _TEXT_URL.findall(text)
    found: dict[str, list[str]] = {}
    for url in dict.fromkeys(links):
        if url.lower().startswith(("http://", "https://")):
            problem = mailer.public_url_problem(url)
            if problem:
                found.setdefault(problem, []).append(url)
    return [
        f"{len(urls)} link(s) {_PLURAL.get(problem, problem)},"
        f' e.g. "{urls[0][:80]}": use public https:// URLs (web.base_url)'
        for problem, urls in found.items()
    ]


def index_page(settings: Settings, launch_slug: str, items: list[PreviewItem]) -> str:
    """A plain HTML table of the previewed emails."""
    rows = []
    for item in items:
        link = (
            f'<a href="{html.escape(item.html_path.name)}">{html.escape(item.subject)}</a>'
            if item.html_path
            else html.escape(item.subject)
        )
        problems = "<br>".join(html.escape(p) for p in item.problems) or "OK"
        when = html.escape(format_local(item.send_time, settings.tz))
        rows.append(
            f"<tr><td>{item.number}</td><td>{html.escape(item.label)}</td><td>{link}</td>"
            f"<td>{when}</td><td>{problems}</td></tr>"
        )
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>Preview: {html.escape(launch_slug)}</title>"
        f"<h1>Preview: {html.escape(launch_slug)}</h1>"
        "<table border=1 cellpadding=4><tr><th>#</th><th>email</th><th>subject</th>"
        f"<th>send time</th><th>lint</th></tr>{''.join(rows)}</table>\n"
    )


def lint_failures(items: list[PreviewItem]) -> str | None:
    """A one-line summary naming every email with lint problems, or None."""
    bad = [f"{i.label}: {'; '.join(i.problems)}" for i in items if i.problems]
    if not bad:
        return None
    return f"{len(bad)} email(s) have problems: " + " | ".join(bad)


def send_test(
    session: Session,
    settings: Settings,
    launch_slug: str,
    recipients: list[str],
    *,
    now: datetime,
    as_email: str | None = None,
    messenger_factory: Callable[[Settings], Any] | None = None,
) -> list[str]:
    """Send every email of the launch to ``recipients``, ``[TEST n/N]`` subjects, in order."""
    from launchkit import mailer

    if not recipients:
        raise InputError("Give at least one --to address.")
    composer, items = launch_emails(session, settings, launch_slug)
    row = _sample_person(session, settings, launch_slug, as_email)
    messenger = (messenger_factory or mailer.messenger_from_settings)(settings)
    subjects = []
    nonce = uuid.uuid4().hex[:12]
    try:
        for number, (info, _) in enumerate(items, start=1):
            message, _, _ = composer.compose({**row, "email_id": info.id}, now)
            message = _test_links(settings, message)
            subject = f"[TEST {number}/{len(items)}] {message.subject}"
            for to in recipients:
                _push_test(mailer, messenger, message, to, subject, f"{nonce}-{number}", now)
            subjects.append(subject)
        messenger.flush()
    finally:
        messenger.close()
    return subjects


TEST_LINKS = (("/u/", "unsubscribe"), ("/d/", "download"), ("/buy/", "checkout"))


def test_link(settings: Settings, kind: str) -> str:
    """A signed ``/t/TOKEN`` link: the web app answers with a page saying it is a test."""
    from launchkit.tokens import Purpose, link

    return link(settings, "/t", Purpose.TEST, {"k": kind})


def _test_links(settings: Settings, message: Any) -> Any:
    """The message with its unsubscribe, download and checkout links made test links (the
    sample subscriber does not exist: the real links would lead to a "not found" page)."""
    import re

    base = re.escape(settings.base_url.rstrip("/"))
    links = {kind: test_link(settings, kind) for _, kind in TEST_LINKS}

    def swap(text: str) -> str:
        for path, kind in TEST_LINKS:
            url = links[kind]
            text = re.sub(base + re.escape(path) + r"[^\s\"'<>)\]]+", lambda _m, u=url: u, text)
        return text

    return dataclasses.replace(
        message,
        html=swap(message.html),
        text=swap(message.text),
        unsubscribe_url=links["unsubscribe"],
    )


def test_destination(settings: Settings) -> str:
    """Where test messages go: ``SMTP host:port`` or the outbox folder."""
    if settings.email_backend == "smtp" and settings.smtp_url:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.smtp_url)  # never the password
        return f"SMTP {parts.hostname}:{parts.port or 25}"
    return f"the outbox {settings.outbox_dir}"


def _push_test(
    mailer: Any, messenger: Any, message: Any, to: str, subject: str, key: str, now: datetime
) -> None:
    domain = message.from_email.rpartition("@")[2] or "launchkit.invalid"
    test = dataclasses.replace(
        message,
        to_email=to,
        to_name="",
        subject=subject,
        message_id=mailer.make_message_id("test", f"{key}:{to}", 0, domain),
    )
    try:
        messenger.push(test, mailer.build_message(test, date=now))
    except (mailer.TemporaryFailure, mailer.PermanentFailure) as e:
        raise DeliveryError(f"Test email to {to} was refused: {e}") from e
