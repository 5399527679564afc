"""links.email_id + links.personal: first-party click tracking records each link once per email

Revision ID: 0012_clicks
Revises: 0011_receipts
Create Date: 2026-12-03 16:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_clicks"
down_revision = "0011_receipts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("personal", sa.String(length=20), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_links_email_id_emails"),
            "emails",
            ["email_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(batch_op.f("uq_links_email_id"), ["email_id", "url"])
    with op.batch_alter_table("link_clicks", schema=None) as batch_op:
        batch_op.create_index("ix_link_clicks_email_id", ["email_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("link_clicks", schema=None) as batch_op:
        batch_op.drop_index("ix_link_clicks_email_id")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_links_email_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_links_email_id_emails"), type_="foreignkey")
        batch_op.drop_column("personal")
        batch_op.drop_column("email_id")
