"""Groups of tensors that no expert changes are left out of a job's search space, and said so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.merge import ResidentMerger
from mergefront.service.mergekit import mergekit_config
from mergefront.service.settings import Settings
from mergefront.service.space import describe_space, job_files, job_space, merge_config
from mergefront.spec import parse_spec

SHAPES = {"model.layers.0.self_attn.q_proj.weight": (4, 4), "model.layers.0.mlp.up_proj.weight": (8, 4),
          "pooler.dense.weight": (4, 4)}  # the pooler falls in component "other"


def _models(folder: Path, changed: tuple[str, ...]) -> dict[str, str]:
    generator = torch.Generator().manual_seed(0)
    base = {k: torch.randn(shape, generator=generator) for k, shape in SHAPES.items()}
    save_file(base, str(folder / "base.safetensors"))
    paths = {"base": str(folder / "base.safetensors")}
    for name in ("a", "b"):
        expert = {k: v + (0.1 * torch.randn(v.shape, generator=generator) if any(c in k for c in changed) else 0.0)
                  for k, v in base.items()}
        save_file(expert, str(folder / f"{name}.safetensors"))
        paths[name] = str(folder / f"{name}.safetensors")
    return paths


def _spec(paths: dict[str, str]):  # type: ignore[no-untyped-def]
    return parse_spec({
        "models": {"base": paths["base"], "experts": [paths["a"], paths["b"]]},
        "merge": {"method": "ties", "weight": {"low": 0.0, "high": 1.0, "granularity": "component"},
                  "density": {"low": 0.2, "high": 1.0, "granularity": "component"}},
        "objectives": [{"evaluator": "sparsity"}],
    })


def test_groups_no_expert_changes_are_dropped_and_merge_as_the_base(tmp_path: Path) -> None:
    paths = _models(tmp_path, changed=("self_attn", "mlp"))
    spec, settings = _spec(paths), Settings(home=tmp_path / "home")
    space = job_space(spec, settings)
    assert space.dim == 2 * 2 * 2  # weight and density, of 2 experts, on attention and mlp: not on "other"
    assert {(g.kind, g.group) for g in space.inert} == {("weight", "other"), ("density", "other")}
    text = describe_space(spec, space)
    assert "search space: 8 dimensions" in text and "dropped: weight, density of group 'other'" in text

    files = job_files(spec, settings)
    config = merge_config(spec, space.decode([0.5] * space.dim), space)
    base, experts = load_file(paths["base"]), [load_file(paths[n]) for n in ("a", "b")]
    merged = ResidentMerger(base, experts, list(files.merged_keys)).merge(config)
    assert torch.equal(merged["pooler.dense.weight"], base["pooler.dense.weight"])
    assert not torch.equal(merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    exported = mergekit_config(spec, space, space.decode([0.5] * space.dim), files)
    assert exported["models"][0]["parameters"]["weight"]  # every group, the dropped one included, has a value


def test_a_space_where_no_expert_changes_anything_is_refused(tmp_path: Path) -> None:
    paths = _models(tmp_path, changed=())
    with pytest.raises(InvalidSpecError, match="no expert changes any tensor"):
        job_space(_spec(paths), Settings(home=tmp_path / "home"))
