"""The merge engine: base weights and task vectors stay resident; each candidate is merged in place.

All merged tensors are laid out in one flat buffer (`n` numbers): the base (`n`), the task vectors of the
`k` experts as one `k x n` matrix, and one output buffer (`n`) that every merge overwrites. The tensors handed
out by `merge` are views into that output buffer, valid until the next merge. Methods run tensor by tensor
(`mergefront.evaluators.methods`), each with the parameter values of the groups the tensor falls in.

Memory, per expert: one task vector in the checkpoint's dtype; TIES and breadcrumbs keep int32 magnitude ranks
(sorted once, as mergekit sorts, so a new density costs no sort); DELLA keeps float32 row ranks instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.methods import NEEDS_ROW_RANKS, RANKING, REGISTRY, SegmentData, SegmentParams
from mergefront.evaluators.methods.sparse import RECIPES, kept_entries
from mergefront.granularity import Granularity
from mergefront.methods import METHODS, PER_EXPERT

METHOD_NAMES = tuple(REGISTRY)


@dataclass(frozen=True)
class GroupedValues:
    """A parameter's values by group: `{group: (v_1, ..., v_k)}` per expert, or `{group: (v,)}` if global."""

    granularity: Granularity
    values: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class MergeConfig:
    """One candidate's merge.

    `weights` / `densities` / `scale` are whole-model shorthands for the `weight` / `density` / `lambda`
    entries of `params`; a parameter given nowhere takes the method's default.
    """

    method: str
    weights: tuple[float, ...] | None = None
    densities: tuple[float, ...] | None = None
    scale: float | None = None
    params: Mapping[str, float | GroupedValues] = field(default_factory=dict)
    normalize: bool | None = None
    rescale: bool | None = None
    seed: int = 0


@dataclass(frozen=True)
class _Segment:
    key: str
    offset: int
    numel: int
    shape: tuple[int, ...]


class ResidentMerger:
    """Merges candidates of one base and `k` experts, keeping all weights on `device`."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 keys: Sequence[str], device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
        if not experts:
            raise InvalidSpecError("at least one expert is needed", ("models", "experts"))
        self.device = torch.device(device)
        self.segments = _layout(base, experts, keys)
        self.keys = [s.key for s in self.segments]
        dtype = dtype or _common_dtype(base, keys)
        n = sum(s.numel for s in self.segments)
        self.base = torch.empty(n, dtype=dtype, device=self.device)
        self.task_vectors = torch.empty((len(experts), n), dtype=dtype, device=self.device)  # k x n
        for seg in self.segments:
            sl = slice(seg.offset, seg.offset + seg.numel)
            base_flat = base[seg.key].reshape(-1).to(self.device, dtype)
            self.base[sl] = base_flat
            for i, expert in enumerate(experts):
                torch.sub(expert[seg.key].reshape(-1).to(self.device, dtype), base_flat, out=self.task_vectors[i, sl])
        self.out = self.base.clone()
        self._data = [SegmentData(self.base[s.offset:s.offset + s.numel],
                                  self.task_vectors[:, s.offset:s.offset + s.numel], 0, s.shape)
                      for s in self.segments]
        self._groups: dict[Granularity, list[str]] = {}

    @property
    def n_experts(self) -> int:
        return int(self.task_vectors.shape[0])

    def merge(self, config: MergeConfig) -> dict[str, torch.Tensor]:
        """Merge one candidate into the output buffer; return the merged tensors (views into it)."""
        method = REGISTRY.get(config.method)
        if method is None:
            raise ValueError(f"unknown merge method {config.method!r}; known: {METHOD_NAMES}")
        for seg, data, params in self._inputs(config):
            method(data, params, self.out[seg.offset:seg.offset + seg.numel])
        return self.tensors()

    def values(self, config: MergeConfig) -> dict[str, SegmentParams]:
        """Per tensor, the parameter values this candidate's merge uses on it."""
        return {seg.key: params for seg, _, params in self._inputs(config)}

    def kept_entries(self, config: MergeConfig) -> dict[str, torch.Tensor]:
        """Per tensor, which task-vector entries each expert keeps in this candidate's merge (`k x numel`, bool);
        all of them for methods that sparsify nothing."""
        if config.method not in RECIPES:
            raise ValueError(f"{config.method} does not sparsify task vectors")
        recipe = RECIPES[config.method]
        return {seg.key: kept_entries(recipe, data, params) for seg, data, params in self._inputs(config)}

    def _inputs(self, config: MergeConfig) -> Iterator[tuple[_Segment, SegmentData, SegmentParams]]:
        """Each tensor's segment, data (seeded for this candidate) and parameter values."""
        self._check(config)
        self._prepare(config.method)
        rows: dict[tuple[float, ...], torch.Tensor] = {}  # one tensor per distinct value row in this merge
        for j, (seg, data) in enumerate(zip(self.segments, self._data, strict=True)):
            data.seed = config.seed * 1_000_003 + j
            yield seg, data, self._segment_params(config, j, rows)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {s.key: self.out[s.offset:s.offset + s.numel].view(s.shape) for s in self.segments}

    def _check(self, config: MergeConfig) -> None:
        info = METHODS[config.method]
        k = self.n_experts
        if k < info.min_experts or (info.max_experts is not None and k > info.max_experts):
            raise ValueError(f"{config.method} merges {info.min_experts}..{info.max_experts or 'any'} experts, got {k}")
        for name, given in (("weights", config.weights), ("densities", config.densities)):
            if given is not None and len(given) != k:
                raise ValueError(f"{len(given)} {name} for {k} experts")

    def _prepare(self, method: str) -> None:
        """Rank magnitudes per tensor (TIES, breadcrumbs: each in its order) or per row (DELLA) once, on first use."""
        for data in self._data:
            if method in RANKING and data.rank_order != RANKING[method]:
                data.rank_by_magnitude(RANKING[method])
            if method in NEEDS_ROW_RANKS and data.row_rank is None:
                data.rank_rows()

    def _segment_params(self, config: MergeConfig, j: int,
                        rows: dict[tuple[float, ...], torch.Tensor]) -> SegmentParams:
        raw = {name: self._value(config, name, j) for name in (*PER_EXPERT, "lambda", "t")}
        bad = [d for d in raw["density"] if not 0 < d <= 1]
        if bad:
            raise ValueError(f"density {bad[0]} is outside (0, 1]")
        for row in raw.values():  # float64, as mergekit's Python floats: counts and thresholds come from these
            if row not in rows:
                rows[row] = torch.tensor(row, dtype=torch.float64, device=self.device)
        info = METHODS[config.method]
        normalize = bool(info.normalize) if config.normalize is None else config.normalize
        rescale = bool(info.rescale) if config.rescale is None else config.rescale
        return SegmentParams(rows[raw["weight"]], rows[raw["density"]], rows[raw["gamma"]], rows[raw["epsilon"]],
                             raw["lambda"][0], raw["t"][0], normalize, rescale)

    def _value(self, config: MergeConfig, name: str, j: int) -> tuple[float, ...]:
        k = self.n_experts if name in PER_EXPERT else 1
        given: float | tuple[float, ...] | GroupedValues | None = config.params.get(name)
        if given is None:
            given = {"weight": config.weights, "density": config.densities, "lambda": config.scale}.get(name)
        if given is None:
            given = METHODS[config.method].defaults.get(name, _FALLBACK[name])
        if isinstance(given, GroupedValues):
            given = given.values[self._group(given.granularity, j)]
        row = (float(given),) * k if isinstance(given, int | float) else tuple(given)
        if len(row) != k:
            raise ValueError(f"{name} has {len(row)} values for tensor {self.keys[j]!r}, expected {k}")
        return tuple(float(v) for v in row)

    def _group(self, granularity: Granularity, j: int) -> str:
        if granularity not in self._groups:
            self._groups[granularity] = [granularity.group_of(key, self.keys) for key in self.keys]
        return self._groups[granularity][j]


_FALLBACK = {"weight": 1.0, "density": 1.0, "gamma": 0.0, "epsilon": 0.0, "lambda": 1.0, "t": 0.5}


def _common_dtype(base: Mapping[str, torch.Tensor], keys: Sequence[str]) -> torch.dtype:
    dtypes = {base[k].dtype for k in keys if k in base}
    if len(dtypes) == 1 and next(iter(dtypes)).is_floating_point:
        return next(iter(dtypes))
    return torch.float32


def _layout(base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
            keys: Sequence[str]) -> list[_Segment]:
    """Check every expert has each merged tensor with the base's shape; place tensors in the flat buffer."""
    segments: list[_Segment] = []
    offset = 0
    for key in keys:
        if key not in base:
            raise InvalidSpecError(f"tensor {key!r} is not in the base model", ("models", "base"))
        shape = tuple(base[key].shape)
        for i, expert in enumerate(experts):
            if key not in expert:
                raise InvalidSpecError(f"expert {i} has no tensor {key!r}", ("models", "experts", i))
            if tuple(expert[key].shape) != shape:
                raise InvalidSpecError(
                    f"tensor {key!r} has shape {tuple(expert[key].shape)} in expert {i}, {shape} in the base",
                    ("models", "experts", i))
        numel = math.prod(shape)
        segments.append(_Segment(key, offset, numel, shape))
        offset += numel
    return segments
