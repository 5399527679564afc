"""memberships: recurring prices of membership offers, memberships and their dated events

Revision ID: 0005_memberships
Revises: 0004_orders
"""

import sqlalchemy as sa
from alembic import op

import launchkit.db

revision = "0005_memberships"
down_revision = "0004_orders"
branch_labels = None
depends_on = None


def UTC() -> launchkit.db.UTCDateTime:
    return launchkit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trial_days", sa.Integer(), nullable=True))
    op.create_table(
        "membership_prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("interval", sa.String(length=10), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("founding_cents", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"],
            name=op.f("fk_membership_prices_offer_id_offers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_prices")),
        sa.UniqueConstraint("offer_id", "interval", name=op.f("uq_membership_prices_offer_id")),
    )  # fmt: skip
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("launch_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("interval", sa.String(length=10), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("started_at", UTC(), nullable=False),
        sa.Column("trial_end", UTC(), nullable=True),
        sa.Column("paid_at", UTC(), nullable=True),
        sa.Column("current_period_end", UTC(), nullable=True),
        sa.Column("cancel_requested_at", UTC(), nullable=True),
        sa.Column("ended_at", UTC(), nullable=True),
        sa.Column("reminder_period_end", UTC(), nullable=True),
        sa.Column("updated_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(
            ["launch_id"], ["launches.id"], name=op.f("fk_memberships_launch_id_launches")
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_memberships_offer_id_offers")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"],
            name=op.f("fk_memberships_order_id_orders"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("order_id", name=op.f("uq_memberships_order_id")),
        sa.UniqueConstraint(
            "stripe_subscription_id", name=op.f("uq_memberships_stripe_subscription_id")
        ),
    )  # fmt: skip
    op.create_index(op.f("ix_memberships_launch_id"), "memberships", ["launch_id"])
    op.create_table(
        "membership_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("occurred_at", UTC(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("interval", sa.String(length=10), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("period_end", UTC(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=True),
        sa.Column("update_url", sa.String(length=2048), nullable=True),
        sa.Column("notified_at", UTC(), nullable=True),
        sa.ForeignKeyConstraint(
            ["membership_id"], ["memberships.id"],
            name=op.f("fk_membership_events_membership_id_memberships"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_events")),
        sa.UniqueConstraint("key", name=op.f("uq_membership_events_key")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_membership_events_membership_id"), "membership_events", ["membership_id"]
    )
    op.create_index(op.f("ix_membership_events_kind"), "membership_events", ["kind"])


def downgrade() -> None:
    op.drop_index(op.f("ix_membership_events_kind"), table_name="membership_events")
    op.drop_index(op.f("ix_membership_events_membership_id"), table_name="membership_events")
    op.drop_table("membership_events")
    op.drop_index(op.f("ix_memberships_launch_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("membership_prices")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_column("trial_days")
