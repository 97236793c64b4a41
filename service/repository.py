"""Data access: keyword-only functions over a session. Routes and the runner call these, never the session."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

import numpy as np
from sqlalchemy import case, false, func, or_, select, true, update
from sqlalchemy.orm import Session

from mergefront.errors import InvalidSpecError, NotFoundError
from mergefront.schemas import (
    FrontPoints,
    HypervolumeHistory,
    HypervolumePoint,
    JobOut,
    ParetoOut,
)
from mergefront.service.columns import OPS, ColumnFilter, resolve_column
from mergefront.service.evidence import evidence, front_member
from mergefront.service.models import (
    Evaluation,
    EvaluationState,
    Job,
    JobState,
    ParetoChange,
    ParetoSnapshot,
    utcnow,
)
from mergefront.spec import JobSpec


def create_job(*, session: Session, spec: JobSpec, origin: str = "local") -> Job:
    """Store a validated spec as a pending job, its reference point fixed now (`origin`: local or network)."""
    ref = spec.default_reference_point()  # None where no worst value is known: fixed after the first batch
    job = Job(name=spec.name, spec=spec.model_dump(mode="json"), state=JobState.pending,
              optimizer=spec.optimizer.name, budget=spec.optimizer.budget, objectives=spec.objective_keys,
              maximize=spec.maximize, reference_point=[None if v is None else float(v) for v in ref],
              external=spec.external, origin=origin, revision=new_revision())
    session.add(job)
    session.flush()
    return job


def new_revision() -> str:
    """A fresh value for `jobs.revision`: set by every write to an external job's evaluations, so a server that
    keeps the job in memory knows when someone else (another replica, an expiry, a cancel) changed it."""
    return uuid.uuid4().hex


def touch_job(*, session: Session, job_id: int) -> str:
    """Give a job a new revision; return it."""
    get_job(session=session, job_id=job_id).revision = revision = new_revision()
    return revision


def get_job(*, session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return job


def evaluation_counts(*, session: Session, job_id: int) -> dict[str, int]:
    """How many of a job's evaluations are in each state."""
    return {state: n for state, n in session.execute(
        select(Evaluation.state, func.count()).where(Evaluation.job_id == job_id).group_by(Evaluation.state)
    ).all()}


def job_out(*, session: Session, job: Job) -> JobOut:
    """A job with its progress counts and latest hypervolume."""
    counts = evaluation_counts(session=session, job_id=job.id)
    snapshot = latest_snapshot(session=session, job_id=job.id)
    out = JobOut.model_validate(job)
    return out.model_copy(update={
        "n_completed": counts.get(EvaluationState.completed, 0),
        "n_failed": counts.get(EvaluationState.failed, 0),
        "hypervolume": snapshot.hypervolume if snapshot else None,
    })


SHARED_REFERENCE_LOOKBACK = 1000  # earlier jobs searched for one of the same problem


def same_problem_reference(*, session: Session, job: Job) -> list[float] | None:
    """The fixed reference point of the latest earlier job of the same problem (the same models and objectives),
    or None: jobs that share it have hypervolumes that compare."""
    rows = session.scalars(select(Job).where(Job.id < job.id).order_by(Job.id.desc())
                           .limit(SHARED_REFERENCE_LOOKBACK)).all()
    key = _problem_key(job.spec)
    for other in rows:
        if None not in other.reference_point and other.objectives == job.objectives and _problem_key(other.spec) == key:
            return [float(v) for v in other.reference_point if v is not None]
    return None


def _problem_key(spec: dict[str, Any]) -> tuple[str, str]:
    return json.dumps(spec.get("models"), sort_keys=True), json.dumps(spec.get("objectives"), sort_keys=True)


JobSort = Literal["id", "name", "state", "optimizer", "created_at", "finished_at"]
JOB_SORTS: tuple[str, ...] = get_args(JobSort)


def list_jobs(*, session: Session, offset: int = 0, limit: int = 50, search: str | None = None,
              state: str | None = None, sort: JobSort = "id", descending: bool = True) -> tuple[int, list[Job]]:
    """A page of jobs; `search` matches words of their names and notes (case-insensitive), `sort` one of JOB_SORTS."""
    if sort not in JOB_SORTS:
        raise InvalidSpecError(f"cannot sort jobs by {sort!r}; one of {list(JOB_SORTS)}", ("sort",))
    where: list[Any] = []
    if state is not None:
        where.append(Job.state == state)
    for word in (search or "").split():
        where.append(or_(func.lower(Job.name).contains(word.lower(), autoescape=True),
                         func.lower(func.coalesce(Job.notes, "")).contains(word.lower(), autoescape=True)))
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    key = getattr(Job, sort)
    order = (key.desc() if descending else key.asc()).nulls_last()
    jobs = session.scalars(select(Job).where(*where).order_by(order, Job.id.desc()).offset(offset).limit(limit)).all()
    return total, list(jobs)


def lease_job(*, session: Session, owner: str, seconds: float, job_id: int | None = None) -> int | None:
    """Take the lease of a pending job, or of a running job whose runner stopped renewing; return its id.

    External jobs are never leased: their candidates are evaluated outside, through ask/tell. A job deferred
    (`defer_job`) waits its time unless it is asked for by id; a failed job is taken only when asked for by id
    (resumed once its cause is fixed: the rest of its budget is evaluated).
    """
    now = utcnow()
    waited = true() if job_id is not None else or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
    free = (Job.external == false()) & or_(
        (Job.state == JobState.pending) & waited,
        (Job.state == JobState.failed) & (true() if job_id is not None else false()),
        (Job.state == JobState.running) & (or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now,
                                               Job.lease_owner == owner)))
    query = select(Job.id).where(free).order_by(Job.id).limit(1)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    candidate = session.scalar(query)
    if candidate is None:
        return None
    return session.scalar(
        update(Job).where(Job.id == candidate, free)
        .values(state=JobState.running, lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds),
                started_at=func.coalesce(Job.started_at, now), finished_at=None, error=None)
        .returning(Job.id).execution_options(synchronize_session=False)
    )


def renew_lease(*, session: Session, job_id: int, owner: str, seconds: float) -> str | None:
    """Extend `owner`'s lease of a job by `seconds` from now; the job's state, or None when `owner` does not hold
    it (it was taken over, or it ended)."""
    state: str | None = session.scalar(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
        .returning(Job.state).execution_options(synchronize_session=False)
    )
    return state


def defer_job(*, session: Session, job_id: int, owner: str, reason: str, seconds: float) -> None:
    """Put a job that could not run now back to pending, saying why; no runner takes it for `seconds` (a pending
    job's lease expiry is the time before which it waits)."""
    now = utcnow()
    session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner)
                    .values(state=JobState.pending, lease_owner=None, error=f"waiting: {reason}",
                            lease_expires_at=now + timedelta(seconds=seconds),
                            waiting_since=func.coalesce(Job.waiting_since, now))
                    .execution_options(synchronize_session=False))


def workers_started(*, session: Session, job_id: int) -> None:
    """The cluster started the job's workers: it no longer waits (its start deadline starts again next time)."""
    session.execute(update(Job).where(Job.id == job_id).values(waiting_since=None)
                    .execution_options(synchronize_session=False))


def release_lease(*, session: Session, job_id: int, owner: str) -> None:
    session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None).execution_options(synchronize_session=False))


def lock_job(*, session: Session, job_id: int) -> Job:
    """The job, locked until the transaction ends, so that its asks and tells run one at a time.

    PostgreSQL locks the row (SELECT ... FOR UPDATE). SQLite has no row locks and ignores FOR UPDATE: a no-op
    update takes the database's write lock before anything is read, so no read of the transaction is stale.
    Objects the session read before are expired: they are read again, under the lock.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Job).where(Job.id == job_id).values(id=Job.id)
                        .execution_options(synchronize_session=False))
    session.expire_all()
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return job


def start_job(*, session: Session, job_id: int) -> None:
    """A pending job becomes running (for the jobs the runner evaluates, its lease does this)."""
    job = get_job(session=session, job_id=job_id)
    if job.state == JobState.pending:
        job.state, job.started_at = JobState.running, utcnow()


def finish_job(*, session: Session, job_id: int, state: JobState, error: str | None = None) -> None:
    """End a job; a cancelled job stays cancelled (its runner may finish after the cancel)."""
    job = get_job(session=session, job_id=job_id)
    if job.state == JobState.cancelled:
        job.lease_owner, job.lease_expires_at = None, None
        return
    job.state, job.error, job.finished_at = state, error, utcnow()
    job.lease_owner, job.lease_expires_at = None, None


def add_evaluations(*, session: Session, job_id: int, points: Sequence[tuple[list[float], dict[str, float]]],
                    start: int | None = None, repeats: Sequence[int | None] = ()) -> list[Evaluation]:
    """Record proposed candidates (unit-cube point, named parameters) as pending evaluations, numbered on (from
    `start` when the caller knows the next number: the unique (job, number) index still guards it). `repeats`,
    per point: the number of the point's first evaluation when it is evaluated again, else None."""
    if start is None:
        last = session.scalar(select(func.max(Evaluation.number)).where(Evaluation.job_id == job_id))
        start = 0 if last is None else last + 1  # read from the (job, number) index: no count of every row
    firsts = [r for r in repeats if r is not None]
    ids = dict(session.execute(select(Evaluation.number, Evaluation.id)
                               .where(Evaluation.job_id == job_id, Evaluation.number.in_(firsts))).all()
               ) if firsts else {}
    of = [None if r is None else ids[r] for r in repeats] + [None] * (len(points) - len(repeats))
    rows = [Evaluation(job_id=job_id, number=start + i, state=EvaluationState.pending, x=list(x), params=params,
                       attempts=0, repeat_of=of[i]) for i, (x, params) in enumerate(points)]
    session.add_all(rows)
    session.flush()
    return rows


def evaluations_from(*, session: Session, job_id: int, number: int) -> list[Evaluation]:
    """A job's evaluations numbered `number` and on, in order."""
    return list(session.scalars(select(Evaluation).where(Evaluation.job_id == job_id, Evaluation.number >= number)
                                .order_by(Evaluation.number)).all())


def list_evaluations(*, session: Session, job_id: int, state: str | None = None, offset: int = 0,
                     limit: int | None = None) -> tuple[int, list[Evaluation]]:
    where: list[Any] = [Evaluation.job_id == job_id]
    if state is not None:
        where.append(Evaluation.state == state)
    total = session.scalar(select(func.count()).select_from(Evaluation).where(*where)) or 0
    query = select(Evaluation).where(*where).order_by(Evaluation.number).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return total, list(session.scalars(query).all())


def job_with_completed(*, session: Session, job_id: int) -> tuple[Job, list[Evaluation]]:
    """A job and its completed evaluations in the order they were proposed (NotFoundError for no such job)."""
    job = get_job(session=session, job_id=job_id)
    return job, list_evaluations(session=session, job_id=job_id, state=EvaluationState.completed)[1]


def start_evaluation(*, session: Session, evaluation_id: int, deadline_seconds: float | None = None) -> None:
    """Mark an evaluation running; with `deadline_seconds` (external jobs) it expires that long from now."""
    row = get_evaluation(session=session, evaluation_id=evaluation_id)
    if row.state == EvaluationState.cancelled:
        return
    row.state, row.attempts, row.started_at = EvaluationState.running, row.attempts + 1, utcnow()
    if deadline_seconds is not None:
        row.expires_at = row.started_at + timedelta(seconds=deadline_seconds)


def expire_overdue(*, session: Session, job_id: int, now: datetime | None = None) -> int:
    """Mark the job's running candidates whose tell deadline has passed `expired`; return how many."""
    now = now or utcnow()
    result = session.execute(
        update(Evaluation)
        .where(Evaluation.job_id == job_id, Evaluation.state == EvaluationState.running,
               Evaluation.expires_at.is_not(None), Evaluation.expires_at <= now)
        .values(state=EvaluationState.expired, finished_at=now,
                error="not told before its deadline; the candidate went back to the optimizer")
        .execution_options(synchronize_session="fetch"))
    expired = int(getattr(result, "rowcount", 0) or 0)
    if expired:
        touch_job(session=session, job_id=job_id)
    return expired


def complete_evaluation(*, session: Session, evaluation_id: int, metrics: dict[str, float], worker: str,
                        merge_seconds: float, eval_seconds: float, node: str | None = None,
                        node_id: str | None = None) -> None:
    row = get_evaluation(session=session, evaluation_id=evaluation_id)
    if row.state == EvaluationState.cancelled:  # its job was cancelled: the result is not recorded
        return
    row.state, row.metrics, row.worker, row.error = EvaluationState.completed, metrics, worker, None
    row.merge_seconds, row.eval_seconds, row.finished_at = merge_seconds, eval_seconds, utcnow()
    row.node, row.node_id = node, node_id


def fail_evaluation(*, session: Session, evaluation_id: int, error: str, final: bool, node: str | None = None,
                    node_id: str | None = None) -> None:
    """Record an error (and the node it happened on, when known) in the evaluation's error history; a final
    failure ends the evaluation, otherwise it waits to be retried."""
    row = get_evaluation(session=session, evaluation_id=evaluation_id)
    if row.state == EvaluationState.cancelled:
        return
    now = utcnow()
    row.error, row.node, row.node_id = error, node, node_id
    row.errors = [*(row.errors or []), {"attempt": row.attempts, "error": error, "node": node,
                                        "at": now.isoformat()}]
    if final:
        row.state, row.finished_at = EvaluationState.failed, now
    else:
        row.state = EvaluationState.pending


def requeue_running(*, session: Session, job_id: int) -> int:
    """Put a job's running evaluations back to pending (its runner stopped them); return how many."""
    result = session.execute(
        update(Evaluation).where(Evaluation.job_id == job_id, Evaluation.state == EvaluationState.running)
        .values(state=EvaluationState.pending).execution_options(synchronize_session="fetch"))
    return int(getattr(result, "rowcount", 0) or 0)


def first_failures(*, session: Session, job_id: int) -> tuple[int, set[str]]:
    """How many of a job's evaluations ended failed while none completed, and their distinct errors ((0, set())
    once one completed)."""
    if session.scalar(select(func.count()).select_from(Evaluation).where(
            Evaluation.job_id == job_id, Evaluation.state == EvaluationState.completed)):
        return 0, set()
    errors = session.scalars(select(Evaluation.error).where(Evaluation.job_id == job_id,
                                                            Evaluation.state == EvaluationState.failed)).all()
    return len(errors), {e or "" for e in errors}


def get_evaluation(*, session: Session, evaluation_id: int) -> Evaluation:
    row = session.get(Evaluation, evaluation_id)
    if row is None:
        raise NotFoundError(f"evaluation {evaluation_id} does not exist")
    return row


def add_front_step(*, session: Session, job_id: int, n_completed: int, hypervolume: float, front_size: int,
                   entered: Sequence[int] = (), left: Sequence[int] = ()) -> ParetoSnapshot:
    """Store one step of a job's front: its hypervolume and size after `n_completed` completed evaluations, and
    the evaluations that entered or left it (marked on or off the latest front)."""
    step = ParetoSnapshot(job_id=job_id, hypervolume=hypervolume, n_completed=n_completed, front_size=front_size)
    session.add(step)
    session.flush()
    if entered or left:
        session.add_all([ParetoChange(job_id=job_id, snapshot_id=step.id, evaluation_id=e, entered=True)
                         for e in entered] +
                        [ParetoChange(job_id=job_id, snapshot_id=step.id, evaluation_id=e, entered=False)
                         for e in left])
        for ids, on in ((entered, True), (left, False)):
            if ids:
                session.execute(update(Evaluation).where(Evaluation.id.in_(list(ids))).values(on_front=on)
                                .execution_options(synchronize_session=False))
    return step


def add_snapshot(*, session: Session, job_id: int, member_ids: Sequence[int], hypervolume: float,
                 n_completed: int) -> ParetoSnapshot:
    """A step given the whole front: what differs from the latest front is stored as its changes."""
    members, now = set(member_ids), front_member_ids(session=session, job_id=job_id)
    return add_front_step(session=session, job_id=job_id, n_completed=n_completed, hypervolume=hypervolume,
                          front_size=len(members), entered=sorted(members - now), left=sorted(now - members))


def front_members(*, session: Session, job_id: int, n_completed: int | None = None) -> list[Evaluation]:
    """The evaluations on a job's front (the latest, or the one after `n_completed` completed evaluations), by
    number."""
    if n_completed is None:
        where = [Evaluation.job_id == job_id, Evaluation.on_front == true()]
        return list(session.scalars(select(Evaluation).where(*where).order_by(Evaluation.number)).all())
    net = func.sum(case((ParetoChange.entered == true(), 1), else_=-1))
    ids = (select(ParetoChange.evaluation_id).join(ParetoSnapshot, ParetoSnapshot.id == ParetoChange.snapshot_id)
           .where(ParetoChange.job_id == job_id, ParetoSnapshot.n_completed <= n_completed)
           .group_by(ParetoChange.evaluation_id).having(net > 0))
    return list(session.scalars(select(Evaluation).where(Evaluation.id.in_(ids)).order_by(Evaluation.number)).all())


def best_on_front(*, session: Session, job_id: int, objective: str) -> Evaluation:
    """The member of the job's latest front with the best value of `objective`."""
    job = get_job(session=session, job_id=job_id)
    if objective not in job.objectives:
        raise InvalidSpecError(f"job {job_id} has no objective {objective!r}; it has {job.objectives}", ("best",))
    members = front_members(session=session, job_id=job_id)
    if not members:
        raise NotFoundError(f"job {job_id} has no completed evaluation yet")
    sign = 1.0 if job.maximize[job.objectives.index(objective)] else -1.0
    found = evidence(session=session, points=members, keys=job.objectives)  # a point evaluated again: its mean
    return max(members, key=lambda m: sign * found[m.id].mean[objective])


def latest_snapshot(*, session: Session, job_id: int, n_completed: int | None = None) -> ParetoSnapshot | None:
    """The latest step of a job's front (at or before `n_completed` completed evaluations, when given)."""
    where = [ParetoSnapshot.job_id == job_id]
    if n_completed is not None:
        where.append(ParetoSnapshot.n_completed <= n_completed)
    return session.scalar(select(ParetoSnapshot).where(*where)
                          .order_by(ParetoSnapshot.n_completed.desc(), ParetoSnapshot.id.desc()).limit(1))


def pareto_out(*, session: Session, job: Job, n_completed: int | None = None) -> ParetoOut:
    """The latest front of a job, or the one after `n_completed` completed evaluations (empty before the first
    step is stored)."""
    snap = latest_snapshot(session=session, job_id=job.id, n_completed=n_completed)
    members = front_members(session=session, job_id=job.id, n_completed=n_completed) if snap else []
    until = snap.created_at if snap is not None and n_completed is not None else None
    found = evidence(session=session, points=members, keys=job.objectives, until=until)
    return ParetoOut(job_id=job.id, objectives=job.objectives, maximize=job.maximize,
                     reference_point=job.reference_point, n_completed=snap.n_completed if snap else 0,
                     hypervolume=snap.hypervolume if snap else 0.0,
                     members=[front_member(m, found.get(m.id)) for m in members])


# --- dashboard reads: sorted/filtered pages, plot columns, hypervolume history -----------------------------------

TABLE_COLUMNS = ("number", "state", "attempts", "merge_seconds", "eval_seconds", "created_at", "finished_at")


def table_columns(*, session: Session, job: Job) -> list[str]:
    """The columns a job's evaluations can be sorted and filtered on (parameters named by its first evaluation)."""
    params = session.scalar(select(Evaluation.params).where(Evaluation.job_id == job.id)
                            .order_by(Evaluation.number).limit(1)) or {}
    return [*TABLE_COLUMNS, *(f"metrics.{k}" for k in job.objectives), *(f"params.{k}" for k in params)]


def _column(*, columns: Sequence[str], name: str, loc: str) -> Any:
    name = resolve_column(columns=columns, name=name, loc=loc)
    if name.startswith("metrics."):
        return Evaluation.metrics[name.removeprefix("metrics.")].as_float()
    if name.startswith("params."):
        return Evaluation.params[name.removeprefix("params.")].as_float()
    return getattr(Evaluation, name)


def front_member_ids(*, session: Session, job_id: int) -> set[int]:
    """Ids of the evaluations on a job's latest front."""
    return set(session.scalars(select(Evaluation.id).where(Evaluation.job_id == job_id,
                                                            Evaluation.on_front == true())))


def evaluation_table(*, session: Session, job: Job, sort: str = "number", descending: bool = False,
                     state: str | None = None, front_only: bool = False, filters: Sequence[ColumnFilter] = (),
                     offset: int = 0, limit: int | None = 50) -> tuple[int, list[Evaluation], set[int]]:
    """One sorted, filtered page of a job's evaluations (all with `limit` None): (total, page rows, front ids)."""
    front = front_member_ids(session=session, job_id=job.id)
    columns = table_columns(session=session, job=job)
    where: list[Any] = [Evaluation.job_id == job.id]
    if state is not None:
        where.append(Evaluation.state == state)
    if front_only:
        where.append(Evaluation.id.in_(front) if front else false())
    for f in filters:
        if f.op not in OPS:
            raise InvalidSpecError(f"unknown operator {f.op!r}; one of {list(OPS)}", ("filter",))
        where.append(OPS[f.op](_column(columns=columns, name=f.column, loc="filter"), f.value))
    total = session.scalar(select(func.count()).select_from(Evaluation).where(*where)) or 0
    key = _column(columns=columns, name=sort, loc="sort")
    order = (key.desc() if descending else key.asc()).nulls_last()
    rows = session.scalars(select(Evaluation).where(*where).order_by(order, Evaluation.number)
                           .offset(offset).limit(limit)).all()
    return total, list(rows), front


def front_points(*, session: Session, job: Job, max_dominated: int) -> FrontPoints:
    """Every front member and at most `max_dominated` dominated evaluations (evenly thinned), as plot columns.

    A point evaluated more than once (`repeat_of`) is one point: its values are the means over its evaluations.
    The completed evaluations are listed first without their values; only the points shown (and their repeats)
    are read, their values taken out of the JSON in SQL, so the cost follows the points shown more than the job.
    """
    front = front_member_ids(session=session, job_id=job.id)
    listed = session.execute(select(Evaluation.id, Evaluation.repeat_of).where(
        Evaluation.job_id == job.id, Evaluation.state == EvaluationState.completed)
        .order_by(Evaluation.id)).all()  # ids follow numbers within a job
    firsts = [i for i, of in listed if of is None]
    dominated = [i for i in firsts if i not in front]
    stride = max(1, math.ceil(len(dominated) / max_dominated)) if max_dominated > 0 else 0
    shown = {*(i for i in firsts if i in front), *(dominated[::stride] if stride else ())}
    keys = list(job.objectives)
    names = [c.removeprefix("params.") for c in table_columns(session=session, job=job) if c.startswith("params.")]
    columns = (Evaluation.id, Evaluation.number, *(Evaluation.metrics[k].as_float() for k in keys),
               *(Evaluation.params[k].as_float() for k in names), Evaluation.repeat_of)  # JSON read in SQL
    wanted = shown | {i for i, of in listed if of in shown}
    read = [r for r in _rows_by_id(session, job.id, columns, wanted, len(listed)) if None not in r[:-1]]
    m = len(keys)
    kept = [r for r in read if r[-1] is None]  # one row per point: its first evaluation
    again: dict[int, list[Sequence[float]]] = {}  # the points evaluated more than once: their repeats' values
    for r in read:
        if r[-1] is not None:
            again.setdefault(r[-1], []).append(r[2:2 + m])
    values = np.asarray([r[2:2 + m] for r in kept], dtype=float).reshape(len(kept), m)  # n x m
    spread, counts = np.zeros_like(values), [1] * len(kept)
    for i, r in enumerate(kept):
        if r.id in again:  # rare: means and spreads only where there are repeats, not a NumPy call per point
            seen = np.asarray([r[2:2 + m], *again[r.id]], dtype=float)  # e x m
            values[i], spread[i], counts[i] = seen.mean(axis=0), seen.std(axis=0), seen.shape[0]
    n_front = sum(1 for i in firsts if i in front)
    return FrontPoints(job_id=job.id, objectives=job.objectives, maximize=job.maximize, n_completed=len(listed),
                       n_front=n_front, n_dominated=len(dominated),
                       n_dominated_shown=sum(1 for r in kept if r.id not in front), ids=[r.id for r in kept],
                       numbers=[r.number for r in kept], on_front=[r.id in front for r in kept],
                       values=values.T.tolist(), parameters=names,
                       params=[[float(r[2 + m + j]) for r in kept] for j in range(len(names))],
                       counts=counts, spread=spread.T.tolist())


def _rows_by_id(session: Session, job_id: int, columns: Sequence[Any], ids: set[int], n_done: int) -> list[Any]:
    """The completed evaluations among `ids` (of `n_done`), by number: by their ids a chunk at a time, or all of
    the job's read and filtered when they are most of it."""
    where = [Evaluation.job_id == job_id, Evaluation.state == EvaluationState.completed]
    if 2 * len(ids) > n_done:
        rows = session.execute(select(*columns).where(*where).order_by(Evaluation.number)).all()
        return [r for r in rows if r.id in ids]
    wanted, rows = sorted(ids), []
    for start in range(0, len(wanted), _ID_CHUNK):
        chunk = wanted[start:start + _ID_CHUNK]
        rows += session.execute(select(*columns).where(*where, Evaluation.id.in_(chunk))).all()
    return sorted(rows, key=lambda r: r.number)


_ID_CHUNK = 5000  # ids per IN list: far below SQLite's and PostgreSQL's limits on bound parameters


def hypervolume_history(*, session: Session, job: Job, max_points: int) -> HypervolumeHistory:
    """Hypervolume against completed evaluations from the snapshots, bucketed to at most `max_points` points."""
    last = session.scalar(select(func.max(ParetoSnapshot.n_completed)).where(ParetoSnapshot.job_id == job.id)) or 0
    bucket = max(1, math.ceil(last / max_points))
    group = (ParetoSnapshot.n_completed - 1) // bucket if bucket > 1 else ParetoSnapshot.n_completed
    rows = session.execute(select(func.max(ParetoSnapshot.n_completed), func.max(ParetoSnapshot.hypervolume))
                           .where(ParetoSnapshot.job_id == job.id).group_by(group)
                           .order_by(func.max(ParetoSnapshot.n_completed))).all()
    return HypervolumeHistory(job_id=job.id, reference_point=job.reference_point,
                              points=[HypervolumePoint(n_completed=n, hypervolume=hv) for n, hv in rows])
