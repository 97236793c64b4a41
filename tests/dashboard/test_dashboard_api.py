"""The dashboard's read APIs on SQLite and PostgreSQL: server-side sorting, filtering, paging and bounded plots."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.synthetic import build_job


@pytest.fixture
def client(api, settings, sessions):  # type: ignore[no-untyped-def]
    with api(run_jobs=False) as c:
        yield c


@pytest.fixture
def job_id(sessions) -> int:  # type: ignore[no-untyped-def]
    return build_job(sessions, n=400, n_objectives=3, seed=1, history_points=40)


def _all_rows(client: TestClient, job_id: int) -> list[dict]:
    return client.get(f"/v1/jobs/{job_id}/evaluations", params={"limit": 1000}).json()["items"]


def test_table_sorts_by_a_metric_on_the_server(client: TestClient, job_id: int) -> None:
    rows = _all_rows(client, job_id)
    expected = sorted(rows, key=lambda r: (-r["metrics"]["parity_accuracy"], r["number"]))
    page = client.get(f"/v1/jobs/{job_id}/table",
                      params={"sort": "metrics.parity_accuracy", "descending": True, "offset": 30, "limit": 20}).json()
    assert page["total"] == 400 and len(page["items"]) == 20
    assert [r["id"] for r in page["items"]] == [r["id"] for r in expected[30:50]]
    by_param = client.get(f"/v1/jobs/{job_id}/table", params={"sort": "params.density.inverted", "limit": 5}).json()
    assert [r["id"] for r in by_param["items"]] == [r["id"] for r in sorted(
        rows, key=lambda r: r["params"]["density.inverted"])[:5]]


def test_table_filters_and_marks_the_front(client: TestClient, job_id: int) -> None:
    rows = _all_rows(client, job_id)
    front = client.get(f"/v1/jobs/{job_id}/pareto").json()
    page = client.get(f"/v1/jobs/{job_id}/table", params={
        "filter": ["metrics.rotated_accuracy>=0.3", "params.weight.parity < 0.5"], "limit": 500}).json()
    expected = {r["id"] for r in rows if r["metrics"]["rotated_accuracy"] >= 0.3 and r["params"]["weight.parity"] < 0.5}
    assert page["total"] == len(expected) and {r["id"] for r in page["items"]} == expected
    on_front = client.get(f"/v1/jobs/{job_id}/table", params={"front": True, "limit": 500}).json()
    assert {r["id"] for r in on_front["items"]} == {m["id"] for m in front["members"]}
    assert all(r["on_front"] for r in on_front["items"])
    assert "metrics.mod3_accuracy" not in page["columns"] and "params.density.parity" in page["columns"]


@pytest.mark.parametrize("query", [{"sort": "metrics.nope"}, {"filter": "metrics.rotated_accuracy ~ 1"},
                                   {"filter": "params.x>=0.1; drop table jobs"}, {"limit": 501}])
def test_table_refuses_unknown_columns_bad_filters_and_huge_pages(client: TestClient, job_id: int,
                                                                 query: dict) -> None:
    response = client.get(f"/v1/jobs/{job_id}/table", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_points_keep_the_whole_front_and_thin_dominated_points_to_the_bound(client: TestClient, job_id: int) -> None:
    front_ids = {m["id"] for m in client.get(f"/v1/jobs/{job_id}/pareto").json()["members"]}
    full = client.get(f"/v1/jobs/{job_id}/points").json()
    assert full["n_completed"] == 400 and len(full["ids"]) == 400 and full["n_front"] == len(front_ids)
    small = client.get(f"/v1/jobs/{job_id}/points", params={"max_dominated": 50}).json()
    assert {i for i, f in zip(small["ids"], small["on_front"], strict=True) if f} == front_ids
    assert small["n_dominated_shown"] <= 50 and len(small["ids"]) == len(front_ids) + small["n_dominated_shown"]
    assert all(len(column) == len(small["ids"]) for column in small["values"])


def test_points_read_in_chunks_of_ids_are_the_same_points(client: TestClient, job_id: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from mergefront.service import repository

    whole = client.get(f"/v1/jobs/{job_id}/points", params={"max_dominated": 40}).json()
    assert len(whole["ids"]) < 200  # fewer than half the points: read by id, not by reading them all
    monkeypatch.setattr(repository, "_ID_CHUNK", 7)
    assert client.get(f"/v1/jobs/{job_id}/points", params={"max_dominated": 40}).json() == whole
    assert whole["numbers"] == sorted(whole["numbers"]) and whole["n_completed"] == 400


def test_hypervolume_history_is_bucketed_and_ends_at_the_jobs_hypervolume(client: TestClient, job_id: int) -> None:
    job = client.get(f"/v1/jobs/{job_id}").json()
    history = client.get(f"/v1/jobs/{job_id}/hypervolume", params={"max_points": 25}).json()["points"]
    assert 2 <= len(history) <= 25
    assert [p["n_completed"] for p in history] == sorted({p["n_completed"] for p in history})
    assert history[-1] == {"n_completed": 400, "hypervolume": pytest.approx(job["hypervolume"])}
    values = [p["hypervolume"] for p in history]
    assert values == sorted(values)


def test_pages_and_plotly_are_served_locally(client: TestClient, job_id: int) -> None:
    assert 'src="/static/jobs.js"' in client.get("/").text
    page = client.get(f"/jobs/{job_id}").text
    assert 'src="/static/job_plots.js"' in page and "http" not in page.split("<body>")[1]
    assert '"/vendor/plotly.min.js"' in client.get("/static/job_plots.js").text
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "plotly" in js.text[:2000].lower() and len(js.content) > 1_000_000
    assert client.get("/static/job_plots.js").status_code == 200


def test_evaluation_details_and_missing_ids(client: TestClient, job_id: int) -> None:
    first = _all_rows(client, job_id)[0]
    assert client.get(f"/v1/evaluations/{first['id']}").json() == first
    assert client.get("/v1/evaluations/999999").status_code == 404
    assert client.get("/v1/jobs/999999/points").status_code == 404
