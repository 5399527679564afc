"""offers.archived_at and magnets.archived_at: archived objects stay for the records but take
no new buyers or signups

Revision ID: 0010_setup
Revises: 0008_selling
"""

import sqlalchemy as sa
from alembic import op

import launchkit.db

revision = "0010_setup"
down_revision = "0008_selling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("offers", "magnets"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("archived_at", launchkit.db.UTCDateTime(timezone=True), nullable=True)
            )


def downgrade() -> None:
    for table in ("magnets", "offers"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("archived_at")
