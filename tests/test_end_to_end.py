"""Real searches on bench://digits through REST, the runner, the SDK and the CLI (real Ray, real databases)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
import yaml
from pymoo.indicators.hv import HV

from mergefront import Client, InvalidSpecError
from mergefront.cli import main as cli_main
from mergefront.local_server import free_port
from mergefront.service import repository as repo
from mergefront.service.app import create_app
from mergefront.service.db import make_engine, make_session_factory, session_scope
from mergefront.service.runner import JobRunner, Progress
from mergefront.spec import parse_spec

pytestmark = pytest.mark.slow


def _naive_front_ids(rows: list[dict], keys: list[str]) -> set[int]:
    values = np.array([[r["metrics"][k] for k in keys] for r in rows])  # n x m, maximised
    return {rows[i]["id"] for i in range(len(rows))
            if not any(np.all(values[j] >= values[i]) and np.any(values[j] > values[i]) for j in range(len(rows)))}


def test_rest_job_front_agrees_with_stored_evaluations(api, settings, spec_data: dict, wait_for_job) -> None:
    with api() as client:
        job_id = client.post("/v1/jobs", json=spec_data).json()["id"]
        job = wait_for_job(client, job_id, 180)
        assert job["state"] == "completed", job["error"]
        page = client.get(f"/v1/jobs/{job_id}/evaluations", params={"limit": 1000}).json()
        front = client.get(f"/v1/jobs/{job_id}/pareto").json()
    rows = page["items"]
    budget = spec_data["optimizer"]["budget"]
    assert page["total"] == budget and job["n_completed"] == budget
    keys = job["objectives"]
    for r in rows:
        assert r["state"] == "completed" and r["worker"] and r["merge_seconds"] >= 0
        assert all(0.0 <= r["metrics"][k] <= 1.0 for k in keys)
        assert all(0.0 <= v <= 1.0 for v in r["params"].values())
    assert {m["id"] for m in front["members"]} == _naive_front_ids(rows, keys)
    values = np.array([[r["metrics"][k] for k in keys] for r in rows])
    expected_hv = HV(ref_point=-np.array(front["reference_point"]))(-values)
    assert front["hypervolume"] == pytest.approx(expected_hv, rel=1e-9)
    assert front["n_completed"] == budget and job["hypervolume"] == front["hypervolume"]


def test_job_resumes_after_a_restart_exactly_as_if_uninterrupted(sessions, settings, spec_data: dict,
                                                                   stored_evaluations) -> None:
    spec = parse_spec(spec_data)
    with session_scope(sessions) as s:
        interrupted = repo.create_job(session=s, spec=spec).id
        reference = repo.create_job(session=s, spec=spec).id
    stop = threading.Event()

    def stop_after_five(p: Progress) -> None:
        if p.n_finished >= 5:
            stop.set()

    first = JobRunner(session_factory=sessions, settings=settings)
    assert first.run(interrupted, progress=stop_after_five, stop=stop) == "running"
    partial = stored_evaluations(sessions, interrupted)
    assert 5 <= sum(state == "completed" for _, state, _, _ in partial) < spec.optimizer.budget
    # a new runner (as after a server restart) picks the job up and finishes it
    assert JobRunner(session_factory=sessions, settings=settings).run(interrupted) == "completed"
    assert JobRunner(session_factory=sessions, settings=settings).run(reference) == "completed"
    resumed = stored_evaluations(sessions, interrupted)
    assert len(resumed) == spec.optimizer.budget
    assert resumed == stored_evaluations(sessions, reference)


def test_a_job_whose_first_evaluations_all_fail_alike_stops_failed_with_its_budget_unspent(sessions, settings,
                                                                                         spec_data: dict) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: the failure is asking for a GPU that is not there")
    spec_data["resources"] = {"workers": 1, "device": "cuda", "max_retries": 1}
    spec_data["optimizer"].update(budget=8, batch_size=2)
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "failed"
    with session_scope(sessions) as s:
        job = repo.get_job(session=s, job_id=job_id)
        _, rows = repo.list_evaluations(session=s, job_id=job_id)
        # each tried twice (a worker that could not start may start elsewhere), then the job stopped: 4 of 8 spent
        assert [(r.state, r.attempts, len(r.errors or [])) for r in rows] == [("failed", 2, 2)] * 4
        assert all("no CUDA device" in (r.error or "") for r in rows)
        assert job.state == "failed" and "first 4 evaluations all failed with the same error" in (job.error or "")
        assert "4 of its 8 evaluations unspent" in (job.error or "") and "no CUDA device" in (job.error or "")
        assert repo.pareto_out(session=s, job=job).members == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_run_twice_with_the_same_seed_stores_the_same_evaluations(settings, spec_data: dict, tmp_path: Path,
                                                                      stored_evaluations,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MERGEFRONT_CACHE_DIR", str(settings.resolved_cache_dir))
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_data))
    url = settings.resolved_database_url
    assert cli_main(["run", str(spec_path), "--db", url]) == 0
    assert cli_main(["run", str(spec_path), "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("memory plan (3 experts")  # the plan per worker first, before anything starts
    assert "Pareto front of job 1" in out and "Pareto front of job 2" in out and "search space: 6 dimensions" in out
    sessions = make_session_factory(make_engine(url))
    first, second = stored_evaluations(sessions, 1), stored_evaluations(sessions, 2)
    assert len(first) == spec_data["optimizer"]["budget"] and first == second


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_sdk_submits_and_waits_on_a_live_server(settings, spec_data: dict, admin_token: str) -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with Client(f"http://127.0.0.1:{port}", token=admin_token) as client:
            deadline = time.monotonic() + 30
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.1)
            with pytest.raises(InvalidSpecError) as info:
                client.submit({**spec_data, "optimizer": {"budget": 0}})
            assert info.value.loc[:2] == ("optimizer", "budget")
            job = client.submit(spec_data)
            final = job.wait(progress=False, poll=0.3, timeout=180)
            assert final.state == "completed" and final.n_completed == spec_data["optimizer"]["budget"]
            front = job.pareto()
            assert front.members and front.hypervolume > 0
            assert len(job.evaluations(page_size=5)) == spec_data["optimizer"]["budget"]
            assert [j.id for j in client.jobs()] == [job.id]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dare_job_evaluates_front_members_again_with_new_seeds_and_reports_their_means(sessions, settings,
                                                                                         spec_data: dict) -> None:
    spec_data["merge"] = {"method": "dare_linear", "weight": {"low": 0.0, "high": 1.0}, "density": 0.3}
    spec_data["optimizer"] = {"name": "nsga2", "budget": 12, "batch_size": 4, "seed": 3, "population_size": 8,
                              "reevaluate": 0.25}
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "completed"
    with session_scope(sessions) as s:
        job = repo.get_job(session=s, job_id=job_id)
        _, rows = repo.list_evaluations(session=s, job_id=job_id)
        front = repo.pareto_out(session=s, job=job)
        points = repo.front_points(session=s, job=job, max_dominated=1000)  # every point, at its mean
    assert len(rows) == 12 and {r.state for r in rows} == {"completed"}
    by_id = {r.id: r for r in rows}
    repeats = [r for r in rows if r.repeat_of is not None]
    assert len(repeats) == 3 and all(r.number >= 4 for r in repeats)
    assert all(by_id[r.repeat_of].params == r.params and by_id[r.repeat_of].number < r.number for r in repeats)
    assert any(by_id[r.repeat_of].metrics != r.metrics for r in repeats)  # each its own mask seed
    keys = job.objectives
    for m in front.members:
        told = np.array([[by_id[i].metrics[k] for k in keys] for i in m.evaluation_ids])  # e x m
        assert m.n_evaluations == len(told) and set(m.evaluation_ids) >= {m.id}
        assert [m.metrics[k] for k in keys] == pytest.approx(told.mean(axis=0))
        assert [m.metrics_std[k] for k in keys] == pytest.approx(told.std(axis=0))  # type: ignore[index]
    shown = dict(zip(points.ids, points.counts, strict=True))
    for r in repeats:  # a repeated point is one point, at the mean of its evaluations
        evals = [by_id[r.repeat_of]] + [q for q in repeats if q.repeat_of == r.repeat_of]
        at = points.ids.index(r.repeat_of)
        assert shown[r.repeat_of] == len(evals) and r.id not in shown
        assert points.values[0][at] == pytest.approx(np.mean([q.metrics[keys[0]] for q in evals]))
