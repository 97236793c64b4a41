"""Jobs with the model-based optimizers (qnehvi, map, Nested MAP, saea) run through REST and resume after a restart."""

from __future__ import annotations

import threading

import pytest

from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.runner import JobRunner, Progress
from mergefront.spec import parse_spec

pytestmark = pytest.mark.slow

OPTIONS = {  # small designs, so that half of each job's 8 evaluations come from the model
    "qnehvi": {"initial_points": 4},
    "map": {"initial_points": 4, "bayesian": True},
    "saea": {"population_size": 4, "screening_factor": 4},
    # the pair (rotated, inverted) spends 12, parity alone 6, the root (merges of their merges) the last 6
    "map-nested": {"name": "map", "nested": True, "budget": 24},
}


def _run_interrupted(sessions, settings, spec_data: dict, stored_evaluations) -> int:  # type: ignore[no-untyped-def]
    """Create the job, stop its runner after five evaluations, finish it with a new runner (as after a restart)."""
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    stop = threading.Event()

    def stop_after_five(p: Progress) -> None:
        if p.n_finished >= 5:
            stop.set()

    first = JobRunner(session_factory=sessions, settings=settings)
    assert first.run(job_id, progress=stop_after_five, stop=stop) == "running"
    assert 5 <= sum(state == "completed" for _, state, _, _ in stored_evaluations(sessions, job_id)) < 8
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "completed"
    return job_id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_model_based_jobs_run_through_rest_and_resume_after_a_restart(api, settings, sessions, spec_data: dict,
                                                                     wait_for_job, stored_evaluations) -> None:
    specs = {name: {**spec_data, "name": f"e2e-{name}",
                    "optimizer": {"name": name, "budget": 8, "batch_size": 4, "seed": 5, **options}}
             for name, options in OPTIONS.items()}
    budgets = {name: spec["optimizer"]["budget"] for name, spec in specs.items()}
    with api() as client:
        ids = {}
        for name, spec in specs.items():
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
        jobs = {name: wait_for_job(client, job_id, 240) for name, job_id in ids.items()}
        fronts = {name: client.get(f"/v1/jobs/{job_id}/pareto").json() for name, job_id in ids.items()}
        surrogates = {name: client.get(f"/v1/jobs/{job_id}/surrogates").json() for name, job_id in ids.items()}
    for name, job in jobs.items():
        assert job["state"] == "completed", (name, job["error"])
        assert job["n_completed"] == budgets[name] and fronts[name]["members"] and fronts[name]["hypervolume"] > 0
        report = surrogates[name]  # every objective's held-out R², so a user sees when to trust the surrogates
        assert report["surrogate"] == ("quadratic" if name.startswith("map") else "gaussian process"), report
        assert [o["objective"] for o in report["objectives"]] == job["objectives"]
        if name == "map-nested":  # the root's surrogates: its own 6 points and the pairs' merges it can express
            assert 6 <= report["n_points"] < budgets[name], report
        else:
            assert report["n_points"] == 8, report
        assert all(o["r2"] is None or o["r2"] <= 1.0 for o in report["objectives"]), report
        stored = stored_evaluations(sessions, job["id"])
        assert len({x for _, _, x, _ in stored}) == budgets[name], name  # never the same point twice
        resumed = _run_interrupted(sessions, settings, specs[name], stored_evaluations)
        assert stored_evaluations(sessions, resumed) == stored, name  # as if never interrupted
