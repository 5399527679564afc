"""First-party click tracking: the links of launch emails go through ``/c/TOKEN``.

The policy, enforced here:

- The sender's emails only (``email.track_clicks``, default true): previews and ``sequence
  test`` emails keep direct links, so nothing they do is recorded. There is no open pixel.
- Only ``http(s)`` links are rewritten: the ``href`` of ``<a>`` tags in the HTML part and the
  addresses in the plain-text part. The unsubscribe link (and ``List-Unsubscribe``, built from
  it), ``mailto:`` links and links already on ``/c/`` stay as they are.
- Each destination is recorded once per email (``links``: email id + URL), never per recipient.
  The recipient's own checkout link ``/buy/OFFER?t=TOKEN`` is recorded with ``{checkout}`` in
  place of the token (``personal = "checkout"``) and the click re-derives the clicker's token.
  A link that still carries the recipient's address, or is longer than ``MAX_URL``, stays
  direct: nothing personal is written to ``links``.
- The token is signed (``Purpose.CLICK``) and names only (link id, subscriber id); ``/c/TOKEN``
  redirects to the recorded URL and nowhere else. A forged or damaged token gets a 404 page.
- A click is one ``link_clicks`` row plus one ``web_events`` row of kind ``click`` (the same
  click in the site's event log; the analysis counts ``link_clicks`` only). A HEAD request, what
  most link checkers send first, records nothing; a scanner that GETs the link is counted like
  a person (the funnel's "clicked" counts people, so it counts once per recipient).
"""

from __future__ import annotations

import html as html_lib
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from launchkit.config import Settings
from launchkit.errors import NotFound
from launchkit.models import (
    Email,
    EvergreenEntry,
    LaunchSequence,
    Link,
    LinkClick,
    Subscriber,
    WebEvent,
)
from launchkit.privacy import is_erased
from launchkit.tokens import (
    Purpose,
    TokenExpired,
    TokenInvalid,
    make_token,
    read_token,
)

CHECKOUT = "checkout"  # Link.personal: the recipient's checkout token is re-derived
MARKER = "{checkout}"
MAX_URL = 2000

# an <a> start tag as the CSS inliner serialises it (html5ever): lower-case name, attributes
# separated by one space, every value double-quoted with `"` escaped, so the first ` href="`
# after whole attributes is the tag's own href and its value ends at the next `"`. Text is
# escaped (`<` is `&lt;`) except in comments, skipped here, and <style>/<script>, which an
# email's CSS and (absent) scripts never fill with anchor tags.
# The `<` that starts both alternatives is written once, before them: the same matches as
# `<!--.*?-->|(<a(?: ...)*? href=")([^"]*)"`, but a pattern that starts with a literal lets `re`
# jump from one `<` to the next instead of trying both alternatives at every character (about
# ten times faster on an 8 KB email). Group 1 is the tag up to its href's value, less the `<`.
_A_HREF = re.compile(r'<(?:!--.*?-->|(a(?: [^\s"\'>/=]+="[^"]*")*? href=")([^"]*)")', re.S)
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'"

Resolve = Callable[[str], str | None]


def rewrite_links(html: str, text: str, resolve: Resolve) -> tuple[str, str]:
    """``html`` and ``text`` with every http(s) link ``resolve`` gives a replacement for."""
    done: dict[str, str | None] = {}

    def swap(url: str) -> str | None:
        if url not in done:
            web = url[:8].lower().startswith(("http://", "https://"))
            done[url] = resolve(url) if web else None
        return done[url]

    def in_html(match: re.Match[str]) -> str:
        if match[1] is None:  # a comment
            return match[0]
        new = swap(html_lib.unescape(match[2]))
        return match[0] if new is None else f'<{match[1]}{html_lib.escape(new)}"'

    def in_text(match: re.Match[str]) -> str:
        found = match[0]  # may run into trailing punctuation: prefer a known URL, then strip
        known = [u for u in done if found.startswith(u) and not found[len(u) :].strip(_TRAILING)]
        url = max(known, key=len) if known else found.rstrip(_TRAILING)
        new = swap(url)
        return found if new is None else new + found[len(url) :]

    html = _A_HREF.sub(in_html, html)
    return html, _TEXT_URL.sub(in_text, text)


def template_url(url: str, *, checkout_url: str, email: str) -> tuple[str, str | None] | None:
    """(URL to record, personal part) for a link of one recipient's email; None: keep it
    direct (it carries the recipient's address, or is too long to record)."""
    personal = None
    token = checkout_url.partition("?t=")[2]
    if token and token in url:
        url, personal = url.replace(token, MARKER), CHECKOUT
    lowered = url.lower()
    address = email.lower()
    if address and (address in lowered or quote(address, safe="").lower() in lowered):
        return None
    if len(url) > MAX_URL:
        return None
    return url, personal


@dataclass
class LinkBook:
    """The recorded links of the emails being sent: (email id, URL) -> link id.

    While a send run prepares, new links are added in its transaction (``session``); while it
    sends, a link first met then (a conditional block) is added in its own short transaction
    (``sessions``); with neither (dry run), such a link stays direct.
    """

    known: dict[tuple[int, str], int]
    session: Session | None = None
    sessions: sessionmaker[Session] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def load(cls, session: Session, email_ids: list[int]) -> LinkBook:
        """The links already recorded for these emails."""
        rows = session.execute(
            select(Link.email_id, Link.url, Link.id).where(Link.email_id.in_(email_ids))
        ).all()
        return cls({(int(e), u): int(i) for e, u, i in rows}, session=session)

    def link_id(self, email_id: int, url: str, personal: str | None) -> int | None:
        """The id of the link, recorded now if new (None: it cannot be recorded now)."""
        found = self.known.get((email_id, url))
        if found is not None:
            return found
        with self._lock:
            found = self.known.get((email_id, url))
            if found is None:
                found = self._record(email_id, url, personal)
            if found is not None:
                self.known[(email_id, url)] = found
            return found

    def _record(self, email_id: int, url: str, personal: str | None) -> int | None:
        if self.session is not None:
            return _get_or_add(self.session, email_id, url, personal)
        if self.sessions is None:
            return None
        try:
            with self.sessions.begin() as session:
                return _get_or_add(session, email_id, url, personal)
        except IntegrityError:  # added by another sender between our look and our insert
            with self.sessions.begin() as session:
                return _find(session, email_id, url)


def _find(session: Session, email_id: int, url: str) -> int | None:
    return session.scalar(select(Link.id).where(Link.email_id == email_id, Link.url == url))


def _get_or_add(session: Session, email_id: int, url: str, personal: str | None) -> int | None:
    found = _find(session, email_id, url)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            link = Link(uuid=str(uuid.uuid4()), url=url, email_id=email_id, personal=personal)
            session.add(link)
        return link.id
    except IntegrityError:
        return _find(session, email_id, url)


def click_resolver(
    settings: Settings, book: LinkBook, email_id: int, row: dict[str, Any], checkout_url: str
) -> Resolve:
    """For one recipient's email: tracked URL ``{base_url}/c/TOKEN`` for a link, or None."""
    base = settings.base_url.rstrip("/")
    skip = (f"{base}/u/", f"{base}/c/")
    subscriber_id = int(row["id"])

    def resolve(url: str) -> str | None:
        if url.startswith(skip):
            return None
        recorded = template_url(url, checkout_url=checkout_url, email=str(row.get("email") or ""))
        if recorded is None:
            return None
        link_id = book.link_id(email_id, *recorded)
        if link_id is None:
            return None
        return f"{base}/c/{make_token(settings, Purpose.CLICK, {'l': link_id, 's': subscriber_id})}"

    return resolve


# --- the click --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Click:
    """Where a ``/c/TOKEN`` leads and whether the click was recorded."""

    url: str
    recorded: bool


def follow_click(
    session: Session,
    settings: Settings,
    token: str,
    *,
    now: datetime,
    ip: str | None = None,
    record: bool = True,
) -> Click:
    """Resolve a click token to its link's recorded URL and record the click.

    Raises ``NotFound`` for a forged, damaged or unknown token. An expired (but genuine) token
    still leads to the recorded URL, without the personal part and without being recorded.
    ``record=False`` (a HEAD request) records nothing.
    """
    fresh = True
    try:
        payload = read_token(settings, Purpose.CLICK, token, now_ts=now.timestamp())
    except TokenExpired:
        payload, fresh = read_token(settings, Purpose.CLICK, token, check_age=False), False
    except TokenInvalid as e:
        raise NotFound("This link is not valid.") from e
    try:
        link = session.get(Link, int(payload["l"]))
        subscriber_id = int(payload["s"])
    except (KeyError, TypeError, ValueError) as e:
        raise NotFound("This link is not valid.") from e
    if link is None:
        raise NotFound("This link is not valid.")
    subscriber = session.get(Subscriber, subscriber_id) if fresh and subscriber_id else None
    if subscriber is not None and is_erased(subscriber):
        subscriber = None  # an erased person's old email: the click is not linked to them
    url = _destination(settings, link, _checkout_payload(session, link, subscriber))
    if record and fresh:
        _record_click(session, link, subscriber, ip, now)
    return Click(url, record and fresh)


def _checkout_payload(
    session: Session, link: Link, subscriber: Subscriber | None
) -> dict[str, Any] | None:
    """What the clicker's own checkout token carries: who they are and, in an evergreen
    launch, their own deadline (as the direct link of the email would)."""
    if link.personal != CHECKOUT or subscriber is None:
        return None
    payload: dict[str, Any] = {"s": subscriber.id}
    cart_close = session.scalar(
        select(EvergreenEntry.cart_close_at)
        .join(LaunchSequence, LaunchSequence.launch_id == EvergreenEntry.launch_id)
        .join(Email, Email.sequence_id == LaunchSequence.id)
        .where(Email.id == link.email_id, EvergreenEntry.subscriber_id == subscriber.id)
    )
    if cart_close is not None:
        payload["d"] = int(cart_close.timestamp())  # UTCDateTime: aware
    return payload


def _destination(settings: Settings, link: Link, payload: dict[str, Any] | None) -> str:
    url = link.url
    if link.personal == CHECKOUT:
        token = make_token(settings, Purpose.CHECKOUT, payload) if payload else ""
        url = url.replace(MARKER, token)
    if not url.lower().startswith(("http://", "https://")):
        raise NotFound("This link is not valid.")
    return url


def _record_click(
    session: Session, link: Link, subscriber: Subscriber | None, ip: str | None, now: datetime
) -> None:
    subscriber_id = subscriber.id if subscriber is not None else None
    session.add(
        LinkClick(
            link_id=link.id, email_id=link.email_id, subscriber_id=subscriber_id, occurred_at=now
        )
    )
    session.add(WebEvent(kind="click", subscriber_id=subscriber_id, ip=ip, occurred_at=now))
