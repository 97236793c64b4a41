"""reliability: every failed attempt of an evaluation is kept (`errors`, a JSON list, also after a retry succeeds);
a job remembers since when the cluster has not started its workers (`waiting_since`, for the start deadline)

Revision ID: 0008
Revises: 0009
Create Date: 2026-11-29

Follows 0009 (main's head when it landed). Plain ALTER TABLE, as in 0002: a batch "copy and move" of a table
would cascade-delete rows on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("evaluations", sa.Column("errors", json, nullable=True))
    op.add_column("jobs", sa.Column("waiting_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "waiting_since")
    op.drop_column("evaluations", "errors")
