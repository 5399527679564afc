"""sends.status wide enough for "delivered_unconfirmed"

Revision ID: 0002_send_leases
Revises: 0001_initial
Create Date: 2026-12-03 13:50:00

A row whose message may have been delivered twice already (a drop after DATA, then one resend)
is recorded ``delivered_unconfirmed`` (21 characters): the column grows from 20 to 32.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_send_leases"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=20),
            type_=sa.String(length=32),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=32),
            type_=sa.String(length=20),
            existing_nullable=False,
        )
