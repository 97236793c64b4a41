"""What the REST API returns, shared by the service (responses) and the SDK (parsing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class JobOut(_Out):
    id: int
    name: str
    state: str
    optimizer: str
    budget: int
    objectives: list[str]
    maximize: list[bool]
    reference_point: list[float]
    n_completed: int = 0
    n_failed: int = 0
    hypervolume: float | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    spec: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.state in ("completed", "failed")


class EvaluationOut(_Out):
    id: int
    job_id: int
    number: int
    state: str
    params: dict[str, float]
    metrics: dict[str, float] | None = None
    error: str | None = None
    attempts: int
    worker: str | None = None
    merge_seconds: float | None = None
    eval_seconds: float | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ParetoOut(BaseModel):
    job_id: int
    objectives: list[str]
    maximize: list[bool]
    reference_point: list[float]
    n_completed: int
    hypervolume: float
    members: list[EvaluationOut]


class Page(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[EvaluationOut]


class JobPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[JobOut]
