"""The compiled kernels merge large tensors to what the eager path gives, with the same random masks."""

from __future__ import annotations

import pytest
import torch

from mergefront.evaluators import merge as merge_module
from mergefront.evaluators.merge import GroupedValues, MergeConfig, ResidentMerger
from mergefront.evaluators.methods import fused
from mergefront.granularity import Granularity

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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sign_elections_on_near_ties_agree_on_both_paths(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """One tie rule: the sign elected is that of the experts' weighted deltas summed and rounded to the dtype, a
    zero sum elects + (and deltas of 0 agree with neither sign), on the compiled kernel as on the eager path, as in
    mergekit's `get_mask`."""
    gen = torch.Generator().manual_seed(1)
    n = 70_000
    base = torch.randn(n, generator=gen).to(dtype)
    first = (0.01 * torch.randn(n, generator=gen)).to(dtype)
    # the second expert cancels the first exactly or to its last bit, the third adds a tie-sized remainder or 0
    second = -(first.float() * (1 + (torch.randint(-1, 2, (n,), generator=gen) * 2 ** -8))).to(dtype)
    third = (first.float() * 2 ** -9 * torch.randint(-1, 2, (n,), generator=gen)).to(dtype)
    experts = [{"w": base + tau} for tau in (first, second, third)]
    merger = ResidentMerger({"w": base}, experts, ["w"])
    weights = (0.6, 0.6, 0.3)
    eager, compiled = _both(merger, MergeConfig("ties", weights, (1.0, 1.0, 1.0)), monkeypatch, key="w")
    assert torch.equal(eager, compiled)
    reference, sums = _mergekit_ties(base, [e["w"] for e in experts], weights)
    assert int((sums == 0).sum()) > 1_000  # exact ties: every expert's delta cancels or is 0
    one_unit = sums.abs() <= torch.finfo(dtype).eps * first.abs()
    assert int((one_unit & (sums != 0)).sum()) > 300  # near ties: a sum of a unit or less of the deltas
    assert torch.equal(compiled, reference)


def _mergekit_ties(base: torch.Tensor, experts: list[torch.Tensor], weights: tuple[float, ...]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """mergekit 0.1.5's TIES at density 1 (its generalized task arithmetic, with its own `get_mask`), and the
    weighted deltas' rounded sums whose signs it elects."""
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask

    deltas = torch.stack([e - base for e in experts])  # k x n
    w = torch.tensor(weights, dtype=base.dtype).unsqueeze(-1)
    deltas.mul_(w)
    mask = get_mask(deltas, method="sum", mask_dtype=base.dtype)
    divisor = (w * mask).sum(dim=0)
    divisor[divisor == 0] = 1
    return base + (deltas * mask).sum(dim=0) / divisor, deltas.sum(dim=0)


@pytest.mark.parametrize("method", ["ties", "dare_ties", "dare_linear", "della"])
def test_compiled_merges_do_not_depend_on_the_block_size(merger: ResidentMerger, method: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Elementwise kernels take 256M entries a call (`ELEMENTWISE_STEP`): the same merge as in blocks of 64K."""
    params = {"weight": (0.5, 0.3, -0.2, 0.8), "density": (0.3, 0.5, 1.0, 0.2), "epsilon": (0.1,) * 4}
    config = MergeConfig(method, params=params, seed=5)
    whole = merger.merge(config)["big"].clone()
    monkeypatch.setattr(fused, "ELEMENTWISE_STEP", 1 << 16)
    assert torch.equal(merger.merge(config)["big"], whole)


def _llama_like(dtype: torch.dtype) -> ResidentMerger:
    """Tensors above and below the compiled kernels' threshold, in checkpoint order (norms between matrices)."""
    gen = torch.Generator().manual_seed(3)
    shapes = {"model.embed_tokens.weight": (300, 256), "model.layers.0.input_layernorm.weight": (256,),
              "model.layers.0.self_attn.q_proj.weight": (256, 257), "model.layers.0.mlp.up_proj.weight": (700, 256),
              "model.layers.1.self_attn.q_proj.weight": (256, 300), "model.norm.weight": (256,),
              "lm_head.weight": (300, 256)}
    base = {k: torch.randn(s, generator=gen).to(dtype) for k, s in shapes.items()}
    experts = [{k: (v.float() + 0.01 * torch.randn(v.shape, generator=gen)).to(dtype) for k, v in base.items()}
               for _ in range(3)]
    return ResidentMerger(base, experts, list(base))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_task_arithmetic_merges_runs_of_equal_values_as_one_span(dtype: torch.dtype,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Consecutive tensors with the same values merge in one call of the method, to the numbers that merging
    them tensor by tensor gives, bit for bit (normalising by the weights' sum too)."""
    merger = _llama_like(dtype)
    by_component = GroupedValues(Granularity(kind="component"), {
        "embeddings": (0.5, 0.2, 0.3), "norms": (1.0, -0.5, 0.25), "attention": (0.3, 0.3, 0.9),
        "mlp": (0.7, 0.1, 0.2)})
    configs = [MergeConfig("task_arithmetic", (0.5, -0.3, 0.8), scale=0.7),
               MergeConfig("task_arithmetic", params={"weight": by_component}, normalize=True)]
    calls: list[int] = []
    method = merge_module.REGISTRY["task_arithmetic"]
    monkeypatch.setitem(merge_module.REGISTRY, "task_arithmetic",
                        lambda data, params, out: (calls.append(data.numel), method(data, params, out)))
    spanned = [{k: v.clone() for k, v in merger.merge(c).items()} for c in configs]
    assert calls[0] == merger.out.numel()  # one span: the whole model
    assert len(calls) - 1 == 7  # by component: embeddings, norms, attention, mlp, attention, norms, embeddings
    monkeypatch.setattr(merge_module, "SPANNING", set())
    for config, expected in zip(configs, spanned, strict=True):
        got = merger.merge(config)
        for key, tensor in expected.items():
            assert torch.equal(got[key].view(torch.uint8), tensor.view(torch.uint8)), key
    assert not torch.equal(spanned[0]["lm_head.weight"], merger.base[-300 * 256:].view(300, 256))  # it merged
