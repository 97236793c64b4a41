"""No hang without a deadline: workers the known cluster can never hold are refused (422 naming the field) or
fail a local run at once; a job the cluster cannot start now waits, then fails after the start deadline."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mergefront.errors import InvalidSpecError
from mergefront.service import repository as repo
from mergefront.service.cluster_fit import check_fits
from mergefront.service.db import session_scope
from mergefront.service.runner import JobRunner
from mergefront.service.settings import Settings
from mergefront.spec import parse_spec


def _spec(spec_data: dict, **resources: Any):  # type: ignore[no-untyped-def]
    spec_data["resources"].update(resources)
    return parse_spec(spec_data)


def test_workers_no_node_or_the_whole_cluster_can_hold_are_named(spec_data: dict) -> None:
    nodes = [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 2.0}]
    check_fits(_spec(spec_data, workers=3, gpus_per_worker=0.5), nodes)  # 4 fit on the first node
    with pytest.raises(InvalidSpecError, match="no node of the Ray cluster has that many .the largest has 2") as info:
        check_fits(_spec(spec_data, workers=1, gpus_per_worker=4), nodes)
    assert info.value.loc == ("resources", "gpus_per_worker")
    with pytest.raises(InvalidSpecError, match="can hold at most 2 .2 nodes, 10 CPUs, 2 GPUs") as info:
        check_fits(_spec(spec_data, workers=3, gpus_per_worker=1), nodes)
    assert info.value.loc == ("resources", "workers")
    with pytest.raises(InvalidSpecError, match="none has a GPU"):
        check_fits(_spec(spec_data, gpus_per_worker=1), [{"CPU": 4.0}])


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_gpus_the_local_ray_lacks_are_a_422_and_fail_a_local_run_at_once(api, sessions, settings: Settings,
                                                                        spec_data: dict) -> None:
    import ray

    from mergefront.evaluators.pool import init_ray

    init_ray()
    gpus = ray.cluster_resources().get("GPU", 0) + 1  # one more than this machine has
    spec_data["resources"]["gpus_per_worker"] = gpus
    with api(run_jobs=False) as client:
        answer = client.post("/v1/jobs", json=spec_data)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-2:] == ["resources", "gpus_per_worker"]
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    started = time.monotonic()
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "failed"
    assert time.monotonic() - started < 60  # not the placement timeout, nor for ever
    with session_scope(sessions) as s:
        assert "gpus_per_worker" in (repo.get_job(session=s, job_id=job_id).error or "")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_the_cluster_cannot_start_waits_then_fails_after_the_start_deadline(sessions, settings: Settings,
                                                                                  spec_data: dict) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from mergefront.evaluators.pool import init_ray

    init_ray()
    hog = placement_group([{"CPU": 1.0}] * int(ray.available_resources()["CPU"]))  # another job holds every CPU
    assert hog.wait(timeout_seconds=60)
    try:
        spec_data["resources"]["workers"] = 1
        with session_scope(sessions) as s:
            job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
        runner = JobRunner(session_factory=sessions,
                           settings=settings.model_copy(update={"placement_timeout": 1.0, "start_deadline": 3.0}))
        assert runner.run(job_id) == "pending"
        with session_scope(sessions) as s:
            job = repo.get_job(session=s, job_id=job_id)
            assert job.lease_owner is None and job.waiting_since is not None
            assert (job.error or "").startswith("waiting: the Ray cluster did not place")
        time.sleep(3.0)
        assert runner.run(job_id) == "failed"
        with session_scope(sessions) as s:
            error = repo.get_job(session=s, job_id=job_id).error or ""
        assert "did not start the job's workers within 3 s (MERGEFRONT_START_DEADLINE)" in error
    finally:
        remove_placement_group(hog)
