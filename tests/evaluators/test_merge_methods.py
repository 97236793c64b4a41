"""Every merge method against values worked out by hand on small tensors (see test_merge_engine for TIES)."""

from __future__ import annotations

import pytest
import torch

from mergefront.evaluators.merge import GroupedValues, MergeConfig, ResidentMerger
from mergefront.granularity import Granularity
from mergefront.methods import METHODS

BASE = {"w": torch.ones(2, 2)}
TAU1 = torch.tensor([1.0, -2.0, 0.5, 0.0])
TAU2 = torch.tensor([-3.0, 1.0, 0.5, 4.0])


def _merge(config: MergeConfig, taus: tuple[torch.Tensor, ...] = (TAU1, TAU2)) -> list[float]:
    experts = [{"w": BASE["w"] + tau.view(2, 2)} for tau in taus]
    return ResidentMerger(BASE, experts, ["w"]).merge(config)["w"].flatten().tolist()


@pytest.mark.parametrize(("config", "expected"), [
    # mean of the experts: 1 + (tau1 + tau2) / 2
    (MergeConfig("linear", (1.0, 1.0)), [0.0, 0.5, 1.5, 3.0]),
    # not normalised: 1*(1 + tau1) + 1*(1 + tau2)
    (MergeConfig("linear", (1.0, 1.0), normalize=False), [0.0, 1.0, 3.0, 6.0]),
    # breadcrumbs, gamma 0.25 and density 0.5: tau1 drops -2 keeps (1, 0.5); tau2 drops 4 keeps (-3, 1)
    (MergeConfig("breadcrumbs", (1.0, 1.0), (0.5, 0.5), params={"gamma": 0.25}), [-1.0, 2.0, 1.5, 1.0]),
    # same masks, signs elected (-, +, +, +): one expert contributes to each entry
    (MergeConfig("breadcrumbs_ties", (1.0, 1.0), (0.5, 0.5), params={"gamma": 0.25}), [-2.0, 2.0, 1.5, 1.0]),
    # TIES normalises by default, so two agreeing entries average: 0.5 and 0.5 give 0.5
    (MergeConfig("breadcrumbs_ties", (1.0, 1.0), (1.0, 1.0), normalize=True), [-2.0, -1.0, 1.5, 5.0]),
    # at density 1 nothing is dropped: DARE-linear is task arithmetic
    (MergeConfig("dare_linear", (0.5, 1.0), (1.0, 1.0), scale=2.0), [-4.0, 1.0, 2.5, 9.0]),
    (MergeConfig("task_arithmetic", (0.5, 1.0), scale=2.0), [-4.0, 1.0, 2.5, 9.0]),
    # and DARE-TIES is TIES, unnormalised by default (as in mergekit): 0.5 + 0.5 = 1 on the third entry
    (MergeConfig("dare_ties", (1.0, 1.0), (1.0, 1.0)), [-2.0, -1.0, 2.0, 5.0]),
    # DELLA normalises by default
    (MergeConfig("della", (1.0, 1.0), (1.0, 1.0)), [-2.0, -1.0, 1.5, 5.0]),
    # Model Stock: cos(tau1, tau2) = -4.75 / sqrt(5.25 * 26.25) = -0.404622, t = 2 cos / (1 + cos) = -1.359211,
    # base + t * mean(tau) = 1 - 1.359211 * (-1, -0.5, 0.5, 2)
    (MergeConfig("model_stock"), [2.35921, 1.67961, 0.32039, -1.71842]),
])
def test_method_matches_hand_computation(config: MergeConfig, expected: list[float]) -> None:
    assert _merge(config) == pytest.approx(expected, abs=1e-4)


def test_slerp_matches_hand_computation() -> None:
    # v0 = (1, 1, 1, 1), v1 = (2, -1, 1.5, 1): cos = 3.5 / (2 * 2.87228) = 0.60927, theta = 0.91566,
    # at t = 0.5 both coefficients are sin(theta / 2) / sin(theta) = 0.55738: 0.55738 * (v0 + v1)
    assert _merge(MergeConfig("slerp", params={"t": 0.5}), (TAU1,)) == pytest.approx(
        [1.67214, 0.0, 1.39345, 1.11476], abs=1e-4)
    assert _merge(MergeConfig("slerp", params={"t": 0.0}), (TAU1,)) == pytest.approx([1.0] * 4)
    assert _merge(MergeConfig("slerp", params={"t": 1.0}), (TAU1,)) == pytest.approx([2.0, -1.0, 1.5, 1.0])


def _big_merger(k: int = 1, n: int = 20_000) -> tuple[ResidentMerger, torch.Tensor]:
    tau = torch.randn(k, n, generator=torch.Generator().manual_seed(0))
    base = {"w": torch.zeros(n)}
    return ResidentMerger(base, [{"w": tau[i]} for i in range(k)], ["w"]), tau


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties", "della", "della_linear"])
def test_random_masks_replay_from_the_candidate_seed(method: str) -> None:
    merger, _ = _big_merger(k=2)
    params = {"epsilon": 0.2} if "della" in method else {}
    first = list(merger.merge(MergeConfig(method, (1.0, 1.0), (0.3, 0.3), params=params, seed=5))["w"].tolist())
    other = list(merger.merge(MergeConfig(method, (1.0, 1.0), (0.3, 0.3), params=params, seed=6))["w"].tolist())
    again = list(merger.merge(MergeConfig(method, (1.0, 1.0), (0.3, 0.3), params=params, seed=5))["w"].tolist())
    assert first == again and first != other


def test_dare_keeps_a_density_fraction_rescaled_to_the_same_l1_norm() -> None:
    merger, tau = _big_merger()
    out = merger.merge(MergeConfig("dare_linear", (1.0,), (0.3,), seed=1))["w"]
    kept = out != 0
    assert float(kept.double().mean()) == pytest.approx(0.3, abs=0.015)
    factor = tau[0].abs().sum() / tau[0][kept].abs().sum()  # mergekit's rescale: the L1 norm is kept
    torch.testing.assert_close(out[kept], tau[0][kept] * factor)
    assert float(out.abs().sum()) == pytest.approx(float(tau[0].abs().sum()), rel=1e-4)
    plain = merger.merge(MergeConfig("dare_linear", (1.0,), (0.3,), rescale=False, seed=1))["w"]
    torch.testing.assert_close(plain[kept], tau[0][kept])


def test_della_keeps_large_entries_more_often() -> None:
    merger, tau = _big_merger()
    out = merger.merge(MergeConfig("della_linear", (1.0,), (0.5,), params={"epsilon": 0.4}, seed=2))["w"]
    large = tau[0].abs() >= tau[0].abs().median()
    kept = out != 0
    assert float(kept[large].double().mean()) > float(kept[~large].double().mean()) + 0.2
    assert float(kept.double().mean()) == pytest.approx(0.5, abs=0.02)


def test_parameters_take_their_group_value_per_component() -> None:
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight"]
    base = {n: torch.zeros(3) for n in names}
    expert = {n: torch.ones(3) for n in names}
    weights = GroupedValues(Granularity(kind="component"), {"attention": (1.0,), "mlp": (0.25,)})
    out = ResidentMerger(base, [expert], names).merge(MergeConfig("task_arithmetic", params={"weight": weights}))
    assert out[names[0]].tolist() == [1.0] * 3 and out[names[1]].tolist() == [0.25] * 3


def test_every_method_runs_without_nan_on_mixed_precision_inputs() -> None:
    gen = torch.Generator().manual_seed(3)
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(3)]
    base = {n: torch.randn(8, 8, generator=gen, dtype=torch.float32).to(torch.bfloat16) for n in names}
    experts = [{n: v + 0.1 * torch.randn(8, 8, generator=gen).to(torch.bfloat16) for n, v in base.items()}
               for _ in range(2)]
    for name, info in METHODS.items():
        chosen = experts[:1] if info.max_experts == 1 else experts
        merger = ResidentMerger(base, chosen, names)
        out = merger.merge(MergeConfig(name, params={"density": 0.5, "epsilon": 0.1, "gamma": 0.1}, seed=1))
        assert all(t.dtype == torch.bfloat16 and torch.isfinite(t).all() for t in out.values()), name


def test_magnitude_trimming_keeps_exactly_the_floor_count_even_with_ties() -> None:
    tau = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0])
    merger = ResidentMerger({"w": torch.zeros(10)}, [{"w": tau}], ["w"])
    out = merger.merge(MergeConfig("ties", (1.0,), (0.35,)))["w"]  # floor(3.5) = 3 of four equal magnitudes
    assert int((out != 0).sum()) == 3
    out = merger.merge(MergeConfig("ties", (1.0,), (0.01,)))["w"]  # at least one entry, as mergekit
    assert int((out != 0).sum()) == 1


def test_della_keep_rate_grows_with_rank_within_each_row() -> None:
    tau = torch.randn(64, 512, generator=torch.Generator().manual_seed(4))
    merger = ResidentMerger({"w": torch.zeros(64, 512)}, [{"w": tau}], ["w"])
    out = merger.merge(MergeConfig("della_linear", (1.0,), (0.5,), params={"epsilon": 0.45}, rescale=False))["w"]
    order = tau.abs().argsort(dim=1)  # per row, smallest first
    kept = (out != 0).gather(1, order).double()
    assert float(kept[:, :64].mean()) == pytest.approx(0.05 + 0.9 * 32 / 511, abs=0.05)  # about density - eps
    assert float(kept[:, -64:].mean()) == pytest.approx(0.95 - 0.9 * 32 / 511, abs=0.05)  # about density + eps


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("density", [0.7, 0.45, 0.9])
def test_kept_count_is_taken_from_the_density_before_any_cast(dtype: torch.dtype, density: float) -> None:
    n = 1280  # 0.7 is 0.69999999 in float32 and 0.69921875 in bf16: a count taken after the cast keeps fewer
    tau = (torch.arange(1, n + 1, dtype=torch.float64) / n).to(dtype)
    merger = ResidentMerger({"w": torch.zeros(n, dtype=dtype)}, [{"w": tau}], ["w"])
    out = merger.merge(MergeConfig("ties", (1.0,), (density,)))["w"]
    assert int((out != 0).sum()) == int(density * n)


def test_breadcrumbs_shrinks_the_outlier_cut_to_keep_the_density() -> None:
    n = 16_384
    tau = torch.randn(n, generator=torch.Generator().manual_seed(5))
    merger = ResidentMerger({"w": torch.zeros(n)}, [{"w": tau}], ["w"])
    out = merger.merge(MergeConfig("breadcrumbs", (1.0,), (0.98,), params={"gamma": 0.05}))["w"]
    kept = out != 0
    assert int(kept.sum()) == int(0.98 * n)  # density + gamma > 1: fewer outliers dropped, not fewer entries kept
    assert float(tau.abs()[kept].max()) == float(tau.abs().sort().values[int(0.98 * n) - 1])  # only outliers go
