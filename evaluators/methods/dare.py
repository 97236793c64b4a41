"""DARE: drop task-vector entries at random (rate 1 - density) and rescale; then TIES or a weighted sum."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams
from evaluators.methods.sparsify import dare, disjoint_merge, weighted_sum


def merge_ties(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    torch.add(data.base, disjoint_merge(dare(data, params.density), params), alpha=params.lam, out=out)


def merge_linear(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    torch.add(data.base, weighted_sum(dare(data, params.density), params), alpha=params.lam, out=out)
