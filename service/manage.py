"""Managing jobs: cancel, delete, rename and annotate. Keyword-only functions over a session, as in repository.py.

A cancelled job keeps every evaluation it finished; its pending and running candidates are marked `cancelled`
(abandoned: a result that comes back for one later is not recorded). The runner that holds the job notices at its
next lease renewal and stops; the job's lease is left to it, so the renewal never fails on a cancel.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from mergefront.errors import ConflictError
from mergefront.service import repository as repo
from mergefront.service.models import DONE_JOB_STATES, Evaluation, EvaluationState, Job, JobState, utcnow

ABANDONED = "abandoned: its job was cancelled"


def cancel_job(*, session: Session, job_id: int) -> Job:
    """Stop a pending or running job, keeping its finished evaluations; cancelling a cancelled job changes nothing.

    Raises ConflictError for a job that already completed or failed.
    """
    job = repo.lock_job(session=session, job_id=job_id)
    if job.state == JobState.cancelled:
        return job
    if job.state in DONE_JOB_STATES:
        raise ConflictError(f"job {job_id} already {job.state}; there is nothing to cancel")
    job.state, job.finished_at = JobState.cancelled, utcnow()
    abandon_candidates(session=session, job_id=job_id)
    session.flush()
    return job


def abandon_candidates(*, session: Session, job_id: int) -> int:
    """Mark a job's pending and running evaluations cancelled; return how many."""
    result = session.execute(
        update(Evaluation)
        .where(Evaluation.job_id == job_id, Evaluation.state.in_((EvaluationState.pending, EvaluationState.running)))
        .values(state=EvaluationState.cancelled, finished_at=utcnow(), error=ABANDONED)
        .execution_options(synchronize_session="fetch"))
    abandoned = int(getattr(result, "rowcount", 0) or 0)
    if abandoned:
        repo.touch_job(session=session, job_id=job_id)  # a server that keeps the job in memory reads it again
    return abandoned


def delete_job(*, session: Session, job_id: int) -> None:
    """Delete a finished job with its evaluations and fronts (the database cascades); a live one must be cancelled."""
    job = repo.lock_job(session=session, job_id=job_id)
    if job.state not in DONE_JOB_STATES:
        raise ConflictError(f"job {job_id} is {job.state}; cancel it first (`mergefront cancel {job_id}`, "
                            f"POST /v1/jobs/{job_id}/cancel), then delete it")
    session.expunge(job)
    session.execute(delete(Job).where(Job.id == job_id).execution_options(synchronize_session=False))


def update_job(*, session: Session, job_id: int, name: str | None = None, notes: str | None = None,
               clear_notes: bool = False) -> Job:
    """Rename a job and/or replace its notes (`clear_notes` removes them); the stored spec keeps its first name."""
    job = repo.get_job(session=session, job_id=job_id)
    if name is not None:
        job.name = name
    if notes is not None or clear_notes:
        job.notes = notes
    session.flush()
    return job
