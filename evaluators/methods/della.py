"""DELLA: drop entries at random with keep probabilities that grow with magnitude rank, rescale, merge."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams
from evaluators.methods.sparsify import della, disjoint_merge, weighted_sum


def merge_ties(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    deltas = della(data, params.density, params.epsilon)
    torch.add(data.base, disjoint_merge(deltas, params), alpha=params.lam, out=out)


def merge_linear(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    deltas = della(data, params.density, params.epsilon)
    torch.add(data.base, weighted_sum(deltas, params), alpha=params.lam, out=out)
