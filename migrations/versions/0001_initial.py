"""jobs, evaluations, Pareto front snapshots

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", JsonType, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("optimizer", sa.String(32), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("objectives", JsonType, nullable=False),
        sa.Column("maximize", JsonType, nullable=False),
        sa.Column("reference_point", JsonType, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("x", JsonType, nullable=False),
        sa.Column("params", JsonType, nullable=False),
        sa.Column("metrics", JsonType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("merge_seconds", sa.Float(), nullable=True),
        sa.Column("eval_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("job_id", "number", name="uq_evaluations_job_number"),
    )
    op.create_index("ix_evaluations_job_id", "evaluations", ["job_id"])
    op.create_index("ix_evaluations_state", "evaluations", ["state"])
    op.create_table(
        "pareto_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("n_completed", sa.Integer(), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_pareto_snapshots_job_id", "pareto_snapshots", ["job_id"])
    op.create_table(
        "pareto_members",
        sa.Column("snapshot_id", sa.Integer(), sa.ForeignKey("pareto_snapshots.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("evaluation_id", sa.Integer(), sa.ForeignKey("evaluations.id", ondelete="CASCADE"),
                  primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("pareto_members")
    op.drop_index("ix_pareto_snapshots_job_id", table_name="pareto_snapshots")
    op.drop_table("pareto_snapshots")
    op.drop_index("ix_evaluations_state", table_name="evaluations")
    op.drop_index("ix_evaluations_job_id", table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_index("ix_jobs_state", table_name="jobs")
    op.drop_table("jobs")
