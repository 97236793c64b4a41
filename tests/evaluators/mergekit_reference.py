"""Differential cases against mergekit itself, shared by the CI test and its `--long` run.

A case is a merge a user could ask for: one of the methods mergekit shares with us, a dtype (float32, bf16, fp16),
k experts of a tiny Llama with ragged tensor sizes (the embeddings of some cases above the compiled-kernel
threshold), and a job spec's merge section with arbitrary (not dyadic) fixed values or searched ranges at model,
component, layer-group or name-filter granularity, normalize / rescale switches, and a candidate drawn in that space.

Each case is merged three ways: by our engine (`ResidentMerger`), by our export path (the checkpoint
`service.space.materialize` writes, which must be the engine's merge bit for bit), and by mergekit 0.1.5's
`run_merge` from our exported YAML, exactly as `mergekit-yaml` runs it. Every merged tensor is compared:

- equal bit for bit where mergekit's own arithmetic is defined to the last bit (`exact`): the generalized task
  arithmetic family (task arithmetic, TIES, breadcrumbs, DARE, DELLA) wherever torch's sums add the experts in
  order (always in bf16 / fp16, whose sums run in float32 and round once; up to four experts in float32, beyond
  which `torch.sum` groups them by column position) and no rescale norm is summed in float32 (mergekit sums it
  with torch's cascade, we in float64 rounded once: the factor may differ in its last bit);
- otherwise within `allowed_ulps(case)` units in the last place of the largest magnitude the entry's arithmetic
  handles (`scale`: inputs, task vectors and result, times the method's largest combined coefficient): half a
  unit for every rounding at that scale either side makes in its own order. In float32 each side rounds at most
  k + 3 times (k terms, the sum, normalising or lambda, the base): k + 3 units. In bf16 / fp16 both sides compute
  in float32 and round once to the dtype (float32's own error is far below half a bf16 / fp16 unit): 2 units;
  except Model Stock, which mergekit computes in the checkpoint's dtype itself (its k-term mean and interpolation
  round at every step): k + 3 units there too. Linear, SLERP and Model Stock are in this class by construction: we
  compute `sum_i w_i tau_i` from task vectors and the geometry in float64, mergekit combines the checkpoints.

Masks are compared on their own: for TIES and breadcrumbs every expert keeps exactly mergekit's entries (equal
counts, equal positions; `mergekit.sparsify` on the same task vector). Random masks (DARE, DELLA) are compared where
they are deterministic (density 1, merged exactly as above), by their statistics otherwise (ours and mergekit's
own draws keep density x n entries, DELLA's rising with magnitude rank as its probabilities say, within five
standard deviations), and, to test everything but the draw, by merging in mergekit with our masks in place of its
Bernoulli draws: the same `exact` / `ULPS` rules then hold.

mergekit runs single-threaded: with several threads torch sums bf16 / fp16 tensors per thread and rounds each
part, so mergekit's own rescale factors then depend on the thread count (in one thread they are correctly rounded).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

from mergefront.evaluators.checkpoint import load_checkpoint, merged_tensor_names
from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.methods import METHODS
from mergefront.optimizers import build_space
from mergefront.service.mergekit import mergekit_yaml
from mergefront.service.space import ModelFiles, materialize, merge_config
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


def allowed_ulps(case: Case) -> int:
    """Units in the last place allowed where mergekit's arithmetic is not ours (see the module's docstring)."""
    return case.k + 3 if case.dtype == "float32" or case.method == "model_stock" else 2


@dataclass
class Result:
    case: Case
    max_diff: float = 0.0  # largest |ours - mergekit| over every tensor
    max_ulps: float = 0.0  # the same in units of the tolerance's scale
    exact: bool = True  # whether this case's tensors had to be equal bit for bit
    tensors: int = 0
    failures: list[str] = field(default_factory=list)


def generate(index: int, draw: int, architectures: tuple[Architecture, ...] = ARCHITECTURES,
             method: str | None = None, dtype: str | None = None) -> Case:
    """Case `index` of the seeded sequence `draw` (method and dtype drawn unless given)."""
    rng = random.Random(draw * 1_000_003 + index)
    method = method or rng.choice(sorted(METHODS))
    dtype = dtype or rng.choice(sorted(DTYPES))
    info = METHODS[method]
    k = 1 if info.max_experts == 1 else rng.randint(max(1, info.min_experts), 5)
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


def run_case(case: Case, folder: Path) -> Result:
    """Merge `case` ours, by export and in mergekit; compare every tensor and every mask."""
    result = Result(case)
    files = write_models(folder, case)
    inputs = [load_checkpoint(p) for p in (files.base, *files.experts)]
    merger = ResidentMerger(inputs[0], inputs[1:], list(files.merged_keys))
    if case.method == "model_stock":
        config, text = MergeConfig("model_stock"), model_stock_yaml(files)
        ours = {key: t.clone() for key, t in merger.merge(config).items()}
    else:
        spec, params = candidate(case, files)
        space = build_space(spec.merge, spec.models.experts, list(files.merged_keys))
        config = merge_config(spec, params, space, case.seed)
        ours = {key: t.clone() for key, t in merger.merge(config).items()}
        exported = load_checkpoint(materialize(spec, space, params, case.seed, files, folder / "exported"))
        result.failures += [f"{key}: the export differs from the engine's merge" for key in ours
                            if not torch.equal(exported[key], ours[key])]
        text = mergekit_yaml(spec, space, params, files)
    values = merger.values(config)
    masks = merger.kept_entries(config) if case.method in SPARSIFY else None
    random_drop = case.method in RANDOM and any(bool((v.density < 1).any()) for v in values.values())
    theirs = run_mergekit(text, folder / "mergekit", _our_draws(merger, masks) if random_drop else None)
    result.exact = _exact(case, values)
    for key in ours:
        _compare(result, key, ours[key], theirs[key], [t[key] for t in inputs], values[key])
    if masks is not None:
        _check_masks(result, case, merger, masks, values, text)
    return result


def _exact(case: Case, values: dict[str, Any]) -> bool:
    if case.method not in GTA or (case.dtype == "float32" and case.k > 4):
        return False
    rescaled = METHODS[case.method].rescale if case.merge.get("rescale") is None else case.merge["rescale"]
    dropped = any(bool((v.density < 1).any()) for v in values.values())
    float32_norms = case.dtype == "float32" or (case.dtype == "float16" and case.method in RANDOM)
    return not (rescaled and dropped and case.method in SPARSIFY and float32_norms)


def _compare(result: Result, key: str, ours: torch.Tensor, theirs: torch.Tensor, inputs: list[torch.Tensor],
             values: Any) -> None:
    result.tensors += 1
    if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
        result.failures.append(f"{key}: {ours.dtype}{tuple(ours.shape)} against mergekit's "
                               f"{theirs.dtype}{tuple(theirs.shape)}")
        return
    diff = (ours.double() - theirs.double()).abs()
    scale = _scale(result.case, inputs, theirs, values)
    ulps = diff / _ulp(scale, ours.dtype)
    result.max_diff = max(result.max_diff, float(diff.max()))
    result.max_ulps = max(result.max_ulps, float(ulps.max()))
    if result.exact and not torch.equal(ours, theirs):
        result.failures.append(f"{key}: {int((diff > 0).sum())} entries differ (largest {float(diff.max()):.3g}) "
                               "where mergekit's arithmetic is exact")
    elif float(ulps.max()) > allowed_ulps(result.case):
        result.failures.append(f"{key}: {float(ulps.max()):.2f} ulps (largest difference {float(diff.max()):.3g})")


def _scale(case: Case, inputs: list[torch.Tensor], theirs: torch.Tensor, values: Any) -> torch.Tensor:
    """Per entry, the largest magnitude its arithmetic handles: the inputs, the task vectors and the result, times
    the method's largest combined coefficient on this tensor."""
    taus = [t.double() - inputs[0].double() for t in inputs[1:]]
    magnitude = torch.stack([t.double().abs() for t in (*inputs, *taus, theirs)]).amax(dim=0)
    w, lam = values.weight.abs(), abs(values.lam)
    if case.method == "linear":
        total = abs(float(values.weight.sum())) if values.normalize else 1.0
        coefficient = float(w.sum()) / max(total, 1e-8)
    elif case.method == "slerp":
        coefficient = 1.0
    elif case.method == "model_stock":
        t = _model_stock_t([x.double().flatten() - inputs[0].double().flatten() for x in inputs[1:]])
        coefficient = abs(t) + abs(1 - t)
    else:
        coefficient = lam * float(w.sum()) / (float(w[w > 0].min()) if values.normalize and (w > 0).any() else 1.0)
        coefficient /= float(values.density.min()) if values.rescale else 1.0
    return magnitude * max(1.0, coefficient)


def _model_stock_t(taus: list[torch.Tensor]) -> float:
    k = len(taus)
    cosines = [float(a @ b / (a.norm() * b.norm()).clamp_min(1e-12)) for i, a in enumerate(taus) for b in taus[i + 1:]]
    cos = sum(cosines) / len(cosines)
    return k * cos / (1 + (k - 1) * cos) if abs(1 + (k - 1) * cos) > 1e-6 else 0.0


def _ulp(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One unit in the last place of `dtype` at each magnitude (normal numbers; the smallest normal's below)."""
    info = torch.finfo(dtype)
    exponent = torch.floor(torch.log2(scale.clamp_min(info.tiny)))
    return torch.exp2(exponent) * info.eps


def run_mergekit(text: str, out: Path, draws: Callable[[torch.Tensor], torch.Tensor | None] | None = None
                 ) -> dict[str, torch.Tensor]:
    """mergekit's merge of the YAML `text`, as `mergekit-yaml TEXT OUT --no-copy-tokenizer` runs it (these
    checkpoints have no tokenizer), in one thread; with `draws`, each Bernoulli mask mergekit draws for a task vector
    is the one `draws(task_vector)` gives."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    options = MergeOptions(copy_tokenizer=False, quiet=True)
    options.apply_global_options()
    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _draws_replaced(draws):
            run_merge(config, str(out), options=options, config_source=text)
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(out)


@contextlib.contextmanager
def _draws_replaced(draws: Callable[[torch.Tensor], torch.Tensor | None] | None) -> Iterator[None]:
    """mergekit's `bernoulli` and `della_magprune` with our mask for the task vector they sparsify."""
    if draws is None:
        yield
        return
    import mergekit.sparsify as sparsify

    current: list[torch.Tensor] = []
    real_bernoulli = torch.bernoulli

    def bernoulli(probabilities: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not current:
            return real_bernoulli(probabilities, *args, **kwargs)
        return current[-1].reshape(probabilities.shape).to(probabilities.dtype)

    def wrap(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def sparsify_with_our_mask(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            mask = draws(tensor)
            assert mask is not None, "mergekit sparsified a task vector of none of our experts"
            current.append(mask)
            try:
                return function(tensor, *args, **kwargs)
            finally:
                current.pop()
        return sparsify_with_our_mask

    saved = (sparsify.bernoulli, sparsify.della_magprune)
    sparsify.bernoulli, sparsify.della_magprune = wrap(saved[0]), wrap(saved[1])
    torch.bernoulli = bernoulli  # type: ignore[assignment]
    try:
        yield
    finally:
        sparsify.bernoulli, sparsify.della_magprune = saved
        torch.bernoulli = real_bernoulli  # type: ignore[assignment]


def _our_draws(merger: ResidentMerger, masks: dict[str, torch.Tensor] | None
               ) -> Callable[[torch.Tensor], torch.Tensor | None]:
    """Our mask of a task vector, found by its bits (mergekit's `expert - base` is our resident task vector)."""
    assert masks is not None
    found: dict[bytes, torch.Tensor] = {}
    for seg, data in zip(merger.segments, merger._data, strict=True):
        for i in range(merger.n_experts):
            found[_fingerprint(data.tau[i])] = masks[seg.key][i]

    def draws(tensor: torch.Tensor) -> torch.Tensor | None:
        return found.get(_fingerprint(tensor))

    return draws


def _fingerprint(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().reshape(-1).contiguous()
    return bytes(str(flat.dtype), "ascii") + flat.view(torch.uint8).numpy().tobytes()


def _check_masks(result: Result, case: Case, merger: ResidentMerger, masks: dict[str, torch.Tensor],
                 values: dict[str, Any], text: str) -> None:
    """TIES / breadcrumbs: mergekit's very entries; DARE / DELLA: both draws keep what their probabilities say."""
    from mergekit.sparsify import SparsificationMethod, sparsify

    method = SparsificationMethod(SPARSIFY[case.method])
    settings = _mergekit_settings(text, case.k)
    stats: dict[str, list[tuple[float, float]]] = {"ours": [], "mergekit": []}
    for seg, data in zip(merger.segments, merger._data, strict=True):
        for i in range(case.k):
            density = settings(seg.key, i, "density", 1.0)
            if density >= 1:
                continue
            assert math.isclose(density, float(values[seg.key].density[i]), rel_tol=0, abs_tol=1e-12)
            extra = {"gamma": settings(seg.key, i, "gamma", 0.01)} if "gamma" in METHODS[case.method].params else {}
            if "epsilon" in METHODS[case.method].params:
                extra = {"epsilon": settings(seg.key, i, "epsilon", 0.15)}
            delta = data.tau[i].view(seg.shape)
            theirs = sparsify(delta, density=density, method=method, **extra).reshape(-1) != 0
            if case.method in RANDOM:
                _tally(stats, case.method, data, i, masks[seg.key][i], theirs, density, extra.get("epsilon", 0.0))
            elif not torch.equal(theirs, masks[seg.key][i]):
                result.failures.append(f"{seg.key}, expert {i}: keeps {int(masks[seg.key][i].sum())} entries, "
                                       f"mergekit {int(theirs.sum())} ({int((theirs != masks[seg.key][i]).sum())} "
                                       "positions differ)")
    for who, pairs in stats.items():
        for band, (kept, expected, variance) in enumerate(_bands(pairs)):
            if variance > 0 and abs(kept - expected) > 5 * math.sqrt(variance) + 1:
                result.failures.append(f"{who}'s random masks keep {kept:.0f} entries in rank band {band}, "
                                       f"{expected:.1f} expected (sd {math.sqrt(variance):.1f})")


def _mergekit_settings(text: str, k: int) -> Callable[[str, int, str, float], float]:
    """A parameter's value for a tensor and an expert, as mergekit resolves our YAML's filters."""
    from mergekit.config import MergeConfiguration, evaluate_setting

    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    experts = [m for m in config.models if str(m.model.model.path) != str(config.base_model.model.path)] \
        if config.base_model else list(config.models)
    assert len(experts) == k

    def setting(key: str, i: int, name: str, default: float) -> float:
        given = (experts[i].parameters or {}).get(name)
        if given is None:
            given = (config.parameters or {}).get(name)
        value = evaluate_setting(key, given, validate=float) if given is not None else None
        return float(default if value is None else value)

    return setting


def _tally(stats: dict[str, list[tuple[float, float]]], method: str, data: Any, i: int, ours: torch.Tensor,
           theirs: torch.Tensor, density: float, epsilon: float) -> None:
    """Per entry, (rank band in [0, 1), keep probability) with whether it was kept, pooled per drawer."""
    if method.startswith("della"):
        assert data.row_rank is not None
        rank = data.row_rank[i]
        probability = (density - epsilon) + rank.double() * 2 * epsilon
    else:
        rank = torch.zeros(ours.numel(), dtype=torch.float64)
        probability = torch.full((ours.numel(),), density, dtype=torch.float64)
    for who, kept in (("ours", ours), ("mergekit", theirs)):
        stats[who].append((rank.double(), probability, kept.double()))  # type: ignore[arg-type]


def _bands(pooled: list[Any], bands: int = 5) -> Iterator[tuple[float, float, float]]:
    """Per rank band: entries kept, expected, and the binomial variance."""
    if not pooled:
        return
    rank = torch.cat([p[0] for p in pooled])
    probability = torch.cat([p[1] for p in pooled])
    kept = torch.cat([p[2] for p in pooled])
    band = torch.clamp((rank * bands).long(), max=bands - 1)
    for b in range(bands):
        inside = band == b
        if inside.any():
            p = probability[inside]
            yield float(kept[inside].sum()), float(p.sum()), float((p * (1 - p)).sum())
