"""The merge engine: base weights and task vectors stay where the memory plan puts them; each candidate is merged
in place.

The merged tensors are laid out in one flat output buffer (`n` numbers) on the device, which every merge
overwrites; the tensors handed out by `merge` are views into it, valid until the next merge. The base and the task
vectors of the `k` experts live in a store (`mergefront.evaluators.stores`): resident on the device, in pinned
host memory streamed to the device block by block (consecutive tensors packed up to the largest one's size), or
in the memory-mapped checkpoint files. Methods run tensor by tensor (`mergefront.evaluators.methods`), each with
the parameter values of the groups the tensor falls in; task arithmetic, whose merge of an entry needs nothing of
its tensor but those values, runs over spans of consecutive tensors that share them (`SPANNING`), cut only where a
store's block ends.

Memory, per expert: one task vector in the checkpoint's dtype; TIES and breadcrumbs keep int32 magnitude ranks
(sorted once, as mergekit sorts, so a new density costs no sort), DELLA int32 row ranks, when the plan has room
(`ranks`). Without them each merge works one tensor at a time on the device: TIES and breadcrumbs select each
expert's magnitude cut (`mergefront.evaluators.methods.select`: equal kept counts, no sort), DELLA ranks the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.methods import NEEDS_ROW_RANKS, RANKING, REGISTRY, SegmentData, SegmentParams
from mergefront.evaluators.methods.base import KeepRule
from mergefront.evaluators.methods.select import rank_windows
from mergefront.evaluators.methods.sparse import RECIPES, kept_entries
from mergefront.evaluators.stores import Block, MmapStore, ResidentStore, Segment, Store, StreamStore, layout
from mergefront.granularity import Granularity
from mergefront.methods import METHODS, PER_EXPERT

METHOD_NAMES = tuple(REGISTRY)
VALUE_NAMES = (*PER_EXPERT, "lambda", "t")
# Methods whose merged entry depends only on that entry's base and task-vector values and its tensor's parameter
# values (no ranks, masks or norms per tensor): consecutive tensors with the same values merge as one span of the
# flat layout (within one block of the store), to the same numbers, in one call of the method (a whole model at
# whole-model granularity: a few kernel calls instead of about 280 calls and tensor set-ups, whose overhead was a
# quarter of a CPU merge).
SPANNING = {"task_arithmetic"}


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


class ResidentMerger:
    """Merges candidates of one base and `k` experts into an output buffer on `device`.

    `placement` says where base and task vectors live ("resident", "stream", "mmap"; see the placement module),
    `ranks` whether TIES / breadcrumbs / DELLA keep magnitude ranks (resident only). `base` and `experts` may be
    lazily read checkpoints (`LazyCheckpoint`): they are read tensor by tensor, one model at a time.
    """

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 keys: Sequence[str], device: torch.device | str = "cpu", dtype: torch.dtype | None = None, *,
                 placement: str = "resident", ranks: bool = True, staging: bool | None = None):
        if not experts:
            raise InvalidSpecError("at least one expert is needed", ("models", "experts"))
        self.device = torch.device(device)
        self.segments = layout(base, experts, keys)
        self.keys = [s.key for s in self.segments]
        self.dtype = dtype or _common_dtype(base, keys)
        self.placement = placement
        self.store = _store(placement, base, experts, self.segments, self.device, self.dtype, staging)
        self.ranks = ranks and placement == "resident"
        n = sum(s.numel for s in self.segments)
        self.out = torch.empty(n, dtype=self.dtype, device=self.device)
        self._data = [SegmentData(torch.empty(0, dtype=self.dtype), torch.empty(0, dtype=self.dtype), 0, s.shape)
                      for s in self.segments]
        for j, _ in self._each():  # the output starts as the base
            self.out[self._slice(j)] = self._data[j].base
        self._groups: dict[Granularity, list[str]] = {}

    @property
    def base(self) -> torch.Tensor:
        """The resident base (`n`); only the resident placement has one on the device."""
        return self._resident().base

    @property
    def task_vectors(self) -> torch.Tensor:
        """The resident task vectors (`k x n`)."""
        return self._resident().task_vectors

    def _resident(self) -> ResidentStore:
        if not isinstance(self.store, ResidentStore):
            raise ValueError(f"placement {self.placement!r} keeps no base or task vectors on the device")
        return self.store

    def _slice(self, j: int) -> slice:
        seg = self.segments[j]
        return slice(seg.offset, seg.offset + seg.numel)

    def _each(self) -> Iterator[tuple[int, SegmentData]]:
        """Each segment in turn with its base and task vectors on the device (the next block's copy in flight)."""
        for block, base, tau in self._blocks():
            for j in range(block.first, block.end):
                at, data = block.local(self.segments[j]), self._data[j]
                data.base, data.tau = base[at], tau[:, at]
                yield j, data

    def _blocks(self) -> Iterator[tuple[Block, torch.Tensor, torch.Tensor]]:
        """The store's blocks in turn, each open on the device while the next one's copy is in flight."""
        self.store.prefetch(0)
        for b, block in enumerate(self.store.blocks):
            base, tau = self.store.open(b)
            self.store.prefetch(b + 1)
            try:
                yield block, base, tau
            finally:
                self.store.done(b)

    def changed(self) -> list[tuple[int, int]]:
        """(entries the last merge changed from the base, all entries) of each merged tensor."""
        return [(int(torch.count_nonzero(self.out[self._slice(j)] != data.base)), data.numel)
                for j, data in self._each()]

    @property
    def n_experts(self) -> int:
        return self.store.k

    def merge(self, config: MergeConfig) -> dict[str, torch.Tensor]:
        """Merge one candidate into the output buffer; return the merged tensors (views into it)."""
        method = REGISTRY.get(config.method)
        if method is None:
            raise ValueError(f"unknown merge method {config.method!r}; known: {METHOD_NAMES}")
        if config.method in SPANNING:
            spans = list(self._spans(config))
            for block, base, tau in self._blocks():  # a span crossing blocks is merged in each block's part
                start, end = block.offset, block.offset + block.numel
                for lo, hi, params in spans:
                    lo, hi = max(lo, start), min(hi, end)
                    if lo < hi:
                        data = SegmentData(base[lo - start:hi - start], tau[:, lo - start:hi - start], config.seed)
                        method(data, params, self.out[lo:hi])
            return self.tensors()
        for seg, data, params in self._inputs(config):
            method(data, params, self.out[seg.offset:seg.offset + seg.numel])
        return self.tensors()

    def _spans(self, config: MergeConfig) -> Iterator[tuple[int, int, SegmentParams]]:
        """Runs of consecutive resident tensors with the same parameter values: (first entry, end, the values)."""
        self._check(config)
        rows: dict[tuple[float, ...], torch.Tensor] = {}
        run: tuple[int, int, tuple[tuple[float, ...], ...]] | None = None
        for j, seg in enumerate(self.segments):
            raw = self._raw_values(config, j)
            if run is not None and run[2] == raw and run[1] == seg.offset:
                run = (run[0], seg.offset + seg.numel, raw)
                continue
            if run is not None:
                yield run[0], run[1], self._params_of(config, run[2], rows)
            run = (seg.offset, seg.offset + seg.numel, raw)
        if run is not None:
            yield run[0], run[1], self._params_of(config, run[2], rows)

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

    def _inputs(self, config: MergeConfig) -> Iterator[tuple[Segment, SegmentData, SegmentParams]]:
        """Each tensor's segment, data (on the device, seeded for this candidate) and parameter values."""
        self._check(config)
        rows: dict[tuple[float, ...], torch.Tensor] = {}  # one tensor per distinct value row in this merge
        for j, data in self._each():
            data.seed = config.seed * 1_000_003 + j
            params = self._segment_params(config, j, rows)
            self._prepare(config.method, data, params)
            yield self.segments[j], data, params
            if not self.ranks:  # selected or ranked for this merge only
                data.ranks = data.rank_order = data.row_rank = None

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

    def _prepare(self, method: str, data: SegmentData, params: SegmentParams) -> None:
        """Where ranks are kept: rank magnitudes per tensor (TIES, breadcrumbs: each in its order) or per row
        (DELLA) once, on first use. Else, for each merge and tensor: TIES and breadcrumbs select each expert's cut
        (`select.rank_windows`: the same kept counts, no sort), DELLA ranks the tensor's rows."""
        if method in RANKING and not self.ranks:
            data.ranks = rank_windows(data, KeepRule.of(RECIPES[method].sparsify, data, params))
            data.rank_order = RANKING[method]
        elif method in RANKING and data.rank_order != RANKING[method]:
            data.rank_by_magnitude(RANKING[method])
        if method in NEEDS_ROW_RANKS and data.row_rank is None:
            data.rank_rows()

    def _segment_params(self, config: MergeConfig, j: int,
                        rows: dict[tuple[float, ...], torch.Tensor]) -> SegmentParams:
        return self._params_of(config, self._raw_values(config, j), rows)

    def _raw_values(self, config: MergeConfig, j: int) -> tuple[tuple[float, ...], ...]:
        """Tensor j's value rows, in `VALUE_NAMES` order."""
        raw = tuple(self._value(config, name, j) for name in VALUE_NAMES)
        bad = [d for d in raw[VALUE_NAMES.index("density")] if not 0 < d <= 1]
        if bad:
            raise ValueError(f"density {bad[0]} is outside (0, 1]")
        return raw

    def _params_of(self, config: MergeConfig, raw: tuple[tuple[float, ...], ...],
                   rows: dict[tuple[float, ...], torch.Tensor]) -> SegmentParams:
        values = dict(zip(VALUE_NAMES, raw, strict=True))
        for row in raw:  # float64, as mergekit's Python floats: counts and thresholds come from these
            if row not in rows:
                rows[row] = torch.tensor(row, dtype=torch.float64, device=self.device)
        info = METHODS[config.method]
        normalize = bool(info.normalize) if config.normalize is None else config.normalize
        rescale = bool(info.rescale) if config.rescale is None else config.rescale
        return SegmentParams(rows[values["weight"]], rows[values["density"]], rows[values["gamma"]],
                             rows[values["epsilon"]], values["lambda"][0], values["t"][0], normalize, rescale)

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


def _store(placement: str, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
           segments: Sequence[Segment], device: torch.device, dtype: torch.dtype, staging: bool | None) -> Store:
    if placement == "resident":
        return ResidentStore(base, experts, segments, device, dtype)
    if placement == "stream":
        return StreamStore(base, experts, segments, device, dtype, staging)
    if placement == "mmap":
        return MmapStore(base, experts, segments, device, dtype)
    raise ValueError(f"unknown placement {placement!r}; known: resident, stream, mmap")
