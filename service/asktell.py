"""Ask/tell: jobs whose objectives are external are evaluated by the user, not by mergefront's workers.

`ask` proposes candidates from the job's stored history (the optimizer is rebuilt from the spec and seed, as the
runner does), `tell` records what the user measured. Each runs in one transaction that holds the job's lock
(`repository.lock_job`), so concurrent asks number their candidates without collision and never overshoot the
budget, and a tell never races an ask. A candidate not told within `resources.ask_timeout` seconds expires: it
stops counting toward the budget and as pending, so the optimizer may propose in its region again. Expiry is
applied lazily, by every ask, every tell, and every read of the job's evaluations through the API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sqlalchemy.orm import Session

from mergefront.bounds import MAX_METRIC
from mergefront.errors import ConflictError, InvalidSpecError
from mergefront.optimizers import make_optimizer
from mergefront.service import repository as repo
from mergefront.service.front import update_front
from mergefront.service.models import Evaluation, EvaluationState, Job, JobState, utcnow
from mergefront.service.settings import Settings
from mergefront.service.space import job_space, observation
from mergefront.spec import JobSpec

EXTERNAL_WORKER = "external"
_FINISHED = (EvaluationState.completed, EvaluationState.failed)


def ask(*, session: Session, job_id: int, n: int, settings: Settings) -> list[Evaluation]:
    """Propose up to `n` candidates of an external job, recorded running until told or expired.

    Fewer than `n` (none once the budget is spent) when finished plus outstanding candidates would pass the budget.
    """
    job = _external_job(session, job_id, f"job {job_id}")
    if job.state == JobState.cancelled:
        raise ConflictError(f"job {job_id} was cancelled; it proposes no more candidates")
    repo.expire_overdue(session=session, job_id=job_id)
    spec = JobSpec.model_validate(job.spec)
    _, rows = repo.list_evaluations(session=session, job_id=job_id)
    finished = [r for r in rows if r.state in _FINISHED]
    outstanding = [r for r in rows if r.state == EvaluationState.running]
    n = min(n, spec.optimizer.budget - len(finished) - len(outstanding))
    if n <= 0 or job.state == JobState.completed:
        return []
    space = job_space(spec, settings)
    history = [observation(spec, r) for r in finished]
    points = make_optimizer(spec, space).ask(n, history, [tuple(r.x) for r in outstanding])
    new = repo.add_evaluations(session=session, job_id=job_id,
                               points=[(list(x), space.decode(x)) for x in points])
    for row in new:
        repo.start_evaluation(session=session, evaluation_id=row.id, deadline_seconds=spec.resources.ask_timeout)
    repo.start_job(session=session, job_id=job_id)
    return new


def tell(*, session: Session, evaluation_id: int, metrics: Mapping[str, float] | None = None,
         error: str | None = None) -> Evaluation:
    """Record the metrics a user measured for a candidate, or the error that stopped them (a failed evaluation).

    Telling the same result again changes nothing; a different result, or one for an expired candidate, is a
    ConflictError. Metrics must name each objective of the job once, with a finite number (InvalidSpecError).
    """
    if (metrics is None) == (error is None):
        raise InvalidSpecError("tell either metrics or an error", ("metrics",))
    job_id = repo.get_evaluation(session=session, evaluation_id=evaluation_id).job_id
    job = _external_job(session, job_id, f"evaluation {evaluation_id} (of job {job_id})")
    spec = JobSpec.model_validate(job.spec)
    told = None if metrics is None else check_metrics(spec, metrics)
    now = utcnow()
    repo.expire_overdue(session=session, job_id=job_id, now=now)
    row = repo.get_evaluation(session=session, evaluation_id=evaluation_id)
    if row.state != EvaluationState.running:
        _check_repeat(row, told, error, spec)
        return row
    if told is not None:
        started = row.started_at or now
        repo.complete_evaluation(session=session, evaluation_id=row.id, metrics=told, worker=EXTERNAL_WORKER,
                                 merge_seconds=0.0, eval_seconds=(now - started).total_seconds())
    else:
        repo.fail_evaluation(session=session, evaluation_id=row.id, error=str(error), final=True)
    if told is not None or None in job.reference_point:  # a failure may end the batch that fixes the reference
        update_front(session=session, job_id=job_id)
    counts = repo.evaluation_counts(session=session, job_id=job_id)
    if sum(counts.get(s, 0) for s in _FINISHED) >= spec.optimizer.budget:
        repo.finish_job(session=session, job_id=job_id, state=JobState.completed)
    return row


def check_metrics(spec: JobSpec, metrics: Mapping[str, float]) -> dict[str, float]:
    """The told metrics in objective order; InvalidSpecError naming the first unknown, missing or non-finite one."""
    keys = spec.objective_keys
    for key in metrics:
        if key not in keys:
            raise InvalidSpecError(f"{key!r} is not an objective of this job; its objectives are {keys}",
                                   ("metrics", key))
    for key in keys:
        if key not in metrics:
            raise InvalidSpecError(f"missing: tell a value for every objective {keys}", ("metrics", key))
        if not math.isfinite(metrics[key]) or abs(metrics[key]) > MAX_METRIC:
            raise InvalidSpecError(f"{metrics[key]} is not a finite number within +-{MAX_METRIC:g}", ("metrics", key))
    return {key: float(metrics[key]) for key in keys}


def _external_job(session: Session, job_id: int, what: str) -> Job:
    job = repo.lock_job(session=session, job_id=job_id)
    if not job.external:
        raise ConflictError(f"{what}: job {job_id} is evaluated by mergefront's workers; ask and tell are for jobs "
                            "whose objectives are all `evaluator: external`")
    return job


def _check_repeat(row: Evaluation, metrics: dict[str, float] | None, error: str | None, spec: JobSpec) -> None:
    """A tell for a candidate no longer running: the same result again is fine, anything else a conflict."""
    if row.state == EvaluationState.cancelled:
        raise ConflictError(f"evaluation {row.id} (candidate {row.number}) was abandoned when its job was cancelled")
    if row.state == EvaluationState.expired:
        raise ConflictError(f"evaluation {row.id} (candidate {row.number}) expired at {row.expires_at} UTC: it was "
                            f"not told within ask_timeout ({spec.resources.ask_timeout:g} s) and went back to the "
                            "optimizer; ask for new candidates")
    same = (row.state == EvaluationState.completed and metrics == row.metrics) or (
        row.state == EvaluationState.failed and metrics is None and error == row.error)
    if not same:
        before = f"metrics {row.metrics}" if row.state == EvaluationState.completed else f"error {row.error!r}"
        now = f"metrics {metrics}" if metrics is not None else f"error {error!r}"
        raise ConflictError(f"evaluation {row.id} (candidate {row.number}) was already told {before}; "
                            f"it cannot be told {now}")
