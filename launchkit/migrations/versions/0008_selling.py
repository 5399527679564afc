"""selling: offer price tiers, coupons, abandoned-checkout recoveries; tier, coupon, discount
and tax on orders; tax behaviour on offers

Revision ID: 0008_selling
Revises: 0006_access
"""

import sqlalchemy as sa
from alembic import op

import launchkit.db

revision = "0008_selling"
down_revision = "0006_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offer_tiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("until", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_offer_tiers_offer_id_offers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer_tiers")),
        sa.UniqueConstraint("offer_id", "name", name=op.f("uq_offer_tiers_offer_id")),
    )  # fmt: skip
    with op.batch_alter_table("offer_tiers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offer_tiers_offer_id"), ["offer_id"], unique=False)
    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off_cents", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("until", launchkit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("offer_id", sa.Integer(), nullable=True),
        sa.Column("stripe_coupon_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_promotion_code_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_coupons_offer_id_offers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
        sa.UniqueConstraint(
            "stripe_promotion_code_id", name=op.f("uq_coupons_stripe_promotion_code_id")
        ),
    )  # fmt: skip
    op.create_table(
        "checkout_recoveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("started_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", launchkit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", launchkit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_checkout_recoveries_offer_id_offers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"],
            name=op.f("fk_checkout_recoveries_subscriber_id_subscribers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_recoveries")),
        sa.UniqueConstraint(
            "subscriber_id", "offer_id", name=op.f("uq_checkout_recoveries_subscriber_id")
        ),
    )  # fmt: skip
    with op.batch_alter_table("checkout_recoveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_checkout_recoveries_subscriber_id"), ["subscriber_id"], unique=False
        )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tax_behavior", sa.String(length=20), nullable=True))
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tier", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("coupon_code", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("discount_cents", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tax_cents", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("tax_cents")
        batch_op.drop_column("discount_cents")
        batch_op.drop_column("coupon_code")
        batch_op.drop_column("tier")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_column("tax_behavior")
    with op.batch_alter_table("checkout_recoveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkout_recoveries_subscriber_id"))
    op.drop_table("checkout_recoveries")
    op.drop_table("coupons")
    with op.batch_alter_table("offer_tiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offer_tiers_offer_id"))
    op.drop_table("offer_tiers")
