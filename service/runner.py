"""The job runner: lease a job, ask the optimizer, evaluate on Ray workers, record, repeat.

By default each round asks `batch_size` candidates and waits for all of them before asking again, so a
job replays identically from its seed. With `optimizer.asynchronous` it asks as soon as a worker is free.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from mergefront.errors import ClusterUnavailableError, ConflictError, EvaluationFailedError
from mergefront.evaluators.failures import classify
from mergefront.optimizers import (
    Optimizer,
    SearchSpace,
    make_optimizer,
)
from mergefront.optimizers.base import History
from mergefront.optimizers.repeats import ask_with_repeats
from mergefront.service import repository as repo
from mergefront.service.cluster_fit import check_fits_known_cluster
from mergefront.service.db import transaction
from mergefront.service.front import FrontState, record_result, update_front
from mergefront.service.lease import Heartbeat, JobCancelled, LeaseLost, leased_message
from mergefront.service.manage import abandon_candidates
from mergefront.service.models import DONE_JOB_STATES, Evaluation, EvaluationState, JobState, utcnow
from mergefront.service.settings import Settings
from mergefront.service.space import (
    ModelFiles,
    candidate_seed,
    job_files,
    job_memory,
    job_space,
    merge_config,
    observation,
    space_notes,
)
from mergefront.spec import JobSpec

if TYPE_CHECKING:
    from mergefront.evaluators.evaluation import ObjectiveSetup, WorkerSetup
    from mergefront.evaluators.pool import Finished, WorkerPool

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each finished evaluation."""

    job_id: int
    n_finished: int
    budget: int
    hypervolume: float | None
    front_size: int


@dataclass
class _JobRun:
    job_id: int
    spec: JobSpec
    space: SearchSpace
    optimizer: Optimizer
    pool: WorkerPool
    front: FrontState  # the job's front, kept here and updated one result at a time
    history: History | None = None  # finished evaluations (read once, then grown in memory)
    n_created: int = 0
    in_flight: dict[int, Evaluation] = field(default_factory=dict)


PoolFactory = Callable[["WorkerSetup", JobSpec], "WorkerPool"]


def default_pool(setup: WorkerSetup, spec: JobSpec, settings: Settings | None = None) -> WorkerPool:
    """The job's workers, reserved together, with the settings' placement and evaluation deadlines."""
    from mergefront.evaluators.pool import WorkerPool

    settings = settings or Settings()
    return WorkerPool(setup, spec.resources.workers, spec.resources.gpus_per_worker,
                      placement_timeout=settings.placement_timeout, evaluation_timeout=settings.evaluation_timeout)


class JobRunner:
    """Runs jobs stored in the database; many runners may share one database through leases."""

    def __init__(self, *, session_factory: sessionmaker[Session], settings: Settings,
                 pool_factory: PoolFactory | None = None, owner: str | None = None) -> None:
        self.sessions = session_factory
        self.settings = settings
        self.pool_factory = pool_factory or functools.partial(default_pool, settings=settings)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run_next(self, **kwargs: Any) -> int | None:
        """Lease the oldest runnable job and run it; return its id, or None when there is none."""
        job_id = self._read(lambda s: repo.lease_job(session=s, owner=self.owner,
                                                     seconds=self.settings.lease_seconds), "leasing a job")
        if job_id is not None:
            self._run_leased(job_id, **kwargs)
        return job_id

    def run(self, job_id: int, **kwargs: Any) -> str:
        """Lease job `job_id` and run it to its end (or until `stop` is set); return its state."""
        def lease(s: Session) -> str | None:
            if repo.lease_job(session=s, owner=self.owner, seconds=self.settings.lease_seconds,
                              job_id=job_id) is None:
                job = repo.get_job(session=s, job_id=job_id)
                if job.state in DONE_JOB_STATES:
                    return str(job.state)
                raise ConflictError(leased_message(job_id, job.lease_expires_at))
            return None

        done = self._read(lease, f"leasing job {job_id}")
        return done if done is not None else self._run_leased(job_id, **kwargs)

    def _run_leased(self, job_id: int, progress: Callable[[Progress], None] | None = None,
                    stop: threading.Event | None = None) -> str:
        run: _JobRun | None = None
        try:
            with Heartbeat(job_id, self.renew, self.settings.lease_seconds) as beat:
                run = self._prepare(job_id)
                finished = self._loop(run, beat, progress, stop or threading.Event())
            if finished:
                self._owned(job_id, lambda s: repo.finish_job(session=s, job_id=job_id, state=JobState.completed))
                return JobState.completed
            self._owned(job_id, lambda s: repo.release_lease(session=s, job_id=job_id, owner=self.owner))
            return JobState.running
        except LeaseLost:
            log.warning("job %s: its lease passed to another runner; this runner stops working on it", job_id)
            return JobState.running
        except ClusterUnavailableError as exc:  # not the job's fault: it waits, and is tried again, for a while
            unavailable = exc
            return self._quietly(job_id, JobState.pending, lambda s: self._wait_or_fail(s, job_id, unavailable))
        except JobCancelled:
            log.info("job %s cancelled; its running candidates are abandoned", job_id)
            def abandon(s: Session) -> None:
                abandon_candidates(session=s, job_id=job_id)  # any proposed after the cancel
                repo.release_lease(session=s, job_id=job_id, owner=self.owner)

            return self._quietly(job_id, JobState.cancelled, abandon)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            error = str(exc) if isinstance(exc, EvaluationFailedError) else f"{type(exc).__name__}: {exc}"
            def fail(s: Session) -> None:
                repo.requeue_running(session=s, job_id=job_id)  # none left running: a resume evaluates them
                repo.finish_job(session=s, job_id=job_id, state=JobState.failed, error=error)

            return self._quietly(job_id, JobState.failed, fail)
        except BaseException:  # Ctrl-C: leave the job to be resumed at once, not after its lease expires
            self._read(lambda s: repo.release_lease(session=s, job_id=job_id, owner=self.owner),
                       f"releasing job {job_id}", retry_seconds=5)
            raise
        finally:
            if run is not None:
                run.pool.shutdown()

    def _read(self, work: Callable[[Session], T], doing: str, retry_seconds: float | None = None) -> T:
        """`work` in one transaction that needs no lease (leasing, reading), transient database errors retried for
        up to a lease (db.transaction), or `retry_seconds`."""
        return transaction(self.sessions, work, doing=doing,
                           retry_seconds=self.settings.lease_seconds if retry_seconds is None else retry_seconds)

    def _owned(self, job_id: int, work: Callable[[Session], T], *, cancelled_ok: bool = False) -> T:
        """`work` in one transaction that holds the job's lease (renewed first): LeaseLost, with nothing written,
        when another runner holds it; JobCancelled when the job was cancelled (unless `cancelled_ok`). Transient
        database errors are retried for up to a lease."""

        def guarded(session: Session) -> T:
            state = repo.renew_lease(session=session, job_id=job_id, owner=self.owner,
                                     seconds=self.settings.lease_seconds)
            if state is None:
                raise LeaseLost(job_id)
            if state == JobState.cancelled and not cancelled_ok:
                raise JobCancelled(job_id)
            return work(session)

        return transaction(self.sessions, guarded, retry_seconds=self.settings.lease_seconds,
                           doing=f"recording the progress of job {job_id}")

    def _wait_or_fail(self, session: Session, job_id: int, exc: ClusterUnavailableError) -> str:
        """Defer a job the cluster could not start, or fail it once it has waited past the start deadline; return
        its state."""
        since = repo.get_job(session=session, job_id=job_id).waiting_since
        deadline = self.settings.start_deadline
        if since is not None and (utcnow() - since).total_seconds() >= deadline:
            repo.finish_job(session=session, job_id=job_id, state=JobState.failed, error=(
                f"the Ray cluster did not start the job's workers within {deadline:g} s "
                f"(MERGEFRONT_START_DEADLINE): {exc}"))
            return JobState.failed
        log.warning("job %s waits %g s: %s", job_id, self.settings.cluster_retry_seconds, exc)
        repo.defer_job(session=session, job_id=job_id, owner=self.owner, reason=str(exc),
                       seconds=self.settings.cluster_retry_seconds)
        return JobState.pending

    def _quietly(self, job_id: int, state: str, work: Callable[[Session], Any]) -> str:
        """`state` (or the state `work` returns) after `work` as the job's owner; `running` (someone else's now)
        when the lease was lost."""
        try:
            result = self._owned(job_id, work, cancelled_ok=True)
        except LeaseLost:
            log.warning("job %s: its lease passed to another runner; left as that runner leaves it", job_id)
            return JobState.running
        return result if isinstance(result, str) else state

    def _prepare(self, job_id: int) -> _JobRun:
        from mergefront.evaluators.pool import init_ray

        def read(s: Session) -> tuple[JobSpec, str]:
            job = repo.get_job(session=s, job_id=job_id)
            return JobSpec.model_validate(job.spec), job.origin

        spec, origin = self._read(read, f"reading job {job_id}")
        if origin == "network":  # the roots and plug-ins it was admitted under may have changed since
            from mergefront.plugins import Registry
            from mergefront.service.confine import confine_paths

            confine_paths(spec, self.settings, Registry.discover(self.settings.plugins))
        files = job_files(spec, self.settings)
        space = job_space(spec, self.settings, files)
        for line in space_notes(spec, space):
            log.info("job %s: %s", job_id, line)
        cluster = init_ray(self.settings.ray_address)
        if not cluster:  # a local Ray never grows: workers it cannot hold fail the job now, not after a deadline
            check_fits_known_cluster(spec)
        setup = self._worker_setup(spec, files, cluster)  # plans the job's memory: one that cannot fit fails here
        # the front, with any step a runner that stopped did not store
        front = self._read(lambda s: update_front(session=s, job_id=job_id), f"reading job {job_id}'s front")
        return _JobRun(job_id, spec, space, make_optimizer(spec, space), self.pool_factory(setup, spec), front)

    def _worker_setup(self, spec: JobSpec, files: ModelFiles, cluster: bool) -> WorkerSetup:
        from mergefront.evaluators.evaluation import ObjectiveSetup, WorkerSetup
        from mergefront.evaluators.suites import ensure_suite

        suite_dir = ensure_suite(spec.suite, self.settings.resolved_cache_dir) if spec.suite else None
        objectives = tuple(ObjectiveSetup(o.key, o.task, o.split, o.metric_name, o.evaluator, o.settings)
                           for o in spec.objectives)
        if cluster:
            setup = _cluster_setup(spec, files, suite_dir, objectives)
        else:
            python_path = tuple(p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p))
            setup = WorkerSetup(str(files.base), tuple(str(p) for p in files.experts), files.merged_keys,
                                objectives, spec.suite, None if suite_dir is None else str(suite_dir),
                                spec.resources.device, python_path=python_path)
        r = spec.resources  # the job's memory plan: InvalidSpecError with the numbers when nothing fits
        return replace(setup, workload=job_memory(spec, files).workload, device_memory=r.device_memory,
                       host_memory=r.host_memory, placement=r.placement)

    def _loop(self, run: _JobRun, beat: Heartbeat, progress: Callable[[Progress], None] | None,
              stop: threading.Event) -> bool:
        """Drive the job until its budget is spent (True) or `stop` is set (False)."""
        self.renew(run.job_id)  # cancelled, or taken over, while the workers started?
        self._owned(run.job_id, lambda s: repo.workers_started(session=s, job_id=run.job_id))
        self._dispatch_orphans(run)
        if progress is not None:  # the workers are up: a progress display may start its clock now
            progress(self._progress(run))
        while not stop.is_set():
            beat.check()
            self._propose(run)
            if not run.in_flight:
                return True
            finished = run.pool.next_finished(timeout=min(5.0, self.settings.lease_seconds / 3))
            beat.check()
            if finished is not None:
                self._record(run, finished)
                if progress is not None:
                    progress(self._progress(run))
        return False

    def renew(self, job_id: int) -> None:
        """Extend this runner's lease of `job_id`; LeaseLost when another runner holds it, JobCancelled when the
        job was cancelled."""
        # retried for a quarter lease: the heartbeat tries again at its next beat
        state = self._read(lambda s: repo.renew_lease(session=s, job_id=job_id, owner=self.owner,
                                                      seconds=self.settings.lease_seconds),
                           f"renewing the lease of job {job_id}", retry_seconds=self.settings.lease_seconds / 4)
        if state is None:
            raise LeaseLost(job_id)
        if state == JobState.cancelled:
            raise JobCancelled(job_id)

    def _dispatch_orphans(self, run: _JobRun) -> None:
        """Read the job's evaluations once; those left pending or running by a runner that stopped are evaluated
        again."""
        run.n_created, rows = self._read(lambda s: repo.list_evaluations(session=s, job_id=run.job_id),
                                         f"reading job {run.job_id}'s evaluations")
        orphans = [r for r in rows if r.state in (EvaluationState.pending, EvaluationState.running)]
        run.history = History(run.space.dim, len(run.spec.objectives))
        for r in rows:
            if r.state in (EvaluationState.completed, EvaluationState.failed):
                run.history.add(r.number, observation(run.spec, r))
        for row in orphans:
            self._dispatch(run, row)

    def _propose(self, run: _JobRun) -> None:
        opt = run.spec.optimizer
        free = run.spec.resources.workers - len(run.in_flight) if opt.asynchronous else opt.batch_size
        if run.in_flight and not opt.asynchronous:
            return
        n = min(opt.batch_size, free, opt.budget - run.n_created)
        if n <= 0 or run.history is None:
            return
        pending = [tuple(r.x) for r in run.in_flight.values()]
        history = run.history
        xs = ask_with_repeats(run.optimizer, n, history, pending, share=opt.reevaluate, budget=opt.budget)
        points = [(list(x), run.space.decode(x)) for x in xs]
        repeats = [history.first(x) for x in xs]  # a front member evaluated again: its first evaluation's number
        n_created = run.n_created

        def add(s: Session) -> list[Evaluation]:
            ours = repo.evaluations_from(session=s, job_id=run.job_id, number=n_created)
            if ours:  # an earlier try of this transaction committed, though its answer was lost
                return ours
            return repo.add_evaluations(session=s, job_id=run.job_id, points=points, repeats=repeats)

        new = self._owned(run.job_id, add)
        run.n_created += len(new)
        for row in new:
            self._dispatch(run, row)

    def _dispatch(self, run: _JobRun, row: Evaluation) -> None:
        from mergefront.evaluators.evaluation import Candidate

        def start(s: Session) -> Evaluation:
            repo.start_evaluation(session=s, evaluation_id=row.id)
            return repo.get_evaluation(session=s, evaluation_id=row.id)

        row = self._owned(run.job_id, start)
        run.in_flight[row.id] = row
        seed = candidate_seed(run.spec, row.number)
        candidate = Candidate(row.id, merge_config(run.spec, row.params, run.space, seed))
        run.pool.submit(lambda actor, c: actor.evaluate.remote(c), candidate, tag=row.id)

    def _record(self, run: _JobRun, finished: Finished) -> None:
        row = run.in_flight.pop(finished.tag)
        failure = None if finished.error is None else classify(finished.error)
        final = failure is None or not failure.transient or row.attempts > run.spec.resources.max_retries
        if failure is not None:
            log.warning("evaluation %s failed (attempt %s, %s): %s", row.id, row.attempts,
                        "transient" if failure.transient else "not retried", finished.error)

        def record(s: Session) -> tuple[FrontState, Any] | None:  # the result and the front's change: one transaction
            if failure is None:
                r = finished.value
                repo.complete_evaluation(session=s, evaluation_id=row.id, metrics=r.metrics, worker=r.worker,
                                         merge_seconds=r.merge_seconds, eval_seconds=r.eval_seconds,
                                         node=finished.node, node_id=finished.node_id)
            else:
                repo.fail_evaluation(session=s, evaluation_id=row.id, error=failure.text, final=final,
                                     node=finished.node, node_id=finished.node_id)
            stored = repo.get_evaluation(session=s, evaluation_id=row.id)
            if not final or stored.state not in (EvaluationState.completed, EvaluationState.failed):  # cancelled
                return None
            front = record_result(session=s, job=repo.get_job(session=s, job_id=run.job_id), front=run.front,
                                  evaluation_id=row.id, metrics=stored.metrics, point=stored.repeat_of)
            return front, observation(run.spec, stored)

        recorded = self._owned(run.job_id, record)
        if not final:
            self._dispatch(run, row)
            return
        if recorded is not None and run.history is not None:  # committed: memory follows the database
            run.front, observed = recorded
            run.history.add(row.number, observed)
        if failure is not None:
            self._stop_if_every_first_failed(run, failure.text)

    def _stop_if_every_first_failed(self, run: _JobRun, error: str) -> None:
        """EvaluationFailedError when the job's first evaluations (settings.failures_to_stop, at most its budget)
        all failed with this same error: the next ones would too."""
        n = min(self.settings.failures_to_stop, run.spec.optimizer.budget)
        failed, errors = self._read(lambda s: repo.first_failures(session=s, job_id=run.job_id),
                                    f"reading job {run.job_id}'s failures")
        if failed >= n and errors == {error}:
            raise EvaluationFailedError(
                f"its first {failed} evaluations all failed with the same error, so the job stopped with "
                f"{run.spec.optimizer.budget - failed} of its {run.spec.optimizer.budget} evaluations unspent; fix "
                f"the cause and resume it (`mergefront run --resume {run.job_id}`). The error: {error}")

    def _progress(self, run: _JobRun) -> Progress:
        finished = len(run.history) if run.history is not None else 0
        return Progress(run.job_id, finished, run.spec.optimizer.budget,
                        run.front.hypervolume if run.front.reference is not None else None, len(run.front.members))


def _cluster_setup(spec: JobSpec, files: ModelFiles, suite_dir: Path | None,
                   objectives: tuple[ObjectiveSetup, ...]) -> WorkerSetup:
    """What each worker loads on a cluster joined by address, whose nodes share none of this machine's files but
    storage every node sees: a suite travels as its files (its models named inside it), the modules of the job's
    own functions likewise, `hf://` models are fetched by each node, other models are read where they are."""
    from mergefront.evaluators.bundle import pack
    from mergefront.evaluators.cluster import module_paths, user_modules
    from mergefront.evaluators.evaluation import WorkerSetup

    paths = (files.base, *files.experts)
    if suite_dir is not None:
        names = [str(p.relative_to(suite_dir)) for p in paths]
    else:
        names = [ref if ref.startswith("hf://") else str(p)
                 for ref, p in zip((spec.models.base, *spec.models.experts), paths, strict=True)]
    modules = module_paths(user_modules(o.evaluator for o in spec.objectives))
    suite_files = None if suite_dir is None else pack(suite_dir.name, suite_dir)
    return WorkerSetup(names[0], tuple(names[1:]), files.merged_keys, objectives, spec.suite, None,
                       spec.resources.device, suite_files=suite_files,
                       modules=pack("modules", *map(Path, modules)) if modules else None)


