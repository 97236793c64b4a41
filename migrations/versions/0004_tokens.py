"""API tokens (stored as SHA-256 digests), and where each job came from (local run or the network)

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30

`jobs.origin` is "network" for jobs submitted through the REST API (their paths were confined to the server's
roots and their evaluators to its registered plug-ins), "local" for `mergefront run` (and for jobs stored before
this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.add_column("jobs", sa.Column("origin", sa.String(16), nullable=False, server_default="local"))


def downgrade() -> None:
    op.drop_column("jobs", "origin")
    op.drop_table("api_tokens")
