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
  handles (`scale`: inputs, task vectors and result, times the method's largest combined coefficient). In float32
  each side rounds at most k + 3 times at that scale after the point where the two computations part (k terms,
  normalising or lambda, the base, the sum), and a rounding can turn a difference into one more unit: 2 (k + 3)
  units. In bf16 / fp16 both sides compute in float32 and round once to the dtype (float32's own error is far
  below half a bf16 / fp16 unit): 2 units; except Model Stock, which mergekit computes in the checkpoint's dtype
  itself (its k-term mean and the interpolation round at every step): 2 (k + 3) units there too. Linear, SLERP and
  Model Stock are in this class by construction: we compute `sum_i w_i tau_i` from task vectors and the geometry
  in float64, mergekit combines the checkpoints.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from mergefront.evaluators.checkpoint import load_checkpoint
from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.methods import METHODS
from mergefront.optimizers import build_space
from mergefront.service.mergekit import mergekit_yaml
from mergefront.service.space import materialize, merge_config
from tests.evaluators.mergekit_cases import GTA, RANDOM, SPARSIFY, Case, candidate, model_stock_yaml, write_models
from tests.evaluators.mergekit_masks import check_masks, draws_replaced, our_draws


def allowed_ulps(case: Case) -> int:
    """Units in the last place allowed where mergekit's arithmetic is not ours (see the module's docstring)."""
    return 2 * (case.k + 3) if case.dtype == "float32" or case.method == "model_stock" else 2


@dataclass
class Result:
    case: Case
    max_diff: float = 0.0  # largest |ours - mergekit| over every tensor
    max_ulps: float = 0.0  # the same in units of the tolerance's scale
    exact: bool = True  # whether this case's tensors had to be equal bit for bit
    tensors: int = 0
    failures: list[str] = field(default_factory=list)
    cosines: list[float] = field(default_factory=list)  # SLERP: each tensor's base-expert cosine (ours, float64)


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
    theirs = run_mergekit(parse(text), text, folder / "mergekit", our_draws(merger, masks) if random_drop else None)
    result.exact = _exact(case, values)
    result.cosines = [d.cosine for d in merger._data if d.cosine is not None]
    for key in ours:
        _compare(result, key, ours[key], theirs[key], [t[key] for t in inputs], values[key])
    if masks is not None:
        result.failures += check_masks(case, merger, masks, values, parse(text))  # run_merge rewrites its own
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
    _, exponent = torch.frexp(scale.clamp_min(info.tiny))  # scale = m x 2**exponent, 0.5 <= m < 1
    return torch.ldexp(torch.full_like(scale, info.eps), exponent - 1)


def parse(text: str) -> Any:
    """A YAML configuration as `mergekit-yaml` reads it."""
    from mergekit.config import MergeConfiguration

    return MergeConfiguration.model_validate(yaml.safe_load(text))


def run_mergekit(config: Any, text: str, out: Path,
                 draws: Callable[[torch.Tensor], torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
    """mergekit's merge of `config` (the YAML `text`, parsed), as `mergekit-yaml TEXT OUT --no-copy-tokenizer` runs
    it (these checkpoints have no tokenizer), in one thread; with `draws`, each Bernoulli mask mergekit draws for a
    task vector is the one `draws(task_vector)` gives."""
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    options = MergeOptions(copy_tokenizer=False, quiet=True)
    options.apply_global_options()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with draws_replaced(draws):
            run_merge(config, str(out), options=options, config_source=text)
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(out)
