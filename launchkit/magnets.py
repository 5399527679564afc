"""Lead magnets: the free resource behind an opt-in page, with double opt-in and GDPR records.

The flow: ``signup`` (pending subscriber + unconfirmed consent + confirmation token) ->
``confirm_signup`` (active, tagged ``magnet:SLUG``, consent confirmed) -> ``resolve_download``.
Nothing here sends mail or reads the clock: the web layer sends the emails after the
transaction commits and passes ``now``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from launchkit import audience, privacy, tokens
from launchkit.config import Settings
from launchkit.errors import AlreadyExists, InputError, InvalidTransition, NotFound
from launchkit.models import (
    Consent,
    Magnet,
    Subscriber,
    SubscriberStatus,
    Suppression,
    WebEvent,
)

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
MAX_FIRST_NAME = 100
MAX_EMAIL = 320
MAX_FIELD = 2000  # any other posted field

EVENT_VIEW = "magnet_view"
EVENT_SIGNUP = "signup"
EVENT_CONFIRM = "confirm"
EVENT_DOWNLOAD = "download"
EVENT_RESUBSCRIBE = "resubscribe"
EVENT_UNSUBSCRIBE = "unsubscribe"
EVENT_RESEND = "download_resend"

CONSENT_VERSION = "2026-11"
CONSENT_WORDING = {
    "fr": "J'accepte de recevoir {title} et les emails de {sender} (conseils, ressources et "
    "offres). Je peux me désinscrire à tout moment en un clic.",
    "en": "I agree to receive {title} and emails from {sender} (tips, resources and offers). "
    "I can unsubscribe at any time with one click.",
}


# --- magnets --------------------------------------------------------------------------------


def add_magnet(
    session: Session,
    settings: Settings,
    slug: str,
    *,
    title: str,
    now: datetime,
    file: Path | None = None,
    url: str | None = None,
    description: str = "",
    tags: Sequence[str] = (),
    sequence: str | None = None,
    language: str | None = None,
) -> Magnet:
    """Create a magnet; a file is copied into ``workspace/magnets/SLUG/``."""
    _check_magnet_input(slug, title, file, url, language)
    magnet = Magnet(
        slug=slug,
        title=title.strip(),
        description=description.strip(),
        url=url,
        tags={"tags": sorted({t.strip() for t in tags if t.strip()})},
        sequence=sequence,
        language=language,
        created_at=now,
    )
    if session.scalar(sa.select(Magnet.id).where(Magnet.slug == slug)) is not None:
        raise AlreadyExists(f'A magnet "{slug}" already exists.')
    try:
        with session.begin_nested():
            session.add(magnet)
    except IntegrityError as e:  # a concurrent add of the same slug
        raise AlreadyExists(f'A magnet "{slug}" already exists.') from e
    if file is not None:
        magnet.file_path = _copy_file(settings, slug, file)
    if sequence:
        _attach_sequence(session, magnet, sequence, now)
    return magnet


def _attach_sequence(session: Session, magnet: Magnet, name: str, now: datetime) -> None:
    # the nurture sequence is timed from each subscriber's confirmation (sequences domain);
    # without attach_magnet_sequence the name stays recorded on the magnet for later
    from launchkit import sequences

    attach = getattr(sequences, "attach_magnet_sequence", None)
    if attach is not None:
        attach(session, magnet, name, now=now)


def _check_magnet_input(
    slug: str, title: str, file: Path | None, url: str | None, language: str | None
) -> None:
    if not SLUG_RE.match(slug):
        raise InputError(f'Magnet slug "{slug}" must be lowercase letters, digits and dashes.')
    if not title.strip():
        raise InputError("--title must not be empty.")
    if (file is None) == (url is None):
        raise InputError("Give exactly one of --file or --url.")
    if file is not None and not file.is_file():
        raise InputError(f"--file {file}: no such file.")
    if url is not None and not re.match(r"^https?://\S+$", url):
        raise InputError(f'--url "{url}" must be an http:// or https:// address.')
    if language is not None and language not in CONSENT_WORDING:
        raise InputError(f'--language "{language}" is not supported; use fr or en.')


def _copy_file(settings: Settings, slug: str, source: Path) -> str:
    folder = settings.magnets_dir / slug
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    shutil.copyfile(source, target)
    return str(target.relative_to(settings.workspace))


def get_magnet(session: Session, slug: str) -> Magnet:
    """The magnet with this slug, or NotFound."""
    magnet = session.scalar(sa.select(Magnet).where(Magnet.slug == slug))
    if magnet is None:
        raise NotFound(f'No magnet "{slug}".')
    return magnet


def list_magnets(session: Session) -> list[Magnet]:
    """All magnets, oldest first."""
    return list(session.scalars(sa.select(Magnet).order_by(Magnet.id)))


def magnet_tags(magnet: Magnet) -> list[str]:
    """The tags given to a confirmed subscriber: ``magnet:SLUG`` plus the magnet's own tags."""
    extra = (magnet.tags or {}).get("tags", [])
    return [f"magnet:{magnet.slug}", *extra]


def magnet_file(settings: Settings, magnet: Magnet) -> Path | None:
    """Absolute path of the magnet's file, refusing anything outside the magnets folder."""
    if not magnet.file_path:
        return None
    path = (settings.workspace / magnet.file_path).resolve()
    if not path.is_relative_to(settings.magnets_dir.resolve()) or not path.is_file():
        return None
    return path


def magnet_as_dict(magnet: Magnet) -> dict[str, Any]:
    """Plain values for JSON output."""
    return {
        "slug": magnet.slug,
        "title": magnet.title,
        "description": magnet.description,
        "file": magnet.file_path,
        "url": magnet.url,
        "tags": magnet_tags(magnet),
        "sequence": magnet.sequence,
        "language": magnet.language,
        "created_at": magnet.created_at.isoformat(),
    }


def page_language(settings: Settings, magnet: Magnet | None) -> str:
    """Language of a magnet's pages and emails."""
    return (magnet.language if magnet else None) or settings.language


# --- events ---------------------------------------------------------------------------------


def record_event(
    session: Session,
    kind: str,
    *,
    now: datetime,
    magnet_id: int | None = None,
    subscriber_id: int | None = None,
    ip: str | None = None,
) -> None:
    """Store one web event (page view, signup, confirm, download...)."""
    session.add(
        WebEvent(
            kind=kind, magnet_id=magnet_id, subscriber_id=subscriber_id, ip=ip, occurred_at=now
        )
    )


# --- consent wording ------------------------------------------------------------------------


@dataclass(frozen=True)
class Wording:
    """The exact consent text shown next to the checkbox, with its hash and version."""

    text: str
    version: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def consent_wording(settings: Settings, magnet: Magnet) -> Wording:
    """The consent wording for this magnet's page.

    A workspace file ``templates/consent-LANG.txt`` replaces the default text; its version is
    then ``custom-`` plus the start of its hash, so every change is a new version.
    """
    lang = page_language(settings, magnet)
    sender = settings.sender_name or settings.name
    custom = settings.templates_dir / f"consent-{lang}.txt"
    if custom.is_file():
        template = custom.read_text(encoding="utf-8").strip()
        text = template.replace("{title}", magnet.title).replace("{sender}", sender)
        wording = Wording(text, "")
        return Wording(text, f"custom-{wording.sha256[:10]}")
    text = CONSENT_WORDING[lang].format(title=magnet.title, sender=sender)
    return Wording(text, f"{lang}-{CONSENT_VERSION}")


# --- signup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignupInput:
    """A validated opt-in form."""

    email: str
    first_name: str


@dataclass(frozen=True)
class Visitor:
    """Who posted: IP, user agent and the page URL, for the consent record."""

    ip: str | None
    user_agent: str | None
    page: str | None


@dataclass(frozen=True)
class SignupResult:
    """A recorded signup and the confirmation link to email."""

    subscriber: Subscriber
    consent: Consent
    confirm_url: str


def validate_signup(form: Mapping[str, str]) -> tuple[SignupInput | None, dict[str, str]]:
    """Check the posted fields; errors map a field to a code (``required``, ``invalid``...)."""
    errors: dict[str, str] = {}
    raw_email = (form.get("email") or "").strip()
    first_name = " ".join((form.get("first_name") or "").split())
    email = ""
    if not raw_email:
        errors["email"] = "required"
    elif len(raw_email) > MAX_EMAIL:
        errors["email"] = "too_long"
    else:
        try:
            email = audience.normalize_email(raw_email)
        except InputError:
            errors["email"] = "invalid"
    if len(first_name) > MAX_FIRST_NAME:
        errors["first_name"] = "too_long"
    elif any(ord(c) < 32 for c in first_name):
        errors["first_name"] = "invalid"
    if form.get("consent") not in ("yes", "on", "1", "true"):
        errors["consent"] = "required"
    if errors:
        return None, errors
    return SignupInput(email=email, first_name=first_name), {}


def is_bot(form: Mapping[str, str]) -> bool:
    """True when the hidden honeypot field was filled in."""
    return bool((form.get("website") or "").strip())


def signup(
    session: Session,
    settings: Settings,
    magnet: Magnet,
    data: SignupInput,
    visitor: Visitor,
    *,
    now: datetime,
) -> SignupResult:
    """Create or update a pending subscriber, record the unconfirmed consent and signup event.

    An active subscriber stays active; an unsubscribed or suppressed one keeps its status until
    it confirms this fresh signup. Returns the confirmation link to email.
    """
    subscriber = _upsert_pending(session, data, page_language(settings, magnet), now)
    wording = consent_wording(settings, magnet)
    consent = Consent(
        subscriber_id=subscriber.id,
        method="optin",
        source=f"magnet:{magnet.slug}",
        given_at=now,
        ip=_cap(visitor.ip, 64),
        user_agent=_cap(visitor.user_agent, 512),
        page=_cap(visitor.page, 1024),
        magnet_id=magnet.id,
        wording=wording.text,
        wording_sha256=wording.sha256,
        wording_version=wording.version,
    )
    session.add(consent)
    session.flush()
    record_event(
        session, EVENT_SIGNUP, now=now, magnet_id=magnet.id, subscriber_id=subscriber.id,
        ip=_cap(visitor.ip, 64),
    )  # fmt: skip
    payload = {"s": subscriber.id, "m": magnet.id, "c": consent.id}
    url = tokens.link(settings, "/confirm", tokens.Purpose.CONFIRM, payload)
    return SignupResult(subscriber, consent, url)


def _upsert_pending(
    session: Session, data: SignupInput, language: str, now: datetime
) -> Subscriber:
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == data.email))
    if subscriber is None:
        subscriber = Subscriber(
            email=data.email,
            first_name=data.first_name,
            status=SubscriberStatus.PENDING,
            language=language,
            signed_up_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(subscriber)
        session.flush()
        audience.record_status(session, subscriber.id, subscriber.status, at=now, source="optin")
        return subscriber
    if subscriber.status == SubscriberStatus.PENDING and data.first_name:
        # only an unconfirmed record may be renamed by an anonymous form
        subscriber.first_name = data.first_name
    if subscriber.signed_up_at is None:
        subscriber.signed_up_at = now
    subscriber.updated_at = now
    return subscriber


def _cap(value: str | None, size: int) -> str | None:
    return value[:size] if value else value


# --- confirmation ---------------------------------------------------------------------------


@dataclass
class ConfirmResult:
    """A confirmation: ``first_time`` is False on a replayed link (no second delivery email)."""

    subscriber: Subscriber
    magnet: Magnet
    first_time: bool
    download_url: str


def confirm_signup(
    session: Session, settings: Settings, payload: Mapping[str, Any], *, ip: str | None,
    now: datetime,
) -> ConfirmResult:  # fmt: skip
    """Activate the subscriber of a verified CONFIRM token; idempotent on replay.

    The first confirmation of a consent record sets it confirmed (time and IP), activates the
    subscriber, lifts a suppression (the person just asked again, explicitly), tags
    ``magnet:SLUG`` plus the magnet tags, and sets the source if there was none.
    """
    subscriber, magnet = _token_objects(session, payload)
    consent = _pending_consent(session, payload, subscriber.id, magnet.id)
    download = download_url(settings, subscriber.id, magnet.id)
    if consent is None or consent.confirmed_at is not None:
        return ConfirmResult(subscriber, magnet, False, download)
    consent.confirmed_at = now
    consent.confirm_ip = _cap(ip, 64)
    _activate(session, subscriber, ip=ip, now=now, magnet=magnet)
    audience.add_tags(session, [subscriber.id], magnet_tags(magnet), at=now)
    if not subscriber.source:
        subscriber.source = f"magnet:{magnet.slug}"
    record_event(
        session, EVENT_CONFIRM, now=now, magnet_id=magnet.id, subscriber_id=subscriber.id,
        ip=_cap(ip, 64),
    )  # fmt: skip
    session.flush()
    return ConfirmResult(subscriber, magnet, True, download)


def _token_objects(session: Session, payload: Mapping[str, Any]) -> tuple[Subscriber, Magnet]:
    subscriber = session.get(Subscriber, _int(payload.get("s")))
    magnet = session.get(Magnet, _int(payload.get("m")))
    if subscriber is None or magnet is None:
        raise NotFound("This link points to a subscriber or magnet that no longer exists.")
    return subscriber, magnet


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _pending_consent(
    session: Session, payload: Mapping[str, Any], subscriber_id: int, magnet_id: int
) -> Consent | None:
    query = sa.select(Consent).where(
        Consent.subscriber_id == subscriber_id,
        Consent.magnet_id == magnet_id,
        Consent.method == "optin",
    )
    if "c" in payload:
        return session.scalar(query.where(Consent.id == _int(payload["c"])))
    # a token without a consent id: the latest opt-in for this magnet
    return session.scalar(query.order_by(Consent.id.desc()).limit(1))


def _activate(
    session: Session, subscriber: Subscriber, *, ip: str | None, now: datetime, magnet: Magnet
) -> None:
    lifted = session.execute(
        sa.delete(Suppression).where(
            Suppression.email.in_([subscriber.email, privacy.erased_key(subscriber.email)])
        )
    ).rowcount
    was = subscriber.status
    if lifted or was != SubscriberStatus.ACTIVE:
        if was in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED) or lifted:
            record_event(
                session, EVENT_RESUBSCRIBE, now=now, magnet_id=magnet.id,
                subscriber_id=subscriber.id, ip=_cap(ip, 64),
            )  # fmt: skip
        source = "confirm" if was == SubscriberStatus.PENDING else "resubscribe"
        audience.set_status(session, subscriber, SubscriberStatus.ACTIVE, at=now, source=source)
    if subscriber.confirmed_at is None or was != SubscriberStatus.ACTIVE:
        subscriber.confirmed_at = now
    subscriber.updated_at = now


def download_url(settings: Settings, subscriber_id: int, magnet_id: int) -> str:
    """A signed download link (expires after ``download_link_max_age``)."""
    payload = {"s": subscriber_id, "m": magnet_id}
    return tokens.link(settings, "/d", tokens.Purpose.DOWNLOAD, payload)


# --- download -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """Where a verified download link leads: a file to serve or a URL to redirect to."""

    magnet: Magnet
    subscriber: Subscriber
    path: Path | None
    url: str | None


def resolve_download(
    session: Session, settings: Settings, payload: Mapping[str, Any], *, ip: str | None,
    now: datetime, count: bool = True,
) -> Download:  # fmt: skip
    """Say what a verified DOWNLOAD token serves, and count the download (unless ``count`` is
    False, e.g. for a HEAD request from a link scanner)."""
    subscriber, magnet = _token_objects(session, payload)
    path = magnet_file(settings, magnet)
    if path is None and not magnet.url:
        raise NotFound(f'The file of magnet "{magnet.slug}" is missing from the workspace.')
    if count:
        record_event(
            session, EVENT_DOWNLOAD, now=now, magnet_id=magnet.id, subscriber_id=subscriber.id,
            ip=_cap(ip, 64),
        )  # fmt: skip
    return Download(magnet, subscriber, path, None if path else magnet.url)


def record_resend(
    session: Session, subscriber_id: int, magnet_id: int, *, limit: int, ip: str | None,
    now: datetime, window: timedelta = timedelta(days=1),
) -> timedelta | None:  # fmt: skip
    """Count one fresh-download-link email for a subscriber, at most ``limit`` per ``window``
    (any magnet). None when allowed (recorded); else how long until the next one is allowed.

    The subscriber row is locked first (PostgreSQL), so concurrent requests count in turn.
    """
    session.execute(
        sa.select(Subscriber.id).where(Subscriber.id == subscriber_id).with_for_update()
    )
    recent = session.scalars(
        sa.select(WebEvent.occurred_at)
        .where(
            WebEvent.kind == EVENT_RESEND,
            WebEvent.subscriber_id == subscriber_id,
            WebEvent.occurred_at > now - window,
        )
        .order_by(WebEvent.occurred_at)
    ).all()
    if len(recent) >= limit:
        oldest = recent[-limit]
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
        return oldest + window - now
    record_event(
        session, EVENT_RESEND, now=now, magnet_id=magnet_id, subscriber_id=subscriber_id,
        ip=_cap(ip, 64),
    )  # fmt: skip
    return None


# --- unsubscribe ----------------------------------------------------------------------------


def unsubscribe_subscriber(
    session: Session, payload: Mapping[str, Any], *, method: str, reason: str | None,
    ip: str | None, now: datetime,
) -> tuple[Subscriber, bool]:  # fmt: skip
    """Unsubscribe the subscriber of a verified UNSUBSCRIBE token; False if already done."""
    subscriber = session.get(Subscriber, _int(payload.get("s")))
    if subscriber is None:
        raise NotFound("This link points to a subscriber that no longer exists.")
    reason = _cap((reason or "").strip(), 500) or None
    changed = audience.unsubscribe(session, subscriber.id, now=now, method=method, reason=reason)
    if changed:
        record_event(
            session, EVENT_UNSUBSCRIBE, now=now, subscriber_id=subscriber.id, ip=_cap(ip, 64)
        )
    return subscriber, changed


# --- stats ----------------------------------------------------------------------------------

STAT_KINDS = {
    EVENT_VIEW: "page_views",
    EVENT_SIGNUP: "signups",
    EVENT_CONFIRM: "confirmations",
    EVENT_DOWNLOAD: "downloads",
}


def magnet_stats(session: Session, tz: ZoneInfo, slug: str | None = None) -> list[dict[str, Any]]:
    """Per magnet: page views, signups, confirmations, confirm rate, downloads, and per day."""
    magnets = [get_magnet(session, slug)] if slug else list_magnets(session)
    rows = session.execute(
        sa.select(WebEvent.magnet_id, WebEvent.kind, WebEvent.occurred_at).where(
            WebEvent.magnet_id.in_([m.id for m in magnets]),
            WebEvent.kind.in_(list(STAT_KINDS)),
        )
    )
    totals: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STAT_KINDS.values(), 0))
    days: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    for magnet_id, kind, occurred_at in rows:
        name = STAT_KINDS[kind]
        totals[magnet_id][name] += 1
        day = occurred_at.astimezone(tz).date().isoformat()
        per_day = days[magnet_id].setdefault(day, dict.fromkeys(STAT_KINDS.values(), 0))
        per_day[name] += 1
    return [_stats_row(m, totals[m.id], days[m.id]) for m in magnets]


def _stats_row(
    magnet: Magnet, totals: dict[str, int], days: dict[str, dict[str, int]]
) -> dict[str, Any]:
    signups = totals["signups"]
    rate = round(totals["confirmations"] / signups, 4) if signups else None
    return {
        "slug": magnet.slug,
        "title": magnet.title,
        **totals,
        "confirm_rate": rate,
        "days": [{"day": day, **counts} for day, counts in sorted(days.items())],
    }


# --- edits ----------------------------------------------------------------------------------


def update_magnet(
    session: Session,
    settings: Settings,
    slug: str,
    *,
    title: str | None = None,
    description: str | None = None,
    file: Path | None = None,
    url: str | None = None,
    tags: Sequence[str] | None = None,
    language: str | None = None,
) -> Magnet:
    """Change a magnet's page, file or link, tags or language; the consent records of past
    signups keep the wording they were given."""
    magnet = get_magnet(session, slug)
    _check_fields(slug, title, language)
    if file is not None and url is not None:
        raise InputError("Give at most one of --file or --url.")
    if file is not None and not file.is_file():
        raise InputError(f"--file {file}: no such file.")
    if url is not None and not re.match(r"^https?://\S+$", url):
        raise InputError(f'--url "{url}" must be an http:// or https:// address.')
    if title is not None:
        magnet.title = title.strip()
    if description is not None:
        magnet.description = description.strip()
    if tags is not None:
        magnet.tags = {"tags": sorted({t.strip() for t in tags if t.strip()})}
    if language is not None:
        magnet.language = language
    if file is not None:
        magnet.file_path, magnet.url = _copy_file(settings, slug, file), None
    if url is not None:
        magnet.url, magnet.file_path = url, None
    session.flush()
    return magnet


def _check_fields(slug: str, title: str | None, language: str | None) -> None:
    if title is not None and not title.strip():
        raise InputError("--title must not be empty.")
    if language is not None and language not in CONSENT_WORDING:
        raise InputError(f'--language "{language}" is not supported; use fr or en.')


def _signups(session: Session, magnet: Magnet) -> int:
    query = sa.select(sa.func.count(Consent.id)).where(Consent.magnet_id == magnet.id)
    return int(session.scalar(query) or 0)


def remove_magnet(session: Session, settings: Settings, slug: str) -> None:
    """Delete a magnet nobody signed up to (its page views go with it); refused once it has
    signups: their consent records must name it, so archive it instead."""
    magnet = get_magnet(session, slug)
    signups = _signups(session, magnet)
    if signups:
        raise InvalidTransition(
            f'Magnet "{slug}" has {signups} signup(s): their consent records name it; archive '
            f"it instead with `launchkit magnet archive {slug}`."
        )
    from launchkit.models import LaunchSequence

    session.execute(sa.delete(WebEvent).where(WebEvent.magnet_id == magnet.id))
    session.execute(sa.delete(LaunchSequence).where(LaunchSequence.magnet_id == magnet.id))
    session.delete(magnet)
    session.flush()
    folder = settings.magnets_dir / slug
    if folder.is_dir() and folder.resolve().is_relative_to(settings.magnets_dir.resolve()):
        shutil.rmtree(folder)


def archive_magnet(session: Session, slug: str, *, now: datetime) -> bool:
    """Close a magnet's opt-in page to new signups; confirmations and downloads of past
    signups keep working. False if it already was archived."""
    magnet = get_magnet(session, slug)
    if magnet.archived_at is not None:
        return False
    magnet.archived_at = now
    session.flush()
    return True
