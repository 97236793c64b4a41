"""TIES: trim each task vector to its density by magnitude, elect signs, merge the agreeing entries."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams
from evaluators.methods.sparsify import disjoint_merge, trim_by_magnitude


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    merged = disjoint_merge(trim_by_magnitude(data, params.density), params)
    torch.add(data.base, merged, alpha=params.lam, out=out)
