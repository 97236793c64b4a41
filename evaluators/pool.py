"""A pool of Ray actors, one per worker slot, each holding a `CandidateEvaluator` resident.

Like ray's ActorPool, the pool does not know what it runs: the caller passes the remote call. Unlike it,
a dead actor is never handed out again: it is replaced by a fresh one, and its task reports the error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from mergefront.evaluators.evaluation import CandidateEvaluator, WorkerSetup

_init_lock = threading.Lock()


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS); without one, start a local Ray once per process.

    A local Ray's processes die with the thread that started them (they are spawned with a parent-death
    signal), so from any thread but the main one Ray is started by a thread that lives as long as the process.
    """
    with _init_lock:
        if ray.is_initialized():
            return
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "warning"}
        if address is None:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        if threading.current_thread() is threading.main_thread():
            ray.init(address=address, **kwargs)
            return
        _init_in_keeper_thread(address, kwargs)


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
    """One task that came back: its tag, and its value or the error that replaced it."""

    tag: Any
    value: Any = None
    error: BaseException | None = None


class WorkerPool:
    """`n_workers` actors built from `setup`; submit work, collect it as it finishes."""

    def __init__(self, setup: WorkerSetup, n_workers: int, gpus_per_worker: float = 0.0) -> None:
        self._factory = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)(CandidateEvaluator)
        self._setup = setup
        self._idle: list[Any] = [self._factory.remote(setup) for _ in range(n_workers)]
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
            self._idle.append(self._factory.remote(self._setup))  # never hand out a dead actor
            result = Finished(tag, error=exc)
        except ray.exceptions.RayTaskError as exc:
            self._idle.append(actor)
            result = Finished(tag, error=exc.as_instanceof_cause())
        finally:
            self._dispatch()
        return result

    def shutdown(self) -> None:
        for actor in self._idle + [a for a, _ in self._running.values()]:
            ray.kill(actor)
        self._idle.clear()
        self._running.clear()
        self._queue.clear()

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            call, value, tag = self._queue.pop(0)
            actor = self._idle.pop()
            self._running[call(actor, value)] = (actor, tag)
