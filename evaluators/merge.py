"""The merge engine: base weights and task vectors stay resident; each candidate is merged in place.

All merged tensors are laid out in one flat buffer (`n` numbers): the base (`n`), the task vectors of the
`k` experts as one `k x n` matrix, and one output buffer (`n`) that every merge overwrites. The tensors
handed out by `merge` are views into that output buffer, valid until the next merge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from mergefront.errors import InvalidSpecError

METHODS = ("task_arithmetic", "ties")


@dataclass(frozen=True)
class MergeConfig:
    """One candidate's merge: per-expert weights (`k`), TIES densities (`k`), and the global scale."""

    method: str
    weights: tuple[float, ...]
    densities: tuple[float, ...] | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class _Segment:
    key: str
    offset: int
    numel: int
    shape: tuple[int, ...]


class ResidentMerger:
    """Merges candidates of one base and `k` experts, keeping all weights on `device`."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 keys: Sequence[str], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        if not experts:
            raise InvalidSpecError("at least one expert is needed", ("models", "experts"))
        self.device = torch.device(device)
        self.segments = _layout(base, experts, keys)
        n = sum(s.numel for s in self.segments)
        self.base = torch.empty(n, dtype=dtype, device=self.device)
        self.task_vectors = torch.empty((len(experts), n), dtype=dtype, device=self.device)  # k x n
        for seg in self.segments:
            sl = slice(seg.offset, seg.offset + seg.numel)
            base_flat = base[seg.key].reshape(-1).to(self.device, dtype)
            self.base[sl] = base_flat
            for i, expert in enumerate(experts):
                self.task_vectors[i, sl] = expert[seg.key].reshape(-1).to(self.device, dtype) - base_flat
        self.out = self.base.clone()
        self._sorted_magnitudes: list[torch.Tensor] | None = None  # per segment: k x numel, descending

    @property
    def n_experts(self) -> int:
        return int(self.task_vectors.shape[0])

    def merge(self, config: MergeConfig) -> dict[str, torch.Tensor]:
        """Merge one candidate into the output buffer; return the merged tensors (views into it)."""
        if len(config.weights) != self.n_experts:
            raise ValueError(f"{len(config.weights)} weights for {self.n_experts} experts")
        if config.method == "task_arithmetic":
            self._task_arithmetic(config)
        elif config.method == "ties":
            self._ties(config)
        else:
            raise ValueError(f"unknown merge method {config.method!r}; known: {METHODS}")
        return self.tensors()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {s.key: self.out[s.offset:s.offset + s.numel].view(s.shape) for s in self.segments}

    def _weights(self, config: MergeConfig) -> torch.Tensor:
        return torch.tensor(config.weights, dtype=self.base.dtype, device=self.device)  # k

    def _task_arithmetic(self, config: MergeConfig) -> None:
        # out = base + scale * sum_i w_i tau_i, one fused matrix-vector product
        w = self._weights(config) * config.scale
        torch.addmv(self.base, self.task_vectors.T, w, out=self.out)

    def _ties(self, config: MergeConfig) -> None:
        densities = config.densities or (1.0,) * self.n_experts
        if len(densities) != self.n_experts:
            raise ValueError(f"{len(densities)} densities for {self.n_experts} experts")
        w = self._weights(config)[:, None]  # k x 1
        for j, seg in enumerate(self.segments):
            sl = slice(seg.offset, seg.offset + seg.numel)
            tau = self.task_vectors[:, sl]  # k x numel
            thresholds = self._thresholds(j, densities)[:, None]  # k x 1
            weighted = torch.where(tau.abs() >= thresholds, tau, 0.0) * w  # trimmed, k x numel
            elected = torch.sign(weighted.sum(dim=0))  # numel
            agree = (torch.sign(weighted) == elected) & (weighted != 0)  # k x numel
            total = torch.where(agree, weighted, 0.0).sum(dim=0)
            norm = torch.where(agree, w, 0.0).sum(dim=0)
            merged = total / torch.where(norm == 0, 1.0, norm)
            torch.add(self.base[sl], merged, alpha=config.scale, out=self.out[sl])

    def _thresholds(self, segment: int, densities: Sequence[float]) -> torch.Tensor:
        """Magnitude each expert's entries must reach to survive trimming to its density (`k`)."""
        if self._sorted_magnitudes is None:  # sorted once per merger, so a new density costs no sort
            self._sorted_magnitudes = [
                torch.sort(self.task_vectors[:, s.offset:s.offset + s.numel].abs(), dim=1, descending=True).values
                for s in self.segments
            ]
        ranked = self._sorted_magnitudes[segment]  # k x numel
        numel = ranked.shape[1]
        rows = []
        for i, d in enumerate(densities):
            if not 0.0 < d <= 1.0:
                raise ValueError(f"density {d} of expert {i} is outside (0, 1]")
            keep = min(numel, max(1, math.ceil(d * numel)))
            rows.append(ranked[i, keep - 1] if d < 1.0 else ranked.new_zeros(()))
        return torch.stack(rows)


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
