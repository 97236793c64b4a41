"""The compiled kernels merge large tensors to what the eager path gives, with the same random masks."""

from __future__ import annotations

import pytest
import torch

from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.methods import fused

SHAPE = (1031, 1100)  # above fused.FUSED_MIN entries, not a multiple of the kernels' block


@pytest.fixture(scope="module")
def merger() -> ResidentMerger:
    gen = torch.Generator().manual_seed(0)
    base = {"big": torch.randn(SHAPE, generator=gen), "small": torch.randn(3000, generator=gen)}
    experts = [{k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in base.items()} for _ in range(4)]
    return ResidentMerger(base, experts, list(base))


def _both(merger: ResidentMerger, config: MergeConfig, monkeypatch: pytest.MonkeyPatch, key: str = "big"
          ) -> tuple[torch.Tensor, torch.Tensor]:
    monkeypatch.setenv("MERGEFRONT_FUSED", "0")
    eager = merger.merge(config)[key].clone()
    monkeypatch.setenv("MERGEFRONT_FUSED", "1")
    assert fused.applies(merger._data[0]), "a C++ compiler is needed for the compiled kernels"
    compiled = merger.merge(config)[key].clone()
    assert not fused._state["broken"]
    return eager, compiled


@pytest.mark.parametrize("method", ["ties", "breadcrumbs", "dare_ties", "della_linear"])
def test_compiled_kernels_merge_as_the_eager_path(merger: ResidentMerger, method: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"weight": (0.5, 0.3, -0.2, 0.8), "density": (0.3, 0.5, 1.0, 0.2), "epsilon": 0.1, "gamma": 0.01}
    eager, compiled = _both(merger, MergeConfig(method, params=params, rescale=False, seed=7), monkeypatch)
    assert torch.equal(eager, compiled)
    base = merger.base[: eager.numel()].view(SHAPE)
    assert 0.05 < (compiled != base).float().mean() < 1.0  # the masks really drop entries
    if method in ("dare_ties", "della_linear"):  # with the L1 rescale (norms summed in float64, rounded once)
        eager, compiled = _both(merger, MergeConfig(method, params=params, seed=7), monkeypatch)
        assert torch.equal(eager, compiled)
        other = merger.merge(MergeConfig(method, params=params, seed=8))["big"]
        assert not torch.equal(other, compiled)  # another candidate seed, other masks


@pytest.mark.parametrize("method", ["task_arithmetic", "linear"])
def test_compiled_weighted_sums_match_the_eager_sum(merger: ResidentMerger, method: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    eager, compiled = _both(merger, MergeConfig(method, params={"weight": (0.5, 0.3, -0.2, 0.8)}), monkeypatch)
    assert torch.allclose(eager, compiled, rtol=0, atol=1e-6)
    assert not torch.allclose(compiled, merger.base[: compiled.numel()].view(SHAPE), atol=1e-4)  # it merged


def test_sign_elections_on_near_ties_agree_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(1)
    n = 70_000
    base = torch.randn(n, generator=gen).to(torch.bfloat16)
    first = (0.01 * torch.randn(n, generator=gen)).to(torch.bfloat16)
    # the second expert cancels the first exactly or to its last bit, the third adds a tie-sized remainder
    second = -(first.float() * (1 + (torch.randint(-1, 2, (n,), generator=gen) * 2 ** -8))).to(torch.bfloat16)
    third = (first.float() * 2 ** -9 * torch.randint(-1, 2, (n,), generator=gen)).to(torch.bfloat16)
    experts = [{"w": base + tau} for tau in (first, second, third)]
    merger = ResidentMerger({"w": base}, experts, ["w"])
    config = MergeConfig("ties", (0.6, 0.6, 0.3), (1.0, 1.0, 1.0))
    eager, compiled = _both(merger, config, monkeypatch, key="w")
    assert torch.equal(eager, compiled)
