"""The worker pool's reservation and deadlines, on this process's local Ray: a job that does not fit holds nothing,
an evaluation past its deadline is stopped and its worker replaced, an unreachable cluster is said so at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from mergefront.errors import ClusterUnavailableError
from mergefront.evaluators.cluster import check_reachable

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(cache_dir: Path):  # type: ignore[no-untyped-def]
    from mergefront.evaluators.evaluation import ObjectiveSetup, WorkerSetup
    from mergefront.evaluators.pool import init_ray

    init_ray()
    return WorkerSetup.for_suite("digits", cache_dir / "digits-v1-seed0", ["rotated"],
                                 [ObjectiveSetup("rotated_accuracy", task="rotated")], device="cpu")


def _sleep(actor, seconds):  # type: ignore[no-untyped-def]
    return actor.__ray_call__.remote(lambda self, s: time.sleep(s) or s, seconds)


def test_a_job_the_cluster_cannot_place_waits_holding_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    import ray
    from ray.util import placement_group_table

    from mergefront.evaluators.pool import WorkerPool

    free = ray.available_resources().get("CPU", 0)
    started = time.monotonic()
    with pytest.raises(ClusterUnavailableError, match=r"did not place the job's 64 workers \(1 CPU each\) within 1 s"):
        WorkerPool(setup, 64, placement_timeout=1.0)
    assert time.monotonic() - started < 30
    assert all(g["state"] == "REMOVED" for g in placement_group_table().values())
    assert ray.available_resources().get("CPU", 0) == free  # no partial reservation left behind


def test_an_evaluation_past_its_deadline_is_stopped_and_its_worker_replaced(setup) -> None:  # type: ignore[no-untyped-def]
    from mergefront.evaluators.pool import WorkerPool

    pool = WorkerPool(setup, 1, placement_timeout=300, evaluation_timeout=2.0)
    try:
        pool.submit(_sleep, 0.0, tag="warm")  # the worker's start does not count against an evaluation
        assert _next(pool).value == 0.0
        pool.submit(_sleep, 60.0, tag="slow")
        pool.submit(_sleep, 0.5, tag="after")
        slow = _next(pool)
        assert slow.tag == "slow" and isinstance(slow.error, TimeoutError)
        assert "ran past 2 s (MERGEFRONT_EVALUATION_TIMEOUT)" in str(slow.error) and slow.node_id
        after = _next(pool)  # ran on the fresh worker that took the stopped one's place
        assert (after.tag, after.value, after.error) == ("after", 0.5, None)
    finally:
        pool.shutdown()


def _next(pool):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        finished = pool.next_finished(timeout=5)
        if finished is not None:
            return finished
    raise AssertionError("nothing finished")


def test_an_address_where_nothing_listens_is_reported_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    started = time.monotonic()
    with pytest.raises(ClusterUnavailableError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 5
    check_reachable("auto")  # not host:port: left to Ray
