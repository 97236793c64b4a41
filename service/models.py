"""SQLAlchemy models: jobs, evaluations, Pareto front steps and changes. Alembic migrations create the tables."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Naive UTC, stored the same way by every backend."""
    return datetime.now(UTC).replace(tzinfo=None)


class JobState(enum.StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"  # stopped on a user's request; its evaluations are kept


DONE_JOB_STATES = (JobState.completed, JobState.failed, JobState.cancelled)


class EvaluationState(enum.StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    expired = "expired"  # an external candidate not told within ask_timeout: it went back to the optimizer
    cancelled = "cancelled"  # pending or running when its job was cancelled: abandoned, never evaluated


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)
    state: Mapped[str] = mapped_column(String(16), index=True, default=JobState.pending)
    optimizer: Mapped[str] = mapped_column(String(32))
    budget: Mapped[int] = mapped_column(Integer)
    objectives: Mapped[list[str]] = mapped_column(JsonType)
    maximize: Mapped[list[bool]] = mapped_column(JsonType)
    reference_point: Mapped[list[float | None]] = mapped_column(JsonType)
    external: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # driven by ask/tell
    origin: Mapped[str] = mapped_column(String(16), default="local", server_default="local")  # local | network
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)  # the user's own words about the job
    revision: Mapped[str] = mapped_column(String(32), default="", server_default="")  # new on each ask/tell write
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # since when the cluster has not started the job's workers (set when it is first deferred, cleared once they run)
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    evaluations: Mapped[list[Evaluation]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                         order_by="Evaluation.number")


class Evaluation(Base):
    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_evaluations_job_number"),
                      Index("ix_evaluations_job_state", "job_id", "state"),
                      Index("ix_evaluations_job_on_front", "job_id", "on_front"),
                      Index("ix_evaluations_repeat_of", "repeat_of"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True, default=EvaluationState.pending)
    x: Mapped[list[float]] = mapped_column(JsonType)
    params: Mapped[dict[str, float]] = mapped_column(JsonType)
    metrics: Mapped[dict[str, float] | None] = mapped_column(JsonType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # every failed attempt, oldest first ({attempt, error, node, at}); kept when a retry succeeds
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonType, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    node: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the Ray node's name (or address)
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # and its id
    merge_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    eval_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # external: the tell's deadline
    on_front: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # on the latest front
    # an evaluation of a point evaluated before (optimizer.reevaluate): the id of that point's first evaluation
    repeat_of: Mapped[int | None] = mapped_column(Integer, nullable=True)

    job: Mapped[Job] = relationship(back_populates="evaluations")


class ParetoSnapshot(Base):
    """One step of a job's front: the hypervolume and the front's size after `n_completed` completed evaluations.

    The members are not copied per step: `ParetoChange` rows say which evaluations entered or left the front at
    each step, so the front at any step is the sum of the changes up to it (`repository.front_at`).
    """

    __tablename__ = "pareto_snapshots"
    __table_args__ = (Index("ix_pareto_snapshots_job_n", "job_id", "n_completed"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    n_completed: Mapped[int] = mapped_column(Integer)
    hypervolume: Mapped[float] = mapped_column(Float)
    front_size: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ParetoChange(Base):
    """An evaluation entering (`entered`) or leaving the front at a step (`snapshot_id`)."""

    __tablename__ = "pareto_changes"
    __table_args__ = (Index("ix_pareto_changes_job_snapshot", "job_id", "snapshot_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("pareto_snapshots.id", ondelete="CASCADE"))
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    entered: Mapped[bool] = mapped_column(Boolean)


class TokenScope(enum.StrEnum):
    """What a token allows; each scope includes the ones before it."""

    read = "read"  # every GET
    write = "write"  # submit jobs, ask/tell
    admin = "admin"  # tokens, exports to the server's disk

    def allows(self, needed: TokenScope) -> bool:
        order = list(TokenScope)
        return order.index(self) >= order.index(needed)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored (tokens are 256-bit random, so a fast hash is enough)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
