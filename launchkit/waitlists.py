"""Waitlists: a launch's ``/w/LAUNCH`` page, the lead magnet double opt-in tagging
``waitlist:LAUNCH``.

A waitlist is a magnet named ``waitlist-LAUNCH`` (no file: confirming joins the list), so
signups, confirmations, consent records and page views are the magnets' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from launchkit.errors import NotFound
from launchkit.launches import get_launch
from launchkit.models import Launch, Magnet


@dataclass(frozen=True)
class Waitlist:
    """A launch's waitlist and the magnet that runs its opt-in."""

    launch: Launch
    magnet: Magnet


def waitlist_tag(launch_slug: str) -> str:
    """The tag a confirmed waitlist signup gets."""
    return f"waitlist:{launch_slug}"


def magnet_slug(launch_slug: str) -> str:
    """The slug of the magnet behind a launch's waitlist."""
    return f"waitlist-{launch_slug}"[:100]


TITLES = {  # what the subscriber agrees to receive (the consent wording and confirmation email)
    "fr": "l'annonce de l'ouverture de {product}",
    "en": "the opening announcement of {product}",
}


def open_waitlist(
    session: Session, launch_slug: str, *, now: datetime, language: str = "fr"
) -> Waitlist:
    """Open ``/w/LAUNCH`` (idempotent); ``language``: of its page and emails."""
    launch = get_launch(session, launch_slug)
    launch.waitlist = True
    magnet = session.scalar(select(Magnet).where(Magnet.slug == magnet_slug(launch.slug)))
    if magnet is None:
        magnet = Magnet(
            slug=magnet_slug(launch.slug),
            title=TITLES.get(language, TITLES["fr"]).format(product=launch.product)[:255],
            description="",
            tags={"tags": [waitlist_tag(launch.slug)]},
            language=language if language in TITLES else None,
            created_at=now,
        )
        session.add(magnet)
    session.flush()
    return Waitlist(launch, magnet)


def close_waitlist(session: Session, launch_slug: str) -> Launch:
    """Close ``/w/LAUNCH`` (signups already made are kept)."""
    launch = get_launch(session, launch_slug)
    launch.waitlist = False
    session.flush()
    return launch


def get_waitlist(session: Session, launch_slug: str) -> Waitlist:
    """An open waitlist, or NotFound."""
    launch = session.scalar(select(Launch).where(Launch.slug == launch_slug))
    magnet = session.scalar(select(Magnet).where(Magnet.slug == magnet_slug(launch_slug)))
    if launch is None or not launch.waitlist or magnet is None:
        raise NotFound(f'Launch "{launch_slug}" has no open waitlist.')
    return Waitlist(launch, magnet)
