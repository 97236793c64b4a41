"""Done-when of the bring-your-own-models issue: jobs on local checkpoint folders through REST, scored by a user
function given by import path, and by the built-in causal-LM evaluator on two local JSONL files."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

USER_MODULE = '''
import torch

def answer_accuracy(model, tokenizer, settings):
    """Teacher-forced accuracy of the answer tokens of a few fixed examples: a user's own score."""
    hits = total = 0
    for prompt, answer in settings["examples"]:
        p = tokenizer(prompt)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([p + a])).logits[0, len(p) - 1:-1]
        hits += int((logits.argmax(-1) == torch.tensor(a)).sum())
        total += len(a)
    return {"accuracy": hits / total, "tokens": total}
'''


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[str]:
    """A module of the user's, importable from the server's (and so the workers') path."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "my_merge_scores.py").write_text(USER_MODULE)
    sys.path.append(str(folder))
    yield "my_merge_scores:answer_accuracy"
    sys.path.remove(str(folder))
    sys.modules.pop("my_merge_scores", None)


@pytest.fixture
def settings(settings, own_models):  # type: ignore[no-untyped-def]
    """The server reads models and data under the folder the own models were exported to, and lets jobs call the
    user's module (registered, as an operator would, through MERGEFRONT_PLUGINS)."""
    root = Path(os.path.commonpath([str(p) for p in own_models.values()]))
    return settings.model_copy(update={"model_roots": [root], "data_roots": [root], "plugins": ["my_merge_scores"]})


def _models(own: dict[str, Path]) -> dict:
    return {"base": str(own["base"]), "experts": [str(own["copy-expert"]), str(own["reverse-expert"])]}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_job_scored_by_a_user_function_reaches_a_front(api, settings, own_models, user_module, wait_for_job) -> None:
    spec = {
        "name": "own-function",
        "models": _models(own_models),
        "merge": {"method": "ties", "weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.2, "high": 1.0}},
        "objectives": [
            {"name": "copy_score", "evaluator": user_module, "metric": "accuracy", "direction": "maximize",
             "settings": {"examples": [["[copy] 1 2 3 4 5 6 =", "1 2 3 4 5 6"],
                                       ["[copy] 9 0 9 0 1 1 =", "9 0 9 0 1 1"]]}},
            {"name": "reverse_score", "evaluator": user_module, "metric": "accuracy", "direction": "maximize",
             "settings": {"examples": [["[reverse] 1 2 3 4 5 6 =", "6 5 4 3 2 1"]]}},
            {"evaluator": "sparsity"},
        ],
        "optimizer": {"name": "nsga2", "budget": 6, "batch_size": 3, "seed": 2},
        "resources": {"workers": 2, "device": "cpu"},
    }
    with api() as client:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        job = wait_for_job(client, response.json()["id"], 600)
        assert job["state"] == "completed" and job["n_completed"] == 6, job["error"]
        assert job["objectives"] == ["copy_score", "reverse_score", "sparsity_sparsity"]
        assert None not in job["reference_point"] and job["reference_point"][2] == 0.0  # known worst: kept
        pareto = client.get(f"/v1/jobs/{job['id']}/pareto").json()
    assert None not in pareto["reference_point"]  # fixed from the first batch
    assert pareto["members"] and pareto["hypervolume"] > 0
    for member in pareto["members"]:
        assert 0.0 <= member["metrics"]["copy_score"] <= 1.0 and 0.0 <= member["metrics"]["sparsity_sparsity"] < 1.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_on_two_jsonl_datasets_with_the_causal_lm_evaluator(api, settings, own_models, wait_for_job) -> None:
    def loss(task: str) -> dict:
        return {"name": f"{task}_loss", "evaluator": "causal_lm",
                "settings": {"data": str(own_models[task]), "prompt_column": "prompt", "text_column": "answer",
                             "limit": 32, "batch_size": 16}}

    spec = {
        "name": "own-jsonl",
        "models": _models(own_models),
        "merge": {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}},
        "objectives": [loss("copy"), loss("reverse")],
        "optimizer": {"name": "random", "budget": 6, "batch_size": 3, "seed": 0},
        "resources": {"workers": 2, "device": "cpu"},
    }
    with api() as client:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        assert response.json()["maximize"] == [False, False]
        job = wait_for_job(client, response.json()["id"], 600)
        assert job["state"] == "completed" and job["n_completed"] == 6, job["error"]
        rows = client.get(f"/v1/jobs/{job['id']}/evaluations").json()["items"]
        pareto = client.get(f"/v1/jobs/{job['id']}/pareto").json()
    losses = [(r["params"], r["metrics"]) for r in rows]
    assert all(m["copy_loss"] > 0 and m["reverse_loss"] > 0 for _, m in losses)
    # more weight on the copy expert, lower copy loss: the objectives see the merge
    best_copy = min(losses, key=lambda pm: pm[1]["copy_loss"])[0]
    worst_copy = max(losses, key=lambda pm: pm[1]["copy_loss"])[0]
    def lean(params: dict) -> float:  # parameters are named after the expert folders
        return params["weight.copy-expert"] - params["weight.reverse-expert"]

    assert lean(best_copy) > lean(worst_copy)
    assert pareto["members"] and pareto["hypervolume"] > 0 and None not in pareto["reference_point"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("objective", "loc"), [
    ({"evaluator": "no_such_module_xyz:score", "direction": "maximize"}, ["objectives", 0, "evaluator"]),
    ({"evaluator": "os.path:no_such_function", "direction": "maximize"}, ["objectives", 0, "evaluator"]),
    ({"evaluator": "os.path:join", "direction": "maximize"}, ["objectives", 0, "evaluator"]),
    ({"evaluator": "my_merge_scores:answer_accuracy"}, ["objectives", 0, "direction"]),
    ({"evaluator": "causal_lm", "settings": {"data": "/nowhere/data.jsonl"}}, ["objectives", 0, "settings", "data"]),
    ({"evaluator": "causal_lm", "settings": {"data": "DATA", "text_column": "body"}},
     ["objectives", 0, "settings", "text_column"]),
    ({"evaluator": "causal_lm", "settings": {"data": "DATA", "batch": 4}}, ["objectives", 0, "settings", "batch"]),
    ({"evaluator": "causal_lm", "settings": {"data": "DATA", "limit": 0}}, ["objectives", 0, "settings", "limit"]),
    ({"evaluator": "causal_lm", "metric": "accuracy", "settings": {"data": "DATA"}}, ["objectives", 0, "metric"]),
    ({"evaluator": "causal_lm", "direction": "maximize", "settings": {"data": "DATA"}},
     ["objectives", 0, "direction"]),
    ({"evaluator": "rouge"}, ["objectives", 0, "evaluator"]),
    ({"task": "copy"}, ["objectives", 0, "task"]),
    ({"evaluator": "sparsity", "task": "copy"}, ["objectives", 0]),
])
def test_bad_objectives_are_422_naming_the_field(api, settings, own_models, user_module, objective: dict,
                                                 loc: list) -> None:
    if "settings" in objective and objective["settings"].get("data") == "DATA":
        objective = {**objective, "settings": {"text_column": "answer", **objective["settings"],
                                               "data": str(own_models["copy"])}}
    spec = {"models": _models(own_models), "merge": {"method": "task_arithmetic", "weight": {"low": 0, "high": 1}},
            "objectives": [objective, {"evaluator": "storage"}]}
    with api(run_jobs=False) as client:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][1:] == loc, response.text
        assert client.get("/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_local_models_are_422(api, settings, own_models, tmp_path: Path) -> None:
    good = _models(own_models)
    cases = [({**good, "base": str(tmp_path / "missing")}, ["models", "base"]),
             ({**good, "experts": [good["experts"][0], "bench://tinylm/copy"]}, ["models", "experts", 1])]
    with api(run_jobs=False) as client:
        for models, loc in cases:
            spec = {"models": models, "merge": {"method": "task_arithmetic", "weight": {"low": 0, "high": 1}},
                    "objectives": [{"evaluator": "storage"}]}
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 422 and response.json()["detail"][0]["loc"][1:] == loc, response.text
