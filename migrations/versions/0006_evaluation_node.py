"""evaluations: the Ray node that ran each one

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-28

Plain ALTER TABLE, as in 0002 (a batch copy of a table would cascade-delete through foreign keys on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("node", sa.String(200), nullable=True))
    op.add_column("evaluations", sa.Column("node_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("evaluations", "node_id")
    op.drop_column("evaluations", "node")
