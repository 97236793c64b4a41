"""Read-only views the dashboard needs: a sorted/filtered evaluation table, plot columns, hypervolume history."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from mergefront.bounds import MAX_METRIC
from mergefront.errors import InvalidSpecError
from mergefront.schemas import EvaluationRow, EvaluationTable, FrontPoints, HypervolumeHistory
from mergefront.service import repository as repo
from mergefront.service.deps import SessionDep
from mergefront.service.http_errors import STORED
from mergefront.service.models import EvaluationState
from mergefront.service.routes.params import JobId, Offset

router = APIRouter(prefix="/v1", tags=["dashboard"], responses=STORED)

_FILTER = re.compile(r"^\s*([\w.:\-]+)\s*(>=|<=|!=|=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

TableLimit = Annotated[int, Query(ge=1, le=500)]
Filters = Annotated[list[str] | None, Query(alias="filter", description="`column op value`, e.g. `metrics.a>=0.5`")]


def _query_error(exc: InvalidSpecError) -> RequestValidationError:
    """A bad query parameter, reported like FastAPI's own 422s (`loc` starts with "query")."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", *exc.loc), "msg": exc.message}])


def parse_filter(text: str) -> repo.ColumnFilter:
    """`metrics.rotated_accuracy>=0.5` -> ColumnFilter('metrics.rotated_accuracy', '>=', 0.5)."""
    match = _FILTER.match(text)
    if match is None:
        raise InvalidSpecError(f"cannot read filter {text!r}; write `column op number`, op one of >= <= > < = !=",
                               ("filter",))
    value = float(match[3])
    if not abs(value) <= MAX_METRIC:
        raise InvalidSpecError(f"{match[3]} is out of range: filter values lie within +-{MAX_METRIC:g}", ("filter",))
    return repo.ColumnFilter(match[1], match[2], value)


@router.get("/jobs/{job_id}/table")
def evaluation_table(job_id: JobId, session: SessionDep, sort: str = "number", descending: bool = False,
                     state: EvaluationState | None = None, front: bool = False, filters: Filters = None,
                     offset: Offset = 0, limit: TableLimit = 50) -> EvaluationTable:
    """One page of a job's evaluations, sorted and filtered on the server, each marked on/off the front."""
    job = repo.get_job(session=session, job_id=job_id)
    try:
        total, rows, front_ids = repo.evaluation_table(
            session=session, job=job, sort=sort, descending=descending, state=state, front_only=front,
            filters=[parse_filter(f) for f in filters or []], offset=offset, limit=limit)
    except InvalidSpecError as exc:
        raise _query_error(exc) from exc
    items = [EvaluationRow.model_validate(r).model_copy(update={"on_front": r.id in front_ids}) for r in rows]
    return EvaluationTable(total=total, offset=offset, limit=limit, sort=sort, descending=descending,
                           columns=repo.table_columns(session=session, job=job), items=items)


@router.get("/jobs/{job_id}/points")
def front_points(job_id: JobId, session: SessionDep,
                 max_dominated: Annotated[int, Query(ge=0, le=20000)] = 1000) -> FrontPoints:
    """Completed evaluations as plot columns: the whole front, dominated points thinned to `max_dominated`."""
    job = repo.get_job(session=session, job_id=job_id)
    return repo.front_points(session=session, job=job, max_dominated=max_dominated)


@router.get("/jobs/{job_id}/hypervolume")
def hypervolume_history(job_id: JobId, session: SessionDep,
                        max_points: Annotated[int, Query(ge=2, le=5000)] = 500) -> HypervolumeHistory:
    """Hypervolume against completed evaluations, bucketed on the server to at most `max_points` points."""
    job = repo.get_job(session=session, job_id=job_id)
    return repo.hypervolume_history(session=session, job=job, max_points=max_points)

