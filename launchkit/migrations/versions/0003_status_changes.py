"""subscriber status changes, with their time

Revision ID: 0003_status_changes
Revises: 0002_send_leases

Backfill (portable SQL): every subscriber whose status is not active gets one change row at the
best time known (``unsubscribed_at``, else its suppression's ``created_at``, else
``updated_at``); a subscriber who confirmed a double opt-in gets ``pending`` at its join time
and ``active`` at ``confirmed_at``.
"""

import sqlalchemy as sa
from alembic import op

import launchkit.db

revision = "0003_status_changes"
down_revision = "0002_send_leases"
branch_labels = None
depends_on = None

_SUPPRESSED_AT = (
    "(SELECT suppressions.created_at FROM suppressions WHERE suppressions.email = s.email)"
)
_OPTIN = "EXISTS (SELECT 1 FROM consents c WHERE c.subscriber_id = s.id AND c.method = 'optin')"
_BACKFILL = [
    # double opt-in signups: pending from the join time (confirmed or not)
    "INSERT INTO subscriber_status_changes (subscriber_id, status, changed_at, source) "
    "SELECT s.id, 'pending', COALESCE(s.signed_up_at, s.created_at), 'optin' FROM subscribers s "
    f"WHERE s.status = 'pending' OR (s.confirmed_at IS NOT NULL AND {_OPTIN})",
    # ... and active from the confirmation
    "INSERT INTO subscriber_status_changes (subscriber_id, status, changed_at, source) "
    "SELECT s.id, 'active', s.confirmed_at, 'confirm' FROM subscribers s "
    f"WHERE s.status <> 'pending' AND s.confirmed_at IS NOT NULL AND {_OPTIN}",
    # people who left: their status at the best time known
    "INSERT INTO subscriber_status_changes (subscriber_id, status, changed_at, source) "
    "SELECT s.id, s.status, "
    f"COALESCE(s.unsubscribed_at, {_SUPPRESSED_AT}, s.updated_at), 'backfill' "
    "FROM subscribers s WHERE s.status IN ('unsubscribed', 'bounced', 'complained')",
]


def upgrade() -> None:
    op.create_table(
        "subscriber_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("changed_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_status_changes_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_status_changes")),
    )
    with op.batch_alter_table("subscriber_status_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_status_changes_subscriber_at",
            ["subscriber_id", "changed_at"],
            unique=False,
        )
    for statement in _BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("subscriber_status_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_status_changes_subscriber_at")
    op.drop_table("subscriber_status_changes")
