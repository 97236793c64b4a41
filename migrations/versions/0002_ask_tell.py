"""ask/tell: jobs evaluated outside mergefront, and the deadline of each fetched candidate

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Plain ALTER TABLE (SQLite >= 3.35 adds and drops these columns in place): a batch "copy and move" of `jobs`
would drop the old table, and with foreign keys on that deletes every evaluation through ON DELETE CASCADE.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("evaluations", sa.Column("expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("evaluations", "expires_at")
    op.drop_column("jobs", "external")
