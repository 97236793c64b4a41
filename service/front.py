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

A job with `optimizer.reevaluate` evaluates some front members again with new mask seeds: the front is then over
points, each with the mean of its evaluations (a point is named by its first evaluation, which is what
`pareto_changes` and `on_front` hold). A repeat moves its point's mean: the front is taken again over its members
and, when the point was one, the points its old mean dominated, the only ones that can enter (such a job keeps
every point's values in memory for this).
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
    """A job's front in memory: its members' objective values by point, and what the last step stored.

    A point is keyed by its first evaluation's id; a job that evaluates points again (`optimizer.reevaluate`)
    keeps every point's evaluations (`points`), and a member's values are the mean over its evaluations.
    """

    maximize: tuple[bool, ...]
    reference: tuple[float, ...] | None  # None until the job's reference point is fixed
    members: dict[int, Values] = field(default_factory=dict)
    n_completed: int = 0
    hypervolume: float = 0.0
    seen: list[Values] | None = None  # every completed evaluation's values, kept only until the reference is fixed
    # jobs that re-evaluate: each point's evaluations (evaluation id -> values), shared by copies: an evaluation
    # added twice (a transaction tried again) is the same entry
    points: dict[int, dict[int, Values]] | None = None

    def add(self, evaluation_id: int, values: Values, point: int | None = None) -> tuple[list[int], list[int]]:
        """Take one more completed evaluation, of `point` (the first evaluation's id; default: a new point):
        (points that entered the front, points that left it)."""
        point = evaluation_id if point is None else point
        self.n_completed += 1
        if self.seen is not None:
            self.seen.append(values)
        if self.points is not None:
            evaluations = self.points.setdefault(point, {})
            before = [v for i, v in evaluations.items() if i != evaluation_id]
            evaluations[evaluation_id] = values
            if before:
                return self._moved(point, _mean(before), _mean([*before, values]))
        return self._entered(point, values)

    def _entered(self, point: int, values: Values) -> tuple[list[int], list[int]]:
        if not self.members:
            self.members[point] = values
            return [point], []
        signs = self._signs()
        ids = list(self.members)
        front = np.asarray([self.members[i] for i in ids], dtype=float) * signs
        new = np.asarray(values, dtype=float) * signs
        if bool(np.any(np.all(front <= new, axis=1) & np.any(front < new, axis=1))):
            return [], []  # dominated: equal points are all kept, as nondominated_mask keeps them
        gone = np.all(new <= front, axis=1) & np.any(new < front, axis=1)
        left = [i for i, g in zip(ids, gone, strict=True) if g]
        for i in left:
            del self.members[i]
        self.members[point] = values
        return [point], left

    def _moved(self, point: int, was: Values, now: Values) -> tuple[list[int], list[int]]:
        """A point evaluated again: its mean moved from `was` to `now`. The front is taken again over its members
        and, when the point was a member, the points its old mean dominated (only those can enter)."""
        assert self.points is not None
        candidates = {**self.members, point: now}
        if point in self.members:
            signs = self._signs()
            old = np.asarray(was, dtype=float) * signs
            for i, evaluations in self.points.items():
                if i not in candidates and evaluations:
                    mean = np.asarray(_mean(list(evaluations.values())), dtype=float) * signs
                    if bool(np.all(old <= mean) and np.any(old < mean)):
                        candidates[i] = tuple(float(v) for v in mean * signs)
        ids = list(candidates)
        keep = nondominated_mask([candidates[i] for i in ids], self.maximize)
        before = set(self.members)
        self.members = {i: candidates[i] for i, k in zip(ids, keep, strict=True) if k}
        return sorted(set(self.members) - before), sorted(before - set(self.members))

    def _signs(self) -> np.ndarray:
        return np.where(self.maximize, -1.0, 1.0)  # minimised form: smaller is better

    def front_hypervolume(self) -> float:
        if self.reference is None or not self.members:
            return 0.0
        return hypervolume(list(self.members.values()), self.reference, self.maximize)

    def copy(self) -> FrontState:
        return replace(self, members=dict(self.members), seen=None if self.seen is None else list(self.seen))


def _mean(values: Sequence[Values]) -> Values:
    return tuple(float(v) for v in np.mean(np.asarray(values, dtype=float), axis=0))


def reevaluates(job: Job) -> bool:
    """Whether the job evaluates front members again (`optimizer.reevaluate` above 0)."""
    return float((job.spec.get("optimizer") or {}).get("reevaluate") or 0.0) > 0.0


def objective_values(job: Job, metrics: Mapping[str, float]) -> Values:
    return tuple(float(metrics[k]) for k in job.objectives)


def load_front(*, session: Session, job: Job) -> FrontState:
    """The front of a job's completed evaluations, read once (a runner or server taking the job over); a point
    evaluated more than once is on it with its mean."""
    rows = session.execute(select(Evaluation.id, Evaluation.repeat_of, Evaluation.metrics)
                           .where(Evaluation.job_id == job.id, Evaluation.state == EvaluationState.completed)
                           .order_by(Evaluation.number)).all()
    points: dict[int, dict[int, Values]] = {}
    for i, of, m in rows:
        if m is not None:
            points.setdefault(i if of is None else of, {})[i] = objective_values(job, m)
    done = [(p, _mean(list(e.values()))) for p, e in points.items()]
    mask = nondominated_mask([v for _, v in done], job.maximize) if done else np.zeros(0, dtype=bool)
    fixed = None not in job.reference_point
    last = repo.latest_snapshot(session=session, job_id=job.id)
    return FrontState(maximize=tuple(job.maximize),
                      reference=tuple(float(v) for v in job.reference_point if v is not None) if fixed else None,
                      members={i: v for (i, v), keep in zip(done, mask, strict=True) if keep},
                      n_completed=len(rows), hypervolume=last.hypervolume if last else 0.0,
                      seen=None if fixed else [v for e in points.values() for v in e.values()],
                      points=points if reevaluates(job) else None)


def record_result(*, session: Session, job: Job, front: FrontState, evaluation_id: int,
                  metrics: Mapping[str, float] | None, point: int | None = None) -> FrontState:
    """The front after one more finished evaluation (`metrics` None: it failed) of `point` (its first evaluation's
    id; None: a new point), its change stored in the session's transaction. `front` is left as it was (but for
    the evaluations it shares, see `FrontState.points`): the caller keeps the returned state once that commits."""
    new = front.copy()
    entered, left = ([], []) if metrics is None else new.add(evaluation_id, objective_values(job, metrics), point)
    moved = point is not None and point != evaluation_id and metrics is not None  # a repeat moves a mean
    if new.reference is None:  # a failure may end the batch that fixes the reference point too
        if not new.seen or not _fix_reference_point(session, job, new.seen):
            return new
        new.reference = tuple(float(v) for v in job.reference_point if v is not None)
        new.seen = None
        entered, left = list(new.members), []
        new.hypervolume = new.front_hypervolume()
    elif metrics is None:
        return new
    elif entered or left or (moved and point in new.members):
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
