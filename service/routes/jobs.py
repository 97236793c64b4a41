"""Jobs, their evaluations and their Pareto fronts."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import Field

from mergefront.bounds import MAX_ID, CleanModel
from mergefront.schemas import (
    EvaluationOut,
    JobOut,
    JobPage,
    JobUpdate,
    Page,
    ParameterOut,
    ParetoOut,
    SpaceOut,
    SurrogateOut,
    SurrogatesOut,
)
from mergefront.service import repository as repo
from mergefront.service.cluster_fit import check_fits_known_cluster
from mergefront.service.confine import confine_spec, public_spec
from mergefront.service.deps import SessionDep, read_apart
from mergefront.service.http_errors import STORED
from mergefront.service.manage import cancel_job, delete_job, update_job
from mergefront.service.models import EvaluationState, Job, JobState
from mergefront.service.routes.params import JobId, Limit, Offset
from mergefront.spec import JobSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=STORED)


class AskRequest(CleanModel):
    n: int = Field(1, ge=1, le=1024, description="how many candidates to propose (fewer near the end of the budget)")


@router.post("", status_code=201)
def submit_job(spec: JobSpec, session: SessionDep, request: Request) -> JobOut:
    """Validate a job spec and queue the job (local paths under the server's roots, plug-ins registered there)."""
    spec = confine_spec(spec, request.app.state.settings, request.app.state.registry)
    check_fits_known_cluster(spec)  # workers the cluster can never place: 422, not a job that waits for ever
    job = repo.create_job(session=session, spec=spec, origin="network")
    return _out(session, job, request)


Search = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$",
                                     description="words that must all appear in the name or notes")]


@router.get("")
def list_jobs(session: SessionDep, request: Request, offset: Offset = 0, limit: Limit = 50, search: Search = None,
              state: JobState | None = None, sort: repo.JobSort = "id", descending: bool = True) -> JobPage:
    """List jobs, newest first; `search` their names and notes, keep one `state`, `sort` by a column."""
    total, jobs = repo.list_jobs(session=session, offset=offset, limit=limit, search=search, state=state, sort=sort,
                                 descending=descending)
    return JobPage(total=total, offset=offset, limit=limit,
                   items=[_out(session, j, request) for j in jobs])


@router.get("/{job_id}")
def get_job(job_id: JobId, session: SessionDep, request: Request) -> JobOut:
    """One job with its progress and hypervolume."""
    return _out(session, repo.get_job(session=session, job_id=job_id), request)


def _out(session: SessionDep, job: Job, request: Request) -> JobOut:
    """A job as the API shows it: its spec's paths as the user wrote them (relative to the server's roots)."""
    out = repo.job_out(session=session, job=job)
    return out.model_copy(update={"spec": public_spec(out.spec, request.app.state.settings)})


@router.patch("/{job_id}")
def patch_job(job_id: JobId, body: JobUpdate, session: SessionDep, request: Request) -> JobOut:
    """Rename a job and/or replace its notes (`"notes": null` removes them)."""
    job = update_job(session=session, job_id=job_id, name=body.name, notes=body.notes,
                     clear_notes="notes" in body.model_fields_set and body.notes is None)
    return _out(session, job, request)


@router.post("/{job_id}/cancel")
def cancel(job_id: JobId, session: SessionDep, request: Request) -> JobOut:
    """Stop a pending or running job; its finished evaluations are kept, its running candidates abandoned."""
    return _out(session, cancel_job(session=session, job_id=job_id), request)


@router.delete("/{job_id}", status_code=204, response_class=Response)
def delete(job_id: JobId, session: SessionDep) -> Response:
    """Delete a completed, failed or cancelled job with all its evaluations and fronts."""
    delete_job(session=session, job_id=job_id)
    return Response(status_code=204)


@router.get("/{job_id}/evaluations")
def list_evaluations(job_id: JobId, session: SessionDep, state: EvaluationState | None = None,
                     offset: Offset = 0, limit: Limit = 100) -> Page:
    """A job's evaluations in the order they were proposed."""
    if repo.get_job(session=session, job_id=job_id).external:
        repo.expire_overdue(session=session, job_id=job_id)
    total, rows = repo.list_evaluations(session=session, job_id=job_id, state=state, offset=offset, limit=limit)
    return Page(total=total, offset=offset, limit=limit, items=[EvaluationOut.model_validate(r) for r in rows])


AtEvaluation = Annotated[int | None, Query(ge=0, le=MAX_ID, description="the front as it was after this many "
                                           "completed evaluations (default: the latest)")]


@router.get("/{job_id}/pareto")
def get_pareto(job_id: JobId, session: SessionDep, n_completed: AtEvaluation = None) -> ParetoOut:
    """The latest Pareto front of a job (or the one after `n_completed` completed evaluations) and its hypervolume
    against the job's reference point."""
    return repo.pareto_out(session=session, job=repo.get_job(session=session, job_id=job_id), n_completed=n_completed)


@router.get("/{job_id}/surrogates")
def get_surrogates(job_id: JobId, request: Request) -> SurrogatesOut:
    """Every objective's surrogate refitted on the job's completed evaluations, with its leave-one-out R²."""
    from mergefront.optimizers import make_optimizer, resolved  # the optimizers stay out of the API's start-up
    from mergefront.service.space import job_space, observation

    # read first, in a transaction that ends before the fits (seconds) start
    job, rows = read_apart(request, lambda s: repo.job_with_completed(session=s, job_id=job_id),
                           f"reading job {job_id}")
    spec = JobSpec.model_validate(job.spec)
    space = job_space(spec, request.app.state.settings)
    optimizer = make_optimizer(spec, space)
    reports_of = getattr(optimizer, "surrogate_reports", None)
    kind = SURROGATES.get(resolved(spec, space)[0].name)
    if reports_of is None or kind is None:
        return SurrogatesOut(job_id=job_id, optimizer=spec.optimizer.name, surrogate=None, n_points=0, objectives=[])
    reports = reports_of([observation(spec, r) for r in rows])
    return SurrogatesOut(job_id=job_id, optimizer=spec.optimizer.name, surrogate=kind,
                         n_points=reports[0].n_points if reports else len(rows),
                         objectives=[SurrogateOut(objective=job.objectives[r.objective],
                                                  r2=None if math.isnan(r.r2) else r.r2) for r in reports])


SURROGATES = {"map": "quadratic", "qnehvi": "gaussian process", "saea": "gaussian process",
              "hybrid": "gaussian process"}


@router.get("/{job_id}/space")
def get_space(job_id: JobId, session: SessionDep, request: Request) -> SpaceOut:
    """The job's search space: one entry per searched coordinate, with its meaning; and its memory plan."""
    from mergefront.service.space import job_memory_out, job_space, space_notes  # the optimizers stay out of start-up

    spec = JobSpec.model_validate(repo.get_job(session=session, job_id=job_id).spec)
    space = job_space(spec, request.app.state.settings)
    memory, note = job_memory_out(spec, request.app.state.settings)
    return SpaceOut(job_id=job_id, dim=space.dim, notes=space_notes(spec, space), parameters=[
        ParameterOut(name=p.name, low=p.low, high=p.high, kind=p.kind, expert=p.expert, group=p.group,
                     description=p.description) for p in space.parameters], memory=memory, memory_note=note)


@router.post("/{job_id}/ask")
def ask(job_id: JobId, session: SessionDep, request: Request,
        body: Annotated[AskRequest | None, Body()] = None) -> list[EvaluationOut]:
    """Propose candidates of an external job to evaluate; tell each one's metrics before its `expires_at`."""
    from mergefront.service.asktell import ask  # the optimizers stay out of the API's start-up

    rows = ask(session=session, job_id=job_id, n=(body or AskRequest()).n, settings=request.app.state.settings)
    return [EvaluationOut.model_validate(r) for r in rows]
