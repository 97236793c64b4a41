"""A job's search space, which for component / layer / filter granularity depends on the model's tensors,
and the merge a point of it stands for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mergefront.errors import InvalidSpecError, NotFoundError
from mergefront.granularity import Granularity
from mergefront.optimizers import Observation, SearchSpace, build_space
from mergefront.report import format_space
from mergefront.schemas import MemoryPlanOut, PlacementOut
from mergefront.service.settings import Settings
from mergefront.spec import JobSpec
from mergefront.suites import parse_bench_ref

if TYPE_CHECKING:
    from mergefront.evaluators.memory import MemoryPlan
    from mergefront.evaluators.merge import MergeConfig
    from mergefront.service.models import Evaluation


@dataclass(frozen=True)
class ModelFiles:
    """Where a job's models are on disk, and which of their tensors the merge changes."""

    base: Path
    experts: tuple[Path, ...]
    merged_keys: tuple[str, ...]
    dtype: str = "float32"


def job_space(spec: JobSpec, settings: Settings, files: ModelFiles | None = None) -> SearchSpace:
    """The space the job searches; reads the base's tensor names (from `files` when given) only when a granularity
    needs them, and then leaves out the groups whose tensors no expert changes."""
    if all(r.granularity.kind == "model" for _, r in spec.merge.searched()):
        return build_space(spec.merge, spec.models.experts)
    files = files or job_files(spec, settings)
    names = list(files.merged_keys)
    space = build_space(spec.merge, spec.models.experts, names, lambda g, group: unchanged_group(files, g, group))
    if space.dim == 0:
        raise InvalidSpecError("nothing to search: no expert changes any tensor of the searched groups "
                               f"({', '.join(sorted({g.group for g in space.inert}))}); check the experts",
                               ("models", "experts"))
    return space


def space_notes(spec: JobSpec, space: SearchSpace) -> list[str]:
    """Lines a user reads with the space: groups left out, what `auto` picked, designs cut to fit the budget."""
    from mergefront.optimizers import budget_notes

    return [line.strip() for line in space.inert_lines()] + budget_notes(spec, space)


def describe_space(spec: JobSpec, space: SearchSpace) -> str:
    """The space as text (its dimension and coordinates), then its notes."""
    text = format_space([(p.name, p.low, p.high, p.description) for p in space.parameters])
    return "\n".join([text, *(f"  {line}" for line in space_notes(spec, space))])


def unchanged_group(files: ModelFiles, granularity: Granularity, group: str) -> bool:
    """Whether every expert's tensors in `group` equal the base's (all task vectors zero there).

    Reads tensor by tensor and stops at the first difference, so a group that experts change costs one or two
    tensor reads; answers are remembered per checkpoint files (and their modification times).
    """
    names = [k for k in files.merged_keys if granularity.group_of(k, files.merged_keys) == group]
    return _unchanged(_stamp(files.base), tuple(_stamp(e) for e in files.experts), tuple(names))


def _stamp(path: Path) -> tuple[str, float]:
    return str(path), path.stat().st_mtime


@lru_cache(maxsize=256)
def _unchanged(base: tuple[str, float], experts: tuple[tuple[str, float], ...], names: tuple[str, ...]) -> bool:
    import torch

    base_reader = _TensorReader(Path(base[0]))
    readers = [_TensorReader(Path(e[0])) for e in experts]
    for name in names:
        reference = base_reader.get(name)
        if reference is None:
            return False
        for reader in readers:
            other = reader.get(name)
            if other is None or not torch.equal(reference, other):
                return False
    return True


class _TensorReader:
    """One tensor at a time from a checkpoint's safetensors files (None for pickled checkpoints: unknown)."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        from mergefront.evaluators.checkpoint import weight_files

        files = [f for f in weight_files(path, allow_pickle=True) if f.suffix == ".safetensors"]
        self.handles = [safe_open(f, framework="pt") for f in files]

    def get(self, name: str) -> Any:
        for handle in self.handles:
            if name in handle.keys():  # noqa: SIM118 - safe_open has no __contains__
                return handle.get_tensor(name)
        return None


def job_files(spec: JobSpec, settings: Settings, *, fetch: bool = True) -> ModelFiles:
    """Where the job's base and experts are, and which tensors the merge changes (suites build on first use,
    hf:// models are fetched into the cache on first use; with `fetch` False, NotFoundError instead)."""
    from mergefront.evaluators.checkpoint import resolve
    from mergefront.evaluators.headers import TORCH_NAMES, checkpoint_tensors, merged_tensor_names

    if spec.suite is not None:
        from mergefront.evaluators.suites import built_suite, ensure_suite, open_suite

        cache = settings.resolved_cache_dir
        suite = open_suite(spec.suite, ensure_suite(spec.suite, cache) if fetch else built_suite(spec.suite, cache))
        experts = tuple(suite.model_path(parse_bench_ref(ref)[1]) for ref in spec.models.experts)
        base = suite.model_path("base")
        keys = tuple(suite.merged_keys(suite.load_model("base")))
    else:
        if not fetch and any(ref.startswith("hf://") for ref in (spec.models.base, *spec.models.experts)):
            raise NotFoundError("hf:// models are fetched when the job starts")
        hub = settings.resolved_cache_dir / "hf"
        base = resolve(spec.models.base, cache_dir=hub)
        experts = tuple(resolve(ref, cache_dir=hub) for ref in spec.models.experts)
        keys = tuple(merged_tensor_names(base))
    if not keys:
        raise InvalidSpecError(f"the base {spec.models.base!r} has no floating-point tensor to merge",
                               ("models", "base"))
    dtype = TORCH_NAMES.get(checkpoint_tensors(base)[keys[0]].dtype, "float32")
    return ModelFiles(base, experts, keys, dtype)


def job_memory(spec: JobSpec, files: ModelFiles) -> MemoryPlan:
    """The job's memory plan against its spec's limits; InvalidSpecError with the numbers when nothing fits."""
    from mergefront.memory_plan import job_plan

    return job_plan(spec, files.base, files.merged_keys)


def job_memory_out(spec: JobSpec, settings: Settings) -> tuple[MemoryPlanOut | None, str | None]:
    """The job's memory plan as the API shows it, or why there is none: models not on disk yet (a suite not built,
    hf:// models not fetched: planned when the job starts), or no placement fits the spec's limits."""
    try:
        return memory_out(job_memory(spec, job_files(spec, settings, fetch=False))), None
    except (NotFoundError, InvalidSpecError) as exc:
        return None, str(exc)


def memory_out(plan: MemoryPlan) -> MemoryPlanOut:
    options = [PlacementOut(placement=o.placement, ranks=o.ranks, device_bytes=o.device_bytes,
                            host_bytes=o.host_bytes, copied_per_merge=o.link) for o in plan.options]
    return MemoryPlanOut(placement=plan.placement, device_bytes=plan.need.device_bytes,
                         host_bytes=plan.need.host_bytes, device_limit=plan.device_limit, host_limit=plan.host_limit,
                         options=options, description=plan.describe())


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
    for inert in space.inert:  # groups no expert changes: any value gives the base's tensors
        grouped.setdefault(inert.kind, {})[inert.group] = [inert.value] * (k if inert.per_expert else 1)
        granularity[inert.kind] = inert.granularity
    values: dict[str, float | GroupedValues] = dict(spec.merge.fixed())
    for kind, groups in grouped.items():
        values[kind] = GroupedValues(granularity[kind], {g: tuple(v) for g, v in groups.items()})
    return MergeConfig(spec.merge.method, params=values, normalize=spec.merge.normalize, rescale=spec.merge.rescale,
                       seed=seed)


def materialize(spec: JobSpec, space: SearchSpace, params: Mapping[str, float], seed: int, files: ModelFiles,
                out_dir: Path, progress: bool = False) -> Path:
    """Merge one candidate again and write it as a checkpoint directory (unmerged tensors from the base).

    With `progress`, a bar on stderr counts the steps: loading the base and each expert, merging, writing.
    """
    from tqdm import tqdm

    from mergefront.evaluators.checkpoint import load_checkpoint, save_checkpoint
    from mergefront.evaluators.merge import ResidentMerger

    with tqdm(total=len(files.experts) + 3, desc="export", unit="step", disable=not progress) as bar:
        def step(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update()

        bar.set_postfix_str("loading the base")
        base = load_checkpoint(files.base)
        experts = []
        for i, path in enumerate(files.experts):
            step(f"loading expert {i + 1} of {len(files.experts)}")
            experts.append(load_checkpoint(path))
        step("merging")
        merged = ResidentMerger(base, experts, list(files.merged_keys)).merge(merge_config(spec, params, space, seed))
        step(f"writing {out_dir}")
        path = save_checkpoint({**base, **merged}, out_dir, template=files.base if files.base.is_dir() else None)
        step("done")
    return path
