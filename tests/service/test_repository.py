from __future__ import annotations

import time

import pytest

from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.models import EvaluationState, JobState
from mergefront.spec import parse_spec


def test_lease_is_exclusive_until_it_expires(sessions, spec_data: dict) -> None:
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    with session_scope(sessions) as s:
        assert repo.lease_job(session=s, owner="a", seconds=0.5) == job_id
    with session_scope(sessions) as s:
        assert repo.lease_job(session=s, owner="b", seconds=30) is None
        assert repo.lease_job(session=s, owner="a", seconds=0.5, job_id=job_id) == job_id  # its owner may renew
    time.sleep(0.6)
    with session_scope(sessions) as s:
        assert repo.lease_job(session=s, owner="b", seconds=30) == job_id  # a stopped runner loses its job
        assert not repo.renew_lease(session=s, job_id=job_id, owner="a", seconds=30)
        assert repo.get_job(session=s, job_id=job_id).state == JobState.running


def test_a_job_leased_elsewhere_is_refused_saying_when_its_lease_runs_out(sessions, settings, spec_data: dict) -> None:
    from mergefront.errors import ConflictError
    from mergefront.service.runner import JobRunner

    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
        repo.lease_job(session=s, owner="elsewhere", seconds=45)
    with pytest.raises(ConflictError, match=rf"job {job_id} is leased by another runner until 20\d\d-\d\d-\d\d "
                                            r"\d\d:\d\d:\d\d UTC \(4[45] s from now"):
        JobRunner(session_factory=sessions, settings=settings).run(job_id)


def test_evaluations_are_numbered_and_finished_jobs_are_not_leased(sessions, spec_data: dict) -> None:
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
        rows = repo.add_evaluations(session=s, job_id=job_id, points=[([0.1] * 6, {"a": 1.0}), ([0.2] * 6, {"a": 2.0})])
        more = repo.add_evaluations(session=s, job_id=job_id, points=[([0.3] * 6, {"a": 3.0})])
        assert [r.number for r in rows + more] == [0, 1, 2]
        repo.complete_evaluation(session=s, evaluation_id=rows[0].id, metrics={"m": 0.5}, worker="w",
                                 merge_seconds=0.1, eval_seconds=0.2)
        repo.fail_evaluation(session=s, evaluation_id=rows[1].id, error="boom", final=True)
    with session_scope(sessions) as s:
        total, done = repo.list_evaluations(session=s, job_id=job_id, state=EvaluationState.completed)
        assert total == 1 and done[0].metrics == {"m": 0.5}
        out = repo.job_out(session=s, job=repo.get_job(session=s, job_id=job_id))
        assert (out.n_completed, out.n_failed) == (1, 1)
        repo.finish_job(session=s, job_id=job_id, state=JobState.completed)
    with session_scope(sessions) as s:
        assert repo.lease_job(session=s, owner="x", seconds=30) is None


def test_jobs_of_one_problem_share_their_reference_point(sessions, spec_data: dict) -> None:
    from mergefront.service.front import update_front

    spec_data["objectives"] = [{"evaluator": "external", "name": "score", "direction": "maximize"},
                               {"evaluator": "external", "name": "cost", "direction": "minimize"}]

    def run_first_batch(spec: dict, values: list[tuple[float, float]]) -> list:
        with session_scope(sessions) as s:
            job = repo.create_job(session=s, spec=parse_spec(spec))
            assert job.reference_point == [None, None]  # no known worst value: fixed after the first batch
            rows = repo.add_evaluations(session=s, job_id=job.id, points=[([0.1 * i] * 6, {}) for i in range(4)])
            keys = [o["name"] for o in spec["objectives"]]
            for row, pair in zip(rows, values, strict=True):
                repo.complete_evaluation(session=s, evaluation_id=row.id, metrics=dict(zip(keys, pair, strict=True)),
                                         worker="w", merge_seconds=0.0, eval_seconds=0.0)
            update_front(session=s, job_id=job.id)
            return list(repo.get_job(session=s, job_id=job.id).reference_point)

    first = run_first_batch(spec_data, [(0.5, 2.0), (0.7, 3.0), (0.2, 1.0), (0.6, 2.5)])
    assert first == [0.2 - 0.05, 3.0 + 0.2]  # inferred: the worst seen, a tenth of the spread further out
    assert run_first_batch(spec_data, [(5.0, 20.0), (7.0, 30.0), (6.0, 10.0), (8.0, 40.0)]) == first
    spec_data["objectives"][1]["name"] = "latency"  # another problem: its own reference point
    assert run_first_batch(spec_data, [(5.0, 20.0), (7.0, 30.0), (6.0, 10.0), (8.0, 40.0)]) == [4.7, 43.0]
