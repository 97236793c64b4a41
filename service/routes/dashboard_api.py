"""Read-only views the dashboard needs: a sorted/filtered evaluation table, plot columns, hypervolume history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from mergefront.errors import InvalidSpecError
from mergefront.schemas import EvaluationRow, EvaluationTable, FrontPoints, HypervolumeHistory
from mergefront.service import repository as repo
from mergefront.service.columns import parse_filter, typed_name
from mergefront.service.deps import SessionDep
from mergefront.service.http_errors import STORED
from mergefront.service.models import Evaluation, EvaluationState, Job
from mergefront.service.routes.params import JobId, Offset
from mergefront.service.tabular import MEDIA_TYPES, TableFormat

router = APIRouter(prefix="/v1", tags=["dashboard"], responses=STORED)

TableLimit = Annotated[int, Query(ge=1, le=500)]
Filters = Annotated[list[str] | None, Query(alias="filter", description="`column op number`, e.g. "
                                                                        "`parity_accuracy>=0.5` or `weight.mod3<0.2`")]


def _query_error(exc: InvalidSpecError) -> RequestValidationError:
    """A bad query parameter, reported like FastAPI's own 422s (`loc` starts with "query")."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", *exc.loc), "msg": exc.message}])


@dataclass(frozen=True)
class TableQuery:
    """Which of a job's evaluations, in which order: the dashboard table's query, also its downloads'."""

    sort: str = "number"
    descending: bool = False
    state: EvaluationState | None = None
    front: bool = False
    filters: Filters = None

    def rows(self, session: Session, job: Job, offset: int = 0,
             limit: int | None = None) -> tuple[int, list[Evaluation], set[int]]:
        """(total matching, the rows from `offset`, at most `limit`, ids on the front); a bad query is a 422."""
        try:
            return repo.evaluation_table(
                session=session, job=job, sort=self.sort, descending=self.descending, state=self.state,
                front_only=self.front, filters=[parse_filter(f) for f in self.filters or []], offset=offset,
                limit=limit)
        except InvalidSpecError as exc:
            raise _query_error(exc) from exc


TableQueryDep = Annotated[TableQuery, Depends()]


@router.get("/jobs/{job_id}/table")
def evaluation_table(job_id: JobId, session: SessionDep, query: TableQueryDep, offset: Offset = 0,
                     limit: TableLimit = 50) -> EvaluationTable:
    """One page of a job's evaluations, sorted and filtered on the server, each marked on/off the front."""
    job = repo.get_job(session=session, job_id=job_id)
    total, rows, front_ids = query.rows(session, job, offset, limit)
    items = [EvaluationRow.model_validate(r).model_copy(update={"on_front": r.id in front_ids}) for r in rows]
    return EvaluationTable(total=total, offset=offset, limit=limit, sort=query.sort, descending=query.descending,
                           columns=repo.table_columns(session=session, job=job), items=items)


@router.get("/jobs/{job_id}/evaluations.{fmt}", tags=["evaluations"],
            responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
def download_evaluations(job_id: JobId, fmt: TableFormat, session: SessionDep, query: TableQueryDep) -> Response:
    """Every evaluation of a job matching the query, as a CSV or Parquet file (one row each, objectives and
    parameters as columns)."""
    from mergefront.service.tabular import encode, evaluations_table  # pyarrow loads on first download

    job = repo.get_job(session=session, job_id=job_id)
    _, rows, front_ids = query.rows(session, job)
    params = [typed_name(c) for c in repo.table_columns(session=session, job=job) if c.startswith("params.")]
    body = encode(evaluations_table(job, rows, front_ids, params), fmt)
    filename = f"mergefront-job{job_id}-evaluations.{fmt}"
    return Response(body, media_type=MEDIA_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


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

