"""DARE: drop task-vector entries at random (keep rate: density), rescaled; then TIES signs or a weighted sum."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods import sparse
from mergefront.evaluators.methods.base import SegmentData, SegmentParams


def merge_ties(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(sparse.Recipe("random", consensus=True), data, params, out)


def merge_linear(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    sparse.merge(sparse.Recipe("random", consensus=False), data, params, out)
