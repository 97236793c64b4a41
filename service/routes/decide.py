"""Deciding on a job's front: rank its members by constraints and a preference, compare a few side by side."""

from __future__ import annotations

import difflib
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import Field

from mergefront.bounds import MAX_ID
from mergefront.errors import ConflictError, InvalidSpecError
from mergefront.schemas import (
    CompareOut,
    EvaluationOut,
    ObjectiveSensitivityOut,
    ParameterEffectOut,
    PredictedFrontOut,
    RankedOut,
    RankingOut,
    SensitivityOut,
)
from mergefront.service import repository as repo
from mergefront.service.columns import parse_filter
from mergefront.service.decide import TIE_RULE, rank
from mergefront.service.deps import SessionDep, read_apart
from mergefront.service.http_errors import STORED
from mergefront.service.routes.params import JobId

router = APIRouter(prefix="/v1/jobs", tags=["decide"], responses=STORED)

Constraints = Annotated[list[str] | None, Query(alias="constraint", max_length=64, description="`column op number` "
                                                "on an objective or a parameter, e.g. `parity_accuracy >= 0.8`")]
Weights = Annotated[list[str] | None, Query(alias="weight", max_length=64, description="`objective=number` "
                                            "(default 1 each), e.g. `parity_accuracy=2`")]


def parse_weight(text: str) -> tuple[str, float]:
    """`parity_accuracy=2` (or `:2`) -> ('parity_accuracy', 2.0); InvalidSpecError saying how to write it."""
    name, sep, number = text.replace(":", "=").partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), float(number)
    except ValueError:
        raise InvalidSpecError(f"cannot read weight {text!r}: write objective=number, e.g. parity_accuracy=2",
                               ("weight",)) from None


@router.get("/{job_id}/rank")
def rank_front(job_id: JobId, session: SessionDep, constraints: Constraints = None, weights: Weights = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RankingOut:
    """The front members meeting every constraint, best first by the weighted preference; the first is recommended."""
    job = repo.get_job(session=session, job_id=job_id)
    front = repo.pareto_out(session=session, job=job)
    filters = [parse_filter(c, "constraint") for c in constraints or []]
    ranking = rank(front.members, objectives=job.objectives, maximize=job.maximize, constraints=filters,
                   weights=dict(parse_weight(w) for w in weights or []))
    items = [RankedOut(rank=i + 1, score=score, evaluation=m)
             for i, (m, score) in enumerate(zip(ranking.members[:limit], ranking.scores, strict=False))]
    return RankingOut(job_id=job.id, objectives=job.objectives, weights=ranking.weights,
                      constraints=[str(f) for f in filters], n_front=ranking.n_front, n_feasible=len(ranking.members),
                      tied=ranking.tied, rule=TIE_RULE, recommended=ranking.members[0] if ranking.members else None,
                      items=items)


@router.get("/{job_id}/compare")
def compare(job_id: JobId, session: SessionDep, request: Request,
            ids: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Query(alias="id", min_length=2, max_length=4,
                                            description="2 to 4 evaluation ids of this job")]) -> CompareOut:
    """Evaluations side by side: rows, mergekit YAMLs, and each YAML's unified diff against the first one's."""
    from mergefront.service.export import export_source  # the optimizers' space code stays out of the API's start-up

    rows = [repo.get_evaluation(session=session, evaluation_id=i) for i in ids]
    for row in rows:
        if row.job_id != job_id:
            raise InvalidSpecError(f"evaluation {row.id} belongs to job {row.job_id}, not to job {job_id}", ("id",))
    yamls: list[str | None] = []
    notes: list[str] = []
    for row in rows:
        try:
            settings = request.app.state.settings  # models named as the spec names them, never by server paths
            yamls.append(export_source(session=session, evaluation_id=row.id, settings=settings)
                         .mergekit_yaml(settings))
        except ConflictError as exc:
            yamls.append(None)
            notes.append(str(exc))
    first = (yamls[0] or "").splitlines(keepends=True)
    diffs = ["".join(difflib.unified_diff(first, (y or "").splitlines(keepends=True),
                                          f"evaluation {rows[0].number}", f"evaluation {row.number}"))
             for row, y in zip(rows[1:], yamls[1:], strict=True)]
    return CompareOut(job_id=job_id, items=[EvaluationOut.model_validate(r) for r in rows], mergekit=yamls,
                      diffs=diffs, notes=notes)


@router.get("/{job_id}/sensitivity")
def sensitivity(job_id: JobId, request: Request) -> SensitivityOut:
    """Each parameter's effect on each objective, read from the job's surrogates refitted on its completed
    evaluations (with each one's held-out R² beside it), and the surrogates' predicted front where the optimizer
    has one (MAP). Jobs whose optimizer keeps no surrogate get the quadratic MAP would fit, and are told so."""
    from mergefront.optimizers import resolved  # the optimizers stay out of the API's start-up
    from mergefront.optimizers.history import training_data
    from mergefront.service.insight import MIN_POINTS, effects, fit_surrogate, predicted_front_values
    from mergefront.service.space import job_space, observation
    from mergefront.spec import JobSpec

    # read first, in a transaction that ends before the fits (seconds) start
    job, rows = read_apart(request, lambda s: repo.job_with_completed(session=s, job_id=job_id),
                           f"reading job {job_id}")
    spec = JobSpec.model_validate(job.spec)
    space = job_space(spec, request.app.state.settings)
    opt = resolved(spec, space)[0]
    name = opt.name
    train_X, train_Y = training_data([observation(spec, r) for r in rows], space.dim, len(spec.objectives))
    if train_X.shape[0] < MIN_POINTS:
        return SensitivityOut(job_id=job_id, optimizer=name, surrogate=None, own=False, n_points=train_X.shape[0],
                              note=f"no surrogate before {MIN_POINTS} evaluations completed", objectives=[],
                              predicted_front=None)
    surrogate = fit_surrogate(spec, space, train_X, train_Y, name, spec.optimizer.seed, bool(opt.nested))
    per_objective = effects(surrogate.predict, space, spec.optimizer.seed)
    values, params = predicted_front_values(surrogate, space)
    note = (f"{surrogate.kind} surrogate of each objective, fitted on {train_X.shape[0]} completed evaluations; "
            "effects are main effects (the other parameters averaged over the space)")
    return SensitivityOut(
        job_id=job_id, optimizer=name, surrogate=surrogate.kind, own=surrogate.own, n_points=train_X.shape[0],
        note=note, predicted_front=PredictedFrontOut(values=values, params=params) if values else None,
        objectives=[ObjectiveSensitivityOut(objective=o, r2=r2, parameters=[
            ParameterEffectOut(parameter=e.parameter, effect=e.effect, share=e.share, grid=e.grid, curve=e.curve)
            for e in rows_k]) for o, r2, rows_k in zip(job.objectives, surrogate.r2, per_objective, strict=True)])
