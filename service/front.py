"""A job's Pareto front, kept in memory and updated one evaluation at a time; storage records its changes.

After each completed evaluation a step is stored (`pareto_snapshots`: the number of completed evaluations, the
hypervolume, the front's size) with the evaluations that entered or left the front at that step
(`pareto_changes`), in the same transaction as the evaluation's result. A new point that some member dominates
changes nothing (the hypervolume is the step before's); one that enters removes the members it dominates and the
hypervolume is computed again over the front alone (moocore), so a step costs the same at any size of the job.

A job whose reference point has unknown entries (objectives with no known worst value, such as a loss or a user
function's score) fixes them once its first batch has completed, and stores them with the job for good: from an
earlier job of the same problem (the same models and objectives) whose reference point is fixed, so that their
hypervolumes compare; else each becomes the worst value seen so far, moved away by a tenth of the values' spread.
No step is stored before that; the first one has every member of the front entering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mergefront.optimizers import hypervolume, nondominated_mask
from mergefront.service import repository as repo
from mergefront.service.models import Evaluation, EvaluationState, Job
from mergefront.spec import JobSpec

Values = tuple[float, ...]


@dataclass
class FrontState:
    """A job's front in memory: its members' objective values by evaluation id, and what the last step stored."""

    maximize: tuple[bool, ...]
    reference: tuple[float, ...] | None  # None until the job's reference point is fixed
    members: dict[int, Values] = field(default_factory=dict)
    n_completed: int = 0
    hypervolume: float = 0.0
    seen: list[Values] | None = None  # every completed evaluation's values, kept only until the reference is fixed

    def add(self, evaluation_id: int, values: Values) -> tuple[list[int], list[int]]:
        """Take one more completed evaluation: (ids that entered the front, ids that left it)."""
        self.n_completed += 1
        if self.seen is not None:
            self.seen.append(values)
        if not self.members:
            self.members[evaluation_id] = values
            return [evaluation_id], []
        signs = np.where(self.maximize, -1.0, 1.0)  # minimised form: smaller is better
        ids = list(self.members)
        front = np.asarray([self.members[i] for i in ids], dtype=float) * signs
        point = np.asarray(values, dtype=float) * signs
        if bool(np.any(np.all(front <= point, axis=1) & np.any(front < point, axis=1))):
            return [], []  # dominated: equal points are all kept, as nondominated_mask keeps them
        gone = np.all(point <= front, axis=1) & np.any(point < front, axis=1)
        left = [i for i, g in zip(ids, gone, strict=True) if g]
        for i in left:
            del self.members[i]
        self.members[evaluation_id] = values
        return [evaluation_id], left

    def front_hypervolume(self) -> float:
        if self.reference is None or not self.members:
            return 0.0
        return hypervolume(list(self.members.values()), self.reference, self.maximize)

    def copy(self) -> FrontState:
        return replace(self, members=dict(self.members), seen=None if self.seen is None else list(self.seen))


def objective_values(job: Job, metrics: Mapping[str, float]) -> Values:
    return tuple(float(metrics[k]) for k in job.objectives)


def load_front(*, session: Session, job: Job) -> FrontState:
    """The front of a job's completed evaluations, read once (a runner or server taking the job over)."""
    rows = session.execute(select(Evaluation.id, Evaluation.metrics)
                           .where(Evaluation.job_id == job.id, Evaluation.state == EvaluationState.completed)
                           .order_by(Evaluation.number)).all()
    done = [(i, objective_values(job, m)) for i, m in rows if m is not None]
    mask = nondominated_mask([v for _, v in done], job.maximize) if done else np.zeros(0, dtype=bool)
    fixed = None not in job.reference_point
    last = repo.latest_snapshot(session=session, job_id=job.id)
    return FrontState(maximize=tuple(job.maximize),
                      reference=tuple(float(v) for v in job.reference_point if v is not None) if fixed else None,
                      members={i: v for (i, v), keep in zip(done, mask, strict=True) if keep},
                      n_completed=len(rows), hypervolume=last.hypervolume if last else 0.0,
                      seen=None if fixed else [v for _, v in done])


def record_result(*, session: Session, job: Job, front: FrontState, evaluation_id: int,
                  metrics: Mapping[str, float] | None) -> FrontState:
    """The front after one more finished evaluation (`metrics` None: it failed), its change stored in the
    session's transaction. `front` is left as it was: the caller keeps the returned state once that commits."""
    new = front.copy()
    entered, left = ([], []) if metrics is None else new.add(evaluation_id, objective_values(job, metrics))
    if new.reference is None:  # a failure may end the batch that fixes the reference point too
        if not new.seen or not _fix_reference_point(session, job, new.seen):
            return new
        new.reference = tuple(float(v) for v in job.reference_point if v is not None)
        new.seen = None
        entered, left = list(new.members), []
        new.hypervolume = new.front_hypervolume()
    elif metrics is None:
        return new
    elif entered:
        new.hypervolume = new.front_hypervolume()
    repo.add_front_step(session=session, job_id=job.id, n_completed=new.n_completed, hypervolume=new.hypervolume,
                        front_size=len(new.members), entered=entered, left=left)
    return new


def update_front(*, session: Session, job_id: int) -> FrontState:
    """Bring a job's stored front up to date with all its completed evaluations, read again (one step storing the
    difference); for callers that keep no front in memory."""
    job = repo.get_job(session=session, job_id=job_id)
    state = load_front(session=session, job=job)
    if state.reference is None:
        if not state.seen or not _fix_reference_point(session, job, state.seen):
            return state
        state.reference, state.seen = tuple(float(v) for v in job.reference_point if v is not None), None
    stored = repo.front_member_ids(session=session, job_id=job_id)
    last = repo.latest_snapshot(session=session, job_id=job_id)
    if last is not None and last.n_completed == state.n_completed and stored == set(state.members):
        return state
    state.hypervolume = state.front_hypervolume()
    repo.add_front_step(session=session, job_id=job_id, n_completed=state.n_completed, hypervolume=state.hypervolume,
                        front_size=len(state.members), entered=sorted(set(state.members) - stored),
                        left=sorted(stored - set(state.members)))
    return state


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
