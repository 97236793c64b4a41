"""Done-when of the merge-engine issue: a per-component TIES search on bench://tinylm through REST, and its best
point exported to a directory that transformers loads and that scores as the job reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from mergefront.evaluators.suites.tinylm import TinyLMEvaluator, suite_dir
from mergefront.evaluators.suites.tinylm_data import load_held_out

pytestmark = pytest.mark.slow

SPEC = {
    "name": "tinylm-components",
    "models": {"base": "bench://tinylm/base", "experts": ["bench://tinylm/copy", "bench://tinylm/reverse"]},
    "merge": {"method": "ties", "weight": {"low": 0.0, "high": 1.0, "granularity": "component"},
              "density": {"low": 0.3, "high": 1.0, "granularity": "component"}},
    "objectives": [{"task": "copy"}, {"task": "reverse"}, {"task": "reverse", "metric": "loss"}],
    "optimizer": {"name": "nsga2", "budget": 6, "batch_size": 3, "seed": 1},
    "resources": {"workers": 2, "device": "cpu"},
}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_component_ties_job_exports_a_model_that_scores_as_reported(api, settings, tmp_path: Path,
                                                                    wait_for_job) -> None:
    with api() as client:
        job = client.post("/v1/jobs", json=SPEC).json()
        space = client.get(f"/v1/jobs/{job['id']}/space").json()
        assert space["dim"] == 2 * 4 * 2  # weight and density, per expert, per component (no "other" tensors)
        assert {p["group"] for p in space["parameters"]} == {"embeddings", "attention", "mlp", "norms"}
        job = wait_for_job(client, job["id"], 600)
        assert job["state"] == "completed" and job["n_completed"] == 6, job["error"]
        assert job["reference_point"] == [0.0, 0.0, 8.0] and job["maximize"] == [True, True, False]
        front = client.get(f"/v1/jobs/{job['id']}/pareto").json()["members"]
        best = max(front, key=lambda m: m["metrics"]["copy_accuracy"])
        out = settings.resolved_export_root / "merged"
        assert client.post(f"/v1/evaluations/{best['id']}/export/checkpoint",
                           json={"out_dir": "merged"}).status_code == 200
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.vocab_size > 0
    suite = suite_dir(settings.resolved_cache_dir)
    examples = load_held_out(suite / "data.safetensors", ["copy", "reverse"], "validation")
    scores = TinyLMEvaluator(model, examples, "cpu").evaluate(dict(model.state_dict()))
    assert scores["copy"]["accuracy"] == pytest.approx(best["metrics"]["copy_accuracy"], abs=1e-9)
    assert scores["reverse"]["accuracy"] == pytest.approx(best["metrics"]["reverse_accuracy"], abs=1e-9)
    assert scores["reverse"]["loss"] == pytest.approx(best["metrics"]["reverse_loss"], rel=1e-5)
