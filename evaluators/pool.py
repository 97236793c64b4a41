"""A pool of Ray actors, one per worker slot, each holding a `CandidateEvaluator` resident.

Like ray's ActorPool, the pool does not know what it runs: the caller passes the remote call. Unlike it,
a dead actor is never handed out again: it is replaced by a fresh one, and its task reports the error. Each
finished task says which node of the cluster ran it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from mergefront.evaluators.cluster import code_runtime_env, enable_token_auth
from mergefront.evaluators.evaluation import CandidateEvaluator, WorkerSetup

_init_lock = threading.Lock()
_joined: list[bool] = []  # whether this process's Ray is a cluster it joined by address (set once)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), with its token; without one, start a local Ray once per
    process. Return whether Ray is a cluster joined by address (whose nodes see none of this machine's files).

    A local Ray's processes die with the thread that started them (they are spawned with a parent-death
    signal), so from any thread but the main one Ray is started by a thread that lives as long as the process.
    """
    with _init_lock:
        if ray.is_initialized():
            return bool(_joined and _joined[0])
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "warning"}
        if address is None:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        else:  # a cluster: its token, and mergefront's code for nodes that lack it
            enable_token_auth()
            kwargs["runtime_env"] = code_runtime_env()
        if threading.current_thread() is threading.main_thread():
            ray.init(address=address, **kwargs)
        else:
            _init_in_keeper_thread(address, kwargs)
        _joined[:] = [address is not None]
        return address is not None


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


class _Evaluator(CandidateEvaluator):
    """The actor: a `CandidateEvaluator` that can say which node it runs on."""

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


class WorkerPool:
    """`n_workers` actors built from `setup`; submit work, collect it as it finishes."""

    def __init__(self, setup: WorkerSetup, n_workers: int, gpus_per_worker: float = 0.0) -> None:
        self._factory = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)(_Evaluator)
        self._setup = ray.put(setup)  # one copy in the object store, however many actors load it
        self._nodes: dict[Any, Any] = {}  # actor -> ObjectRef of its node id
        self._node_names: dict[str, str] = {}
        self._idle: list[Any] = [self._start() for _ in range(n_workers)]
        self._running: dict[Any, tuple[Any, Any]] = {}  # ObjectRef -> (actor, tag)
        self._queue: list[tuple[Callable[[Any, Any], Any], Any, Any]] = []

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
        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        if not ready:
            return None
        ref = ready[0]
        actor, tag = self._running.pop(ref)
        try:
            result = Finished(tag, value=ray.get(ref))
            self._idle.append(actor)
        except ray.exceptions.RayActorError as exc:
            self._idle.append(self._start())  # never hand out a dead actor
            result = Finished(tag, error=exc)
        except ray.exceptions.RayTaskError as exc:
            self._idle.append(actor)
            result = Finished(tag, error=exc.as_instanceof_cause())
        finally:
            self._dispatch()
        result.node_id, result.node = self._node_of(actor)
        return result

    def shutdown(self) -> None:
        for actor in self._idle + [a for a, _ in self._running.values()]:
            ray.kill(actor)
        self._nodes.clear()
        self._idle.clear()
        self._running.clear()
        self._queue.clear()

    def _start(self) -> Any:
        actor = self._factory.remote(self._setup)
        self._nodes[actor] = actor.node_id.remote()  # type: ignore[attr-defined]  # after the constructor
        return actor

    def _node_of(self, actor: Any) -> tuple[str | None, str | None]:
        """The id and name of the node `actor` ran on; (None, None) when it died before saying."""
        ref = self._nodes.pop(actor, None) if actor not in self._idle else self._nodes.get(actor)
        try:
            node_id = str(ray.get(ref, timeout=10)) if ref is not None else None
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            return None, None
        if node_id is not None and node_id not in self._node_names:
            self._node_names.update({n["NodeID"]: n.get("NodeName") or n["NodeManagerAddress"] for n in ray.nodes()})
        return node_id, self._node_names.get(node_id or "")

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            call, value, tag = self._queue.pop(0)
            actor = self._idle.pop()
            self._running[call(actor, value)] = (actor, tag)
