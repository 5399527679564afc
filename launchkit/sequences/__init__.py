"""Timed launch email sequences and the exactly-once delivery engine.

- ``timing``: the ``send_at`` grammar, local times, send window and deadlines;
- ``schedule``: attach sequence folders to launches, the ledger of (email, subscriber) rows;
- ``sender`` + ``claims``: deliver due rows exactly once (see ``claims`` for the crash policy);
- ``preview``: preview files with lint, and test sends that never touch the ledger.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from launchkit.errors import NotFound
from launchkit.launches import get_launch
from launchkit.models import LaunchSequence, SequenceStatus
from launchkit.sequences.claims import LEASE, workspace_send_lock
from launchkit.sequences.preview import (
    PreviewItem,
    lint_failures,
    preview_launch,
    send_test,
)
from launchkit.sequences.schedule import (
    TRANSITIONS,
    ScheduleResult,
    attach_sequence,
    launch_sequences,
    ledger_counts,
    reschedule_launch,
    schedule_launch,
    sequence_emails,
    set_status,
)
from launchkit.sequences.sender import SendOptions, SendReport, backoff, send_due
from launchkit.sequences.timing import (
    SendAt,
    Window,
    apply_window,
    due_time,
    parse_send_at,
    resolve_time,
)

__all__ = [
    "LEASE",
    "TRANSITIONS",
    "PreviewItem",
    "ScheduleResult",
    "SendAt",
    "SendOptions",
    "SendReport",
    "Window",
    "apply_window",
    "attach_sequence",
    "backoff",
    "due_time",
    "launch_sequences",
    "ledger_counts",
    "lint_failures",
    "parse_send_at",
    "pause_sequences",
    "preview_launch",
    "reschedule_launch",
    "resolve_time",
    "resume_sequences",
    "schedule_launch",
    "send_due",
    "send_test",
    "sequence_emails",
    "set_status",
    "workspace_send_lock",
]


def _select(session: Session, launch_slug: str, name: str | None) -> list[LaunchSequence]:
    launch = get_launch(session, launch_slug)
    found = [s for s in launch_sequences(session, launch) if name is None or s.name == name]
    if not found:
        what = f'Sequence "{name}" is' if name else "No sequence is"
        raise NotFound(f'{what} not attached to launch "{launch.slug}".')
    return found


def pause_sequences(session: Session, launch_slug: str, name: str | None = None) -> list[str]:
    """Pause one or all sequences of a launch; a running ``send`` stops at its next batch."""
    changed = []
    for seq in _select(session, launch_slug, name):
        if seq.status != SequenceStatus.PAUSED:
            set_status(session, seq, SequenceStatus.PAUSED)
            changed.append(seq.name)
    return changed


def resume_sequences(session: Session, launch_slug: str, name: str | None = None) -> list[str]:
    """Resume paused sequences (resets their consecutive-failure counter)."""
    changed = []
    for seq in _select(session, launch_slug, name):
        if seq.status == SequenceStatus.PAUSED:
            set_status(session, seq, SequenceStatus.ACTIVE)
            changed.append(seq.name)
    return changed
