"""Front members evaluated again with new seeds (`optimizer.reevaluate`): within the budget, stored as evaluations of
the same point, the front and its hypervolume on the means, with spread and count, through REST, SDK and CLI; on
both databases."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mergefront import Client
from mergefront.optimizers import hypervolume, nondominated_mask
from mergefront.report import format_front
from tests.service.test_ask_tell import EXTERNAL_SPEC, toy

BUDGET, SHARE = 20, 0.3


def noisy(params: dict[str, float], number: int) -> dict[str, float]:
    """The toy objectives with noise drawn from the candidate's number (its own seed, as a DARE mask would be)."""
    rng = np.random.default_rng(number)
    return {k: v + float(rng.normal(0, 0.05)) for k, v in toy(params).items()}


def noisy_spec(seed: int = 4) -> dict:
    spec = copy.deepcopy(EXTERNAL_SPEC) | {"resources": {"ask_timeout": 600.0}}
    spec["optimizer"] = {"name": "nsga2", "budget": BUDGET, "batch_size": 4, "seed": seed, "reevaluate": SHARE}
    return spec


def drive(http: TestClient, spec: dict) -> int:
    """Submit an external job and ask/tell it to its end, telling noisy values; its id."""
    job = Client("http://testserver", http=http).submit(spec)  # not closed: that would close `http`
    while not job.info().done:
        for c in job.ask(4):
            job.tell(c, noisy(c.params, c.number))
    return job.id


def test_a_noisy_job_repeats_front_members_within_its_budget_and_reports_the_evidence(api) -> None:
    with api(run_jobs=False) as http:
        job_id = drive(http, noisy_spec())
        rows = http.get(f"/v1/jobs/{job_id}/evaluations", params={"limit": 100}).json()["items"]
        front = http.get(f"/v1/jobs/{job_id}/pareto").json()
        points = http.get(f"/v1/jobs/{job_id}/points").json()
        sdk_front = Client("http://testserver", http=http).job(job_id).pareto()
    assert [r["number"] for r in rows] == list(range(BUDGET)) and {r["state"] for r in rows} == {"completed"}
    by_id = {r["id"]: r for r in rows}
    repeats = [r for r in rows if r["repeat_of"] is not None]
    assert len(repeats) == int(SHARE * BUDGET)  # exactly the share, all in the second half
    assert min(r["number"] for r in repeats) >= 8  # none in the batches that end within the first half
    for r in repeats:
        first = by_id[r["repeat_of"]]
        assert first["repeat_of"] is None and first["number"] < r["number"]
        assert first["params"] == r["params"] and r["metrics"] != first["metrics"]  # same merge, new seed

    # the front over points, on each point's mean
    evaluations: dict[int, list[int]] = {}
    for r in rows:
        evaluations.setdefault(r["repeat_of"] or r["id"], []).append(r["id"])
    ids = list(evaluations)
    means = np.asarray([np.mean([[by_id[e]["metrics"][k] for k in ("size", "distance")] for e in evaluations[i]],
                                axis=0) for i in ids])
    mask = nondominated_mask(means, [True, False])
    assert {m["id"] for m in front["members"]} == {i for i, keep in zip(ids, mask, strict=True) if keep}
    assert front["hypervolume"] == pytest.approx(hypervolume(means[mask], front["reference_point"], [True, False]))
    assert front["n_completed"] == BUDGET
    repeated = [m for m in front["members"] if m["n_evaluations"] > 1]
    assert repeated, "no front member was evaluated more than once"
    for m in front["members"]:
        told = np.asarray([[by_id[e]["metrics"][k] for k in ("size", "distance")] for e in evaluations[m["id"]]])
        assert m["n_evaluations"] == len(told) and sorted(m["evaluation_ids"]) == sorted(evaluations[m["id"]])
        assert [m["metrics"][k] for k in ("size", "distance")] == pytest.approx(told.mean(axis=0))
        assert [m["metrics_std"][k] for k in ("size", "distance")] == pytest.approx(told.std(axis=0))
        assert [m["metrics_min"][k] for k in ("size", "distance")] == pytest.approx(told.min(axis=0))
        assert [m["metrics_max"][k] for k in ("size", "distance")] == pytest.approx(told.max(axis=0))
    assert {m.id: (m.n_evaluations, m.metrics) for m in sdk_front.members} == {
        m["id"]: (m["n_evaluations"], m["metrics"]) for m in front["members"]}

    # the CLI's table and the dashboard's plot columns say the same
    table = format_front(sdk_front)
    assert "mean ± std" in table and "evals" in table.splitlines()[1]
    shown = dict(zip(points["ids"], zip(points["counts"], points["values"][0], points["spread"][0], strict=True),
                     strict=True))
    assert points["n_completed"] == BUDGET and set(shown) <= set(ids)
    for m in front["members"]:
        assert shown[m["id"]][0] == m["n_evaluations"]
        assert shown[m["id"]][1:] == pytest.approx((m["metrics"]["size"], m["metrics_std"]["size"]))


def test_the_same_seed_repeats_the_same_points(api) -> None:
    with api(run_jobs=False) as http:
        runs = []
        for _ in range(2):
            job_id = drive(http, noisy_spec(seed=7))
            rows = http.get(f"/v1/jobs/{job_id}/evaluations", params={"limit": 100}).json()["items"]
            numbers = {r["id"]: r["number"] for r in rows}
            runs.append([(r["params"], numbers.get(r["repeat_of"])) for r in rows])
    assert runs[0] == runs[1] and any(of is not None for _, of in runs[0])


@pytest.mark.parametrize("value", [-0.1, 0.51, "half", None])
def test_a_bad_reevaluate_is_422_naming_the_field(api, value: object) -> None:
    spec = noisy_spec()
    spec["optimizer"]["reevaluate"] = value
    with api(run_jobs=False) as http:
        response = http.post("/v1/jobs", json=spec)
        raw = http.post("/v1/jobs", content=str.encode(
            '{"models": {"base": "bench://digits/base", "experts": ["bench://digits/rotated"]}, '
            '"merge": {"method": "task_arithmetic"}, "objectives": [{"evaluator": "external", "name": "a"}], '
            '"optimizer": {"reevaluate": NaN}}'), headers={"content-type": "application/json"})
        assert http.get("/v1/jobs").json()["total"] == 0  # nothing stored
    for r in (response, raw):
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][:3] == ["body", "optimizer", "reevaluate"]
