from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mergefront.evaluators.suites.digits import (
    TASKS,
    DigitsEvaluator,
    build,
    ensure_built,
    load_model,
    suite_dir,
    task_arithmetic,
)

SEED = 0


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("suites")
    ensure_built(root, SEED, verbose=False)
    return root


@pytest.fixture(scope="module")
def suite(cache_root: Path) -> Path:
    return suite_dir(cache_root, SEED)


@pytest.fixture(scope="module")
def manifest(suite: Path) -> dict:
    return json.loads((suite / "manifest.json").read_text())


@pytest.fixture(scope="module")
def evaluator(suite: Path) -> DigitsEvaluator:
    return DigitsEvaluator(suite, TASKS, split="validation")


def _trunk(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("trunk.")}


def test_suite_dir_is_named_by_version_and_seed(tmp_path: Path) -> None:
    assert suite_dir(tmp_path, 3) == tmp_path / "digits-v1-seed3"


def test_build_writes_every_file_and_the_manifest(suite: Path, manifest: dict) -> None:
    assert manifest["suite"] == "digits" and manifest["version"] == 1 and manifest["seed"] == SEED
    assert manifest["merged_prefix"] == "trunk."
    assert list(manifest["tasks"]) == list(TASKS)
    assert (suite / manifest["base"]).is_file()
    data = load_file(suite / "data.safetensors")
    for task, entry in manifest["tasks"].items():
        assert (suite / entry["file"]).is_file()
        head = load_model(suite, task)["head.weight"]
        assert head.shape[0] == entry["n_classes"]
        for split in ("validation", "test"):
            x, y = data[f"{task}/{split}/x"], data[f"{task}/{split}/y"]
            assert x.shape == (manifest["splits"][split], 64) and y.shape == (x.shape[0],)
            assert 0.0 <= x.min().item() and x.max().item() <= 1.0
            assert int(y.max()) < entry["n_classes"]
    assert set(manifest["expert_accuracy"]) == set(manifest["base_accuracy"]) == set(TASKS)


def test_only_heads_differ_in_shape_between_models(suite: Path) -> None:
    base = load_model(suite, "base")
    for task in TASKS:
        expert = load_model(suite, task)
        assert set(expert) == set(base)
        assert all(expert[k].shape == base[k].shape for k in _trunk(base))
        assert all(torch.isfinite(v).all() for v in expert.values())


def test_same_seed_builds_bit_identical_tensors(suite: Path, tmp_path: Path) -> None:
    build(tmp_path, SEED, verbose=False)
    for name in ["base.safetensors", "data.safetensors", *(f"{t}.safetensors" for t in TASKS)]:
        first, second = load_file(suite / name), load_file(tmp_path / name)
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first), name
        assert (suite / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_experts_beat_the_base_on_their_own_task(manifest: dict) -> None:
    for task in TASKS:
        assert manifest["expert_accuracy"][task] > manifest["base_accuracy"][task] + 0.05, task
        assert manifest["expert_accuracy"][task] > 0.8, task


def test_equal_weight_merge_loses_against_the_experts(suite: Path, evaluator: DigitsEvaluator) -> None:
    base = load_model(suite, "base")
    experts = [load_model(suite, t) for t in TASKS]
    merged = evaluator.evaluate(task_arithmetic(base, experts, 1.0 / len(TASKS)))
    experts_alone = {t: evaluator.evaluate(_trunk(e))[t] for t, e in zip(TASKS, experts, strict=True)}
    losers = [t for t in TASKS if merged[t] < experts_alone[t] - 0.02]
    assert len(losers) >= 2, (merged, experts_alone)


def test_evaluator_reproduces_manifest_accuracies(
    suite: Path, manifest: dict, evaluator: DigitsEvaluator
) -> None:
    for task in TASKS:
        assert evaluator.evaluate(load_model(suite, task))[task] == pytest.approx(
            manifest["expert_accuracy"][task]
        )
    assert evaluator.evaluate(load_model(suite, "base")) == pytest.approx(manifest["base_accuracy"])


def test_evaluator_on_a_subset_and_the_test_split(suite: Path, manifest: dict) -> None:
    evaluator = DigitsEvaluator(suite, ["parity", "rotated"], split="test")
    scores = evaluator.evaluate(_trunk(load_model(suite, "parity")))
    assert list(scores) == ["parity", "rotated"]
    assert scores["parity"] == pytest.approx(manifest["test"]["expert_accuracy"]["parity"])
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_evaluator_rejects_a_trunk_with_missing_tensors(suite: Path, evaluator: DigitsEvaluator) -> None:
    trunk = _trunk(load_model(suite, "base"))
    del trunk["trunk.2.weight"]
    with pytest.raises(ValueError, match="trunk.2.weight"):
        evaluator.evaluate(trunk)


def test_load_model_rejects_an_unknown_name(suite: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        load_model(suite, "nope")


def test_ensure_built_returns_the_cached_suite_without_rebuilding(cache_root: Path, suite: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in suite.iterdir()}
    assert ensure_built(cache_root, SEED, verbose=False) == suite
    assert {p.name: p.stat().st_mtime_ns for p in suite.iterdir()} == stamps
    assert not [p for p in cache_root.iterdir() if p.name.startswith(".")]  # no scratch directory left behind


def test_ensure_built_replaces_a_partial_directory(tmp_path: Path) -> None:
    partial = suite_dir(tmp_path, 1)
    partial.mkdir(parents=True)
    (partial / "base.safetensors").write_bytes(b"truncated")
    assert ensure_built(tmp_path, 1, verbose=False) == partial
    assert (partial / "manifest.json").is_file()
    assert load_model(partial, "base")["trunk.0.weight"].shape == (128, 64)
