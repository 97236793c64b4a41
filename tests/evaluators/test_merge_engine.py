"""The merge engine against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.merge import MergeConfig, ResidentMerger

BASE = {"w": torch.tensor([[1.0, 1.0], [1.0, 1.0]]), "b": torch.tensor([0.0])}
TAU1 = torch.tensor([1.0, -2.0, 0.5, 0.0])
TAU2 = torch.tensor([-3.0, 1.0, 0.5, 4.0])


def _experts() -> list[dict[str, torch.Tensor]]:
    return [{"w": BASE["w"] + tau.view(2, 2), "b": BASE["b"] + 1.0} for tau in (TAU1, TAU2)]


def _merger() -> ResidentMerger:
    return ResidentMerger(BASE, _experts(), ["w", "b"])


def test_task_arithmetic_is_base_plus_weighted_task_vectors() -> None:
    out = _merger().merge(MergeConfig("task_arithmetic", (0.5, 0.25), scale=2.0))
    # base 1 + 2 * (0.5 * tau1 + 0.25 * tau2)
    assert out["w"].flatten().tolist() == pytest.approx([1 + 2 * (0.5 - 0.75), 1 + 2 * (-1.0 + 0.25),
                                                        1 + 2 * (0.25 + 0.125), 1 + 2 * (0.0 + 1.0)])
    assert out["b"].tolist() == pytest.approx([2 * 0.75])


@pytest.mark.parametrize(("weights", "densities", "scale", "expected"), [
    # elected signs (-, -, +, +); entries that disagree or are zero drop out; normalised by agreeing weights
    ((1.0, 1.0), (1.0, 1.0), 1.0, [-3.0, -2.0, 0.5, 4.0]),
    # density 0.5 keeps floor(0.5 * 4) = 2 largest entries of each: tau1 -> (1, -2, 0, 0), tau2 -> (-3, 0, 0, 4)
    ((1.0, 1.0), (0.5, 0.5), 1.0, [-3.0, -2.0, 0.0, 4.0]),
    # weights change the sign election and the weighted mean: (2 * 0.5 + 1 * 0.5) / 3 = 0.5
    ((2.0, 1.0), (1.0, 1.0), 0.5, [-1.5, -1.0, 0.25, 2.0]),
    # density 0.25 keeps one entry each: tau1 -> (0, -2, 0, 0), tau2 -> (0, 0, 0, 4)
    ((1.0, 1.0), (0.25, 0.25), 1.0, [0.0, -2.0, 0.0, 4.0]),
])
def test_ties(weights: tuple, densities: tuple, scale: float, expected: list[float]) -> None:
    out = _merger().merge(MergeConfig("ties", weights, densities, scale))
    assert (out["w"].flatten() - 1.0).tolist() == pytest.approx(expected)


def test_merges_in_place_into_one_resident_buffer_without_nan() -> None:
    merger = _merger()
    first = merger.merge(MergeConfig("ties", (0.0, 0.0), (0.3, 0.3)))
    pointer = first["w"].data_ptr()
    assert torch.equal(first["w"], BASE["w"])  # all weights zero: nothing added, no division by zero
    second = merger.merge(MergeConfig("task_arithmetic", (1.0, 0.0)))
    assert second["w"].data_ptr() == pointer and first["w"] is not second["w"]
    assert torch.equal(first["w"], second["w"])  # the earlier views see the new merge: same storage
    assert torch.isfinite(merger.out).all()


def test_density_change_reuses_the_magnitude_ranks() -> None:
    merger = _merger()
    merger.merge(MergeConfig("ties", (1.0, 1.0), (0.5, 0.5)))
    ranked = [d.ranks for d in merger._data]
    merger.merge(MergeConfig("ties", (1.0, 1.0), (0.25, 0.9)))
    assert all(a is b for a, b in zip(ranked, [d.ranks for d in merger._data], strict=True))


def test_mismatched_expert_is_rejected_naming_the_tensor() -> None:
    bad = _experts()
    bad[1]["w"] = torch.zeros(3, 2)
    with pytest.raises(InvalidSpecError, match="'w' has shape") as info:
        ResidentMerger(BASE, bad, ["w", "b"])
    assert info.value.loc == ("models", "experts", 1)
    del bad[1]["w"]
    with pytest.raises(InvalidSpecError, match="no tensor 'w'"):
        ResidentMerger(BASE, bad, ["w", "b"])


def test_bad_candidates_are_rejected() -> None:
    merger = _merger()
    with pytest.raises(ValueError, match="3 weights for 2 experts"):
        merger.merge(MergeConfig("task_arithmetic", (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="outside"):
        merger.merge(MergeConfig("ties", (1.0, 1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="unknown merge method"):
        merger.merge(MergeConfig("frankenmerge", (1.0, 1.0)))
    with pytest.raises(ValueError, match="slerp merges 1..1 experts"):
        merger.merge(MergeConfig("slerp"))
