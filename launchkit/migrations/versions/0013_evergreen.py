"""Evergreen launches: per-entrant milestones, the time a tag was added, per-send deadlines

Revision ID: 0013_evergreen
Revises: 0012_clicks
Create Date: 2026-12-03 17:00:00
"""

import sqlalchemy as sa
from alembic import op

import launchkit.db

revision = "0013_evergreen"
down_revision = "0012_clicks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("launches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=20), server_default="fixed", nullable=False)
        )
        batch_op.add_column(sa.Column("entry", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("entry_cart_open", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("entry_cart_close", sa.String(length=50), nullable=True))
    with op.batch_alter_table("subscriber_tags", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tagged_at", launchkit.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deadline_at", launchkit.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "evergreen_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("launch_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("entered_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cart_open_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cart_close_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["launch_id"],
            ["launches.id"],
            name=op.f("fk_evergreen_entries_launch_id_launches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_evergreen_entries_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evergreen_entries")),
        sa.UniqueConstraint(
            "launch_id", "subscriber_id", name=op.f("uq_evergreen_entries_launch_id")
        ),
    )
    with op.batch_alter_table("evergreen_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evergreen_entries_subscriber_id"), ["subscriber_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("evergreen_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evergreen_entries_subscriber_id"))
    op.drop_table("evergreen_entries")
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_column("deadline_at")
    with op.batch_alter_table("subscriber_tags", schema=None) as batch_op:
        batch_op.drop_column("tagged_at")
    with op.batch_alter_table("launches", schema=None) as batch_op:
        batch_op.drop_column("entry_cart_close")
        batch_op.drop_column("entry_cart_open")
        batch_op.drop_column("entry")
        batch_op.drop_column("mode")
