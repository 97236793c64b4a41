"""Pareto front snapshots: after each completed evaluation, the front of all of them and its hypervolume.

A job whose reference point has unknown entries (objectives with no known worst value, such as a loss or a user
function's score) fixes them once its first batch has completed, and stores them with the job for good: from an
earlier job of the same problem (the same models and objectives) whose reference point is fixed, so that their
hypervolumes compare; else each becomes the worst value seen so far, moved away by a tenth of the values' spread.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from mergefront.optimizers import hypervolume, nondominated_mask
from mergefront.service import repository as repo
from mergefront.service.models import EvaluationState, Job
from mergefront.spec import JobSpec


def update_front(*, session: Session, job_id: int) -> None:
    """Store a snapshot of the front of every completed evaluation of a job, with its hypervolume."""
    job = repo.get_job(session=session, job_id=job_id)
    _, rows = repo.list_evaluations(session=session, job_id=job_id, state=EvaluationState.completed)
    values = [[r.metrics[k] for k in job.objectives] for r in rows if r.metrics is not None]
    if not values or not _fix_reference_point(session, job, values):
        return
    mask = nondominated_mask(values, job.maximize)
    members = [r.id for r, keep in zip(rows, mask, strict=True) if keep]
    hv = hypervolume(values, [float(v) for v in job.reference_point if v is not None], job.maximize)
    repo.add_snapshot(session=session, job_id=job_id, member_ids=members, hypervolume=hv, n_completed=len(rows))


def _fix_reference_point(session: Session, job: Job, values: Sequence[Sequence[float]]) -> bool:
    """Fill the job's unknown reference values once a first batch has finished; False while it is too early."""
    if None not in job.reference_point:
        return True
    opt = JobSpec.model_validate(job.spec).optimizer
    counts = repo.evaluation_counts(session=session, job_id=job.id)
    if counts.get(EvaluationState.completed, 0) + counts.get(EvaluationState.failed, 0) < min(opt.batch_size,
                                                                                              opt.budget):
        return False
    shared = repo.same_problem_reference(session=session, job=job)
    job.reference_point = [v if v is not None else shared[i] if shared else
                           inferred_reference(column(values, i), job.maximize[i])
                           for i, v in enumerate(job.reference_point)]
    return True


def column(values: Sequence[Sequence[float]], i: int) -> list[float]:
    return [float(row[i]) for row in values]


def inferred_reference(seen: Sequence[float], maximize: bool) -> float:
    """The worst value seen, moved a tenth of the spread (or of its size, or 1) further away."""
    worst = min(seen) if maximize else max(seen)
    spread = max(seen) - min(seen) or abs(worst) or 1.0
    return worst - 0.1 * spread if maximize else worst + 0.1 * spread
