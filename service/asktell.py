"""Ask/tell: jobs whose objectives are external are evaluated by the user, not by mergefront's workers.

`ask` proposes candidates from the job's history (the optimizer is rebuilt from the spec and seed, as the runner
does), `tell` records what the user measured and the front's change. The server keeps each job's history, running
candidates and front in memory (`JobMemory`), checked against the job's revision, so neither reads the job's rows
again: an ask or a tell costs the same at the 50,000th evaluation as at the first. Each runs in one transaction that
holds the job's lock (`repository.lock_job`), so concurrent asks number their candidates without collision and never
overshoot the budget, and a tell never races an ask. A candidate not told within `resources.ask_timeout` seconds
expires: it stops counting toward the budget and as pending, so the optimizer may propose in its region again.
Expiry is applied lazily, by every ask, every tell, and every read of the job's evaluations through the API.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from mergefront.bounds import MAX_METRIC
from mergefront.errors import ConflictError, InvalidSpecError
from mergefront.optimizers import SearchSpace, make_optimizer
from mergefront.optimizers.base import History, Point
from mergefront.optimizers.repeats import ask_with_repeats
from mergefront.service import repository as repo
from mergefront.service.db import allow_idle
from mergefront.service.front import FrontState, load_front, record_result
from mergefront.service.models import Evaluation, EvaluationState, Job, JobState, utcnow
from mergefront.service.settings import Settings
from mergefront.service.space import job_space, observation
from mergefront.spec import JobSpec

EXTERNAL_WORKER = "external"
_FINISHED = (EvaluationState.completed, EvaluationState.failed)


@dataclass
class _Known:
    """What a server keeps of an external job between its asks and tells, valid while `revision` is the job's."""

    revision: str
    spec: JobSpec
    history: History  # finished candidates, as the optimizer sees them
    outstanding: dict[int, tuple[Point, datetime | None]]  # running candidates by id: point, tell deadline
    n_finished: int
    next_number: int
    front: FrontState
    spaces: dict[int, SearchSpace] = field(default_factory=dict)  # by id(settings): roots may differ

    def pending(self) -> list[Point]:
        return [x for x, _ in self.outstanding.values()]

    def may_expire(self, now: datetime) -> bool:
        """Whether a running candidate's deadline has passed (only then is the database asked to expire any)."""
        return any(deadline is not None and deadline <= now for _, deadline in self.outstanding.values())

    def space(self, settings: Settings) -> SearchSpace:
        if id(settings) not in self.spaces:
            self.spaces = {id(settings): job_space(self.spec, settings)}
        return self.spaces[id(settings)]


class JobMemory:
    """The external jobs this process served last, so an ask or a tell reads no more than its own rows.

    Every ask/tell runs under the job's lock and gives the job a new revision; a copy whose revision is not the
    job's (another replica, an expiry, a cancel, a transaction that rolled back) is read again from the database.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._jobs: OrderedDict[tuple[str, int], _Known] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, job: Job) -> _Known:
        bind = session.get_bind()
        key = (str(bind.engine.url), job.id)
        with self._lock:
            known = self._jobs.get(key)
        if known is None or known.revision != job.revision:
            known = _load(session, job)
            with self._lock:
                self._jobs[key] = known
                while len(self._jobs) > self.size:
                    self._jobs.popitem(last=False)
        with self._lock:
            self._jobs.move_to_end(key)
        return known


MEMORY = JobMemory()


def _load(session: Session, job: Job) -> _Known:
    spec = JobSpec.model_validate(job.spec)
    _, rows = repo.list_evaluations(session=session, job_id=job.id)
    history = History(len(rows[0].x) if rows else 0, len(spec.objectives))
    for r in rows:
        if r.state in _FINISHED:
            history.add(r.number, observation(spec, r))
    return _Known(revision=job.revision, spec=spec, history=history,
                  outstanding={r.id: (tuple(r.x), r.expires_at) for r in rows if r.state == EvaluationState.running},
                  n_finished=len(history), next_number=1 + max((r.number for r in rows), default=-1),
                  front=load_front(session=session, job=job))


def _current(session: Session, job: Job, now: datetime) -> _Known:
    """The job as this server knows it, its overdue candidates expired first (read again when there were some)."""
    known = MEMORY.get(session, job)
    if known.may_expire(now) and repo.expire_overdue(session=session, job_id=job.id, now=now):
        known = MEMORY.get(session, job)  # the expiry gave the job a new revision
    return known


def ask(*, session: Session, job_id: int, n: int, settings: Settings) -> list[Evaluation]:
    """Propose up to `n` candidates of an external job, recorded running until told or expired.

    Fewer than `n` (none once the budget is spent) when finished plus outstanding candidates would pass the budget.
    """
    job = _external_job(session, job_id, f"job {job_id}")
    if job.state == JobState.cancelled:
        raise ConflictError(f"job {job_id} was cancelled; it proposes no more candidates")
    known = _current(session, job, utcnow())
    spec = known.spec
    n = min(n, spec.optimizer.budget - known.n_finished - len(known.outstanding))
    if n <= 0 or job.state == JobState.completed:
        return []
    space = known.space(settings)
    if not known.history.dim:
        known.history = History(space.dim, len(spec.objectives))
    opt = spec.optimizer
    allow_idle(session)  # the optimizer's step, however long, under the job's lock
    points = ask_with_repeats(make_optimizer(spec, space), n, known.history, known.pending(), share=opt.reevaluate,
                              budget=opt.budget)
    new = repo.add_evaluations(session=session, job_id=job_id, start=known.next_number,
                               points=[(list(x), space.decode(x)) for x in points],
                               repeats=[known.history.first(x) for x in points])
    for row in new:
        repo.start_evaluation(session=session, evaluation_id=row.id, deadline_seconds=spec.resources.ask_timeout)
    repo.start_job(session=session, job_id=job_id)
    known.revision = repo.touch_job(session=session, job_id=job_id)  # first: a rollback leaves the copy stale
    known.outstanding.update((row.id, (tuple(row.x), row.expires_at)) for row in new)
    known.next_number += len(new)
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
    now = utcnow()
    known = _current(session, job, now)
    spec = known.spec
    told = None if metrics is None else check_metrics(spec, metrics)
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
    known.revision = repo.touch_job(session=session, job_id=job_id)  # first: a rollback leaves the copy stale
    known.outstanding.pop(row.id, None)
    if not known.history.dim:
        known.history = History(len(row.x), len(spec.objectives))
    known.history.add(row.number, observation(spec, row))
    known.n_finished += 1
    # the front's change, in this transaction; a commit that fails leaves the job's revision older than ours
    known.front = record_result(session=session, job=job, front=known.front, evaluation_id=row.id, metrics=told,
                                point=row.repeat_of)
    if known.n_finished >= spec.optimizer.budget:
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
