"""Model Breadcrumbs: drop the largest (gamma) and the smallest entries, keep a density-sized band between."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams
from evaluators.methods.sparsify import breadcrumbs, disjoint_merge, weighted_sum


def merge_linear(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    deltas = breadcrumbs(data, params.density, params.gamma)
    torch.add(data.base, weighted_sum(deltas, params), alpha=params.lam, out=out)


def merge_ties(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    deltas = breadcrumbs(data, params.density, params.gamma)
    torch.add(data.base, disjoint_merge(deltas, params), alpha=params.lam, out=out)
