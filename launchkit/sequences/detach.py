"""Detach a sequence from a launch while none of its emails went out."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from launchkit.errors import InvalidTransition
from launchkit.launches import WENT_OUT, get_launch
from launchkit.models import Email, Send
from launchkit.sequences.schedule import get_sequence


def detach_sequence(session: Session, launch_slug: str, name: str) -> int:
    """Remove a sequence and its queued rows from a launch; returns how many queued rows went.

    Refused once one of its messages went out: pause it instead, so the ledger keeps them.
    """
    launch = get_launch(session, launch_slug)
    seq = get_sequence(session, launch, name)
    email_ids = select(Email.id).where(Email.sequence_id == seq.id)
    went = int(
        session.scalar(
            select(func.count(Send.id)).where(
                Send.email_id.in_(email_ids), Send.status.in_(WENT_OUT)
            )
        )
        or 0
    )
    if went:
        raise InvalidTransition(
            f'Sequence "{name}" of launch "{launch.slug}" already sent {went} message(s): it '
            f"stays attached; stop it with `launchkit sequence pause {launch.slug} {name}`."
        )
    dropped = session.execute(delete(Send).where(Send.email_id.in_(email_ids))).rowcount
    session.execute(delete(Email).where(Email.sequence_id == seq.id))
    session.delete(seq)
    session.flush()
    return int(dropped or 0)
