"""the front's changes instead of a copy per evaluation: pareto_changes, front_size, evaluations.on_front

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-29

Until now every completed evaluation stored the whole front (`pareto_members`: a job of 2,000 evaluations held
133,610 rows). A step (`pareto_snapshots`) now keeps its hypervolume and the front's size, and `pareto_changes`
says which evaluations entered or left the front at that step; `evaluations.on_front` marks the latest front.
Existing snapshots are turned into changes (each one's members against the one before), then `pareto_members` is
dropped. `jobs.revision` changes on each ask/tell write, so a server knows when its in-memory copy of a job is stale.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("revision", sa.String(32), nullable=False, server_default=""))
    op.add_column("evaluations", sa.Column("on_front", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_evaluations_job_state", "evaluations", ["job_id", "state"])
    op.create_index("ix_evaluations_job_on_front", "evaluations", ["job_id", "on_front"])
    op.add_column("pareto_snapshots", sa.Column("front_size", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_pareto_snapshots_job_n", "pareto_snapshots", ["job_id", "n_completed"])
    op.create_table(
        "pareto_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), sa.ForeignKey("pareto_snapshots.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("evaluation_id", sa.Integer(), sa.ForeignKey("evaluations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("entered", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_pareto_changes_job_snapshot", "pareto_changes", ["job_id", "snapshot_id"])
    _snapshots_to_changes(op.get_bind())
    op.drop_table("pareto_members")


def _snapshots_to_changes(conn: sa.Connection) -> None:
    """Each job's snapshots in order: the members that are new are changes in, the ones gone are changes out."""
    changes = sa.table("pareto_changes", sa.column("job_id"), sa.column("snapshot_id"), sa.column("evaluation_id"),
                       sa.column("entered"))
    jobs = conn.execute(sa.text("SELECT DISTINCT job_id FROM pareto_snapshots ORDER BY job_id")).scalars().all()
    for job_id in jobs:
        members: dict[int, set[int]] = defaultdict(set)
        for snapshot_id, evaluation_id in conn.execute(sa.text(
                "SELECT m.snapshot_id, m.evaluation_id FROM pareto_members m JOIN pareto_snapshots s "
                "ON s.id = m.snapshot_id WHERE s.job_id = :job"), {"job": job_id}):
            members[snapshot_id].add(evaluation_id)
        snapshots = conn.execute(sa.text("SELECT id FROM pareto_snapshots WHERE job_id = :job "
                                         "ORDER BY n_completed, id"), {"job": job_id}).scalars().all()
        front: set[int] = set()
        rows = []
        for snapshot_id in snapshots:
            now = members.get(snapshot_id, set())
            rows += [{"job_id": job_id, "snapshot_id": snapshot_id, "evaluation_id": e, "entered": True}
                     for e in sorted(now - front)]
            rows += [{"job_id": job_id, "snapshot_id": snapshot_id, "evaluation_id": e, "entered": False}
                     for e in sorted(front - now)]
            conn.execute(sa.text("UPDATE pareto_snapshots SET front_size = :n WHERE id = :id"),
                         {"n": len(now), "id": snapshot_id})
            front = now
        if rows:
            conn.execute(changes.insert(), rows)
        if front:
            conn.execute(sa.text("UPDATE evaluations SET on_front = :yes WHERE id IN :ids")
                         .bindparams(sa.bindparam("ids", expanding=True)), {"yes": True, "ids": sorted(front)})


def downgrade() -> None:
    op.create_table(
        "pareto_members",
        sa.Column("snapshot_id", sa.Integer(), sa.ForeignKey("pareto_snapshots.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("evaluation_id", sa.Integer(), sa.ForeignKey("evaluations.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    conn = op.get_bind()
    members = sa.table("pareto_members", sa.column("snapshot_id"), sa.column("evaluation_id"))
    jobs = conn.execute(sa.text("SELECT DISTINCT job_id FROM pareto_snapshots ORDER BY job_id")).scalars().all()
    for job_id in jobs:  # replay the changes: every step's whole front again
        steps: dict[int, list[tuple[int, bool]]] = defaultdict(list)
        for snapshot_id, evaluation_id, entered in conn.execute(sa.text(
                "SELECT snapshot_id, evaluation_id, entered FROM pareto_changes WHERE job_id = :job ORDER BY id"),
                {"job": job_id}):
            steps[snapshot_id].append((evaluation_id, bool(entered)))
        front: set[int] = set()
        for snapshot_id in conn.execute(sa.text("SELECT id FROM pareto_snapshots WHERE job_id = :job "
                                                "ORDER BY n_completed, id"), {"job": job_id}).scalars():
            for evaluation_id, entered in steps.get(snapshot_id, []):
                (front.add if entered else front.discard)(evaluation_id)
            if front:
                conn.execute(members.insert(), [{"snapshot_id": snapshot_id, "evaluation_id": e}
                                                for e in sorted(front)])
    op.drop_index("ix_pareto_changes_job_snapshot", table_name="pareto_changes")
    op.drop_table("pareto_changes")
    op.drop_index("ix_pareto_snapshots_job_n", table_name="pareto_snapshots")
    op.drop_column("pareto_snapshots", "front_size")
    op.drop_index("ix_evaluations_job_on_front", table_name="evaluations")
    op.drop_index("ix_evaluations_job_state", table_name="evaluations")
    op.drop_column("evaluations", "on_front")
    op.drop_column("jobs", "revision")
