"""Managing jobs through REST: cancel, delete, rename, notes, search and sort; a real runner notices a cancel."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.runner import JobRunner, Progress
from mergefront.spec import parse_spec
from tests.dashboard.synthetic import build_job


@pytest.fixture
def client(api):  # type: ignore[no-untyped-def]
    with api(run_jobs=False) as c:
        yield c


def test_a_pending_job_is_cancelled_then_deleted_with_its_rows(client: TestClient, spec_data: dict,
                                                               sessions) -> None:
    job = client.post("/v1/jobs", json=spec_data).json()
    with session_scope(sessions) as s:  # a candidate proposed before the cancel
        repo.add_evaluations(session=s, job_id=job["id"], points=[([0.5] * 6, {"weight.rotated": 0.5})])
    deleting = client.delete(f"/v1/jobs/{job['id']}")
    assert deleting.status_code == 409 and "cancel it first" in deleting.json()["detail"]
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"  # again: nothing changes
    row = client.get(f"/v1/jobs/{job['id']}/evaluations").json()["items"][0]
    assert row["state"] == "cancelled" and "cancelled" in row["error"]
    with session_scope(sessions) as s:  # nobody leases a cancelled job
        assert repo.lease_job(session=s, owner="x", seconds=30) is None
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    with session_scope(sessions) as s:
        assert s.execute(text("SELECT count(*) FROM evaluations")).scalar_one() == 0


def test_a_finished_job_cannot_be_cancelled_and_keeps_its_front(client: TestClient, sessions) -> None:
    job_id = build_job(sessions, n=20, n_objectives=2, history_points=5)
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 409 and "already completed" in response.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "completed"
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    with session_scope(sessions) as s:
        assert s.execute(text("SELECT count(*) FROM pareto_snapshots")).scalar_one() == 0


def test_rename_notes_search_and_sort(client: TestClient, spec_data: dict) -> None:
    ids = [client.post("/v1/jobs", json={**spec_data, "name": n}).json()["id"] for n in ("alpha", "beta", "gamma")]
    patched = client.patch(f"/v1/jobs/{ids[0]}", json={"name": "alpha-2", "notes": "Parity 100% run_1"}).json()
    assert (patched["name"], patched["notes"]) == ("alpha-2", "Parity 100% run_1")
    assert client.patch(f"/v1/jobs/{ids[1]}", json={"notes": "kept"}).json()["name"] == "beta"  # name kept

    def names(**params: object) -> list[str]:
        return [j["name"] for j in client.get("/v1/jobs", params=params).json()["items"]]

    assert names() == ["gamma", "beta", "alpha-2"]
    assert names(search="PARITY") == ["alpha-2"]
    assert names(search="100%") == ["alpha-2"] and names(search="n_1") == ["alpha-2"]  # no LIKE wildcards
    assert names(search="_") == ["alpha-2"] and names(search="%") == ["alpha-2"]
    assert names(search="alpha kept") == []  # every word must match
    assert names(sort="name", descending=False) == ["alpha-2", "beta", "gamma"]
    assert names(state="pending") == names() and names(state="cancelled") == []
    assert client.patch(f"/v1/jobs/{ids[0]}", json={"notes": None}).json()["notes"] is None
    assert client.patch(f"/v1/jobs/{ids[0]}", json={"name": ""}).status_code == 422
    assert client.get("/v1/jobs", params={"sort": "budget"}).status_code == 422
    assert client.patch("/v1/jobs/999", json={"name": "x"}).status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_running_job_stops_when_cancelled_keeping_its_finished_evaluations(sessions, settings, api,
                                                                            spec_data: dict) -> None:
    spec_data["optimizer"].update(budget=40, batch_size=2)
    spec_data["resources"]["workers"] = 1
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    two_done = threading.Event()

    def progress(p: Progress) -> None:
        if p.n_finished >= 2:
            two_done.set()

    result: list[str] = []
    runner = threading.Thread(target=lambda: result.append(
        JobRunner(session_factory=sessions, settings=settings).run(job_id, progress=progress)))
    runner.start()
    assert two_done.wait(240)
    with api(run_jobs=False) as client:
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["state"] == "cancelled"
    runner.join(timeout=120)
    assert result == ["cancelled"]
    with session_scope(sessions) as s:
        job = repo.get_job(session=s, job_id=job_id)
        _, rows = repo.list_evaluations(session=s, job_id=job_id)
        assert job.state == "cancelled" and job.lease_owner is None
        states = [r.state for r in rows]
        assert states.count("completed") >= 2 and set(states) <= {"completed", "cancelled"}
        assert len(rows) < 40  # it stopped proposing
        assert repo.pareto_out(session=s, job=job).members  # the front of what finished is kept
