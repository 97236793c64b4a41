"""Ranking a front by constraints and a preference, and comparing evaluations side by side."""

from __future__ import annotations

from datetime import datetime

import pytest

from mergefront.errors import InvalidSpecError
from mergefront.schemas import EvaluationOut
from mergefront.service.columns import parse_filter
from mergefront.service.decide import rank
from tests.dashboard.synthetic import build_job

OBJECTIVES = ["a", "loss"]  # a maximised, loss minimised


def _member(number: int, a: float, loss: float, w: float) -> EvaluationOut:
    return EvaluationOut(id=100 + number, job_id=1, number=number, state="completed", params={"weight.x": w},
                         metrics={"a": a, "loss": loss}, attempts=1, created_at=datetime(2026, 1, 1))


FRONT = [_member(0, 0.9, 3.0, 0.9), _member(1, 0.6, 1.0, 0.5), _member(2, 0.3, 0.5, 0.2), _member(3, 0.6, 1.0, 0.4)]


def test_scores_are_weighted_means_of_objectives_scaled_over_the_feasible_members() -> None:
    # scaled a: (0.9, 0.6, 0.3, 0.6) -> (1, 0.5, 0, 0.5); scaled loss (lower is better): (0, 0.8, 1, 0.8)
    ranking = rank(FRONT, objectives=OBJECTIVES, maximize=[True, False], weights={"a": 3, "loss": 1})
    assert [m.number for m in ranking.members] == [0, 1, 3, 2]  # 1 and 3 score the same: the first evaluated leads
    assert ranking.scores == pytest.approx([3 / 4, (1.5 + 0.8) / 4, (1.5 + 0.8) / 4, 1 / 4])
    assert ranking.tied == 1 and ranking.weights == [3.0, 1.0]
    even = rank(FRONT, objectives=OBJECTIVES, maximize=[True, False])  # weights default to 1 each
    assert [m.number for m in even.members] == [1, 3, 0, 2] and even.tied == 2  # 0.65, 0.65, 0.5, 0.5


def test_constraints_on_objectives_and_parameters_by_their_own_names() -> None:
    kept = rank(FRONT, objectives=OBJECTIVES, maximize=[True, False],
                constraints=[parse_filter("a >= 0.5"), parse_filter("weight.x<0.85")])
    assert sorted(m.number for m in kept.members) == [1, 3] and kept.tied == 2 and kept.n_front == 4
    assert [m.number for m in kept.members] == [1, 3]  # equal members: the one evaluated first leads
    with pytest.raises(InvalidSpecError, match="did you mean a"):
        rank(FRONT, objectives=OBJECTIVES, maximize=[True, False], constraints=[parse_filter("aa >= 1")])
    with pytest.raises(InvalidSpecError, match="at least one weight"):
        rank(FRONT, objectives=OBJECTIVES, maximize=[True, False], weights={"a": 0, "loss": 0})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rank_and_compare_over_rest(api, sessions) -> None:
    job_id = build_job(sessions, n=50, n_objectives=2, seed=3, history_points=5)
    with api(run_jobs=False) as client:
        ranked = client.get(f"/v1/jobs/{job_id}/rank", params={"weight": ["rotated_accuracy=1", "inverted_accuracy=0"],
                                                               "constraint": "inverted_accuracy > 0.1"}).json()
        front = client.get(f"/v1/jobs/{job_id}/pareto").json()["members"]
        feasible = [m for m in front if m["metrics"]["inverted_accuracy"] > 0.1]
        best = max(feasible, key=lambda m: (m["metrics"]["rotated_accuracy"], -m["number"]))
        assert ranked["recommended"]["id"] == best["id"] and ranked["n_feasible"] == len(feasible)
        assert ranked["weights"] == [1.0, 0.0] and ranked["items"][0]["score"] == 1.0
        bad = client.get(f"/v1/jobs/{job_id}/rank", params={"weight": "rotated_accuracy"})
        assert bad.status_code == 422 and "objective=number" in bad.json()["detail"][0]["msg"]
        ids = [m["id"] for m in front[:3]]
        compared = client.get(f"/v1/jobs/{job_id}/compare", params={"id": ids}).json()
        assert [e["id"] for e in compared["items"]] == ids and len(compared["diffs"]) == 2
        assert all(y.startswith("merge_method: ties") or "merge_method" in y for y in compared["mergekit"])
        assert compared["diffs"][0].startswith("--- evaluation ") and "\n-" in compared["diffs"][0]
        assert client.get(f"/v1/jobs/{job_id}/compare", params={"id": ids[:1]}).status_code == 422


def test_main_effects_rank_the_parameters_a_function_depends_on() -> None:
    from mergefront.optimizers.space import Parameter, SearchSpace
    from mergefront.service.insight import GRID, effects

    space = SearchSpace((Parameter("p", 0.0, 2.0, "p"), Parameter("q", 0.0, 1.0, "q"), Parameter("r", 0.0, 1.0, "r")))

    def predict(X):  # type: ignore[no-untyped-def]
        import numpy as np

        return np.stack([3 * X[:, 0] + 0.5 * X[:, 1], (X[:, 2] - 0.5) ** 2], axis=-1)

    first, second = effects(predict, space, seed=0)
    assert [e.parameter for e in first] == ["p", "q", "r"]
    assert first[0].effect == pytest.approx(3.0) and first[1].effect == pytest.approx(0.5)
    assert first[2].effect == pytest.approx(0.0, abs=1e-12) and sum(e.share for e in first) == pytest.approx(1.0)
    assert first[0].grid[0] == 0.0 and first[0].grid[-1] == 2.0 and len(first[0].curve) == GRID  # its own units
    assert second[0].parameter == "r" and second[0].effect == pytest.approx(0.25)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sensitivity_over_rest_finds_what_the_objectives_depend_on(api, sessions) -> None:
    import numpy as np

    from mergefront.service import repository as repo
    from mergefront.service.db import session_scope
    from mergefront.service.models import JobState
    from mergefront.spec import parse_spec
    from tests.dashboard.synthetic import synthetic_spec

    rng = np.random.default_rng(0)
    with session_scope(sessions) as s:
        job = repo.create_job(session=s, spec=parse_spec(synthetic_spec(2, 30)))  # random search: no surrogate
        job_id = job.id
        x = rng.random((30, 4))  # weight.rotated, weight.inverted, density.rotated, density.inverted
        names = ["weight.rotated", "weight.inverted", "density.rotated", "density.inverted"]
        rows = repo.add_evaluations(session=s, job_id=job_id,
                                    points=[(list(p), dict(zip(names, map(float, p), strict=True))) for p in x])
        for row, p in zip(rows, x, strict=True):
            repo.start_evaluation(session=s, evaluation_id=row.id)
            metrics = {"rotated_accuracy": 0.1 + 0.8 * p[0] * p[2], "inverted_accuracy": 0.9 - 0.6 * p[1]}
            repo.complete_evaluation(session=s, evaluation_id=row.id, metrics=metrics, worker="t", merge_seconds=0.0,
                                     eval_seconds=0.0)
        repo.finish_job(session=s, job_id=job_id, state=JobState.completed)
    with api(run_jobs=False) as client:
        out = client.get(f"/v1/jobs/{job_id}/sensitivity").json()
        kept = client.get(f"/v1/jobs/{job_id}/surrogates").json()  # the optimizer's own: random keeps none
    assert kept == {"job_id": job_id, "optimizer": "random", "surrogate": None, "n_points": 0, "objectives": []}
    assert out["surrogate"].startswith("quadratic (fitted for this view") and out["own"] is False
    assert out["n_points"] == 30 and out["predicted_front"] is None  # random search predicts no front
    rotated, inverted = out["objectives"]
    assert {p["parameter"] for p in rotated["parameters"][:2]} == {"weight.rotated", "density.rotated"}
    assert inverted["parameters"][0]["parameter"] == "weight.inverted"
    assert inverted["parameters"][0]["effect"] == pytest.approx(0.6, rel=0.1)  # through the logit warp
    assert rotated["r2"] > 0.9 and inverted["r2"] > 0.9
