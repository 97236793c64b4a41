"""job management: a job's notes (its name was always editable; `cancelled` is a new value of the state column)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

Plain ALTER TABLE, as in 0002: a batch "copy and move" of `jobs` would cascade-delete every evaluation on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    # the older code knows no `cancelled`: such jobs and evaluations read as failed, saying why
    for table in ("jobs", "evaluations"):
        op.execute(sa.text(f"UPDATE {table} SET state = 'failed', error = coalesce(error, 'cancelled') "
                           "WHERE state = 'cancelled'"))
    op.drop_column("jobs", "notes")
