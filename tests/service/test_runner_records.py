"""A runner's hold on its job and its records: the lease is renewed while a job is prepared (suite, Ray, workers:
42 s were seen under load), not only once it runs; a result and its front's change are stored together or not at all."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.runner import JobRunner, default_pool
from mergefront.service.settings import Settings
from mergefront.spec import parse_spec

LEASE = 2.0


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_runner_slow_to_start_its_workers_keeps_its_lease_and_finishes_the_job(
        settings: Settings, sessions: Any, spec_data: dict, stored_evaluations: Any) -> None:
    spec_data["optimizer"].update(budget=4, batch_size=2)
    spec_data["resources"]["workers"] = 1
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    fast = settings.model_copy(update={"lease_seconds": LEASE})
    taken: list[int | None] = []

    def slow_pool(setup: Any, spec: Any) -> Any:
        """Workers that take three leases to start; meanwhile another runner tries to take the job, twice a second."""
        deadline = time.monotonic() + 3 * LEASE
        while time.monotonic() < deadline:
            with session_scope(sessions) as s:
                taken.append(repo.lease_job(session=s, owner="another runner", seconds=LEASE, job_id=job_id))
            time.sleep(0.5)
        return default_pool(setup, spec, fast)

    assert JobRunner(session_factory=sessions, settings=fast, pool_factory=slow_pool).run(job_id) == "completed"
    assert len(taken) >= 10 and set(taken) == {None}  # never taken, though its runner wrote nothing for 6 s
    assert [number for number, *_ in stored_evaluations(sessions, job_id)] == [0, 1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_crash_between_a_result_and_its_front_stores_neither(settings: Settings, sessions: Any, spec_data: dict,
                                                               stored_evaluations: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import mergefront.service.runner as runner_module

    spec_data["optimizer"].update(budget=4, batch_size=2)
    spec_data["resources"]["workers"] = 1
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    record_result = runner_module.record_result
    calls: list[int] = []

    def crash_on_the_third(**kwargs: Any) -> Any:  # the result is written in this transaction, its front not yet
        calls.append(kwargs["evaluation_id"])
        if len(calls) == 3:
            raise RuntimeError("the process died here")
        return record_result(**kwargs)

    monkeypatch.setattr(runner_module, "record_result", crash_on_the_third)
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "failed"
    with session_scope(sessions) as s:
        completed = repo.evaluation_counts(session=s, job_id=job_id).get("completed", 0)
        assert completed == 2 and repo.latest_snapshot(session=s, job_id=job_id).n_completed == 2  # type: ignore[union-attr]
        assert repo.get_evaluation(session=s, evaluation_id=calls[2]).state == "pending"  # evaluated again on resume
    monkeypatch.setattr(runner_module, "record_result", record_result)
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "completed"
    rows = stored_evaluations(sessions, job_id)
    assert [(number, state) for number, state, *_ in rows] == [(n, "completed") for n in range(4)]
    with session_scope(sessions) as s:
        assert repo.latest_snapshot(session=s, job_id=job_id).n_completed == 4  # type: ignore[union-attr]
