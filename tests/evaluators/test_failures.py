"""Evaluation errors sorted into transient (retried) and deterministic (not retried), from errors real Ray raises."""

from __future__ import annotations

import pytest

from mergefront.evaluators.failures import classify

pytestmark = pytest.mark.slow


class _BrokenImport:
    def __init__(self) -> None:
        import mergefront_no_such_module  # type: ignore[import-not-found]  # noqa: F401

    def ping(self) -> str:
        return "never"


class _Worker:
    def score(self, kind: str) -> float:
        if kind == "type":
            return float(len(3))  # type: ignore[arg-type]
        if kind == "file":
            open("/nonexistent/mergefront-test-data.jsonl").close()
        if kind == "memory":
            raise MemoryError("no room")
        return 1.0


def _error(ref) -> BaseException:  # type: ignore[no-untyped-def]
    import ray

    with pytest.raises(ray.exceptions.RayError) as info:
        ray.get(ref, timeout=120)
    error = info.value
    return error.as_instanceof_cause() if isinstance(error, ray.exceptions.RayTaskError) else error


def _dead(actor) -> BaseException:  # type: ignore[no-untyped-def]
    """The error of a call on a killed actor: `ray.kill` is asynchronous, so a call made at once may still run."""
    import time

    import ray

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ray.get(actor.score.remote("ok"), timeout=60)
        except ray.exceptions.RayError as error:
            return error
        time.sleep(0.2)
    raise AssertionError("the killed actor still answers after 60 s")


def test_errors_of_the_jobs_code_are_deterministic_and_dead_workers_transient() -> None:
    import ray

    from mergefront.evaluators.pool import init_ray

    init_ray()
    broken = ray.remote(num_cpus=0)(_BrokenImport).remote()
    failure = classify(_error(broken.ping.remote()))  # type: ignore[attr-defined]
    assert not failure.transient
    assert failure.text.startswith("ModuleNotFoundError: No module named 'mergefront_no_such_module'")

    worker = ray.remote(num_cpus=0, max_restarts=0)(_Worker).remote()
    typed = classify(_error(worker.score.remote("type")))  # type: ignore[attr-defined]
    missing = classify(_error(worker.score.remote("file")))  # type: ignore[attr-defined]
    memory = classify(_error(worker.score.remote("memory")))  # type: ignore[attr-defined]
    assert (typed.transient, missing.transient, memory.transient) == (False, False, True)
    assert typed.text.startswith("TypeError") and missing.text.startswith("FileNotFoundError")
    ray.kill(worker)
    died = classify(_dead(worker))
    assert died.transient and "Actor" in died.text


def test_deadlines_and_out_of_memory_are_transient() -> None:
    import torch

    assert classify(TimeoutError("the evaluation ran past 2 s")).transient
    assert classify(torch.OutOfMemoryError("CUDA out of memory")).transient
    assert not classify(TypeError("score() takes 2 positional arguments but 3 were given")).transient
