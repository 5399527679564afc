"""Turn a ledger row into a ready-to-push message, and decide at send time whether to skip it."""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.clicks import LinkBook, click_resolver
from launchkit.config import Settings, parse_duration
from launchkit.errors import DeliveryError, LaunchkitError
from launchkit.launches import get_launch, list_launches
from launchkit.models import (
    Email,
    LaunchSequence,
    SequenceStatus,
    Subscriber,
    SubscriberStatus,
)
from launchkit.sequences.audience_glue import segment_clause
from launchkit.sequences.context import (
    SAMPLE,
    LaunchData,
    email_context,
    launch_context,
    load_launch_data,
    magnet_titles,
    person_context,
    sequence_language,
)
from launchkit.sequences.schedule import (
    SENDABLE,
    launch_sequences,
    load_sources,
    schedule_launch,
    sequence_emails,
    set_status,
)
from launchkit.tokens import unsubscribe_url


@dataclass
class EmailInfo:
    """What the sender needs to know about one email, read once per run."""

    id: int
    sequence_id: int
    sequence: str
    step: str
    source: Any
    skip_if: str | None
    deadline_at: datetime | None
    max_delay: timedelta
    launch: LaunchData

    @property
    def label(self) -> str:
        return f"{self.sequence}/{self.step}"


class Composer:
    """Renders and builds messages for the emails of the launches being sent."""

    def __init__(
        self,
        settings: Settings,
        emails: dict[int, EmailInfo],
        launch_ids: list[int],
    ):
        from launchkit import render

        self.settings = settings
        self.emails = emails
        self.launch_ids = launch_ids
        self.env = render.shared_environment(settings)
        self.magnets: dict[int, str] = {}
        self.launch_values: dict[tuple[int, str, str], dict[str, Any]] = {}
        self.domain = (settings.sender_email.rpartition("@")[2] or "launchkit.invalid").lower()
        self._signer: Any = False  # not loaded yet (None: no DKIM)
        self.links: LinkBook | None = None  # click tracking: set by prepare_composer only

    def context(self, info: EmailInfo, row: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Template variables and language for one subscriber."""
        language = sequence_language(info.sequence, row.get("language"), self.settings)
        magnet = self.magnets.get(row["id"], "")
        key = (id(info.launch), language, row.get("timezone") or "")
        shared = self.launch_values.get(key)
        if shared is None:
            shared = launch_context(self.settings, info.launch, row, language=language)
            self.launch_values[key] = shared
        if row.get("cart_close_at") is not None:  # evergreen: this person's own cart
            shared = person_context(self.settings, shared, row, language=language)
        return email_context(
            self.settings, info.launch, row, language=language, magnet_title=magnet, shared=shared
        ), language

    def render(self, info: EmailInfo, row: dict[str, Any], unsubscribe: str) -> Any:
        """The rendered email (subject, preheader, html, text) for one subscriber."""
        from launchkit import render

        context, language = self.context(info, row)
        links = None
        if self.links is not None:
            links = click_resolver(
                self.settings, self.links, info.id, row, str(context["checkout_url"])
            )
        try:
            return render.render_email(
                self.env,
                info.source,
                context,
                settings=self.settings,
                unsubscribe_url=unsubscribe,
                language=language,
                links=links,
            )
        except jinja2.TemplateError as e:
            raise DeliveryError(f'Email "{info.label}" does not render: {e}') from e

    def compose(self, row: dict[str, Any], now: datetime) -> tuple[Any, bytes, int]:
        """(OutgoingMessage, raw bytes, sequence id) for a claimed row."""
        from launchkit import mailer

        info = self.emails[row["email_id"]]
        unsubscribe = unsubscribe_url(self.settings, row["id"], info.id)
        rendered = self.render(info, row, unsubscribe)
        name = " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)
        message = mailer.OutgoingMessage(
            to_email=row["email"],
            to_name=name,
            from_email=self.settings.sender_email,
            from_name=self.settings.sender_name,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            message_id=mailer.make_message_id("email", str(info.id), row["id"], self.domain),
            unsubscribe_url=unsubscribe,
            unsubscribe_mailto=f"mailto:{self.settings.sender_email}?subject=unsubscribe",
            bulk=True,
            headers={"Feedback-ID": self.feedback_id(info)},
        )
        raw = mailer.sign_message(mailer.build_message(message, date=now), self.signer())
        return message, raw, info.sequence_id

    def feedback_id(self, info: EmailInfo) -> str:
        """``Feedback-ID`` of one email: its step, its launch, the workspace, launchkit."""
        from launchkit import mailer

        return mailer.feedback_id(info.step, info.launch.slug, self.settings.name)

    def signer(self) -> Any:
        """The DKIM signer of the settings (loaded once), or None."""
        from launchkit import mailer

        if self._signer is False:
            self._signer = mailer.dkim_signer(self.settings)
        return self._signer

    def skip_reasons(
        self, session: Session, rows: list[dict[str, Any]], now: datetime
    ) -> dict[int, str]:
        """Send id -> reason for every row that must not be sent now."""
        self.magnets.update(magnet_titles(session, [r["id"] for r in rows]))
        reasons = {}
        for row in rows:
            reason = self._row_reason(row, now)
            if reason:
                reasons[row["send_id"]] = reason
        for email_id, info in self.emails.items():
            if not info.skip_if:
                continue
            ids = [r["id"] for r in rows if r["email_id"] == email_id]
            if not ids:
                continue
            query = select(Subscriber.id).where(
                Subscriber.id.in_(ids), segment_clause(info.skip_if)
            )
            hit = set(session.scalars(query))
            for row in rows:
                if row["email_id"] == email_id and row["id"] in hit:
                    reasons.setdefault(row["send_id"], "skip_if")
        return reasons

    def skip_reason(self, session: Session, row: dict[str, Any], now: datetime) -> str | None:
        """The reason one row must not be sent now, or None."""
        return self.skip_reasons(session, [row], now).get(row["send_id"])

    def _row_reason(self, row: dict[str, Any], now: datetime) -> str | None:
        info = self.emails[row["email_id"]]
        if row["suppressed"]:
            return "suppressed"
        if row["status"] != SubscriberStatus.ACTIVE:
            return str(row["status"])
        deadline = row.get("deadline_at") or info.deadline_at
        if deadline is not None and now >= deadline:
            return "deadline"
        if now - row["due_at"] > info.max_delay:
            return "stale"
        return None

    def preflight(self) -> None:
        """Refuse to start when any email would go out without its legal footer."""
        postal = self.settings.postal_address.strip()
        for info in self.emails.values():
            sample = {**SAMPLE, "language": None}
            unsubscribe = unsubscribe_url(self.settings, 0, info.id)
            rendered = self.render(info, sample, unsubscribe)
            page = html_lib.unescape(rendered.html)
            if unsubscribe not in page or unsubscribe not in rendered.text:
                raise DeliveryError(
                    f'Email "{info.label}" has no unsubscribe link in its HTML and text parts; '
                    "keep the layout footer ({{ unsubscribe_url }})."
                )
            if postal not in page or postal not in rendered.text:
                raise DeliveryError(
                    f'Email "{info.label}" does not show the postal address; '
                    "keep the layout footer."
                )


def _check_settings(settings: Settings) -> None:
    if not settings.postal_address.strip():
        raise DeliveryError(
            "sender.postal_address is empty in launchkit.toml: every marketing email must show "
            "the sender's postal address, so nothing was sent."
        )
    if "@" not in settings.sender_email:
        raise DeliveryError("sender.email is not set in launchkit.toml, so nothing was sent.")


def prepare_composer(
    session: Session, settings: Settings, launch_slug: str | None, *, now: datetime
) -> Composer:
    """Schedule the launches to send (adds late joiners), load their emails, run preflight."""
    _check_settings(settings)
    launches = [get_launch(session, launch_slug)] if launch_slug else list_launches(session)
    emails: dict[int, EmailInfo] = {}
    launch_ids = []
    for launch in launches:
        sequences = [s for s in launch_sequences(session, launch) if s.status in SENDABLE]
        if not sequences:
            continue
        launch_ids.append(launch.id)
        schedule_launch(session, settings, launch, now=now)
        data = load_launch_data(session, launch, now)
        for seq in sequences:
            emails.update(_email_infos(session, settings, seq, data))
            if seq.status != SequenceStatus.RUNNING:
                set_status(session, seq, SequenceStatus.RUNNING)
    composer = Composer(settings, emails, launch_ids)
    if settings.track_clicks:  # the preflight render records each email's links
        composer.links = LinkBook.load(session, list(emails))
    composer.preflight()
    if composer.links is not None:
        composer.links.session = None
    return composer


def _email_infos(
    session: Session, settings: Settings, seq: LaunchSequence, data: LaunchData
) -> dict[int, EmailInfo]:
    sources = {s.step: s for s in load_sources(settings, seq.name)}
    infos = {}
    for email in sequence_emails(session, seq):
        source = sources.get(email.step)
        if source is None:
            continue  # the file was removed: its unsent rows stay queued, nothing is sent
        infos[email.id] = _info(settings, seq, email, source, data)
    return infos


def _info(
    settings: Settings, seq: LaunchSequence, email: Email, source: Any, data: LaunchData
) -> EmailInfo:
    where = f"{seq.name}/{email.step}"
    max_delay = settings.max_delay
    if source.meta.get("max_delay"):
        max_delay = parse_duration(str(source.meta["max_delay"]), what=f"{where}: max_delay")
    try:
        segment_clause(email.skip_if)
    except LaunchkitError as e:
        raise DeliveryError(f"{where}: skip_if: {e}") from e
    return EmailInfo(
        email.id,
        seq.id,
        seq.name,
        email.step,
        source,
        email.skip_if,
        email.deadline_at,
        max_delay,
        data,
    )
