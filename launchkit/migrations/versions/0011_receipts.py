"""payments.receipt_url: Stripe's own page for a payment, linked from the buyer's receipt

Revision ID: 0011_receipts
Revises: 0010_setup
Create Date: 2026-12-03 15:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_receipts"
down_revision = "0010_setup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("receipt_url")
