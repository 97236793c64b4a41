"""TIES: trim each task vector to its density by magnitude, elect signs, merge the agreeing entries."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods import sparse
from mergefront.evaluators.methods.base import SegmentData, SegmentParams

RECIPE = sparse.Recipe("magnitude", consensus=True)


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(RECIPE, data, params, out)
