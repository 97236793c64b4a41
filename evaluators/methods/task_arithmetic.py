"""Task arithmetic: base + lambda * sum_i w_i tau_i, as mergekit computes it (the sparse recipe with no sparsifying)."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods import sparse
from mergefront.evaluators.methods.base import SegmentData, SegmentParams

RECIPE = sparse.Recipe(None, consensus=False)


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(RECIPE, data, params, out)
