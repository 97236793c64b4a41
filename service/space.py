"""A job's search space, which for component / layer / filter granularity depends on the model's tensors,
and the merge a point of it stands for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mergefront.errors import InvalidSpecError
from mergefront.granularity import Granularity
from mergefront.optimizers import Observation, SearchSpace, build_space
from mergefront.service.settings import Settings
from mergefront.spec import JobSpec
from mergefront.suites import parse_bench_ref

if TYPE_CHECKING:
    from mergefront.evaluators.merge import MergeConfig
    from mergefront.service.models import Evaluation

@dataclass(frozen=True)
class ModelFiles:
    """Where a job's models are on disk, and which of their tensors the merge changes."""

    base: Path
    experts: tuple[Path, ...]
    merged_keys: tuple[str, ...]
    dtype: str = "float32"


_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def job_space(spec: JobSpec, settings: Settings, files: ModelFiles | None = None) -> SearchSpace:
    """The space the job searches; reads the base's tensor names (from `files` when given) only when a granularity
    needs them."""
    needs_names = any(r.granularity.kind != "model" for _, r in spec.merge.searched())
    names = list((files or job_files(spec, settings)).merged_keys) if needs_names else []
    return build_space(spec.merge, spec.models.experts, names)


def job_files(spec: JobSpec, settings: Settings) -> ModelFiles:
    """Where the job's base and experts are, and which tensors the merge changes (suites build on first use,
    hf:// models are fetched into the cache on first use)."""
    from safetensors import safe_open

    from mergefront.evaluators.checkpoint import merged_tensor_names, resolve, weight_files

    if spec.suite is not None:
        from mergefront.evaluators.suites import ensure_suite, open_suite

        suite = open_suite(spec.suite, ensure_suite(spec.suite, settings.resolved_cache_dir))
        experts = tuple(suite.model_path(parse_bench_ref(ref)[1]) for ref in spec.models.experts)
        base = suite.model_path("base")
        keys = tuple(suite.merged_keys(suite.load_model("base")))
    else:
        hub = settings.resolved_cache_dir / "hf"
        base = resolve(spec.models.base, cache_dir=hub)
        experts = tuple(resolve(ref, cache_dir=hub) for ref in spec.models.experts)
        keys = tuple(merged_tensor_names(base))
    if not keys:
        raise InvalidSpecError(f"the base {spec.models.base!r} has no floating-point tensor to merge",
                               ("models", "base"))
    dtype = "float32"
    for file in weight_files(base):
        with safe_open(file, framework="pt") as handle:
            if keys[0] in handle.keys():  # noqa: SIM118 - safe_open has no __contains__
                dtype = _DTYPES.get(handle.get_slice(keys[0]).get_dtype(), "float32")
                break
    return ModelFiles(base, experts, keys, dtype)


def observation(spec: JobSpec, row: Evaluation) -> Observation:
    """A finished evaluation as the optimizer sees it: objectives minimised (maximised ones negated), None if failed."""
    if row.state != "completed" or row.metrics is None:
        return Observation(tuple(row.x), None)
    return Observation(tuple(row.x), tuple(-row.metrics[o.key] if o.maximize else row.metrics[o.key]
                                           for o in spec.objectives))


def candidate_seed(spec: JobSpec, number: int) -> int:
    """The seed of evaluation `number`'s random masks: the same on a retry, a resume, or an export."""
    return spec.optimizer.seed * 100_003 + number


def merge_config(spec: JobSpec, params: Mapping[str, float], space: SearchSpace | None = None,
                 seed: int = 0) -> MergeConfig:
    """The merge a candidate's named parameters stand for (see `mergefront.optimizers.space.build_space`)."""
    from mergefront.evaluators.merge import GroupedValues, MergeConfig

    space = space or build_space(spec.merge, spec.models.experts)
    k = len(spec.models.experts)
    grouped: dict[str, dict[str, list[float]]] = {}
    granularity: dict[str, Granularity] = {}
    for p in space.parameters:
        row = grouped.setdefault(p.kind, {}).setdefault(p.group, [0.0] * (k if p.expert is not None else 1))
        row[p.expert or 0] = params[p.name]
        granularity[p.kind] = p.granularity
    values: dict[str, float | GroupedValues] = dict(spec.merge.fixed())
    for kind, groups in grouped.items():
        values[kind] = GroupedValues(granularity[kind], {g: tuple(v) for g, v in groups.items()})
    return MergeConfig(spec.merge.method, params=values, normalize=spec.merge.normalize, rescale=spec.merge.rescale,
                       seed=seed)


def materialize(spec: JobSpec, space: SearchSpace, params: Mapping[str, float], seed: int, files: ModelFiles,
                out_dir: Path) -> Path:
    """Merge one candidate again and write it as a checkpoint directory (unmerged tensors from the base)."""
    from mergefront.evaluators.checkpoint import load_checkpoint, save_checkpoint
    from mergefront.evaluators.merge import ResidentMerger

    base = load_checkpoint(files.base)
    experts = [load_checkpoint(path) for path in files.experts]
    merged = ResidentMerger(base, experts, list(files.merged_keys)).merge(merge_config(spec, params, space, seed))
    return save_checkpoint({**base, **merged}, out_dir, template=files.base if files.base.is_dir() else None)
