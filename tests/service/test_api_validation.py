"""Bad input gets a 422 that names the field, and stores nothing."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(api, settings):  # type: ignore[no-untyped-def]
    with api(run_jobs=False) as c:
        yield c


def _set(spec: dict, path: tuple, value: object) -> dict:
    spec = copy.deepcopy(spec)
    node = spec
    for p in path[:-1]:
        node = node[p]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


@pytest.mark.parametrize(("path", "value", "loc"), [
    (("merge", "method"), "frankenmerge", ["body", "merge", "method"]),
    (("models", "experts"), [], ["body", "models", "experts"]),
    (("models", "experts", 1), "bench://digits/missing", ["body", "models", "experts", 1]),
    (("models",), None, ["body", "models"]),
    (("optimizer", "budget"), -5, ["body", "optimizer", "budget"]),
    (("optimizer", "budget"), "lots", ["body", "optimizer", "budget"]),
    (("objectives", 0, "task"), "sorting", ["body", "objectives", 0, "task"]),
    (("optimizer", "reference_point"), [0.0, 0.0], ["body", "optimizer", "reference_point"]),
])
def test_bad_spec_is_422_naming_the_field_and_stores_nothing(client: TestClient, spec_data: dict,
                                                             path: tuple, value: object, loc: list) -> None:
    response = client.post("/v1/jobs", json=_set(spec_data, path, value))
    assert response.status_code == 422, response.text
    locs = [d["loc"] for d in response.json()["detail"]]
    assert any(got[: len(loc)] == loc for got in locs), locs
    assert client.get("/v1/jobs").json()["total"] == 0


def test_body_that_is_not_a_spec(client: TestClient) -> None:
    assert client.post("/v1/jobs", content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/v1/jobs", json=[1, 2]).status_code == 422
    assert client.get("/v1/jobs").json()["total"] == 0


def test_valid_spec_is_stored_pending_with_its_reference_point(client: TestClient, spec_data: dict) -> None:
    response = client.post("/v1/jobs", json=spec_data)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "pending" and job["reference_point"] == [0.0, 0.0, 0.0]
    assert client.get(f"/v1/jobs/{job['id']}").json()["spec"]["optimizer"]["seed"] == 3
    front = client.get(f"/v1/jobs/{job['id']}/pareto").json()
    assert front["members"] == [] and front["hypervolume"] == 0.0


def test_unknown_job_is_404(client: TestClient) -> None:
    for path in ("/v1/jobs/999", "/v1/jobs/999/evaluations", "/v1/jobs/999/pareto"):
        response = client.get(path)
        assert response.status_code == 404 and "999" in response.json()["detail"]
    assert client.get("/v1/jobs?limit=0").status_code == 422


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200 and client.get("/static/docs.js").status_code == 200
    assert "/v1/jobs/{job_id}/pareto" in client.get("/openapi.json").json()["paths"]  # with the client's token


def test_the_schema_documents_each_routes_errors_and_datetimes_carry_their_zone(client: TestClient,
                                                                               spec_data: dict) -> None:
    schema = client.get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            documented = set(operation["responses"])
            if path != "/healthz":  # behind a token, checked in the database
                assert {"401", "403", "503"} <= documented, (method, path, documented)
            if "{" in path:
                assert {"404", "422"} <= documented, (method, path, documented)
    assert schema["components"]["schemas"]["JobOut"]["properties"]["created_at"]["format"] == "date-time"
    job = client.post("/v1/jobs", json=spec_data).json()
    assert datetime.fromisoformat(job["created_at"]).utcoffset() is not None, job["created_at"]


@pytest.mark.parametrize(("raw", "loc"), [
    (b'"weight": {"low": NaN, "high": 1.0}', ["body", "merge", "weight"]),
    (b'"weight": {"low": 0.0, "high": Infinity}', ["body", "merge", "weight"]),
    (b'"weight": {"low": 0.0, "high": 1e999}', ["body", "merge", "weight"]),
    (b'"weight": -Infinity', ["body", "merge", "weight"]),
])
def test_non_finite_numbers_are_422_naming_the_field(client: TestClient, spec_data: dict, raw: bytes,
                                                     loc: list) -> None:
    body = json.dumps({**spec_data, "merge": {"method": "task_arithmetic", "weight": "@"}}).encode()
    response = client.post("/v1/jobs", content=body.replace(b'"weight": "@"', raw),
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert any(d["loc"][:3] == loc for d in response.json()["detail"]), response.text
    assert client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize(("path", "value", "loc"), [
    (("name",), "nul\x00byte", ["body", "name"]),
    (("resources", "ask_timeout"), 1e308, ["body", "resources", "ask_timeout"]),
    (("resources", "gpus_per_worker"), 1e6, ["body", "resources", "gpus_per_worker"]),
    (("optimizer", "seed"), 2**70, ["body", "optimizer", "seed"]),
    (("optimizer", "reference_point"), [1e308, 0.0, 0.0], ["body", "optimizer", "reference_point", 0]),
    (("objectives", 0), {"evaluator": "sparsity", "settings": {"x": [1, {"y": "a\x00"}]}},
     ["body", "objectives", 0, "settings"]),
])
def test_out_of_bounds_values_and_nul_bytes_are_422_naming_the_field(client: TestClient, spec_data: dict,
                                                                     path: tuple, value: object, loc: list) -> None:
    response = client.post("/v1/jobs", json=_set(spec_data, path, value))
    assert response.status_code == 422, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.text
    assert client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize("url", ["/v1/jobs?offset=196427698513912299520", "/v1/jobs/196427698513912299520",
                                 "/v1/jobs/0/pareto", "/v1/evaluations/99999999999", "/v1/jobs/1/table?filter=a>1e999"])
def test_huge_ids_offsets_and_filters_are_422_without_sql(client: TestClient, spec_data: dict, url: str) -> None:
    assert client.post("/v1/jobs", json=spec_data).json()["id"] == 1
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert "SELECT" not in response.text
