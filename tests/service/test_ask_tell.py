"""Ask/tell: a job with external objectives is driven by its user, through the SDK or REST, on both databases."""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from mergefront import Client, ConflictError, InvalidSpecError, NotFoundError
from mergefront.cli import main as cli_main
from mergefront.schemas import EvaluationOut
from mergefront.service import repository as repo
from mergefront.service.asktell import ask
from mergefront.service.db import session_scope
from mergefront.service.settings import Settings
from mergefront.spec import parse_spec

TARGET = {"weight.rotated": 0.2, "weight.inverted": 0.9}
EXTERNAL_SPEC = {
    "name": "external-toy",
    "models": {"base": "bench://digits/base", "experts": ["bench://digits/rotated", "bench://digits/inverted"]},
    "merge": {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}},
    "objectives": [{"evaluator": "external", "name": "size", "direction": "maximize"},
                   {"evaluator": "external", "name": "distance", "direction": "minimize"}],
    "optimizer": {"name": "nsga2", "budget": 9, "batch_size": 3, "seed": 1},
    "resources": {"ask_timeout": 600.0},  # no candidate expires by chance on a slow machine; expiry is tested below
}
ASK_TIMEOUT = 3.0  # the expiry test's: its first two tells must come in within it, on a loaded CI machine too


def toy(params: dict[str, float]) -> dict[str, float]:
    """Two conflicting objectives of the merge weights: their sum (maximised), the distance to TARGET (minimised)."""
    return {"size": sum(params.values()), "distance": math.dist([params[k] for k in TARGET], TARGET.values())}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """No suite is built: a whole-model space needs no tensor names, and nothing is merged."""
    return Settings(home=tmp_path / "home", database_url=database_url, lease_seconds=30, poll_seconds=0.2,
                    allowed_hosts=["testserver"])


@pytest.fixture
def external_spec() -> dict:
    return copy.deepcopy(EXTERNAL_SPEC)


@pytest.fixture
def http(api, settings: Settings) -> Iterator[TestClient]:
    """The API without its runner (tests that store a normal job must not start Ray)."""
    with api(run_jobs=False) as client:
        yield client


def test_sdk_drives_a_whole_job_with_a_duplicate_a_conflicting_and_an_expired_tell(api, settings: Settings,
                                                                                     external_spec: dict) -> None:
    budget = external_spec["optimizer"]["budget"]
    external_spec["resources"]["ask_timeout"] = ASK_TIMEOUT
    # the server's runner runs too: it must leave the external job alone
    with api() as http, Client("http://testserver", http=http) as client:
        job = client.submit(external_spec)
        assert job.info().external and job.info().state == "pending"

        first = job.ask(3)
        asked_at = time.monotonic()
        assert [c.number for c in first] == [0, 1, 2] and job.info().state == "running"
        for c in first:
            assert c.state == "running" and c.attempts == 1 and set(c.params) == set(TARGET)
            assert c.expires_at is not None and c.started_at is not None
            assert (c.expires_at - c.started_at).total_seconds() == pytest.approx(ASK_TIMEOUT, abs=0.01)
        told = job.tell(first[0], toy(first[0].params))
        assert told.state == "completed" and told.worker == "external" and told.merge_seconds == 0.0
        assert 0.0 <= (told.eval_seconds or 0.0) < ASK_TIMEOUT
        assert job.tell(first[0].id, toy(first[0].params)) == told  # the same result again: nothing changes
        with pytest.raises(ConflictError, match="already told"):
            job.tell(first[0], {"size": 0.0, "distance": 0.0})
        job.tell(first[1], error="the benchmark crashed")
        assert job.tell(first[1], error="the benchmark crashed").state == "failed"
        with pytest.raises(ConflictError, match="already told"):
            job.tell(first[1], toy(first[1].params))

        time.sleep(max(0.0, asked_at + ASK_TIMEOUT + 0.1 - time.monotonic()))  # candidate 2 is never told in time
        assert http.get(f"/v1/evaluations/{first[2].id}").json()["state"] == "expired"
        expired = {e.number: e for e in job.evaluations()}[2]
        assert expired.state == "expired" and expired.finished_at is not None
        with pytest.raises(ConflictError, match="expired"):
            job.tell(first[2], toy(first[2].params))

        asked = 3
        while not job.info().done:
            batch = job.ask(3)  # the expired candidate no longer counts: 2 finished, so 3 more fit
            assert batch and asked < 4 * budget
            asked += len(batch)
            for c in batch:
                job.tell(c, toy(c.params))
        assert job.ask(2) == []

        info, rows = job.info(), job.evaluations()
        front = job.pareto()
    assert info.state == "completed" and info.n_completed + info.n_failed == budget and info.n_failed == 1
    assert [r.number for r in rows] == list(range(budget + 1)) and asked == budget + 1
    assert [r.state for r in rows].count("expired") == 1
    completed = [r for r in rows if r.state == "completed"]
    assert all(r.metrics == pytest.approx(toy(r.params)) for r in completed)
    assert None not in front.reference_point and front.n_completed == len(completed) == budget - 1
    assert front.members and front.hypervolume > 0
    assert {m.id for m in front.members} <= {r.id for r in completed}


@pytest.mark.parametrize(("metrics", "loc"), [
    ({"size": 1.0}, ["body", "metrics", "distance"]),
    ({"size": 1.0, "distance": 0.5, "speed": 3.0}, ["body", "metrics", "speed"]),
    ({"size": "lots", "distance": 0.5}, ["body", "metrics", "size"]),
])
def test_bad_metrics_are_422_naming_the_field_and_store_nothing(http: TestClient, external_spec: dict,
                                                                metrics: dict, loc: list) -> None:
    job_id = http.post("/v1/jobs", json=external_spec).json()["id"]
    candidate = http.post(f"/v1/jobs/{job_id}/ask", json={}).json()[0]
    response = http.post(f"/v1/evaluations/{candidate['id']}/tell", json={"metrics": metrics})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert http.get(f"/v1/evaluations/{candidate['id']}").json()["state"] == "running"


def test_non_finite_metrics_and_malformed_tells_are_422(http: TestClient, external_spec: dict) -> None:
    job_id = http.post("/v1/jobs", json=external_spec).json()["id"]
    candidate = EvaluationOut.model_validate(http.post(f"/v1/jobs/{job_id}/ask").json()[0])
    url = f"/v1/evaluations/{candidate.id}/tell"
    for raw in (b'{"metrics": {"size": NaN, "distance": 0.5}}', b'{"metrics": {"size": 1, "distance": Infinity}}'):
        response = http.post(url, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][:2] == ["body", "metrics"]
    for body in ({}, {"metrics": toy(candidate.params), "error": "both"}, {"error": ""}):
        assert http.post(url, json=body).status_code == 422, body
    assert http.post(f"/v1/jobs/{job_id}/ask", json={"n": 0}).status_code == 422
    with pytest.raises(InvalidSpecError) as info:  # the SDK says so before sending what JSON cannot carry
        Client("http://testserver", http=http).job(job_id).tell(candidate, {"size": math.nan, "distance": 0.5})
    assert info.value.loc == ("metrics", "size")
    assert http.post("/v1/evaluations/999/tell", json={"error": "x"}).status_code == 404
    assert http.post("/v1/jobs/999/ask").status_code == 404
    assert http.get(f"/v1/evaluations/{candidate.id}").json()["state"] == "running"


def test_ask_and_tell_on_a_job_mergefront_evaluates_is_409(http: TestClient, spec_data: dict, settings: Settings,
                                                           external_spec: dict) -> None:
    job_id = http.post("/v1/jobs", json=spec_data).json()["id"]
    response = http.post(f"/v1/jobs/{job_id}/ask", json={"n": 2})
    assert response.status_code == 409 and "external" in response.json()["detail"]
    with session_scope(http.app.state.sessions) as s:
        row = repo.add_evaluations(session=s, job_id=job_id, points=[([0.5] * 6, {"w": 0.5})])[0]
    response = http.post(f"/v1/evaluations/{row.id}/tell", json={"metrics": {"a": 1.0}})
    assert response.status_code == 409 and "external" in response.json()["detail"]
    with pytest.raises(ConflictError):
        Client("http://testserver", http=http).job(job_id).ask()
    with pytest.raises(NotFoundError):
        Client("http://testserver", http=http).job(job_id).tell(999, error="x")


def test_runner_never_leases_an_external_job(sessions: sessionmaker[Session], external_spec: dict) -> None:
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(external_spec)).id
    with session_scope(sessions) as s:
        assert repo.lease_job(session=s, owner="runner", seconds=30) is None
        assert repo.lease_job(session=s, owner="runner", seconds=30, job_id=job_id) is None
        assert repo.get_job(session=s, job_id=job_id).state == "pending"


def test_concurrent_asks_number_candidates_apart_and_stop_at_the_budget(
        sessions: sessionmaker[Session], settings: Settings, external_spec: dict) -> None:
    external_spec["optimizer"]["budget"] = 10
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(external_spec)).id
    start, errors, got = threading.Barrier(4), list[Exception](), list[int]()

    def asker() -> None:
        start.wait()
        try:
            with session_scope(sessions) as s:
                got.extend(r.number for r in ask(session=s, job_id=job_id, n=4, settings=settings))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=asker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and sorted(got) == list(range(10))
    with session_scope(sessions) as s:
        total, rows = repo.list_evaluations(session=s, job_id=job_id)
        assert total == 10 and len({tuple(r.x) for r in rows}) == 10


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_run_refuses_an_external_spec_and_stores_nothing(settings: Settings, sessions: sessionmaker[Session],
                                                             external_spec: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "external.yaml"
    path.write_text(yaml.safe_dump(external_spec))
    assert cli_main(["run", str(path), "--db", settings.resolved_database_url]) == 2
    assert "ask" in capsys.readouterr().err
    with session_scope(sessions) as s:
        assert repo.list_jobs(session=s)[0] == 0


@pytest.mark.parametrize("value", [1e308, -1e16, "NaN"])
def test_a_metric_out_of_range_is_a_422_and_the_job_goes_on(http: TestClient, external_spec: dict,
                                                            value: object) -> None:
    job_id = http.post("/v1/jobs", json=external_spec).json()["id"]
    candidate = http.post(f"/v1/jobs/{job_id}/ask", json={"n": 1}).json()[0]
    metric = value if isinstance(value, str) else repr(value)
    bad = http.post(f"/v1/evaluations/{candidate['id']}/tell", headers={"content-type": "application/json"},
                    content=f'{{"metrics": {{"size": {metric}, "distance": 0.5}}}}')
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:3] == ["body", "metrics", "size"], bad.text
    good = http.post(f"/v1/evaluations/{candidate['id']}/tell", json={"metrics": toy(candidate["params"])})
    assert good.status_code == 200 and good.json()["state"] == "completed", good.text
    hv = http.get(f"/v1/jobs/{job_id}").json()["hypervolume"]
    assert hv is None or math.isfinite(hv)
    assert http.post(f"/v1/jobs/{job_id}/ask", json={"n": 1}).status_code == 200
