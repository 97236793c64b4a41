"""A pool of Ray actors, one per worker slot, each holding a `CandidateEvaluator` resident.

Like ray's ActorPool, the pool does not know what it runs: the caller passes the remote call. Unlike it,
a dead actor is never handed out again: it is replaced by a fresh one, and its task reports the error. Each
finished task says which node of the cluster ran it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from mergefront.errors import ClusterUnavailableError, InvalidSpecError
from mergefront.evaluators.cluster import check_reachable, code_runtime_env, enable_token_auth, quiet_auth_advice
from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, EvaluationResult, WorkerSetup
from mergefront.evaluators.placement import release, reserve

_init_lock = threading.Lock()
_joined: list[bool] = []  # whether this process's Ray is a cluster it joined by address (set once)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), with its token; without one, start a local Ray once per
    process. Return whether Ray is a cluster joined by address (whose nodes see none of this machine's files).

    A local Ray's processes die with the thread that started them (they are spawned with a parent-death
    signal), so from any thread but the main one Ray is started by a thread that lives as long as the process.
    In the main thread, a SIGTERM handler the caller installed stays (Ray's own would exit at once, with status
    15, instead of stopping the command as Ctrl-C does: `mergefront run` gives its job back and says so).
    """
    with _init_lock:
        if ray.is_initialized():
            return bool(_joined and _joined[0])
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "warning"}
        if address is None:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        else:  # a cluster: its token, and mergefront's code for nodes that lack it
            check_reachable(address)
            enable_token_auth()
            kwargs["runtime_env"] = code_runtime_env()
        try:
            with quiet_auth_advice():
                if threading.current_thread() is threading.main_thread():
                    on_sigterm = signal.getsignal(signal.SIGTERM)
                    ray.init(address=address, **kwargs)
                    if callable(on_sigterm):
                        signal.signal(signal.SIGTERM, on_sigterm)
                else:
                    _init_in_keeper_thread(address, kwargs)
        except ConnectionError as exc:  # reached, but refused: most often a missing or wrong token
            raise ClusterUnavailableError(
                f"cannot join the Ray cluster at {address}: {exc}. If the cluster requires a token (Ray's default), "
                "give this server the same one: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token") from exc
        _joined[:] = [address is not None]
        return address is not None


def shutdown_ray() -> None:
    """Leave Ray: disconnect from a cluster joined by address; stop a local Ray and every process it started, its
    agents included (each by its pid, should `ray.shutdown` leave one behind)."""
    with _init_lock:
        if not ray.is_initialized():
            return
        processes = [] if _joined and _joined[0] else _local_ray_processes()
        ray.shutdown()
        _joined.clear()
    _stop_processes(processes)


def _local_ray_processes() -> list[Any]:
    """This process's local Ray: the processes it started and their children (the raylet's agents), as psutil
    processes (which know a pid used again by another process from their own)."""
    import psutil

    node = getattr(ray._private.worker, "_global_node", None)
    started = [info.process.pid for infos in getattr(node, "all_processes", {}).values() for info in infos
               if info.process is not None]
    found: dict[int, Any] = {}
    for pid in started:
        try:
            process = psutil.Process(pid)
            found.update({p.pid: p for p in (process, *process.children(recursive=True))})
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _local_raylet() -> Any:
    """The psutil process of this process's local raylet; None when Ray is a cluster joined by address."""
    import psutil

    if _joined and _joined[0]:
        return None
    node = getattr(ray._private.worker, "_global_node", None)
    for info in getattr(node, "all_processes", {}).get("raylet", []):
        try:
            return psutil.Process(info.process.pid)
        except psutil.Error:
            continue
    return None


def _alive(process: Any) -> bool:
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _stop_processes(processes: list[Any], grace: float = 5.0) -> None:
    """SIGTERM each of `processes` still running, SIGKILL those still running `grace` seconds later."""
    import psutil

    alive = []
    for process in processes:
        try:
            if process.is_running():
                process.terminate()
                alive.append(process)
        except psutil.Error:
            continue
    _, left = psutil.wait_procs(alive, timeout=grace)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            continue


def _init_in_keeper_thread(address: str | None, kwargs: dict[str, Any]) -> None:
    started = threading.Event()
    errors: list[BaseException] = []

    def keep() -> None:
        try:
            ray.init(address=address, **kwargs)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)
        started.set()
        if not errors:
            threading.Event().wait()  # never returns: this thread is the parent of Ray's processes

    threading.Thread(target=keep, name="ray-keeper", daemon=True).start()
    started.wait()
    if errors:
        raise errors[0]


@dataclass
class Finished:
    """One task that came back: its tag, its value or the error that replaced it, and the node that ran it (Ray's
    node id and the node's name: its `ray start --node-name`, else its address)."""

    tag: Any
    value: Any = None
    error: BaseException | None = None
    node_id: str | None = None
    node: str | None = None


class WorkerRefusedError(InvalidSpecError):
    """A worker's memory plan found no placement on its device and host (the message has the numbers)."""


class _Evaluator(CandidateEvaluator):
    """The actor: a `CandidateEvaluator` that can say which node it runs on. A worker whose memory plan refuses
    its device and host (`evaluation.worker_plan`, before anything is loaded) stays up to say so, with the numbers,
    in answer to every evaluation: the pool then stops the job with that message (never a bare out-of-memory)."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.refusal: InvalidSpecError | None = None
        try:
            super().__init__(setup)
        except InvalidSpecError as exc:
            self.refusal = exc

    def evaluate(self, candidate: Candidate) -> EvaluationResult:
        if self.refusal is not None:
            raise WorkerRefusedError(f"a worker cannot start: {self.refusal.message}", self.refusal.loc)
        return super().evaluate(candidate)

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


@dataclass
class _Worker:
    actor: Any
    bundle: int  # its place in the job's placement group
    ready: Any  # ObjectRef of its node id: resolves once the actor is constructed
    created: float  # time.monotonic() at creation


@dataclass
class _Task:
    worker: _Worker
    tag: Any
    started: float | None = None  # when its worker was ready to run it; None while the worker is starting


class WorkerPool:
    """`n_workers` actors built from `setup`, reserved together (`mergefront.evaluators.placement`); submit work,
    collect it as it finishes.

    Deadlines: a worker that is not running `placement_timeout` seconds after it was created, or a task running
    longer than `evaluation_timeout` seconds, is stopped and its task reports a `TimeoutError` (the task may be
    retried; a fresh worker takes the stopped one's place). ClusterUnavailableError when the cluster does not place
    the workers within `placement_timeout`.
    """

    def __init__(self, setup: WorkerSetup, n_workers: int, gpus_per_worker: float = 0.0, *,
                 placement_timeout: float | None = None, evaluation_timeout: float | None = None) -> None:
        self._group: PlacementGroup | None = reserve(n_workers, gpus_per_worker, placement_timeout)
        self._factory = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)(_Evaluator)
        self._setup = ray.put(setup)  # one copy in the object store, however many actors load it
        self._timeouts = (placement_timeout, evaluation_timeout)
        self._node_names: dict[str, str] = {}
        self._idle: list[_Worker] = [self._start(i) for i in range(n_workers)]
        self._running: dict[Any, _Task] = {}  # ObjectRef -> task
        self._queue: list[tuple[Callable[[Any, Any], Any], Any, Any]] = []
        self._raylet = _local_raylet()  # None on a cluster joined by address

    @property
    def n_running(self) -> int:
        return len(self._running) + len(self._queue)

    def submit(self, call: Callable[[Any, Any], Any], value: Any, tag: Any) -> None:
        """Run `call(actor, value)` (which returns an ObjectRef) on a free actor, or queue it."""
        self._queue.append((call, value, tag))
        self._dispatch()

    def next_finished(self, timeout: float | None = None) -> Finished | None:
        """Wait for one task; None when `timeout` passes first or nothing is running."""
        if not self._running:
            return None
        self._check_ray()
        overdue = self._overdue()
        if overdue is not None:
            return self._stop(*overdue)
        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=self._wait_at_most(timeout))
        if not ready:
            return None
        task = self._running.pop(ready[0])
        try:
            result = Finished(task.tag, value=ray.get(ready[0]))
            self._idle.append(task.worker)
        except ray.exceptions.RayActorError as exc:
            self._check_ray(actor_died=True)
            self._idle.append(self._start(task.worker.bundle))  # never hand out a dead actor
            result = Finished(task.tag, error=exc)
        except ray.exceptions.RayTaskError as exc:
            self._idle.append(task.worker)
            if isinstance(exc.cause, WorkerRefusedError):  # its memory plan refused the worker: the job cannot run
                raise WorkerRefusedError(exc.cause.message, exc.cause.loc) from None
            result = Finished(task.tag, error=exc.as_instanceof_cause())
        finally:
            self._dispatch()
        result.node_id, result.node = self._node_of(task.worker)
        return result

    def shutdown(self) -> None:
        if ray.is_initialized():  # else Ray itself stopped (see _check_ray), and the workers with it
            for worker in self._idle + [t.worker for t in self._running.values()]:
                ray.kill(worker.actor)
            release(self._group)
        self._idle.clear()
        self._running.clear()
        self._queue.clear()
        self._group = None

    def _check_ray(self, actor_died: bool = False) -> None:
        """ClusterUnavailableError when Ray is gone: the local raylet stopped (it is then shut down whole, so that
        the next job starts a fresh one), or, after a worker died, the cluster has no node left alive."""
        if self._raylet is not None and not _alive(self._raylet):
            shutdown_ray()
            raise ClusterUnavailableError("Ray's node manager (raylet) on this machine stopped, and the job's "
                                          "workers with it; the job waits and resumes on a fresh local Ray")
        if actor_died and self._raylet is None and not any(n.get("Alive") for n in ray.nodes()):
            raise ClusterUnavailableError("the Ray cluster has no node left alive; the job waits and is resumed "
                                          "when the cluster is back")

    def _start(self, bundle: int) -> _Worker:
        assert self._group is not None, "the pool was shut down"
        strategy = PlacementGroupSchedulingStrategy(self._group, placement_group_bundle_index=bundle)
        actor = self._factory.options(scheduling_strategy=strategy).remote(self._setup)
        ready = actor.node_id.remote()  # type: ignore[attr-defined]  # runs after the constructor
        return _Worker(actor, bundle, ready, time.monotonic())

    def _overdue(self) -> tuple[Any, BaseException] | None:
        """A running task past its deadline, and the error that replaces its result; None when none is."""
        placement, evaluation = self._timeouts
        now = time.monotonic()
        starting = [t for t in self._running.values() if t.started is None]
        if starting:
            done, _ = ray.wait([t.worker.ready for t in starting], num_returns=len(starting), timeout=0)
            for task in starting:
                if task.worker.ready in done:
                    task.started = now
        for ref, task in self._running.items():
            if task.started is None and placement is not None and now - task.worker.created > placement:
                return ref, TimeoutError(f"the worker did not start within {placement:g} s "
                                         "(MERGEFRONT_PLACEMENT_TIMEOUT); it was stopped")
            if task.started is not None and evaluation is not None and now - task.started > evaluation:
                return ref, TimeoutError(f"the evaluation ran past {evaluation:g} s "
                                         "(MERGEFRONT_EVALUATION_TIMEOUT); its worker was stopped")
        return None

    def _wait_at_most(self, timeout: float | None) -> float | None:
        """`timeout`, shortened so that a wait ends by the next deadline."""
        placement, evaluation = self._timeouts
        now = time.monotonic()
        ends = [t.worker.created + placement for t in self._running.values() if t.started is None and placement]
        ends += [t.started + evaluation for t in self._running.values() if t.started is not None and evaluation]
        until = max(0.0, min(ends) - now) + 0.01 if ends else None
        return until if timeout is None else timeout if until is None else min(timeout, until)

    def _stop(self, ref: Any, error: BaseException) -> Finished:
        """Stop the worker of an overdue task, put a fresh one in its place, and report the task with `error`."""
        task = self._running.pop(ref)
        ray.kill(task.worker.actor)
        self._idle.append(self._start(task.worker.bundle))
        self._dispatch()
        node_id, node = self._node_of(task.worker) if task.started is not None else (None, None)
        return Finished(task.tag, error=error, node_id=node_id, node=node)

    def _node_of(self, worker: _Worker) -> tuple[str | None, str | None]:
        """The id and name of the node `worker` ran on; (None, None) when it died before saying."""
        try:
            node_id = str(ray.get(worker.ready, timeout=10))
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            return None, None
        if node_id not in self._node_names:
            self._node_names.update({n["NodeID"]: n.get("NodeName") or n["NodeManagerAddress"] for n in ray.nodes()})
        return node_id, self._node_names.get(node_id)

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            call, value, tag = self._queue.pop(0)
            worker = self._idle.pop()
            self._running[call(worker.actor, value)] = _Task(worker, tag)
