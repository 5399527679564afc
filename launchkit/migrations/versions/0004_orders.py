"""orders.language: the language the buyer checked out in (receipts and dunning fall back to it)

Revision ID: 0004_orders
Revises: 0003_status_changes
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_orders"
down_revision = "0003_status_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("language")
