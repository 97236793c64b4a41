"""The cases of the differential test against mergekit (`mergekit_reference`): merges a user could ask for.

A case is one of the methods mergekit shares with us, a dtype (float32, bf16, fp16), k experts of a tiny Llama with
ragged tensor sizes (in some cases embeddings and head above the compiled-kernel threshold), and a job spec's merge
section with arbitrary (not dyadic) fixed values or searched ranges at model, component, layer-group or name-filter
granularity, normalize / rescale switches; its candidate is drawn in that search space. Task vectors have no zero
entry (a kept entry is then a non-zero one) and, in 30 % of the cases, lie on a coarse grid: many entries of equal
magnitude at every cut.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

from mergefront.evaluators.checkpoint import merged_tensor_names
from mergefront.methods import METHODS
from mergefront.optimizers import build_space
from mergefront.service.space import ModelFiles
from mergefront.spec import JobSpec, parse_spec

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GTA = ("task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della",
       "della_linear")
RANDOM = ("dare_ties", "dare_linear", "della", "della_linear")
SPARSIFY = {"ties": "magnitude", "breadcrumbs": "magnitude_outliers", "breadcrumbs_ties": "magnitude_outliers",
            "dare_ties": "random", "dare_linear": "random", "della": "della_magprune",
            "della_linear": "della_magprune"}
FILTERS = ("mlp", "self_attn", "norm", "embed", "proj", "layers.0.", "lm_head")


@dataclass(frozen=True)
class Architecture:
    """A tiny Llama; `vocab x hidden` decides whether embeddings and head reach the compiled kernels (64K+)."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    kv_heads: int  # of 4 heads


ARCHITECTURES = (Architecture(331, 40, 104, 2, 2), Architecture(97, 24, 70, 3, 4),
                 Architecture(1031, 72, 200, 2, 2), Architecture(1499, 56, 150, 3, 4))


@dataclass(frozen=True)
class Case:
    index: int
    method: str
    dtype: str
    k: int
    architecture: Architecture
    merge: dict[str, Any]  # the job spec's merge section
    draw: int  # seeds the checkpoints and the candidate's values
    seed: int  # the candidate's seed (random masks)
    ties: bool  # task vectors on a coarse grid: many entries of equal magnitude at every cut

    @property
    def big(self) -> bool:
        return self.architecture.vocab * self.architecture.hidden >= 1 << 16


def generate(index: int, draw: int, architectures: tuple[Architecture, ...] | None = None,
             method: str | None = None, dtype: str | None = None) -> Case:
    """Case `index` of the seeded sequence `draw` (method and dtype drawn unless given; the architecture among
    `architectures`, else one of `ARCHITECTURES`, whose embeddings reach the compiled kernels in one case in 20:
    every distinct method, switch, k and dtype compiles its own kernel)."""
    rng = random.Random(draw * 1_000_003 + index)
    method = method or rng.choice(sorted(METHODS))
    dtype = dtype or rng.choice(sorted(DTYPES))
    info = METHODS[method]
    k = 1 if info.max_experts == 1 else rng.randint(max(1, info.min_experts), 5)
    if architectures is None:
        big = rng.random() < 0.05
        architectures = tuple(a for a in ARCHITECTURES if (a.vocab * a.hidden >= 1 << 16) == big)
    architecture = rng.choice(architectures)
    merge = _merge_section(rng, method, architecture)
    return Case(index, method, dtype, k, architecture, merge, rng.randrange(2**31), rng.randrange(2**31),
                rng.random() < 0.3)


def _merge_section(rng: random.Random, method: str, architecture: Architecture) -> dict[str, Any]:
    info = METHODS[method]
    merge: dict[str, Any] = {"method": method}
    if info.normalize is not None and rng.random() < 0.6:
        merge["normalize"] = rng.random() < 0.5
    if info.rescale is not None and rng.random() < 0.6:
        merge["rescale"] = rng.random() < 0.5
    normalized = merge.get("normalize", info.normalize)
    epsilon = rng.uniform(0.01, 0.2)
    bounds = {"weight": (0.05, 1.5) if normalized else (-0.5, 1.5), "gamma": (0.0, 0.3), "lambda": (0.3, 1.6),
              "t": (0.0, 1.0), "epsilon": (epsilon, epsilon + 0.01),
              "density": (epsilon + 0.02, 0.98 - epsilon) if "epsilon" in info.params else (0.1, 1.0)}
    searched = rng.choice(info.params) if info.params else None  # a job searches at least one parameter
    for name in info.params:
        low, high = bounds[name]
        if name == "density" and name != searched and method in RANDOM and rng.random() < 0.4:
            merge[name] = 1.0  # the deterministic case
        elif name != searched and (name == "epsilon" or rng.random() < 0.4):
            merge[name] = round(rng.uniform(low, high), 6)
        else:
            a, b = sorted(rng.uniform(low, high) for _ in range(2))
            merge[name] = {"low": round(a, 6), "high": round(max(b, a + 0.01), 6),
                           "granularity": _granularity(rng, architecture)}
    return merge


def _granularity(rng: random.Random, architecture: Architecture) -> Any:
    kind = rng.choice(("model", "component", "layers", "filters"))
    if kind == "layers":
        return {"layers": rng.randint(1, architecture.layers)}
    if kind == "filters":
        return {"filters": rng.sample(FILTERS, rng.randint(1, 3))}
    return kind


def write_models(folder: Path, case: Case) -> ModelFiles:
    """The base and `k` experts of `case` as Hugging Face folders (no task vector entry is zero)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    a = case.architecture
    config = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                         num_hidden_layers=a.layers, num_attention_heads=4, num_key_value_heads=a.kv_heads,
                         max_position_embeddings=64, tie_word_embeddings=False, architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        shapes = {n: t.shape for n, t in LlamaForCausalLM(config).state_dict().items()}
    gen = torch.Generator().manual_seed(case.draw)
    dtype = DTYPES[case.dtype]
    base = {n: (1 + 0.05 * torch.randn(s, generator=gen)) if len(s) == 1 else 0.05 * torch.randn(s, generator=gen)
            for n, s in shapes.items()}
    models = {"base": {n: t.to(dtype) for n, t in base.items()}}
    for i in range(case.k):
        sigma = 0.002 + 0.03 * float(torch.rand((), generator=gen))
        models[f"expert{i}"] = {n: _expert(t, sigma, dtype, case.ties, gen) for n, t in base.items()}
    for name, state in models.items():
        config.save_pretrained(str(folder / name))
        save_file(state, str(folder / name / "model.safetensors"), metadata={"format": "pt"})
    experts = tuple(folder / f"expert{i}" for i in range(case.k))
    return ModelFiles(folder / "base", experts, tuple(merged_tensor_names(folder / "base")), case.dtype)


def _expert(base: torch.Tensor, sigma: float, dtype: torch.dtype, ties: bool, gen: torch.Generator) -> torch.Tensor:
    delta = sigma * torch.randn(base.shape, generator=gen)
    if ties:
        delta = torch.round(delta / (sigma / 4)) * (sigma / 4)
    expert, rounded = (base + delta).to(dtype), base.to(dtype)
    bump = (rounded.float().abs() * 4 * torch.finfo(dtype).eps).clamp_min(torch.finfo(dtype).tiny)
    return torch.where(expert == rounded, (rounded.float() + bump).to(dtype), expert)


def model_stock_yaml(files: ModelFiles) -> str:
    """Model Stock has nothing to search, so no job exports it: the YAML a user would write."""
    return yaml.safe_dump({"merge_method": "model_stock", "base_model": str(files.base), "dtype": files.dtype,
                           "models": [{"model": str(p)} for p in files.experts]}, sort_keys=False)


def candidate(case: Case, files: ModelFiles) -> tuple[JobSpec, dict[str, float]]:
    """The job spec of `case` on `files` and a candidate drawn in its search space."""
    spec = parse_spec({"name": f"differential-{case.index}",
                       "models": {"base": str(files.base), "experts": [str(p) for p in files.experts]},
                       "merge": case.merge, "objectives": [{"evaluator": "sparsity"}],
                       "optimizer": {"name": "random", "budget": 1, "batch_size": 1}})
    space = build_space(spec.merge, spec.models.experts, list(files.merged_keys))
    rng = random.Random(case.draw)
    return spec, {p.name: rng.uniform(p.low, p.high) for p in space.parameters}
