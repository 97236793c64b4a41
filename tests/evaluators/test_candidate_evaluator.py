from __future__ import annotations

import json
from pathlib import Path

import pytest

from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, ObjectiveSetup, WorkerSetup
from mergefront.evaluators.merge import MergeConfig
from mergefront.evaluators.suites.digits import suite_dir


@pytest.fixture(scope="module")
def evaluator(cache_dir: Path) -> CandidateEvaluator:
    objectives = (ObjectiveSetup("rot", "rotated", "validation"), ObjectiveSetup("par", "parity", "validation"),
                  ObjectiveSetup("rot_test", "rotated", "test"))
    setup = WorkerSetup.for_suite("digits", suite_dir(cache_dir), ("rotated", "parity"), objectives, "cpu")
    return CandidateEvaluator(setup)


def test_one_hot_merge_scores_as_the_expert(evaluator: CandidateEvaluator, cache_dir: Path) -> None:
    manifest = json.loads((suite_dir(cache_dir) / "manifest.json").read_text())
    result = evaluator.evaluate(Candidate(7, MergeConfig("task_arithmetic", (1.0, 0.0))))
    assert result.evaluation_id == 7 and set(result.metrics) == {"rot", "par", "rot_test"}
    assert result.metrics["rot"] == pytest.approx(manifest["expert_accuracy"]["rotated"], abs=1e-9)
    assert result.merge_seconds >= 0 and result.eval_seconds > 0 and "cpu" in result.worker


def test_the_experts_conflict(evaluator: CandidateEvaluator) -> None:
    rot = evaluator.evaluate(Candidate(0, MergeConfig("task_arithmetic", (1.0, 0.0)))).metrics
    par = evaluator.evaluate(Candidate(1, MergeConfig("task_arithmetic", (0.0, 1.0)))).metrics
    both = evaluator.evaluate(Candidate(2, MergeConfig("ties", (1.0, 1.0), (0.5, 0.5)))).metrics
    assert both["rot"] < rot["rot"] - 0.02 or both["par"] < par["par"] - 0.02
