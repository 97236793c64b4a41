"""re-evaluation of front members: `evaluations.repeat_of`, the id of the first evaluation of the same point

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-29

A job with `optimizer.reevaluate` evaluates some front members again with new mask seeds; each repeat is its own
evaluation and names the point's first evaluation here, so a front member's evaluations are read by one indexed
query. Plain ALTER TABLE, as in 0008.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("repeat_of", sa.Integer(), nullable=True))
    op.create_index("ix_evaluations_repeat_of", "evaluations", ["repeat_of"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_repeat_of", table_name="evaluations")
    op.drop_column("evaluations", "repeat_of")
