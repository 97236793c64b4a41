from __future__ import annotations

import pytest

from mergefront.merge_spec import MergeSpec
from mergefront.optimizers.space import build_space

NAMES = ["model.embed_tokens.weight", "model.norm.weight"] + [
    f"model.layers.{i}.{p}" for i in range(4) for p in ("self_attn.q_proj.weight", "mlp.up_proj.weight")]
EXPERTS = ["bench://s/a", "bench://s/b", "bench://s/c"]


def test_whole_model_space_has_one_weight_and_density_per_expert() -> None:
    space = build_space(MergeSpec.model_validate({"method": "ties"}), EXPERTS)
    assert space.names == ["weight.a", "weight.b", "weight.c", "density.a", "density.b", "density.c"]
    assert space.decode([0.5] * 6)["density.a"] == pytest.approx(0.55)


def test_mixed_granularities_multiply_out_by_group() -> None:
    merge = MergeSpec.model_validate({
        "method": "dare_ties",
        "weight": {"low": 0, "high": 1, "granularity": "component"},   # embeddings, attention, mlp, norms
        "density": {"low": 0.2, "high": 1, "granularity": {"layers": 2}},  # layers 0-1, 2-3, outside
        "lambda": {"low": 0.5, "high": 1.5, "granularity": {"filters": ["mlp"]}},  # mlp, rest
    })
    space = build_space(merge, EXPERTS, NAMES)
    assert space.dim == 3 * 4 + 3 * 3 + 2
    assert "weight.b.attention" in space.names and "density.c.layers_2-3" in space.names
    assert [p.name for p in space.parameters if p.kind == "lambda"] == ["lambda.mlp", "lambda.rest"]
    lam = next(p for p in space.parameters if p.name == "lambda.mlp")
    assert lam.expert is None and "matching 'mlp'" in lam.description


def test_finer_granularity_needs_tensor_names() -> None:
    merge = MergeSpec.model_validate({"method": "linear", "weight": {"low": 0, "high": 1, "granularity": "component"}})
    with pytest.raises(ValueError, match="tensor names"):
        build_space(merge, EXPERTS)


def test_encode_inverts_decode() -> None:
    space = build_space(MergeSpec.model_validate({"method": "task_arithmetic", "lambda": {"low": 0, "high": 2}}),
                        EXPERTS)
    x = [0.1, 0.2, 0.3, 0.9]
    assert space.encode(space.decode(x)) == pytest.approx(x)
